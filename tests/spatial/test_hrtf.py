"""HRTF sets: SOFA loading/validation and the physics of the rendered cues."""
import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from spaq.errors import SpaqError
from spaq.spatial.hrtf import blend_hrtf, load_hrtf, load_sofa, named_hrtf_paths
from spaq.spatial.render import render_binaural, trajectory

FS = 48000


@pytest.fixture(scope="module")
def ku100():
    return load_hrtf("default", FS)


def itd_ild(y, fs=FS):
    """ITD (s, > 0: left ear leads) from the low-passed cross-correlation, broadband ILD (dB, > 0: left louder)."""
    lp = sosfiltfilt(butter(4, 1500, fs=fs, output="sos"), y, axis=-1)
    n = y.shape[-1]
    c = np.fft.irfft(np.fft.rfft(lp[1], 2 * n) * np.conj(np.fft.rfft(lp[0], 2 * n)), 2 * n)
    max_lag = int(0.0015 * fs)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([c[: max_lag + 1], c[-max_lag:]])
    lag = lags[np.argmax(vals)]  # right lags left by `lag` samples
    ild = 10 * np.log10(np.sum(y[0] ** 2) / np.sum(y[1] ** 2))
    return lag / fs, ild


def test_default_is_ku100(ku100):
    assert ku100.hrir.shape == (2702, 2, 128)
    assert ku100.sample_rate == FS and ku100.name == "ku100" and len(ku100.sha256) == 64


@pytest.mark.parametrize("method", ["nearest", "interpolated"])
def test_itd_ild_follow_direction(ku100, method):
    s = np.random.default_rng(0).standard_normal(FS // 2)
    itd90, ild90 = itd_ild(render_binaural(s, 90, 0, ku100, method))
    itdm90, ildm90 = itd_ild(render_binaural(s, -90, 0, ku100, method))
    itd0, ild0 = itd_ild(render_binaural(s, 0, 0, ku100, method))
    itd45, ild45 = itd_ild(render_binaural(s, 45, 0, ku100, method))
    # left source: left ear leads by 0.6..0.9 ms (KU100 head) and is louder by > 8 dB
    assert 0.6e-3 < itd90 < 0.9e-3 and ild90 > 8
    assert -0.9e-3 < itdm90 < -0.6e-3 and ildm90 < -8
    assert abs(itd90 + itdm90) < 50e-6 and abs(ild90 + ildm90) < 1.5  # symmetric head
    assert abs(itd0) < 30e-6 and abs(ild0) < 2.0
    assert 0.2e-3 < itd45 < itd90  # lateral angle grows -> ITD grows


def test_interpolation_exact_on_grid_and_between(ku100):
    i = 500
    az, el = ku100.azimuth_deg[i], ku100.elevation_deg[i]
    h = ku100.interpolate(az, el)
    assert np.max(np.abs(h - ku100.hrir[i])) < 1e-6 * np.max(np.abs(ku100.hrir[i])) + 1e-9
    idx, w = ku100.barycentric([33.3, -120.0], [12.0, -40.0])
    assert np.allclose(w.sum(-1), 1) and np.all(w >= 0)
    # the interpolated onset delay lies between the neighbours' delays (no comb from misaligned sum)
    s = np.random.default_rng(1).standard_normal(FS // 4)
    itds = [itd_ild(render_binaural(s, a, 0, ku100, "interpolated"))[0] for a in (20, 22.5, 25)]
    assert itds[0] <= itds[1] + 1 / FS and itds[1] <= itds[2] + 1 / FS


def test_moving_source_sweeps_itd(ku100):
    T = FS
    s = np.random.default_rng(2).standard_normal(T)
    az, el = trajectory(-90, 0, T, FS, azimuth_speed_deg_s=180)  # -90 -> +90 in 1 s
    y = render_binaural(s, az, el, ku100)
    first, _ = itd_ild(y[:, : FS // 8])
    last, _ = itd_ild(y[:, -FS // 8:])
    assert first < -0.4e-3 and last > 0.4e-3


def test_resampled_keeps_itd(ku100):
    h44 = load_hrtf("default", 44100)
    assert h44.sample_rate == 44100 and abs(h44.taps - round(128 * 44100 / 48000)) <= 1
    s = np.random.default_rng(3).standard_normal(44100 // 2)
    itd, _ = itd_ild(render_binaural(s, 90, 0, h44), 44100)
    assert 0.6e-3 < itd < 0.9e-3


@pytest.mark.parametrize("scale", [0.92, 1.08])
def test_frequency_scaled_moves_the_spectrum_and_the_itd(ku100, scale):
    """``frequency_scaled(s)``: the transfer function at ``s f`` is the set's at ``f`` (a spectral
    feature moves by ``s``, its level stays), the ITD scales by ``1 / s`` (a larger head for ``s`` < 1),
    directions stay; ``s`` = 1 is the set itself."""
    assert ku100.frequency_scaled(1.0) is ku100
    sc = ku100.frequency_scaled(scale)
    assert sc.sample_rate == ku100.sample_rate and np.array_equal(sc.azimuth_deg, ku100.azimuth_deg)
    assert sc.name == f"ku100 x{scale:g}" and sc.sha256 != ku100.sha256
    f = np.linspace(300.0, 12000.0, 800)

    def mag(h, fr):  # |DTFT| at exact frequencies (no interpolation between DFT bins)
        return np.abs(np.exp(-2j * np.pi * np.outer(fr, np.arange(h.shape[-1])) / FS) @ h)

    # polyphase resampling through scipy's Kaiser (beta 5) windowed sinc: passband ripple and aliased
    # stopband leakage are each about delta = 10^(-(5 / 0.1102 + 8.7) / 20) = 2e-3 of the peak
    delta = 10 ** (-(5.0 / 0.1102 + 8.7) / 20)
    for k in ku100.nearest_index(np.array([0.0, 60.0, 135.0, -90.0]), np.array([0.0, 20.0, -30.0, 45.0])):
        for e in range(2):
            ref = mag(ku100.hrir[k, e], f)
            assert np.max(np.abs(mag(sc.hrir[k, e], scale * f) - ref)) <= 2 * delta * ref.max(), (k, e)
    s = np.random.default_rng(4).standard_normal(FS // 2)
    itd0, _ = itd_ild(render_binaural(s, 90, 0, ku100))
    itd1, _ = itd_ild(render_binaural(s, 90, 0, sc))
    # itd_ild reads whole-sample lags: each ITD is within half a sample of its true value, so
    # scale x itd1 - itd0 is within (1 + scale) / 2 samples (37 samples at 48 kHz for the KU100)
    assert abs(itd1 * scale - itd0) <= (1 + scale) / 2 / FS + 1e-12, (itd0 * FS, itd1 * FS)
    with pytest.raises(SpaqError, match="positive"):
        ku100.frequency_scaled(0.0)


def test_sofa_validation(tmp_path, ku100):
    import sofar

    bad = sofar.Sofa("GeneralFIR")
    bad.Data_IR = np.zeros((1, 2, 8))
    bad.Data_Delay = np.zeros((1, 2))
    p = tmp_path / "general.sofa"
    sofar.write_sofa(str(p), bad)
    with pytest.raises(SpaqError, match="SimpleFreeFieldHRIR"):
        load_sofa(p)
    with pytest.raises(SpaqError, match="not found"):
        load_sofa(tmp_path / "missing.sofa")
    (tmp_path / "junk.sofa").write_bytes(b"not a sofa")
    with pytest.raises(SpaqError, match="cannot read"):
        load_sofa(tmp_path / "junk.sofa")
    with pytest.raises(SpaqError, match="44100"):
        load_sofa(ku100.path, sample_rate=44100, resample=False)
    # a measurement with a NaN tap, or none at all (all zeros): said, not read into NaN templates
    for fill, what in ((np.nan, "NaN"), (0.0, "all zeros")):
        s = sofar.Sofa("SimpleFreeFieldHRIR")
        ir = np.random.default_rng(1).standard_normal((3, 2, 16))
        ir[1] = fill if fill == 0.0 else ir[1]
        ir[1, 0, 3] = fill
        s.Data_IR, s.Data_SamplingRate = ir, FS
        s.SourcePosition = np.array([[0.0, 0.0, 1.0], [90.0, 0.0, 1.0], [180.0, 0.0, 1.0]])
        p = tmp_path / f"bad_{what[:3]}.sofa"
        sofar.write_sofa(str(p), s)
        with pytest.raises(SpaqError, match=f"{what}.*index 1"):
            load_sofa(p)


def test_blend_hrtf_moves_between_heads(tmp_path, ku100):
    import sofar

    # another "head": the KU100 with 40 % larger ITDs (right ear delayed by fractional shifts)
    other = sofar.Sofa("SimpleFreeFieldHRIR")
    from spaq.data.degradations import fractional_delay

    ir = ku100.hrir.copy()
    s = np.random.default_rng(4).standard_normal(FS // 4)
    # scale the ITD by delaying the lagging ear by 0.4 * its interaural delay
    lat = np.sin(np.deg2rad(ku100.azimuth_deg)) * np.cos(np.deg2rad(ku100.elevation_deg))
    extra = 0.4 * 0.00075 * FS * lat
    ir[:, 1] = np.stack([fractional_delay(np.pad(ir[i, 1], (0, 32)), max(e, 0))[:128] for i, e in enumerate(extra)])
    ir[:, 0] = np.stack([fractional_delay(np.pad(ir[i, 0], (0, 32)), max(-e, 0))[:128] for i, e in enumerate(extra)])
    other.Data_IR = ir
    other.Data_SamplingRate = FS
    other.SourcePosition = np.stack([ku100.azimuth_deg, ku100.elevation_deg, np.ones(ku100.n_directions)], -1)
    p = tmp_path / "wide.sofa"
    sofar.write_sofa(str(p), other)
    wide = load_sofa(p, FS)
    itd = {w: itd_ild(render_binaural(s, 90, 0, blend_hrtf(ku100, wide, w)))[0] for w in (0.0, 0.5, 1.0)}
    assert itd[0.0] < itd[0.5] < itd[1.0]
    assert abs(itd[1.0] - itd[0.0] - 0.4 * 0.00075) < 60e-6


@pytest.mark.skipif("sonicom-1" not in named_hrtf_paths(),
                    reason="spatialaudiometrics not installed (pip install --no-deps spatialaudiometrics)")
def test_sonicom_heads_load():
    h = load_hrtf("sonicom-1", FS)
    assert h.n_directions == 793 and h.sample_rate == FS
    s = np.random.default_rng(5).standard_normal(FS // 2)
    itd, ild = itd_ild(render_binaural(s, 90, 0, h))
    assert 0.5e-3 < itd < 0.95e-3 and ild > 5


@pytest.mark.skipif("kemar" not in named_hrtf_paths(), reason="slab not installed (pip install --no-deps slab)")
def test_kemar_loads_without_importing_slab():
    import sys

    raw = load_hrtf("kemar")
    assert raw.n_directions == 710 and raw.sample_rate == 44100 and raw.taps == 512
    assert raw.elevation_deg.min() == -40 and raw.elevation_deg.max() == 90
    assert "slab" not in sys.modules  # the archive is read, slab's code never runs
    h = load_hrtf("kemar", FS)
    assert h.sample_rate == FS and h.sha256 == raw.sha256
    s = np.random.default_rng(6).standard_normal(FS // 2)
    itd, ild = itd_ild(render_binaural(s, 90, 0, h))  # azimuth 90: the left ear (counter-clockwise)
    assert 0.5e-3 < itd < 0.95e-3 and ild > 5
    itd_b, ild_b = itd_ild(render_binaural(s, -90, 0, h))
    assert itd_b == pytest.approx(-itd, abs=1.5 / FS) and ild_b == pytest.approx(-ild, abs=0.5)


def test_kemar_archive_refuses_foreign_code(tmp_path):
    """The KEMAR reader admits only slab's two containers and numpy arrays: a pickle that names any
    other global (here os.system) is a one-line SpaqError, and nothing runs."""
    import bz2
    import pickle

    from spaq.spatial.hrtf import _load_kemar

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned > " + str(tmp_path / "ran"),))

    p = tmp_path / "evil.bz2"
    with bz2.open(p, "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(SpaqError, match="not allowed"):
        _load_kemar(str(p))
    assert not (tmp_path / "ran").exists()


def test_kemar_missing_package_is_one_line(monkeypatch):
    import spaq.spatial.hrtf as H

    monkeypatch.setattr(H, "_kemar_path", lambda: None)
    with pytest.raises(SpaqError, match="pip install --no-deps slab"):
        H.load_hrtf("kemar")


def test_a_sofa_file_named_kemar_is_read_as_sofa(tmp_path, ku100):
    """Only the name "kemar" means slab's archive: a path whose file is called kemar.sofa is a SOFA file."""
    import shutil

    p = tmp_path / "kemar.sofa"
    shutil.copy(ku100.path, p)
    h = load_hrtf(str(p), FS)
    assert h.n_directions == ku100.n_directions and h.name == "kemar" and h.sha256 == ku100.sha256
