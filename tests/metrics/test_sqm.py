"""The SQM spatial embedding: model shapes, the ``sqm`` metric (real values with the shipped
weights, different lengths, ambisonics, CLI), SpatialLoss / CueLoss, and the trainer's
determinism and held-out head. Signals: noise rendered through the held-out SONICOM head."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import spaq
from spaq.models.sqm import SQM, SQMConfig

SR = 48000


def _render(az: float, el: float = 0.0, seconds: float = 1.0, seed: int = 0, head: str = "sonicom-2",
            with_source: bool = False):
    """Pink-ish noise bursts at (az, el) of ``head`` -> (2, T) float64 (and the mono source (T,)
    with ``with_source``)."""
    from scipy.signal import oaconvolve

    from spaq.data.sources import make_source
    from spaq.spatial.hrtf import load_hrtf, named_hrtf_paths

    if head not in named_hrtf_paths():
        head = "ku100"
    h = load_hrtf(head, SR)
    k = int(h.nearest_index(az, el))
    s, _ = make_source("noise_bursts", seconds, SR, np.random.default_rng(seed), level_dbfs=-25.0)
    y = oaconvolve(s[None], h.hrir[k], axes=-1)[:, : s.shape[-1]]
    return (y, s) if with_source else y


@pytest.fixture(scope="module")
def metric():
    from spaq.metrics.sqm import Sqm

    return Sqm()


@pytest.fixture(scope="module")
def series():
    """Reference at 0 deg and tests (other content) at 0, 15, 45, 90 deg azimuth."""
    ref = _render(0.0, seed=1)
    tests = {a: _render(a, seed=10 + i) for i, a in enumerate((0.0, 15.0, 45.0, 90.0))}
    return ref, tests


@pytest.mark.parametrize("front_end,channels", [("cues", 2), ("cues", 3), ("wave", 2)])
def test_model_shapes(front_end, channels, one_torch_thread):
    m = SQM(SQMConfig(front_end=front_end, channels=channels)).eval()
    with torch.no_grad():
        o = m(torch.randn(2, channels, SR // 2))
    nf = (SR // 2) // m.cfg.frame_len
    assert o["frames"].shape == (2, nf, 16) and o["utterance"].shape == (2, 16) and o["doa"].shape == (2, 3)
    assert all(a.shape[0] == 2 and a.shape[-1] == nf for a in o["activations"])
    with pytest.raises(ValueError):
        m(torch.randn(2, 5 - channels, SR // 2))


def test_embedding_is_the_same_on_one_thread_and_two(metric, series):
    """Without gradients the encoder's network runs on one intra-op thread (its LSTMs were 6-12x slower on two), so
    every output -- the attention weights included, which two threads changed by ~1e-9 -- is the one-thread value;
    with gradients (losses, training) it runs on the caller's threads."""
    x = torch.from_numpy(series[1][45.0][None].astype(np.float32))
    model = metric.model
    old = torch.get_num_threads()
    seen = []
    hook = model.lstm1.register_forward_pre_hook(lambda *a: seen.append(torch.get_num_threads()))
    try:
        out = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                out[n] = model(x)
        torch.set_num_threads(2)
        model(x.clone().requires_grad_(True))
    finally:
        hook.remove()
        torch.set_num_threads(old)
    assert seen == [1, 1, 2]
    for k in ("frames", "utterance", "weights", "doa"):
        assert torch.equal(out[1][k], out[2][k]), k


def test_identity_zero_and_distance_grows_with_separation(metric, series, one_torch_thread):
    ref, tests = series
    r = torch.from_numpy(ref)[None]
    d = {a: float(metric.distances(r, torch.from_numpy(x)[None])["score"][0]) for a, x in tests.items()}
    same = metric.forward(r, r.clone())
    assert float(same["score"][0]) <= 1e-6 and float(same["deep_feature_distance"][0]) == 0.0
    # other content, same direction is close; farther directions farther (monotone on this series)
    assert d[0.0] < d[15.0] < d[45.0] < d[90.0], d
    assert d[90.0] > 5 * d[0.0], d


def test_different_lengths_and_api(metric, series, tmp_path, capsys, one_torch_thread):
    ref, tests = series
    short = tests[45.0][:, : int(0.7 * SR)]
    out = metric.distances(torch.from_numpy(ref)[None], torch.from_numpy(short)[None])
    assert out["frame_distance"].shape == (1, int(0.7 * SR) // metric.model.cfg.frame_len)
    # spaq.score: a common length needs trim=True; the score is the embedding distance of the trimmed pair
    rep = spaq.score(ref, short, sample_rate=SR, metrics=["sqm"], trim=True, maps=True)
    res = rep.results["sqm"]
    n = short.shape[-1]
    want = metric.distances(torch.from_numpy(ref[:, :n])[None], torch.from_numpy(short)[None])["score"][0]
    assert res.score == pytest.approx(float(want), rel=1e-5)
    assert res.values["deep_feature_distance"] > 0 and res.maps["frame_distance"].ndim == 2
    # the auxiliary DoA head's reading of the rendered directions (reference at 0 deg, the test at 45 deg): it
    # reads 6 and 41.5 deg here; 20 deg is far below its held-out RMSE (45 deg) but catches a swapped or
    # unconverted angle
    assert abs(res.values["doa_ref_azimuth_deg"]) < 20.0
    assert abs(res.values["doa_deg_azimuth_deg"] - 45.0) < 20.0
    # without trim each signal is embedded whole (common_length = False): the distance of the full pair
    whole = spaq.score(ref, short, sample_rate=SR, metrics=["sqm"])
    want_whole = float(out["score"][0])
    assert whole.results["sqm"].score == pytest.approx(want_whole, rel=1e-5)
    assert abs(want_whole - res.score) > 1e-6  # the reference's tail counts
    assert any("scored whole" in w for w in whole.warnings)
    # ... while a metric that needs one length is skipped with the reason, not the whole report
    both = spaq.score(ref, tests[45.0][:, : ref.shape[-1] // 2], sample_rate=SR, metrics=["sqm", "cues"])
    assert "sqm" in both.results and "--trim" in both.skipped["cues"]
    # the CLI: different lengths with and without --trim
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, ref.T.astype(np.float32), SR, subtype="FLOAT")
    sf.write(b, short.T.astype(np.float32), SR, subtype="FLOAT")
    from spaq.cli import main

    rc = main(["score", str(a), str(b), "--metric", "sqm", "--trim", "--json"])
    got = json.loads(capsys.readouterr().out)
    assert rc == 0 and got["results"]["sqm"]["score"] == pytest.approx(res.score, rel=1e-4)
    rc = main(["score", str(a), str(b), "--metric", "sqm", "--json"])
    got = json.loads(capsys.readouterr().out)
    assert rc == 0 and got["results"]["sqm"]["score"] == pytest.approx(want_whole, rel=1e-4)


def test_ambisonics_decoded(metric, one_torch_thread):
    from spaq.spatial.ambisonics import encode

    rng = np.random.default_rng(3)
    a0 = encode(rng.standard_normal(SR) * 0.05, 0.0, 0.0, order=1)
    a90 = encode(rng.standard_normal(SR) * 0.05, 90.0, 0.0, order=1)
    same = float(metric.forward(torch.from_numpy(a0)[None], torch.from_numpy(a0)[None])["score"][0])
    far = float(metric.forward(torch.from_numpy(a0)[None], torch.from_numpy(a90)[None])["score"][0])
    assert same <= 1e-6 < far


def test_spatial_loss(series, one_torch_thread):
    from spaq.losses import SpatialLoss

    ref, tests = series
    loss = SpatialLoss()
    t = torch.from_numpy(np.stack([ref, ref])).float()
    assert float(loss(t, t.clone())) <= 1e-6
    # the same content moved (the enhancement case): the loss grows with the separation
    base = torch.from_numpy(_render(0.0, seed=5))[None].float()
    vals = [float(loss(torch.from_numpy(_render(a, seed=5))[None].float(), base)) for a in (15.0, 45.0, 90.0)]
    assert vals[0] < vals[1] < vals[2], vals
    est = torch.from_numpy(np.stack([tests[15.0], tests[90.0]])).float().requires_grad_(True)
    per = SpatialLoss(reduction="none")(est, t)
    assert per.shape == (2,) and per[0] < per[1]
    per.sum().backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.encoder.parameters())


def test_losses_at_another_rate_and_bad_input(one_torch_thread):
    """``SpatialLoss(sample_rate=16000)`` is the loss of the same signals resampled to the encoder's 48 kHz
    (spaq.dsp.resample_poly, differentiable; equal to float32 rounding), not of 16 kHz samples read as 48 kHz;
    arrays, integer tensors and one unbatched signal get one clear line each."""
    from spaq.dsp import resample_poly
    from spaq.losses import CueLoss, SpatialLoss

    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((1, 2, 16000)) * 0.05).float()
    y = x * torch.tensor([1.0, 0.4]).view(1, 2, 1)
    l16 = SpatialLoss(sample_rate=16000)
    at48 = SpatialLoss()(resample_poly(x, 16000, 48000), resample_poly(y, 16000, 48000))
    assert float(l16(x, y)) == pytest.approx(float(at48), rel=1e-5)
    assert abs(float(SpatialLoss()(x, y)) - float(at48)) > 1e-3  # read as 48 kHz: another number
    e = x.clone().requires_grad_(True)
    l16(e, y).backward()
    assert torch.isfinite(e.grad).all() and e.grad.abs().sum() > 0
    for loss in (SpatialLoss(), CueLoss()):
        name = type(loss).__name__
        with pytest.raises(TypeError, match=f"{name} expects float torch tensors .* ndarray"):
            loss(x.numpy(), y)
        with pytest.raises(TypeError, match="int16"):
            loss((x * 32767).short(), y)
        with pytest.raises(ValueError, match=r"x.unsqueeze\(0\)"):
            loss(x[0], y[0])


def test_resample_poly_is_scipys():
    """spaq.dsp.resample_poly (torch, differentiable) against scipy.signal.resample_poly: the same filter and
    alignment, so the same samples to float64 rounding (the FFT convolution adds ~1e-15)."""
    import scipy.signal as sps

    from spaq.dsp import resample_poly

    x = np.random.default_rng(4).standard_normal((2, 4801))
    for a, b in ((16000, 48000), (48000, 16000), (44100, 48000), (32000, 48000), (48000, 48000)):
        g = math.gcd(a, b)
        ref = sps.resample_poly(x, b // g, a // g, axis=-1) if a != b else x
        got = resample_poly(torch.from_numpy(x), a, b).numpy()
        assert got.shape == ref.shape and np.max(np.abs(got - ref)) < 1e-12, (a, b)


def test_spatial_loss_with_sources(one_torch_thread):
    """``SpatialLoss(source=True)``: 0 for identical inputs, grows with the separation of the same
    content (the renderer case: the mono input is known), gradients reach the estimate; sources
    missing, misshapen or given to the binaural encoder are errors."""
    from spaq.losses import SpatialLoss

    loss = SpatialLoss(source=True)
    assert loss.encoder.cfg.channels == 3
    base, src = _render(0.0, seed=5, with_source=True)
    t, s = torch.from_numpy(base)[None].float(), torch.from_numpy(src)[None].float()
    assert float(loss(t, t.clone(), s, s.clone())) <= 1e-6
    vals = [float(loss(torch.from_numpy(_render(a, seed=5))[None].float(), t, s, s)) for a in (15.0, 45.0, 90.0)]
    assert vals[0] < vals[1] < vals[2], vals
    est = torch.from_numpy(_render(30.0, seed=5))[None].float().requires_grad_(True)
    loss(est, t, s, s).backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs est_source"):
        loss(t, t)
    with pytest.raises(ValueError, match="est_source must be"):
        loss(t, t, s[..., :-1], s)
    with pytest.raises(ValueError, match="binaural-only"):
        SpatialLoss()(t, t, s, s)


def test_cue_loss(series, one_torch_thread):
    from spaq.losses import CueLoss

    ref, tests = series
    loss = CueLoss()
    t = torch.from_numpy(ref)[None].float()
    assert float(loss(t, t.clone())) == pytest.approx(0.0, abs=1e-6)
    # the same content moved: cue differences grow with the separation
    base = _render(0.0, seed=5)
    vals = [float(loss(torch.from_numpy(_render(a, seed=5))[None].float(), torch.from_numpy(base)[None].float()))
            for a in (15.0, 45.0, 90.0)]
    assert vals[0] < vals[1] < vals[2], vals
    est = torch.from_numpy(_render(30.0, seed=5))[None].float().requires_grad_(True)
    loss(est, torch.from_numpy(base)[None].float()).backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        loss(est[:, :1], est[:, :1])
    with pytest.raises(ValueError, match="at least one 40 ms frame"):  # shorter than a frame: said, not an IndexError
        loss(est[..., :100], est[..., :100].detach())


def test_losses_bounded_gradient_with_one_ear_silent(one_torch_thread):
    """An estimate with one ear exactly 0 has no IPD (its phase is undefined): the IPD vector's norm is floored at
    IPD_FLOOR (1e-6) of the louder ear's power with gradients, so the gradients stay of the order of the same
    estimate with that ear at -100 dB (6.1e3 for CueLoss, measured; 9e12 before the floor), and a real
    source's features keep their values (the grad and no-grad paths within 1e-5 on a source at 80 degrees, in the
    bins within 30 dB of the loudest that CueLoss counts; measured 3.5e-6 on steady noise)."""
    from spaq.auditory.binaural_features import binaural_features, feature_frontend
    from spaq.losses import CueLoss, SpatialLoss

    target = torch.from_numpy(_render(80.0, seed=5))[None].float()
    for loss in (CueLoss(), SpatialLoss()):
        grads = []
        for gain in (0.0, 1e-5):
            est = target.clone()
            est[:, 1] *= gain
            est.requires_grad_(True)
            loss(est, target).backward()
            assert torch.isfinite(est.grad).all()
            grads.append(float(est.grad.abs().max()))
        assert grads[0] < 10 * grads[1] + 1e4, (type(loss).__name__, grads)
    fe = feature_frontend(SR)
    a, lev = binaural_features(target, fe, grad=False)
    b, _ = binaural_features(target.clone().requires_grad_(True), fe, grad=True)
    top = lev.amax(dim=1)
    active = top >= top.amax() - 30.0
    assert float((a - b.detach()).abs().amax(dim=1)[active].max()) < 1e-5


def test_trainer_deterministic_and_refuses_held_out_head(one_torch_thread):
    from spaq.errors import SpaqError
    from spaq.train.sqm import SQMTrainConfig, train_sqm

    def run():
        tc = SQMTrainConfig(n_directions=3, n_val_directions=2, clip_s=0.6, crop_frames=(10, 15), steps=2,
                            batch_size=4, data={"heads": ["ku100"], "sources": ["pink_noise"], "room_fraction": 0.0})
        m, s = train_sqm(tc, log=lambda *_: None)
        return m, s

    (m1, s1), (m2, _) = run(), run()
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert s1["history"] and s1["held_out_heads"] == ["sonicom-2"]
    with pytest.raises(SpaqError, match="held-out"):
        train_sqm(SQMTrainConfig(n_directions=1, steps=1, data={"heads": ["sonicom-2"]}), log=lambda *_: None)


def test_bank_head_scales_render_through_scaled_heads_and_leave_the_default_bank_alone(one_torch_thread):
    """``SQMDataSpec.head_scales``: with one scale (the default) the bank is exactly what it was (same
    random stream; the cache key of the shipped recipes is the one their banks were written under),
    with several each direction is rendered through a frequency-scaled head (other features; two
    contents per direction as before)."""
    import tempfile
    from pathlib import Path

    from spaq.config import from_dict
    from spaq.errors import SpaqError
    from spaq.models.sqm import SQMConfig
    from spaq.train.sqm import SQMDataSpec, SQMTrainConfig, bank, make_bank

    import spaq.train.sqm as sqm_train

    cfg = SQMConfig(channels=2)
    spec = SQMDataSpec(heads=("ku100",), sources=("pink_noise",), room_fraction=0.0, noise_fraction=0.0)
    calls, render = [], sqm_train.render_scene

    def recording(hrtf, k, kind, rng, *args, **kw):  # the random generator's state as each scene is rendered
        calls.append((int(k), rng.bit_generator.state["state"]["state"] % (1 << 64)))
        return render(hrtf, k, kind, rng, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqm_train, "render_scene", recording)
        a = make_bank(spec, 3, 0, "train", 0.5, cfg, log=lambda *_: None)
    # the directions and generator states the code drew before head_scales existed (99f3aa2): the same
    # random stream exactly (PCG64 is the same on every machine; an extra draw changes every state after it)
    assert calls == [(562, 7183245121792392720), (562, 7374526463733463356), (2280, 16753655498689906031),
                     (2280, 16523484647437231467), (489, 2848754329208488438), (489, 14504341889189772170)]
    b = make_bank(SQMDataSpec(**{**spec.__dict__, "head_scales": (1.0,)}), 3, 0, "train", 0.5, cfg, log=lambda *_: None)
    c = make_bank(SQMDataSpec(**{**spec.__dict__, "head_scales": (0.92, 1.08)}), 3, 0, "train", 0.5, cfg,
                  log=lambda *_: None)
    assert torch.equal(a["feats"], b["feats"])
    assert torch.equal(a["dirs"][::2], a["dirs"][1::2])
    assert torch.equal(a["group"], c["group"]) and not torch.equal(a["feats"], c["feats"])
    one = make_bank(SQMDataSpec(**{**spec.__dict__, "head_scales": (0.92,)}), 3, 0, "train", 0.5, cfg, log=lambda *_: None)
    assert torch.equal(a["dirs"], one["dirs"]) and not torch.equal(a["feats"], one["feats"])  # one scale: applied, no draw
    with pytest.raises(SpaqError, match="head_scales"):
        make_bank(SQMDataSpec(**{**spec.__dict__, "head_scales": ()}), 1, 0, "train", 0.5, cfg, log=lambda *_: None)
    # the shipped recipe's bank file name (its cache key) is the one written before head_scales existed
    tc = SQMTrainConfig.from_yaml(Path(__file__).resolve().parents[2] / "src/spaq/resources/weights/sqm_v1.yaml")
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setattr("spaq.train.sqm.make_bank", lambda *a, **k: {"x": torch.zeros(1)})
        bank(from_dict(SQMDataSpec, tc.data, "data"), tc.n_directions, tc.seed, "train", tc.clip_s,
             SQMConfig(**tc.model), cache_dir=d, keep_waves=tc.keep_waves)
        assert [p.name for p in Path(d).iterdir()] == ["sqm_train_5a25ae617b0d5deb.pt"]


def test_bank_timbre_augment_is_off_by_default_keeps_the_scenes_and_the_interaural_cues(one_torch_thread):
    """``SQMDataSpec.timbre_augment``: off by default (the shipped recipe's cache key and bank are what
    they were); on, the second rendering of a direction gets a timbral change drawn from a stream of its
    own (every scene's draws, directions and first rendering unchanged), and the change is one
    zero-phase filter on both ears (interaural level and time differences kept) plus noise independent
    per ear at the SNR drawn."""
    import tempfile
    from pathlib import Path

    from spaq.config import from_dict
    from spaq.spatial.hrtf import load_hrtf
    from spaq.train.sqm import (SQMDataSpec, SQMTrainConfig, TimbreAugment, _fft_convolve, bank, make_bank,
                                timbre_change)

    import spaq.train.sqm as sqm_train

    root = Path(__file__).resolve().parents[2]
    # the shipped recipe has no timbre_augment and keeps its bank's file name; the option reads from YAML keys
    tc = SQMTrainConfig.from_yaml(root / "src/spaq/resources/weights/sqm_v1.yaml")
    assert from_dict(SQMDataSpec, tc.data, "data").timbre_augment is None
    data = {**tc.data, "timbre_augment": {"probability": 0.75, "lowpass_hz": [1000, 16000], "tilt_db": 6,
                                          "snr_db": [10, 30]}}
    aug = from_dict(SQMDataSpec, data, "data").timbre_augment
    assert isinstance(aug, TimbreAugment) and aug.probability == 0.75 and aug.lowpass_hz == (1000, 16000)
    names = []
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setattr("spaq.train.sqm.make_bank", lambda *a, **k: {"x": torch.zeros(1)})
        for dd in (tc.data, data):
            bank(from_dict(SQMDataSpec, dd, "data"), tc.n_directions, tc.seed, "train", tc.clip_s,
                 SQMConfig(**tc.model), cache_dir=d, keep_waves=tc.keep_waves)
            names.append(sorted(p.name for p in Path(d).iterdir()))
    assert names[0] == ["sqm_train_5a25ae617b0d5deb.pt"] and len(names[1]) == 2

    cfg = SQMConfig(channels=2)
    spec = SQMDataSpec(heads=("ku100",), sources=("pink_noise",), room_fraction=0.0, noise_fraction=0.0)
    on = SQMDataSpec(**{**spec.__dict__, "timbre_augment": TimbreAugment(probability=1.0)})
    states, render = [], sqm_train.render_scene

    def recording(hrtf, k, kind, rng, *args, **kw):
        states.append((int(k), rng.bit_generator.state["state"]["state"] % (1 << 64)))
        return render(hrtf, k, kind, rng, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqm_train, "render_scene", recording)
        a = make_bank(spec, 3, 0, "train", 0.5, cfg, log=lambda *_: None, keep_waves=6)
        b = make_bank(on, 3, 0, "train", 0.5, cfg, log=lambda *_: None, keep_waves=6)
    assert states[:6] == states[6:]  # the scenes' own random stream is untouched
    assert torch.equal(a["dirs"], b["dirs"]) and torch.equal(a["group"], b["group"])
    assert torch.equal(a["waves"][::2], b["waves"][::2])  # first renderings clean
    assert not torch.equal(a["waves"][1::2], b["waves"][1::2])  # second renderings changed
    c = make_bank(SQMDataSpec(**{**spec.__dict__, "timbre_augment": None}), 3, 0, "train", 0.5, cfg,
                  log=lambda *_: None, keep_waves=6)
    assert all(torch.equal(a[k], c[k]) for k in a)  # off: bit-identical

    # one filter on both ears: swapping the ears commutes with the change; ITD and band ILD kept
    h = load_hrtf("ku100", 48000)
    k = int(np.argmin(np.abs(h.azimuth_deg - 60.0) + np.abs(h.elevation_deg)))
    rng = np.random.default_rng(3)
    y = _fft_convolve(rng.standard_normal(48000), h.hrir[k])[:, 1000:49000]
    filt = TimbreAugment(probability=1.0, lowpass_probability=1.0, tilt_probability=1.0, noise_probability=0.0,
                         requantise_probability=0.0, lowpass_hz=(3000.0, 3000.0))
    z, meta = timbre_change(y, np.random.default_rng(7), filt, 48000)
    zs, _ = timbre_change(y[::-1].copy(), np.random.default_rng(7), filt, 48000)
    assert meta["lowpass_hz"] == pytest.approx(3000.0) and "tilt_db" in meta and "noise_snr_db" not in meta
    np.testing.assert_allclose(zs[::-1], z, atol=1e-12)

    def band_cues(x, lo, hi):  # a band's ILD (dB) and interaural phase (rad, of the cross spectrum)
        f = np.fft.rfftfreq(x.shape[-1], 1 / 48000)
        X = np.fft.rfft(x, axis=-1)
        sel = (f >= lo) & (f < hi)
        P = np.abs(X[:, sel]) ** 2
        return 10 * np.log10(P[0].sum() / P[1].sum()), np.angle(np.sum(X[0, sel] * np.conj(X[1, sel])))

    for lo, hi in ((400, 450), (700, 750), (1000, 1050), (2000, 2100)):
        (ild_y, ipd_y), (ild_z, ipd_z) = band_cues(y, lo, hi), band_cues(z, lo, hi)
        assert abs(ild_y) > 1.0 and ild_z == pytest.approx(ild_y, abs=0.05)
        assert abs(ipd_y) > 0.3 and ipd_z == pytest.approx(ipd_y, abs=0.02)
    # noise: independent per ear, at the SNR drawn
    noisy = TimbreAugment(probability=1.0, lowpass_probability=0.0, tilt_probability=0.0, noise_probability=1.0,
                          requantise_probability=0.0, snr_db=(10.0, 10.0))
    zn, meta = timbre_change(y, np.random.default_rng(8), noisy, 48000)
    n = zn - y
    assert meta == {"noise_snr_db": 10.0}
    assert 10 * np.log10(np.sum(y ** 2) / np.sum(n ** 2)) == pytest.approx(10.0, abs=1e-9)
    assert abs(np.corrcoef(n[0], n[1])[0, 1]) < 0.05


def test_angle_loss_is_zero_on_the_sphere_and_pulls_towards_it():
    """``angle_loss``: embeddings whose cosine geometry is the directions' own (the unit vectors
    themselves, padded with zeros, at any scale) give 0; a same-direction pair embedded apart, or
    all embeddings collapsed, give the squared mismatch of the pairs, exactly; gradients flow."""
    from spaq.spatial.angles import sph2cart
    from spaq.train.sqm import angle_loss

    u = torch.tensor(sph2cart(np.array([0.0, 90.0, 180.0, 30.0]), np.array([0.0, 0.0, 0.0, 45.0])), dtype=torch.float64)
    on_sphere = torch.cat([u, torch.zeros(4, 13, dtype=torch.float64)], dim=1) * 3.0
    assert float(angle_loss(on_sphere, u)) == pytest.approx(0.0, abs=1e-12)
    # collapsed: every distance 0, the loss is the mean squared target 1 - cos over the 6 pairs
    t = 1 - u @ u.T
    iu = torch.triu_indices(4, 4, 1)
    collapsed = torch.ones(4, 16, dtype=torch.float64)
    assert float(angle_loss(collapsed, u)) == pytest.approx(float((t[iu[0], iu[1]] ** 2).mean()), rel=1e-12)
    # a gradient step from random embeddings lowers it
    e = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = angle_loss(e, u)
    loss.backward()
    with torch.no_grad():
        assert float(angle_loss(e - 0.1 * e.grad, u)) < float(loss)


def test_shipped_weights_registered():
    from spaq.models.sqm import load_pretrained
    from spaq.weights import REGISTRY

    m, w = load_pretrained()
    assert w.verified and w.sha256 == REGISTRY["sqm_v1"].sha256
    assert m.cfg.channels == 2 and m.cfg.embed_dim == 16 and not m.cfg.dereverb  # signals read as given


def test_source_informed_encoder(metric, one_torch_thread):
    """With each signal's mono source the shipped ``sqm_v2_source`` (3 channels, registered, sha
    verified) scores the pair: identity 0, other content at the same direction close, farther
    directions farther on the unseen head; its distances differ from the binaural-only encoder's."""
    from spaq.weights import REGISTRY

    m, w = metric.source_model()
    assert m.cfg.channels == 3 and w.verified and w.sha256 == REGISTRY["sqm_v2_source"].sha256
    ref, rs = _render(0.0, seed=1, with_source=True)
    tests = {a: _render(a, seed=10 + i, with_source=True) for i, a in enumerate((0.0, 15.0, 45.0, 90.0))}
    r, r_src = torch.from_numpy(ref)[None], torch.from_numpy(rs)[None]
    same = metric.distances(r, r.clone(), ref_source=r_src, deg_source=r_src.clone())
    assert float(same["score"][0]) <= 1e-6 and float(same["deep_feature_distance"][0]) == 0.0
    d = {a: float(metric.distances(r, torch.from_numpy(x)[None], ref_source=r_src,
                                   deg_source=torch.from_numpy(s)[None])["score"][0]) for a, (x, s) in tests.items()}
    assert d[0.0] < d[15.0] < d[45.0] < d[90.0], d
    assert d[90.0] > 5 * d[0.0], d
    x90, s90 = tests[90.0]
    two = float(metric.distances(r, torch.from_numpy(x90)[None])["score"][0])
    assert abs(two - d[90.0]) > 1e-3
    # a common gain on a signal and its source changes nothing; the source alone at another gain (the
    # direct-path ears are resynthesised from the source, only the ear-minus-source offset moves) far
    # less than 15 deg of separation does
    same_gain = metric.distances(r, 0.25 * r, ref_source=r_src, deg_source=0.25 * r_src)
    assert float(same_gain["score"][0]) <= 1e-4  # float32 features: level rounding only
    off6 = float(metric.distances(r, r, ref_source=r_src, deg_source=0.5 * r_src)["score"][0])
    off20 = float(metric.distances(r, r, ref_source=r_src, deg_source=0.1 * r_src)["score"][0])
    assert 0 < off6 < off20 < 0.25 * d[15.0], (off6, off20, d)


def test_score_and_cli_with_sources(metric, tmp_path, capsys, one_torch_thread):
    """``spaq.score(..., sources=)`` and ``spaq score --source R --source D``: the source-informed
    distance of the pair (as ``Sqm.distances`` gives it), the encoder named in the provenance;
    sources with no metric that uses them, or one ``--source`` only, are one-line errors."""
    from spaq.cli import main
    from spaq.errors import SpaqInputError

    ref, rs = _render(0.0, seed=1, with_source=True)
    deg, ds = _render(45.0, seed=12, with_source=True)
    want = float(metric.distances(torch.from_numpy(ref)[None], torch.from_numpy(deg)[None],
                                  ref_source=torch.from_numpy(rs)[None], deg_source=torch.from_numpy(ds)[None])["score"][0])
    rep = spaq.score(ref, deg, sample_rate=SR, metrics=["sqm"], sources=(rs[None], ds[None]))
    res = rep.results["sqm"]
    assert res.score == pytest.approx(want, rel=1e-5) and "sqm_v2_source" in res.provenance["encoder"]
    plain = spaq.score(ref, deg, sample_rate=SR, metrics=["sqm"]).results["sqm"]
    assert "sqm_v1 " in plain.provenance["encoder"] and abs(plain.score - res.score) > 1e-3
    files = {}
    for k, x in (("ref", ref), ("deg", deg), ("rs", rs[None]), ("ds", ds[None])):
        files[k] = tmp_path / f"{k}.wav"
        sf.write(files[k], x.T.astype(np.float32), SR, subtype="FLOAT")
    rc = main(["score", str(files["ref"]), str(files["deg"]), "--metric", "sqm", "--source", str(files["rs"]),
               "--source", str(files["ds"]), "--json"])
    got = json.loads(capsys.readouterr().out)
    assert rc == 0 and got["results"]["sqm"]["score"] == pytest.approx(want, rel=1e-4)
    rc = main(["score", str(files["ref"]), str(files["deg"]), "--metric", "sqm", "--source", str(files["rs"])])
    err = capsys.readouterr().err
    assert rc != 0 and "--source takes two files" in err and "Traceback" not in err
    with pytest.raises(SpaqInputError, match="uses dry sources"):
        spaq.score(ref, deg, sample_rate=SR, metrics=["cues"], sources=(rs[None], ds[None]))
    with pytest.raises(SpaqInputError, match="must be one mono signal each"):  # a binaural file given as a source
        spaq.score(ref, deg, sample_rate=SR, metrics=["sqm"], sources=(ref, ds[None]), strict=True)


def test_batch_manifest_with_source_columns(metric, tmp_path, one_torch_thread, monkeypatch):
    """``spaq batch`` with ``ref_source``/``deg_source`` columns: a row with both scores as
    ``spaq.score(..., sources=)`` does, a row with neither as without sources; the columns are in
    the table after ``deg`` and not taken for metrics; half a pair of sources, one column only, or
    sources with no metric that uses them are one-line errors before anything is scored."""
    import pandas as pd

    from spaq.batch import score_batch, summary
    from spaq.errors import SpaqError

    ref, rs = _render(0.0, seed=1, with_source=True)
    deg, ds = _render(45.0, seed=12, with_source=True)
    for k, x in (("ref", ref), ("deg", deg), ("rs", rs[None]), ("ds", ds[None])):
        sf.write(tmp_path / f"{k}.wav", x.T.astype(np.float32), SR, subtype="FLOAT")
    rows = [{"id": "with", "ref": "ref.wav", "deg": "deg.wav", "ref_source": "rs.wav", "deg_source": "ds.wav"},
            {"id": "without", "ref": "ref.wav", "deg": "deg.wav", "ref_source": "", "deg_source": ""}]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    df = score_batch(tmp_path / "m.csv", tmp_path / "out.csv", metrics=["sqm"], progress=False)
    want = spaq.score(str(tmp_path / "ref.wav"), str(tmp_path / "deg.wav"), metrics=["sqm"],
                      sources=(str(tmp_path / "rs.wav"), str(tmp_path / "ds.wav"))).results["sqm"].score
    plain = spaq.score(str(tmp_path / "ref.wav"), str(tmp_path / "deg.wav"), metrics=["sqm"]).results["sqm"].score
    assert list(df["status"]) == ["ok", "ok"] and abs(want - plain) > 1e-3
    assert df.loc[0, "sqm"] == pytest.approx(want, rel=1e-6) and df.loc[1, "sqm"] == pytest.approx(plain, rel=1e-6)
    assert list(df.columns[:5]) == ["id", "ref", "deg", "ref_source", "deg_source"]
    assert df.loc[0, "ref_source"].endswith("rs.wav") and df.loc[1, "ref_source"] == ""
    assert set(summary(df)["metrics"]) == {"sqm"}
    bad = {"half.csv": ([{**rows[0], "deg_source": ""}], "only one of ref_source, deg_source"),
           "one_column.csv": ([{k: v for k, v in rows[0].items() if k != "deg_source"}], "no deg_source"),
           "m.csv": (rows, "none of cues uses dry sources")}
    for name, (rr, msg) in bad.items():
        pd.DataFrame(rr).to_csv(tmp_path / name, index=False)
        with pytest.raises(SpaqError, match=msg):
            score_batch(tmp_path / name, tmp_path / f"o_{name}", metrics=["sqm"] if name != "m.csv" else ["cues"],
                        progress=False)
        assert not (tmp_path / f"o_{name}").exists()
    # resume: an item scored with other sources than the manifest now lists is refused
    from conftest import interrupted_batch

    interrupted_batch(monkeypatch, "with",
                      lambda: score_batch(tmp_path / "m.csv", tmp_path / "r.csv", metrics=["sqm"], progress=False))
    pd.DataFrame([{**rows[0], "deg_source": "rs.wav"}, rows[1]]).to_csv(tmp_path / "changed.csv", index=False)
    with pytest.raises(SpaqError, match="item with was scored for other files"):
        score_batch(tmp_path / "changed.csv", tmp_path / "r.csv", metrics=["sqm"], resume=True, progress=False)
    df2 = score_batch(tmp_path / "m.csv", tmp_path / "r.csv", metrics=["sqm"], resume=True, progress=False)
    assert df2["sqm"].tolist() == pytest.approx(df["sqm"].tolist(), rel=1e-9)


def test_source_informed_bad_input(metric):
    from spaq.errors import SpaqInputError
    from spaq.metrics.sqm import Sqm

    x = torch.from_numpy(_render(30.0, seed=3))[None]
    s = torch.zeros(1, x.shape[-1])
    with pytest.raises(SpaqInputError, match="both sources"):
        metric.distances(x, x, ref_source=s)
    with pytest.raises(SpaqInputError, match="must be mono"):
        metric.distances(x, x, ref_source=torch.zeros(1, 2, x.shape[-1]), deg_source=s)
    with pytest.raises(SpaqInputError, match="batch and length"):
        metric.distances(x, x, ref_source=s[..., :-10], deg_source=s)
    with pytest.raises(SpaqInputError, match="NaN"):
        metric.distances(x, x, ref_source=torch.full_like(s, float("nan")), deg_source=s)
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(x.shape[-1]))[None].float()
    with pytest.raises(SpaqInputError, match="degraded source is silent"):
        metric.distances(x, x, ref_source=noise, deg_source=s)
    from spaq.weights import resolve

    three = Sqm(checkpoint=resolve("sqm_v2_source").path)  # a 3-channel checkpoint needs the sources
    with pytest.raises(SpaqInputError, match="pass ref_source and deg_source"):
        three.distances(x, x)


def test_binaural_features_grad_path_matches(one_torch_thread):
    """``grad=True`` (the losses' path) gives the default path's values in every band above the
    hearing floor (at the floor the coherence of two vanishing powers differs) and finite gradients."""
    from spaq.auditory.binaural_features import binaural_features, feature_frontend

    x = torch.from_numpy(_render(30.0, seed=2, seconds=0.5))[None].float()
    fe = feature_frontend(SR)
    a, la = binaural_features(x, fe)
    xg = x.clone().requires_grad_(True)
    b, lb = binaural_features(xg, fe, grad=True)
    assert not a.requires_grad and b.requires_grad
    assert torch.equal(la, lb.detach())
    floor = 10 * torch.log10(fe.power_floor).view(1, -1, 1)
    audible = (la.amin(dim=1) > floor + 1.0)[:, None].expand_as(a)  # (B, 6, F, nf)
    assert audible.float().mean() > 0.5
    assert torch.allclose(a[audible], b.detach()[audible], atol=1e-4)
    b[:, 0].sum().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["CueLoss", "SpatialLoss"])
def test_losses_train_interaural_gain(name, one_torch_thread):
    """As a training signal: a learnable per-ear gain on the target (starting 6 dB off between the
    ears, the ILD error a per-ear enhancement mask makes) moves toward the target's ILD under a few
    Adam steps on the loss alone, and the loss falls."""
    import spaq.losses as L

    target = torch.from_numpy(_render(30.0, seed=4, seconds=0.5))[None].float()
    loss = getattr(L, name)()
    g = torch.tensor([3.0, -3.0], requires_grad=True)  # dB per ear
    opt = torch.optim.Adam([g], lr=0.5)
    vals = []
    for _ in range(8):
        est = target * (10 ** (g / 20)).view(1, 2, 1)
        v = loss(est, target)
        vals.append(float(v.detach()))
        opt.zero_grad()
        v.backward()
        opt.step()
    ild_off = float((g[0] - g[1]).detach())
    assert vals[-1] < 0.7 * vals[0], vals
    assert abs(ild_off) < 2.5, ild_off  # was 6 dB


def _ears(s: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Mono ``s (T,)`` through a two-ear response ``h (2, L)``, cut to ``T``."""
    from scipy.signal import fftconvolve

    return fftconvolve(s[None], h, axes=-1)[:, : len(s)]


def test_direct_path_keeps_the_direct_sound_and_removes_reflections():
    """The source-informed input's direct-path estimate: anechoic ears come back unchanged, a
    reflection 5 ms after the direct sound (0.7 gain) and one at 40 ms are removed, and the result
    is differentiable in the input."""
    from spaq.models.sqm import direct_path
    from spaq.spatial.hrtf import load_hrtf

    h = load_hrtf("default", 48000)
    k = int(h.nearest_index(60.0, 10.0))
    hrir = h.hrir[k]
    s = np.random.default_rng(3).standard_normal(48000)
    clean = _ears(s, hrir)

    def rel_db(a, b):
        return 10 * np.log10(((a - b) ** 2).sum() / (b ** 2).sum())

    x = torch.from_numpy(np.concatenate([clean, s[None]]))[None]
    y = direct_path(x, 48000, 2.5)[0].numpy()
    assert rel_db(y[:2], clean) < -25.0
    np.testing.assert_array_equal(y[2], s)  # the source is passed through

    room = np.zeros((2, hrir.shape[-1] + 2000))
    room[:, : hrir.shape[-1]] += hrir
    room[:, 240: 240 + hrir.shape[-1]] += 0.7 * h.hrir[int(h.nearest_index(-40.0, 0.0))]
    room[:, 1920: 1920 + hrir.shape[-1]] += 0.5 * h.hrir[int(h.nearest_index(170.0, 30.0))]
    rev = _ears(s, room)
    assert rel_db(rev, clean) > -5.0  # the reflections are a large part of the input
    xr = torch.from_numpy(np.concatenate([rev, s[None]]))[None].requires_grad_(True)
    yr = direct_path(xr, 48000, 2.5)
    assert rel_db(yr[0, :2].detach().numpy(), clean) < -20.0
    yr[:, :2].pow(2).sum().backward()
    assert torch.isfinite(xr.grad).all() and xr.grad[:, :2].abs().sum() > 0


def test_direct_path_config_needs_the_source():
    with pytest.raises(ValueError, match="direct_path_ms"):
        SQMConfig(channels=2, direct_path_ms=2.5)
    with pytest.raises(ValueError, match="direct_path_ms"):
        SQMConfig(channels=3, direct_path_ms=-1.0)
    assert SQMConfig(channels=3).direct_path_ms == 0.0  # older checkpoints read their inputs as given


@pytest.mark.parametrize("seed", [0, 1])
def test_source_informed_distance_ignores_the_room(metric, seed, one_torch_thread):
    """With the dry sources the shipped source-informed encoder reads the direct path: the same
    direction in a room (RT60 0.6 s, 2 m) is far closer to the anechoic reference than 15 deg away
    (measured 0.007 / 0.029 against 0.14 / 0.13; ``sqm_v1_source`` without the direct path: 0.016 /
    0.093 against 0.09)."""
    from spaq.data.sources import make_source
    from spaq.spatial.hrtf import load_hrtf
    from spaq.spatial.room import place_in_room, room_impulse_response

    h = load_hrtf("ku100", SR)
    s, _ = make_source("noise_bursts", 1.0, SR, np.random.default_rng(seed), level_dbfs=-25.0)

    def anechoic(az):
        return _ears(s, h.hrir[int(h.nearest_index(az, 0.0))])

    spec = place_in_room(np.array([6.0, 5.0, 3.0]), 0.6, 30.0, 0.0, 2.0, np.random.default_rng(seed))
    brir, _ = room_impulse_response(spec, SR, "binaural", hrtf=h, rng=np.random.default_rng(seed), ism_order=3,
                                    length_s=0.7)
    room = _ears(s, brir)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a))[None]

    def dist(x, y):
        return float(metric.distances(t(x), t(y), ref_source=t(s), deg_source=t(s))["score"][0])

    ref = anechoic(30.0)
    assert dist(ref, room) < 0.5 * dist(ref, anechoic(45.0)) < dist(ref, anechoic(90.0))


def _room(az: float, seed: int, rt60: float = 0.7, seconds: float = 1.0):
    """Noise at ``az`` in a shoebox room (sonicom-2, or the KU100 where it is absent) -> (2, T)."""
    from scipy.signal import oaconvolve

    from spaq.spatial.hrtf import load_hrtf, named_hrtf_paths
    from spaq.spatial.room import place_in_room, room_impulse_response

    h = load_hrtf("sonicom-2" if "sonicom-2" in named_hrtf_paths() else "ku100", SR)
    rng = np.random.default_rng(seed)
    rir, _ = room_impulse_response(place_in_room(np.array([6.0, 5.0, 3.0]), rt60, az, 0.0, 2.5, rng), SR,
                                   "binaural", hrtf=h, rng=rng, ism_order=3, length_s=0.8)
    n = int(seconds * SR)
    return 0.05 * oaconvolve(rng.standard_normal(n)[None], rir, axes=-1)[:, :n]


def test_reverberant_signals_are_dereverberated_first(series, one_torch_thread):
    """``SQMConfig.dereverb``: the localiser's room step before the encoder. A room signal is flagged and read
    dereverberated (identity still 0); anechoic signals pass through untouched (the same embedding as the
    same weights without the step); the bank renders its scenes the same way; the metric reports the flags."""
    from spaq.localization.templates import dereverberate_where_reverberant, room_gate
    from spaq.metrics.functional.sqm import sqm_distances, sqm_input

    ref, tests = series
    room = _room(30.0, 3)
    y, info = dereverberate_where_reverberant(room, SR)
    assert info["dereverberated"] and info["coherence"] < 0.95 and y.shape == room.shape

    def gate(x):  # the gate's reading of a signal (as the localiser analyses it: -30 dBFS)
        return room_gate(x * (10 ** (-30 / 20) / np.sqrt(np.mean(x ** 2))))
    # the late reverberation (diffuse: incoherent, most of a 0.7 s room's energy at 2.5 m) is removed, the direct
    # sound and early reflections (coherent) stay: the low bands' coherence rises and the energy falls (three
    # draws: 0.50-0.53 -> 0.67-0.75, energy x 0.12-0.16)
    assert gate(y) > gate(room) + 0.1, (gate(y), gate(room))
    assert np.sum(y ** 2) < 0.5 * np.sum(room ** 2)
    same, info0 = dereverberate_where_reverberant(ref, SR)
    assert not info0["dereverberated"] and info0["coherence"] >= 0.95
    np.testing.assert_array_equal(same, ref)
    y24, info24 = dereverberate_where_reverberant(room[:, ::2].copy(), 24000)  # resampled there and back
    assert info24["dereverberated"] and y24.shape == room[:, ::2].shape
    with pytest.raises(spaq.errors.SpaqInputError):
        dereverberate_where_reverberant(room[:1], SR)

    torch.manual_seed(0)
    on = SQM(SQMConfig(dereverb=True)).eval()
    off = SQM(SQMConfig()).eval()
    off.load_state_dict(on.state_dict())
    pair = torch.from_numpy(np.stack([room, ref])).float()
    other = torch.from_numpy(np.stack([room, tests[45.0]])).float()
    with torch.no_grad():
        out, plain = sqm_distances(on, pair, other), sqm_distances(off, pair, other)
        # the bank's input is what the encoder reads
        xin, flags = sqm_input(pair, on.cfg)
        assert flags.tolist() == [True, False] and torch.equal(xin[1], pair[1]) and not torch.equal(xin[0], pair[0])
    assert out["dereverberated_ref"].tolist() == [True, False] and out["dereverberated_deg"].tolist() == [True, False]
    assert "dereverberated_ref" not in plain
    assert float(out["score"][0]) < 1e-6  # the same room signal on both sides: still 0
    assert float(out["score"][1]) == pytest.approx(float(plain["score"][1]), abs=1e-9)  # anechoic: untouched
    with torch.no_grad():  # on its own (the front-end's fast mode picks its full-rate bands per batch): the same ops
        one, one_plain = sqm_distances(on, pair[1:], other[1:]), sqm_distances(off, pair[1:], other[1:])
    assert torch.equal(one["score"], one_plain["score"]) and one["dereverberated_ref"].tolist() == [False]
    assert abs(float(out["cosine_distance"][0]) - float(plain["cosine_distance"][0])) < 1e-6
    # the bank renders its scenes as the encoder reads them
    from spaq.train.sqm import SQMDataSpec, make_bank

    cfg = SQMConfig(dereverb=True)
    spec = SQMDataSpec(heads=("ku100",), sources=("pink_noise",), room_fraction=1.0, noise_fraction=0.0)
    with torch.no_grad():
        b_on = make_bank(spec, 2, 5, "test", 1.0, cfg, log=lambda *_: None, keep_waves=4)
        b_off = make_bank(spec, 2, 5, "test", 1.0, SQMConfig(), log=lambda *_: None, keep_waves=4)
    assert bool(b_on["room"].all())
    x_on, flags = sqm_input(b_off["waves"].float(), cfg)
    assert bool(flags.all())
    # b_off's waves are float16 (relative step 2^-11, about 3e-5 at these -25 dBFS levels) before they are
    # dereverberated; the filter is nearly linear in them, so the two differ by a few such steps, far inside 2e-3
    assert torch.allclose(b_on["waves"].float(), x_on.to(torch.float16).float(), atol=2e-3)
    assert not torch.allclose(b_on["feats"].float(), b_off["feats"].float(), atol=1e-2)


@pytest.mark.parametrize("kw, msg", [
    ({"sample_rate": 0}, "positive integer number of Hz, got 0"),
    ({"sample_rate": -1}, "positive integer number of Hz, got -1"),
    ({"sample_rate": 44100.5}, "positive integer number of Hz, got 44100.5"),
    ({"reduction": "avg"}, "reduction must be mean, sum or none, got 'avg'"),
])
def test_loss_settings_refused_at_construction(kw, msg):
    """Bad settings are one-line ValueErrors when the loss is built, not a ZeroDivisionError / IndexError at the
    first call (sample rate 0 and -1) or a silent truncation (44100.5)."""
    from spaq.losses import CueLoss, SpatialLoss

    for cls in (CueLoss, SpatialLoss):
        with pytest.raises(ValueError, match=f"{cls.__name__}: .*{msg}".replace("(", r"\(").replace(")", r"\)")):
            cls(**kw)
    for w in ((1, 1), (1, "a", 1), (1, -1, 1)):
        with pytest.raises(ValueError, match="CueLoss: weights are three numbers >= 0"):
            CueLoss(weights=w)
