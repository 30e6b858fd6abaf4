"""One physical-effect test per degradation: the measured effect matches the parameter.

Measured values are printed (``pytest -s``) for the record.
"""
import shutil

import numpy as np
import pytest
from scipy.signal import correlate, welch

from spaq.auditory.doa import intensity_doa
from spaq.data.degradations import (DEGRADATIONS, apply_signal_degradation, check_severity, codec_roundtrip,
                                    degradation_params, phase_vocoder)
from spaq.data.scenes import render_scene, scene_mods
from spaq.errors import SpaqError
from spaq.formats import parse_format
from spaq.spatial.ambisonics import encode
from spaq.spatial.angles import great_circle_deg
from spaq.spatial.room import measure_drr, measure_rt60

FS = 48000
BIN, FOA = parse_format("binaural"), parse_format("foa")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


def params(name, s, fmt=BIN, seed=0, **opt):
    return degradation_params(name, s, np.random.default_rng(seed), sample_rate=FS, fmt=fmt, options=opt or None)


def apply(name, x, p, fmt=BIN):
    return apply_signal_degradation(x, p, name, FS, fmt)


def sig(C=2, T=FS, seed=0):
    return 0.1 * np.random.default_rng(seed).standard_normal((C, T))


def report(name, **vals):
    print(f"[{name}] " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in vals.items()))


def test_every_degradation_has_a_test_below():
    tested = {"noise", "lowpass", "bandpass", "clipping", "quantisation", "codec", "order_truncation", "rotation",
              "misplacement", "blur", "downmix", "ild", "itd", "hrtf_swap", "reverb", "gain", "channel_imbalance",
              "misalignment", "packet_loss", "time_stretch", "resample"}
    assert set(DEGRADATIONS) == tested


def test_severity_is_checked():
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(SpaqError, match="severity"):
            params("noise", bad)
    assert check_severity(1) == 1.0


@pytest.mark.parametrize("fmt", [BIN, FOA])
@pytest.mark.parametrize("s", [0.25, 0.9])
def test_noise_snr(fmt, s):
    x = sig(fmt.n_channels)
    p = params("noise", s, fmt)
    y, _ = apply("noise", x, p, fmt)
    snr = 10 * np.log10(np.sum(x ** 2) / np.sum((y - x) ** 2))
    report("noise", fmt=fmt.kind, requested_db=p["snr_db"], measured_db=snr)
    assert abs(snr - p["snr_db"]) < 0.5
    assert abs(p["snr_db"] - (40 - 40 * s)) < 1e-9


def _response_db(x, y):
    f, pxx = welch(x[0], FS, nperseg=4096)
    _, pyy = welch(y[0], FS, nperseg=4096)
    return f, 10 * np.log10(pyy / pxx)


def test_lowpass_cutoff():
    x = sig(T=4 * FS)
    p = params("lowpass", 0.5)
    y, _ = apply("lowpass", x, p)
    f, h = _response_db(x, y)
    fc = p["cutoff_hz"]
    measured = f[np.argmax(h < -6.0)]  # first bin below -6 dB
    report("lowpass", cutoff_hz=fc, measured_minus6dB_hz=float(measured), at_2fc_db=float(np.interp(2 * fc, f, h)))
    assert abs(measured - fc) / fc < 0.05
    assert np.interp(2 * fc, f, h) < -40 and abs(np.interp(fc / 4, f, h)) < 0.2


def test_bandpass_edges():
    x = sig(T=4 * FS)
    p = params("bandpass", 1.0)
    y, _ = apply("bandpass", x, p)
    f, h = _response_db(x, y)
    mid = np.sqrt(p["low_hz"] * p["high_hz"])
    report("bandpass", low_hz=p["low_hz"], high_hz=p["high_hz"], at_low_db=float(np.interp(p["low_hz"], f, h)),
           at_high_db=float(np.interp(p["high_hz"], f, h)))
    assert abs(np.interp(mid, f, h)) < 0.5
    assert abs(np.interp(p["high_hz"], f, h) + 6) < 1.0 and abs(np.interp(p["low_hz"], f, h) + 6) < 1.5


def test_clipping_threshold():
    x = sig()
    p = params("clipping", 0.5)
    y, extra = apply("clipping", x, p)
    thr_db = 20 * np.log10(np.max(np.abs(x)) / np.max(np.abs(y)))
    report("clipping", clip_db=p["clip_db"], measured_db=thr_db, clipped_fraction=extra["clipped_fraction"])
    assert abs(thr_db - p["clip_db"]) < 0.01
    assert np.isclose(np.mean(np.abs(y) >= np.max(np.abs(y)) - 1e-12), extra["clipped_fraction"], atol=1e-3)


@pytest.mark.parametrize("s", [0.0, 0.5, 1.0])
def test_quantisation_snr(s):
    t = np.arange(FS) / FS
    x = np.stack([0.7 * np.sin(2 * np.pi * 997 * t)] * 2)  # below the top code at 3 bits (0.75)
    p = params("quantisation", s)
    y, _ = apply("quantisation", x, p)
    snr = 10 * np.log10(np.sum(x ** 2) / np.sum((y - x) ** 2))
    theory = 6.02 * p["bits"] + 1.76 + 20 * np.log10(0.7)
    report("quantisation", bits=p["bits"], measured_snr_db=snr, theory_db=theory)
    assert abs(snr - theory) < (1.0 if p["bits"] >= 8 else 3.0)  # uniform-noise model is coarse at few bits


@needs_ffmpeg
@pytest.mark.parametrize("codec", ["opus", "mp3", "aac"])
def test_codec_bitrate_and_effect(codec):
    x = sig(T=2 * FS)
    p = params("codec", 0.6, codecs=[codec])
    y, extra = apply("codec", x, p)
    snr = 10 * np.log10(np.sum(x ** 2) / np.sum((y - x) ** 2))
    report("codec", codec=codec, bitrate_kbps=p["bitrate_kbps"], measured_kbps=extra["measured_bitrate_kbps"],
           snr_db=snr, delay=extra["codec_delay_samples"])
    assert abs(extra["measured_bitrate_kbps"] - p["bitrate_kbps"]) / p["bitrate_kbps"] < 0.2
    # the decoded signal is aligned and the band below 4 kHz is kept to within a few dB
    f, h = _response_db(x, y)
    assert abs(np.mean(h[(f > 200) & (f < 4000)])) < 3
    assert y.shape == x.shape


def test_codec_errors_are_reported(monkeypatch, tmp_path):
    with pytest.raises(SpaqError, match="unknown codec"):
        codec_roundtrip(sig(), FS, "vorbis9", 64)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpaqError, match=r"ffmpeg not found.*apt-get install ffmpeg"):
        codec_roundtrip(sig(), FS, "opus", 64)


@needs_ffmpeg
def test_codec_failure_message():
    with pytest.raises(SpaqError, match="ffmpeg failed"):
        codec_roundtrip(sig(), FS, "opus", 100000)  # libopus refuses this bitrate


def test_order_truncation():
    fmt = parse_format("hoa3")
    x = encode(np.random.default_rng(0).standard_normal(FS // 2), 40, 10, 3)
    for s, expect in ((0.0, 3), (0.2, 2), (0.5, 1), (1.0, 0)):
        p = params("order_truncation", s, fmt)
        assert p["to_order"] == expect
        y, _ = apply("order_truncation", x, p, fmt)
        k = (expect + 1) ** 2
        assert np.all(y[k:] == 0) and np.array_equal(y[:k], x[:k])
    report("order_truncation", from_order=3, to_orders="3,2,1,0 at s=0,0.2,0.5,1")


def _scene(fmt="foa", az=20.0, el=10.0, room=None):
    return {"format": fmt, "sample_rate": FS, "duration_s": 0.5, "hrtf": "default", "hrir_lookup": "interpolated",
            "binaural_rendering": "hrir", "decoder_order": 3, "room": room, "diffuse": None,
            "sources": [{"type": "pink_noise", "azimuth_deg": az, "elevation_deg": el, "distance_m": 2.0,
                         "motion": None, "level_dbfs": -20, "content_seed": 0}]}


def _chain(name, s, fmt, seed=0, **opt):
    p = degradation_params(name, s, np.random.default_rng(seed), sample_rate=FS, fmt=fmt, options=opt or None)
    return [{"type": name, "stage": DEGRADATIONS[name].stage, "severity": s, "params": p}]


@pytest.mark.parametrize("axis,seed", [("yaw", 0), ("random", 3)])
def test_rotation_measured(axis, seed):
    sc = _scene()
    s = 0.1 * np.random.default_rng(1).standard_normal(FS // 2)
    ref = render_scene(sc, [s])
    ch = _chain("rotation", 0.5, FOA, seed, axis=axis)
    deg = render_scene(sc, [s], scene_mods(ch))
    a = intensity_doa(ref, FS)
    b = intensity_doa(deg, FS)
    moved = great_circle_deg(a.azimuth_deg[0], a.elevation_deg[0], b.azimuth_deg[0], b.elevation_deg[0])
    # the great-circle displacement of a direction under rotation by angle a about axis k
    from spaq.spatial.angles import sph2cart
    v, k = sph2cart(20, 10), np.asarray(ch[0]["params"]["axis"])
    ang = np.deg2rad(abs(ch[0]["params"]["angle_deg"]))
    expect = np.rad2deg(np.arccos(np.clip(np.dot(v, k) ** 2 + (1 - np.dot(v, k) ** 2) * np.cos(ang), -1, 1)))
    report("rotation", axis=axis, angle_deg=ch[0]["params"]["angle_deg"], expected_move_deg=float(expect),
           measured_move_deg=float(moved))
    assert abs(moved - expect) < 1.0


def test_misplacement_measured():
    sc = _scene(az=-30, el=0)
    s = 0.1 * np.random.default_rng(2).standard_normal(FS // 2)
    ch = _chain("misplacement", 0.4, FOA)
    a = intensity_doa(render_scene(sc, [s]), FS)
    b = intensity_doa(render_scene(sc, [s], scene_mods(ch)), FS)
    moved = great_circle_deg(a.azimuth_deg[0], a.elevation_deg[0], b.azimuth_deg[0], b.elevation_deg[0])
    report("misplacement", angle_deg=ch[0]["params"]["angle_deg"], measured_deg=float(moved))
    assert abs(moved - ch[0]["params"]["angle_deg"]) < 1.0


def _iacc(y):
    c = correlate(y[0], y[1], mode="full", method="fft")
    mid = len(y[0]) - 1
    w = int(0.001 * FS)
    return np.max(np.abs(c[mid - w:mid + w + 1])) / np.sqrt(np.sum(y[0] ** 2) * np.sum(y[1] ** 2))


def test_blur_binaural_coherence_and_ambisonic_diffuseness():
    s = 0.1 * np.random.default_rng(3).standard_normal(FS)
    x = np.stack([s, s])  # fully coherent
    for sev in (0.3, 0.7):
        p = params("blur", sev)
        y, _ = apply("blur", x, p)
        ic = _iacc(y)
        report("blur", fmt="binaural", amount=p["amount"], measured_iacc=float(ic), expected=1 - p["amount"])
        assert abs(ic - (1 - p["amount"])) < 0.05
        assert abs(10 * np.log10(np.sum(y ** 2) / np.sum(x ** 2))) < 0.3  # power kept
    xa = encode(s, 30, 0, 1)
    p = params("blur", 0.6, FOA)
    ya, _ = apply("blur", xa, p, FOA)
    w, yy, z, xx = ya
    psi = 1 - np.linalg.norm([np.mean(w * xx), np.mean(w * yy), np.mean(w * z)]) / np.mean((ya ** 2).sum(0) / 2)
    report("blur", fmt="foa", amount=p["amount"], measured_diffuseness=float(psi))
    assert abs(psi - p["amount"]) < 0.05


def _band_levels_db(y, per_octave=6):
    f, pxx = welch(y, FS, nperseg=4096)
    edges = 200.0 * 2.0 ** (np.arange(0, 6.3 * per_octave + 1) / per_octave)  # 200 Hz .. ~16 kHz
    return np.array([10 * np.log10(pxx[:, (f >= lo) & (f < hi)].sum(-1).mean()) for lo, hi in zip(edges[:-1], edges[1:])])


def test_blur_decorrelators_orthogonal_keeps_every_band_and_filter_replays_old_chains():
    """Blur's default decorrelator (twenty-ninth session) is orthogonal to the input in every STFT bin:
    the mix keeps the power of every sixth-octave band (the old 20 ms noise filter colours them by several
    dB: what made one blur ladder non-monotone), its correlation with the input is sqrt(1 - amount) and the
    ears' coherence 1 - amount, and the ladder changes the signal monotonically. Chains recorded before
    the option (no ``decorrelator`` in their parameters) replay with the old filter, bit for bit."""
    from spaq.data.degradations import decorrelate

    x = np.stack([sig(1, seed=5)[0]] * 2)  # a fully coherent pair
    ref = _band_levels_db(x)
    dev = {}
    for kind in ("orthogonal", "filter"):
        prev = 1.0
        for sev in (0.25, 0.5, 0.75, 1.0):
            p = params("blur", sev, decorrelator=kind)
            assert p["decorrelator"] == kind
            y, _ = apply("blur", x, p)
            a = p["amount"]
            rho = float(np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y)))
            dev[kind, sev] = float(np.max(np.abs(_band_levels_db(y) - ref)))
            assert abs(10 * np.log10(np.sum(y ** 2) / np.sum(x ** 2))) < 0.3
            if kind == "orthogonal" or sev < 1:  # two independent 20 ms noise filters can still correlate
                assert abs(_iacc(y) - (1 - a)) < 0.05, (kind, sev)  # by ~0.2 at some lag within 1 ms
            if kind == "orthogonal":
                # the copy is orthogonal to x (projection removed) and of its power (gain restored) in
                # float64, so rho = sqrt(1 - a) up to rounding (~1e-15 relative over 48 000 samples)
                assert rho == pytest.approx(np.sqrt(1 - a), abs=1e-9) and rho < prev
                prev = rho
    # welch on 1 s of noise: ~0.5 dB per sixth-octave band; the filter's colouring is several dB
    assert max(dev["orthogonal", s] for s in (0.25, 0.5, 0.75, 1.0)) < 2.0
    assert min(dev["filter", s] for s in (0.25, 0.5, 0.75, 1.0)) > 3.0
    old = {k: v for k, v in params("blur", 0.5, decorrelator="filter").items() if k != "decorrelator"}
    y_old, _ = apply("blur", x, old)
    dx = decorrelate(x, FS, np.random.default_rng(old["decorrelator_seed"]))
    np.testing.assert_array_equal(y_old, np.sqrt(1 - old["amount"]) * x + np.sqrt(old["amount"]) * dx)
    with pytest.raises(SpaqError, match="decorrelator must be one of orthogonal, filter"):
        params("blur", 0.5, decorrelator="allpass")
    # shorter than one frame, and a silent channel: same shape and power, finite, silence stays silent
    from spaq.data.degradations import decorrelate_orthogonal

    for T in (4, 10, 500):
        z = np.stack([sig(1, T=T, seed=T)[0], np.zeros(T)])
        d = decorrelate_orthogonal(z, FS, np.random.default_rng(0))
        assert d.shape == z.shape and np.all(np.isfinite(d)) and not np.any(d[1])
        assert np.sum(d[0] ** 2) == pytest.approx(np.sum(z[0] ** 2), rel=1e-9)


def test_recipes_keep_the_blur_they_were_fitted_on():
    """``quality``'s synthetic sweeps and the predictor's corpus pass RECIPE_OPTIONS (the old filter);
    a sweep without options gets the engine's default (orthogonal); the draws are the same."""
    from spaq.train.quality import RECIPE_OPTIONS, sweep_draws, sweep_params

    d0 = sweep_draws("blur", "binaural", "pink_noise", 5, 1)
    d1 = sweep_draws("blur", "binaural", "pink_noise", 5, 1, options=RECIPE_OPTIONS)
    assert d0[1] == d1[1] and d0[2] == d1[2]
    p0, p1 = sweep_params("blur", 0.5, *d0), sweep_params("blur", 0.5, *d1)
    assert p0["decorrelator"] == "orthogonal" and p1["decorrelator"] == "filter"
    assert p0["decorrelator_seed"] == p1["decorrelator_seed"] and p0["amount"] == p1["amount"]
    # and reverb's redrawn tail (the engine's default: shared)
    for fam in ("reverb", "reverb_longer"):
        d0 = sweep_draws(fam, "binaural", "pink_noise", 5, 1)
        d1 = sweep_draws(fam, "binaural", "pink_noise", 5, 1, options=RECIPE_OPTIONS)
        p0, p1 = sweep_params(fam, 0.5, *d0), sweep_params(fam, 0.5, *d1)
        assert p0.pop("tail") == "shared" and p1.pop("tail") == "redrawn" and p0 == p1


def test_predictor_splits_pin_the_recipe_options_unless_told():
    from spaq.train.predictor import CorpusSplit, split_cache_path

    assert CorpusSplit().degradation_options == "recipe"
    # the default leaves the cache key of tables made before the option as it was
    a = split_cache_path(CorpusSplit(), "t.csv")
    assert a != split_cache_path(CorpusSplit(degradation_options="engine"), "t.csv")
    with pytest.raises(SpaqError, match="degradation_options"):
        CorpusSplit(degradation_options="latest")


def test_downmix_collapses_the_image():
    """Binaural: the correlation of two independent ears rises to 1 (diotic) at amount 1, the ears'
    mean is kept; ambisonics: W untouched, the directional channels scaled by 1 - amount, the
    intensity direction kept."""
    x = sig()
    for sev in (0.0, 0.5, 1.0):
        p = params("downmix", sev)
        y, _ = apply("downmix", x, p)
        a = p["amount"]
        assert a == sev
        np.testing.assert_allclose(y.mean(axis=0), x.mean(axis=0), atol=1e-12)
        # each ear is (1 - a/2) * itself + (a/2) * the other: the normalised correlation of two
        # independent equal-power ears is 2 c (1 - c) / (c^2 + (1 - c)^2) with c = a / 2
        c = a / 2
        expected = 2 * c * (1 - c) / (c ** 2 + (1 - c) ** 2)
        r = np.corrcoef(y[0], y[1])[0, 1]
        report("downmix", fmt="binaural", amount=a, measured_corr=float(r), expected=expected)
        assert abs(r - expected) < 0.01
    s = 0.1 * np.random.default_rng(3).standard_normal(FS)
    xa = encode(s, 30, 0, 1)
    ya, _ = apply("downmix", xa, params("downmix", 0.75, FOA), FOA)
    np.testing.assert_allclose(ya[0], xa[0])
    np.testing.assert_allclose(ya[1:], 0.25 * xa[1:], atol=1e-15)
    a, b = intensity_doa(xa, FS), intensity_doa(ya, FS)
    assert great_circle_deg(a.azimuth_deg[0], a.elevation_deg[0], b.azimuth_deg[0], b.elevation_deg[0]) < 1.0
    assert abs(a.azimuth_deg[0] - 30) < 1.0


def test_ild_change():
    x = sig()
    p = params("ild", 0.5)
    y, _ = apply("ild", x, p)
    ild = lambda z: 10 * np.log10(np.sum(z[0] ** 2) / np.sum(z[1] ** 2))  # noqa: E731
    report("ild", requested_db=p["ild_change_db"], measured_db=float(ild(y) - ild(x)))
    assert abs(ild(y) - ild(x) - p["ild_change_db"]) < 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_itd_change(seed):
    s = 0.1 * np.random.default_rng(4).standard_normal(FS // 2)
    x = np.stack([s, s])
    p = params("itd", 0.5, seed=seed)
    y, _ = apply("itd", x, p)
    # sub-sample lag from a parabolic fit of the cross-correlation peak
    c = correlate(y[1], y[0], mode="full", method="fft")
    k = int(np.argmax(c))
    frac = 0.5 * (c[k - 1] - c[k + 1]) / (c[k - 1] - 2 * c[k] + c[k + 1])
    lag_us = (k + frac - (len(s) - 1)) / FS * 1e6
    report("itd", requested_us=p["itd_change_us"], measured_us=float(lag_us))
    assert abs(lag_us - p["itd_change_us"]) < 5.0


def test_hrtf_swap_full_weight_equals_other_head(tmp_path):
    import sofar

    from spaq.spatial.hrtf import load_hrtf
    ku = load_hrtf("default", FS)
    other = sofar.Sofa("SimpleFreeFieldHRIR")
    other.Data_IR = ku.hrir[:, ::-1, :] * 0.5  # a "head" with swapped ears at -6 dB
    other.Data_SamplingRate = FS
    other.SourcePosition = np.stack([ku.azimuth_deg, ku.elevation_deg, np.ones(ku.n_directions)], -1)
    path = str(tmp_path / "swapped.sofa")
    sofar.write_sofa(path, other)
    sc = _scene("binaural", az=60, el=0)
    s = 0.1 * np.random.default_rng(5).standard_normal(FS // 2)
    ref = render_scene(sc, [s])
    ild = lambda z: 10 * np.log10(np.sum(z[0] ** 2) / np.sum(z[1] ** 2))  # noqa: E731
    vals = {}
    for sev in (0.0, 0.5, 1.0):
        ch = _chain("hrtf_swap", sev, BIN, heads=[path])
        vals[sev] = render_scene(sc, [s], scene_mods(ch))
    report("hrtf_swap", ild_own=float(ild(vals[0.0])), ild_half=float(ild(vals[0.5])), ild_other=float(ild(vals[1.0])))
    assert np.allclose(vals[0.0], ref)
    assert abs(ild(vals[1.0]) + ild(ref)) < 0.5  # swapped ears: ILD sign flips
    assert abs(ild(vals[0.5])) < abs(ild(ref)) - 3  # half way: ILD shrinks towards 0
    lvl = 10 * np.log10(np.sum(vals[1.0] ** 2) / np.sum(ref ** 2))
    assert abs(lvl + 6.02) < 0.2


def _room_impulse_scene(rt60_s: float):
    """A FOA scene in a 6 x 5 x 3 m room (source at 30 deg, 2 m), an impulse at sample 100 as its
    source: ``(scene, [impulse], reference rendering)``."""
    from spaq.spatial.room import place_in_room
    spec = place_in_room((6, 5, 3), rt60_s, 30, 0, 2.0, np.random.default_rng(0))
    room = {"dims_m": list(spec.dims_m), "rt60_s": rt60_s, "listener_m": list(spec.listener_m),
            "listener_yaw_deg": spec.listener_yaw_deg, "seed": 1, "margin_m": 0.5, "ism_order": 6}
    sc = _scene("foa", az=30, el=0, room=room)
    sc["duration_s"] = 1.5
    impulse = np.zeros(int(1.5 * FS))
    impulse[100] = 1.0
    return sc, impulse, render_scene(sc, [impulse])


def test_reverb_change():
    sc, impulse, ref = _room_impulse_scene(0.4)
    ch = _chain("reverb", 1.0, FOA, seed=0)
    p = ch[0]["params"]
    deg = render_scene(sc, [impulse], scene_mods(ch))
    rt_ref, rt_deg = measure_rt60(ref[0, 100:], FS), measure_rt60(deg[0, 100:], FS)
    drr_ref, drr_deg = measure_drr(ref[0], FS, 1.0), measure_drr(deg[0], FS, 1.0)
    report("reverb", rt60_factor=p["rt60_factor"], measured_factor=rt_deg / rt_ref, drr_change_db=p["drr_change_db"],
           measured_drr_change_db=drr_deg - drr_ref)
    assert abs(rt_deg / rt_ref - p["rt60_factor"]) / p["rt60_factor"] < 0.12
    # the DRR moves in the requested direction (RT60 change also moves it)
    ch2 = _chain("reverb", 0.0, FOA)
    ch2[0]["params"].update(rt60_factor=1.0, drr_change_db=4.0)
    deg2 = render_scene(sc, [impulse], scene_mods(ch2))
    d2 = measure_drr(deg2[0], FS, 1.0) - drr_ref
    report("reverb", drr_only_requested_db=4.0, measured_db=d2)
    assert abs(d2 - 4.0) < 0.5


def test_gain_and_channel_imbalance():
    x = sig(4)
    p = params("gain", 0.5, FOA)
    y, _ = apply("gain", x, p, FOA)
    g = 10 * np.log10(np.sum(y ** 2) / np.sum(x ** 2))
    report("gain", requested_db=p["gain_db"], measured_db=g)
    assert abs(g - p["gain_db"]) < 0.01
    p = params("channel_imbalance", 0.8, FOA)
    y, _ = apply("channel_imbalance", x, p, FOA)
    per = 10 * np.log10(np.sum(y ** 2, -1) / np.sum(x ** 2, -1))
    report("channel_imbalance", requested=np.round(p["channel_gains_db"], 3).tolist(), measured=np.round(per, 3).tolist())
    assert np.allclose(per, p["channel_gains_db"], atol=0.01) and np.ptp(per) <= p["imbalance_db"] + 1e-9
    pb = params("channel_imbalance", 0.5)
    yb, _ = apply("channel_imbalance", sig(), pb)
    assert abs(abs(10 * np.log10(np.sum(yb[0] ** 2) / np.sum(yb[1] ** 2))
                   - 10 * np.log10(np.sum(sig()[0] ** 2) / np.sum(sig()[1] ** 2))) - pb["imbalance_db"]) < 0.01


def test_misalignment_lag():
    x = sig()
    p = params("misalignment", 0.3)
    y, _ = apply("misalignment", x, p)
    c = correlate(y[0], x[0], mode="full", method="fft")
    lag = int(np.argmax(c)) - (x.shape[-1] - 1)
    report("misalignment", requested_ms=p["delay_ms"], measured_ms=lag / FS * 1e3)
    assert lag == p["delay_samples"] and abs(lag / FS * 1e3 - p["delay_ms"]) < 1000 / FS


def test_packet_loss_rate():
    x = sig(T=10 * FS) + 0.5
    p = params("packet_loss", 0.6)
    y, extra = apply("packet_loss", x, p)
    P = int(0.02 * FS)
    frames = y[0, : (y.shape[1] // P) * P].reshape(-1, P)
    lost = np.mean(np.all(frames[:, P // 4: -P // 4] == 0, axis=1))
    report("packet_loss", requested=p["loss_rate"], realised=extra["realised_loss_rate"], measured=float(lost))
    assert abs(lost - extra["realised_loss_rate"]) < 1e-9
    assert abs(extra["realised_loss_rate"] - p["loss_rate"]) < 0.05  # 500 packets


def test_time_stretch():
    t = np.arange(FS) / FS
    tone = np.sin(2 * np.pi * 440 * t)
    for r in (1.25, 0.8):
        y = phase_vocoder(tone[None], r)[0]
        assert abs(len(y) / len(tone) - 1 / r) < 0.01
        f, pyy = welch(y, FS, nperseg=8192)
        assert abs(f[np.argmax(pyy)] - 440) < 2 * FS / 8192  # pitch kept
    x = np.stack([tone, tone]) * 0.1
    p = params("time_stretch", 1.0)
    y, _ = apply("time_stretch", x, p)
    f, pyy = welch(y[0], FS, nperseg=8192)
    err = 10 * np.log10(np.sum((y - x) ** 2) / np.sum(x ** 2))
    report("time_stretch", stretch=p["stretch"], peak_hz=float(f[np.argmax(pyy)]), residual_db=float(err))
    assert y.shape == x.shape and abs(f[np.argmax(pyy)] - 440) < 2 * FS / 8192


def test_resample_bandwidth():
    x = sig(T=2 * FS)
    p = params("resample", 0.6)
    y, _ = apply("resample", x, p)
    f, h = _response_db(x, y)
    ny = p["rate_hz"] / 2
    report("resample", rate_hz=p["rate_hz"], passband_db=float(np.mean(h[f < 0.8 * ny])),
           stopband_db=float(np.max(h[f > 1.2 * ny])))
    assert abs(np.mean(h[f < 0.8 * ny])) < 0.2 and np.max(h[f > 1.2 * ny]) < -40
    assert p["rate_hz"] in (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)


# ------------------------------------------------------- monotone severity ladders (issue 7)
SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0)


def _lateral_deg(az, el):
    return float(np.degrees(np.arcsin(np.clip(np.sin(np.radians(az)) * np.cos(np.radians(el)), -1, 1))))


@pytest.mark.parametrize("name", ["rotation", "misplacement"])
def test_direction_change_never_folds_back(name):
    """Given the source direction, rotation (yaw) and misplacement change the source's lateral
    angle monotonically with severity for every start direction (no fold-back past 90 deg)."""
    from spaq.data.scenes import _move
    from spaq.spatial.angles import cart2sph, sph2cart

    rng = np.random.default_rng(11)
    worst_step = np.inf
    for k in range(300):
        az, el = float(rng.uniform(-180, 180)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        lat0, change = _lateral_deg(az, el), []
        for s in np.linspace(0, 1, 21):
            p = degradation_params(name, s, np.random.default_rng(k), sample_rate=FS, fmt=BIN, directions=[(az, el)])
            if name == "rotation":
                a2, e2, _ = cart2sph(sph2cart(az, el) @ scene_mods([{"type": name, "stage": "scene",
                                                                      "params": p}])["rotation"].T)
            else:
                a2, e2 = _move(az, el, p["angle_deg"], p["bearing_deg"])
                assert abs(great_circle_deg(az, el, a2, e2) - p["angle_deg"]) < 1e-4
            change.append(abs(_lateral_deg(float(a2), float(e2)) - lat0))
        worst_step = min(worst_step, float(np.min(np.diff(change))))
        if name == "misplacement":  # along the interaural great circle: lateral change = angle moved
            assert abs(change[-1] - 90.0) < 1e-6
    report(f"{name} lateral change", smallest_step_deg=worst_step)
    assert worst_step >= -1e-9


def _itd_us(y):
    c = correlate(y[1], y[0], mode="full", method="fft")
    mid = len(y[0]) - 1
    lo = mid - int(0.0012 * FS)
    k = lo + int(np.argmax(c[lo: mid + int(0.0012 * FS) + 1]))
    frac = 0.5 * (c[k - 1] - c[k + 1]) / (c[k - 1] - 2 * c[k] + c[k + 1])
    return (k + frac - mid) / FS * 1e6


@pytest.mark.parametrize("name", ["rotation", "misplacement"])
@pytest.mark.parametrize("az,el", [(30, 0), (75, 10), (120, -5), (-160, 20), (-60, 0)])
def test_interaural_change_grows_with_severity(name, az, el):
    """Rendered binaural sweeps (KU100): the ITD and broadband ILD move away from the
    reference's monotonically in severity, in one direction (no fold-back)."""
    sc = _scene("binaural", az=az, el=el)
    s = 0.1 * np.random.default_rng(6).standard_normal(FS // 2)
    itd, ild = [], []
    for sev in SWEEP:
        p = degradation_params(name, sev, np.random.default_rng(2), sample_rate=FS, fmt=BIN, directions=[(az, el)])
        y = render_scene(sc, [s], scene_mods([{"type": name, "stage": "scene", "severity": sev, "params": p}]))
        y = y[:, 2000:]
        itd.append(_itd_us(y))
        ild.append(10 * np.log10(np.sum(y[0] ** 2) / np.sum(y[1] ** 2)))
    d_itd = np.abs(np.array(itd) - itd[0])
    report(f"{name} az={az} el={el}", itd_us=[round(v) for v in itd], ild_db=[round(float(v), 1) for v in ild])
    assert np.all(np.diff(d_itd) > 20), d_itd  # >= 20 us more per quarter of the range
    assert np.all(np.diff(np.sign(np.diff(itd))) == 0)  # one direction


def test_mp3_bitrate_ladder_strictly_decreasing():
    for fs, sevs in ((48000, np.linspace(0, 1, 9)), (44100, np.linspace(0, 1, 9)), (16000, SWEEP)):
        br = [degradation_params("codec", s, np.random.default_rng(0), sample_rate=fs, fmt=BIN,
                                 options={"codecs": ["mp3"]})["bitrate_kbps"] for s in sevs]
        report("mp3 ladder", fs=fs, kbps=br)
        assert np.all(np.diff(br) < 0), br
    br48 = [params("codec", s, codecs=["mp3"])["bitrate_kbps"] for s in SWEEP]
    assert br48 == [128.0, 96.0, 64.0, 48.0, 32.0]
    # opus/aac keep the 128 -> 12 geometric ladder
    assert [params("codec", s, codecs=["opus"])["bitrate_kbps"] for s in SWEEP] == [128.0, 71.0, 39.0, 22.0, 12.0]


def test_reverb_tail_shared_a_small_change_stays_small():
    """Tail "shared" (the default): a room lengthened by 1 % keeps the unchanged room's diffuse tail
    under the new decay, so the rendering moves by little; "redrawn" (chains recorded before the
    option) draws a new tail, a change of the order of the tail itself."""
    sc, impulse, ref = _room_impulse_scene(0.6)
    late = slice(100 + int(0.1 * FS), None)  # the diffuse part
    change = {}
    for tail in ("shared", "redrawn", None):
        ch = _chain("reverb", 0.0, FOA)
        ch[0]["params"].update(rt60_factor=1.01, drr_change_db=0.0)
        if tail is None:
            ch[0]["params"].pop("tail", None)
        else:
            ch[0]["params"]["tail"] = tail
        deg = render_scene(sc, [impulse], scene_mods(ch))
        change[tail] = np.sum((deg[:, late] - ref[:, late]) ** 2) / np.sum(ref[:, late] ** 2)
    report("reverb", tail_change_shared=change["shared"], tail_change_redrawn=change["redrawn"])
    assert change["shared"] < 0.01 and change["redrawn"] > 0.5
    assert change[None] == change["redrawn"]  # chains without the key replay as they were made
    assert params("reverb", 0.8)["tail"] == "shared"
    assert params("reverb", 0.8, tail="redrawn")["tail"] == "redrawn"
    with pytest.raises(SpaqError, match="must be one of shared, redrawn"):
        params("reverb", 0.8, tail="fresh")


def test_reverb_shorter_than_the_room_allows_renders_at_its_shortest():
    """A drier room than fully absorbing walls allow (RT60 x 0.5 below the room's Sabine bound) is
    rendered at the room's shortest RT60 instead of failing the whole item."""
    from spaq.spatial.room import min_rt60_s
    sc, impulse, ref = _room_impulse_scene(0.25)
    sc["room"]["dims_m"] = [8.5, 7.7, 3.5]
    assert 0.55 * 0.25 < min_rt60_s(sc["room"]["dims_m"]) < 0.25
    ref = render_scene(sc, [impulse])
    out = {}
    for f in (0.5, 0.55):  # both below the bound: the same rendering
        ch = _chain("reverb", 0.0, FOA)
        ch[0]["params"].update(rt60_factor=f, drr_change_db=0.0)
        out[f] = render_scene(sc, [impulse], scene_mods(ch))
    assert np.all(np.isfinite(out[0.5])) and np.array_equal(out[0.5], out[0.55])
    assert np.sum(out[0.5][:, 100 + int(0.05 * FS):] ** 2) < np.sum(ref[:, 100 + int(0.05 * FS):] ** 2)


def test_reverb_change_has_one_direction():
    """Longer RT60 comes with more reverberant energy (lower DRR), shorter with less."""
    for seed in range(20):
        p = params("reverb", 0.8, seed=seed)
        assert (p["rt60_factor"] > 1) == (p["drr_change_db"] < 0)
        assert abs(p["drr_change_db"]) == pytest.approx(4.8)


def test_reverb_direction_option_fixes_the_direction_and_keeps_the_other_draws():
    """direction longer / shorter fixes the sign that the default draws; the magnitudes and the
    random stream are those of the default (same draws for the rest of a corpus)."""
    seen = set()
    for seed in range(20):
        p = params("reverb", 0.8, seed=seed)
        lo = params("reverb", 0.8, seed=seed, direction="longer")
        sh = params("reverb", 0.8, seed=seed, direction="shorter")
        seen.add(p["rt60_factor"] > 1)
        assert lo["rt60_factor"] == pytest.approx(2 ** 0.8) and lo["drr_change_db"] == pytest.approx(-4.8)
        assert sh["rt60_factor"] == pytest.approx(2 ** -0.8) and sh["drr_change_db"] == pytest.approx(4.8)
        assert p == (lo if p["rt60_factor"] > 1 else sh)
        assert params("reverb", 0.8, seed=seed, direction="either") == p
    assert seen == {True, False}
    with pytest.raises(SpaqError, match="direction"):
        params("reverb", 0.8, direction="up")


def test_hrtf_swap_spectral_distance_grows_with_weight():
    """blend_hrtf moves the dB magnitude spectra linearly from the own head to the other
    (no comb filtering) and the rendered signal's loss of energy against the reference never
    exceeds the full swap's by more than the blend's own curvature."""
    from spaq.spatial.hrtf import blend_hrtf, load_hrtf, named_hrtf_paths

    own = load_hrtf("default", FS)
    other_name = "sonicom-1" if "sonicom-1" in named_hrtf_paths() else None
    if other_name is None:  # a synthetic head: the KU100 with a smooth spectral tilt and wider ITDs
        from spaq.spatial.hrtf import HRTFSet
        from spaq.data.degradations import fractional_delay
        h = np.stack([sosfilt_tilt(own.hrir[:, e]) for e in range(2)], axis=1)
        h[:, 1] = fractional_delay(np.pad(h[:, 1], ((0, 0), (0, 16))), 3.0)[:, :own.taps]
        other = HRTFSet(h, own.azimuth_deg, own.elevation_deg, FS, name="tilted")
    else:
        other = load_hrtf(other_name, FS)
    n = 1024
    f = np.fft.rfftfreq(n, 1 / FS)
    band = (f > 300) & (f < 16000)
    idx = own.nearest_index(np.array([0, 45, 90, 135, -60, 30]), np.array([0, 0, 20, -10, 0, 40]))

    def db(h):
        return 20 * np.log10(np.abs(np.fft.rfft(h, n, axis=-1)[..., band]) + 1e-12)

    d_own = db(own.hrir[idx])
    dist = [float(np.mean(np.abs(db(blend_hrtf(own, other, w).hrir[idx]) - d_own))) for w in SWEEP]
    report("hrtf_swap blend", other=other.name, mean_abs_db_change=[round(d, 2) for d in dist])
    assert dist[0] == 0.0
    assert np.all(np.diff(dist) > 0.1 * dist[-1])
    assert abs(dist[2] / dist[-1] - 0.5) < 0.05  # linear in the weight
    # rendered: level change against the reference moves monotonically to the full swap's
    sc = _scene("binaural", az=40, el=0)
    sc["hrtf"] = "default"
    s = 0.1 * np.random.default_rng(7).standard_normal(FS // 2)
    ref = render_scene(sc, [s])
    heads = [other.path] if other.path else None
    if heads:
        lv = []
        for w in SWEEP:
            ch = _chain("hrtf_swap", w, BIN, heads=heads)
            y = render_scene(sc, [s], scene_mods(ch))
            lv.append(10 * np.log10(np.sum(y ** 2) / np.sum(ref ** 2)))
        report("hrtf_swap level", level_change_db=[round(float(v), 2) for v in lv])
        assert np.all(np.diff(lv) * np.sign(lv[-1]) >= -0.05)


def sosfilt_tilt(h):
    from scipy.signal import butter, sosfilt
    return 0.5 * h + 0.5 * sosfilt(butter(2, 3000, fs=FS, output="sos"), h, axis=-1)


# --------------------------------------------------------------------- the registry
def _fmt_for(d):
    return BIN if "binaural" in d.formats else parse_format("hoa3")


def test_every_registered_degradation_has_a_severity_mapping_and_an_apply():
    from spaq.data.degradations import Degradation

    for name, d in DEGRADATIONS.items():
        cls = type(d)
        assert isinstance(d, Degradation) and d.name == name and d.stage in ("signal", "scene")
        assert set(d.formats) <= {"binaural", "ambisonics"} and d.formats
        for p, (lo, hi, how) in d.ranges.items():
            assert how in ("lin", "geo") and isinstance(hi, float) and (lo is None or isinstance(lo, float)), name
        assert cls.params is not Degradation.params, name
        if d.stage == "signal":
            assert cls.apply is not Degradation.apply, name
        else:
            assert cls.scene_mod is not Degradation.scene_mod, name
        # the mapping depends on the severity: some parameter differs between 0 and 1 (same draws)
        p0, p1 = (params(name, s, _fmt_for(d), codecs=["opus"]) if name == "codec" else params(name, s, _fmt_for(d))
                  for s in (0.0, 1.0))
        assert p0["severity"] == 0.0 and p1["severity"] == 1.0 and set(p0) == set(p1), name
        assert {k: v for k, v in p0.items() if k != "severity"} != {k: v for k, v in p1.items() if k != "severity"}, name


def test_registry_names_are_the_names_the_corpus_config_accepts():
    from spaq.data.config import validate_config

    for name, d in DEGRADATIONS.items():
        cfg = validate_config({"degradations": {"types": {name: 1}, "options": {name: {}},
                                                "chain": [{"type": name, "severity": 0.5}]}})
        assert cfg["degradations"]["types"] == {name: 1.0}
    with pytest.raises(SpaqError, match="unknown entry 'wobble'"):
        validate_config({"degradations": {"types": {"wobble": 1}}})
    with pytest.raises(SpaqError, match=r"degradations.chain\[0\]: unknown degradation 'wobble'"):
        validate_config({"degradations": {"chain": [{"type": "wobble"}]}})
    validate_config({"degradations": {"count": [0, len(DEGRADATIONS)]}})
    with pytest.raises(SpaqError, match="outside"):
        validate_config({"degradations": {"count": [0, len(DEGRADATIONS) + 1]}})


def test_unknown_degradation_one_line_listing_the_names():
    for call in (lambda: params("wobble", 0.5), lambda: apply("wobble", sig(), {})):
        with pytest.raises(SpaqError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and msg == f"unknown degradation 'wobble'; known: {', '.join(DEGRADATIONS)}"
    with pytest.raises(SpaqError, match="'rotation' is not a signal-stage degradation"):
        apply("rotation", sig(), params("rotation", 0.5))


def test_register_degradation_adds_a_type(monkeypatch):
    import spaq.data.degradations as dm

    monkeypatch.setattr(dm, "DEGRADATIONS", dict(DEGRADATIONS))

    @dm.register_degradation("invert")
    class Invert(dm.Degradation):
        ranges = {"share": (0.0, 1.0, "lin")}

        def params(self, v, s, rng, ctx):
            return {"share": v["share"]}

        def apply(self, x, p, sample_rate, fmt):
            return x * (1 - 2 * p["share"]), {}

    p = dm.degradation_params("invert", 1.0, np.random.default_rng(0), sample_rate=FS, fmt=BIN)
    assert p == {"severity": 1.0, "share": 1.0}
    x = sig()
    assert np.array_equal(dm.apply_signal_degradation(x, p, "invert", FS, BIN)[0], -x)
    with pytest.raises(ValueError, match="registered twice"):
        dm.register_degradation("invert")(Invert)
    assert "invert" not in DEGRADATIONS
