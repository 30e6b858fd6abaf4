"""spaq's own quality metric: identity, monotonicity, duration and level invariance, shipped
weights, result shapes. Short synthetic signals (fast: the whole file runs in well under 60 s)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spaq.data.degradations import apply_signal_degradation, degradation_params
from spaq.formats import parse_format
from spaq.io import load_pair
from spaq.metrics import load_metric
from spaq.models.quality import SPATIAL_FEATURES, TIMBRAL_FEATURES, QualityMapping
from spaq.weights import REGISTRY, resolve

FS = 48000


def _scene(seconds: float, seed: int = 0) -> np.ndarray:
    """Binaural-like pink-ish noise with an interaural delay and level difference, -26 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    x = np.cumsum(rng.standard_normal(n + 20)) * 0.02
    x = x - np.convolve(x, np.ones(64) / 64, mode="same")  # remove the drift, keep a tilted spectrum
    x += 0.3 * rng.standard_normal(n + 20)
    left, right = x[20:], 0.6 * x[:-20]
    s = np.stack([left, right])
    return s * (10 ** (-26 / 20) / np.sqrt(np.mean(s ** 2)))


def _foa(seconds: float, seed: int = 1) -> np.ndarray:
    from spaq.spatial.ambisonics import encode

    rng = np.random.default_rng(seed)
    s = rng.standard_normal(int(seconds * FS)) * 0.05
    return encode(s, 30.0, 10.0, 1) + encode(0.5 * rng.standard_normal(s.size) * 0.05, -100.0, 0.0, 1)


def _degrade(x, name, severity, fmt="binaural", seed=3):
    f = parse_format(fmt)
    p = degradation_params(name, severity, np.random.default_rng(seed), sample_rate=FS, fmt=f)
    return apply_signal_degradation(x, p, name, FS, f)[0]


EPS32 = 2.0 ** -23  # float32 machine epsilon (1.2e-7; unit roundoff 6e-8)
# A level (dB) from the front-end's complex64 bands: the spectrum FFT, the band's inverse FFT
# and the envelope each add ~ sqrt(log2 N) (~4.5) x 6e-8 of relative amplitude error, 8e-7 in
# all; x 2 for power, x 4.34 for dB, x 2 for a deg-ref (or left-right) difference: 1.4e-5 dB per
# value, and a mean or median of such values is within the same bound.
F32_LEVEL_DB = 3 * 4.5 * 6e-8 * 2 * 4.34 * 2

@pytest.fixture(scope="module")
def metric():
    return load_metric("quality")


def _scores(metric, ref, degs, fmt=None):
    pair = load_pair(np.stack([ref] * len(degs)), np.stack(degs), sample_rate=FS, target_rate=FS, fmt=fmt)
    return metric.score(pair)


def test_shipped_weights_are_packaged_and_checked():
    spec = REGISTRY["quality_v1"]
    assert spec.packaged and spec.url is None
    w = resolve("quality_v1", offline=True, download=False)
    assert w.source == "packaged" and w.verified and w.path.stat().st_size < 20_000
    import json

    p = json.loads(w.path.read_text())
    m = QualityMapping.from_params(p["mapping"])
    ws = m.weights()
    assert all(v >= 0 for v in ws["timbral"].values()) and all(v >= 0 for v in ws["spatial"].values())
    assert sum(ws["timbral"].values()) > 0 and ws["exponent"] > 0
    assert set(p["provenance"]) >= {"timbral_weights", "spatial_weights", "exponent"}


def test_identity_scores_100_binaural_and_ambisonic(metric):
    x = _scene(0.4)
    r = metric.score(load_pair(x, x.copy(), sample_rate=FS, target_rate=FS))
    assert r.score >= 95 and r.score == pytest.approx(100.0)
    assert r.values["timbral_score"] == pytest.approx(100.0) and r.values["spatial_score"] == pytest.approx(100.0)
    a = _foa(0.4)
    r = metric.score(load_pair(a, a.copy(), sample_rate=FS, target_rate=FS))
    assert r.score == pytest.approx(100.0)
    assert abs(r.values["d_directiveness"]) < 1e-12 and abs(r.values["d_direction"]) < 1e-12
    assert 0 <= r.values["score_0_1"] <= 1


@pytest.mark.parametrize("family", ["noise", "lowpass", "channel_imbalance"])
def test_monotone_in_severity(metric, family):
    x = _scene(0.4, seed=4)
    sevs = [0.25, 0.5, 0.75, 1.0]
    degs = [_degrade(x, family, s) for s in sevs]
    res = _scores(metric, x, degs)
    s = np.asarray(res.score)
    assert s.shape == (4,)
    assert np.all(np.diff(s) < 0), (family, s)
    assert s[0] < 100 and s[-1] >= 0
    if family == "channel_imbalance":  # an interaural level change is a spatial distortion
        sp = np.asarray(res.values["spatial_score"])
        assert np.all(np.diff(sp) < 0) and sp[-1] < 90


def test_duration_independent_on_stationary_content(metric):
    x = _scene(0.8, seed=5)
    # severity 0.8: version 2's steeper mapping (exponent 3.39, fitted on aligned speech) puts
    # severity 0.6 at 96.8, above the "clearly degraded" bar this test needs (issue 19)
    y = _degrade(x, "noise", 0.8)
    h = x.shape[-1] // 2
    full = metric.score(load_pair(x, y, sample_rate=FS, target_rate=FS)).score
    half = metric.score(load_pair(x[:, :h], y[:, :h], sample_rate=FS, target_rate=FS)).score
    assert full < 95
    assert abs(full - half) < 5


def test_overall_gain_costs_little(metric):
    x = _scene(0.4, seed=6)
    y = _degrade(x, "lowpass", 0.5)
    res = _scores(metric, x, [y, y * 10 ** (6 / 20), y * 10 ** (-6 / 20)])
    s = np.asarray(res.score)
    assert np.all(np.abs(s[1:] - s[0]) < 10)
    g = np.asarray(res.values["gain_compensation_db"])
    assert g[1] == pytest.approx(g[0] - 6, abs=1e-6) and g[2] == pytest.approx(g[0] + 6, abs=1e-6)


def test_result_shape_maps_and_batch_consistency(metric):
    x = _scene(0.4, seed=7)
    y = _degrade(x, "noise", 0.5)
    one = metric.score(load_pair(x, y, sample_rate=FS, target_rate=FS), maps=True)
    assert isinstance(one.score, float) and 0 <= one.score <= 100
    for k in ("timbral_score", "spatial_score", *TIMBRAL_FEATURES, "d_ild_db", "d_ic", "d_ipd"):
        assert k in one.values
    # the score is the mapping of the combined distortion (version 6: Euclidean), the sub-scores of each part
    d, dt, ds = (float(np.asarray(one.values[k])) for k in ("distortion", "timbral_distortion", "spatial_distortion"))
    assert d == pytest.approx(np.hypot(dt, ds), rel=1e-9)
    assert one.score == pytest.approx(100 / (1 + d ** metric.model.exponent), rel=1e-6)
    nf = x.shape[-1] // 1920
    for k in ("timbral_distortion", "spatial_distortion"):
        assert one.maps[k].shape == (29, nf)
    assert one.provenance["checkpoint_sha256"] == REGISTRY["quality_v1"].sha256
    batch = _scores(metric, x, [y, x.copy()])
    # batch and single may take other float32 FFT/matmul kernels: rounding of the 0-100 score's
    # float32 chain (~20 operations x eps32 x full scale), not bitwise equality (was abs=1e-9)
    assert np.asarray(batch.score)[0] == pytest.approx(one.score, abs=100 * 20 * EPS32)
    assert np.asarray(batch.score)[1] == pytest.approx(100.0)


def test_mapping_is_monotone_with_identity_at_100():
    m = QualityMapping.from_params({"timbral_weights": dict.fromkeys(TIMBRAL_FEATURES, 1.0),
                                    "spatial_weights": dict.fromkeys(SPATIAL_FEATURES, 0.5), "exponent": 1.5})
    f = {k: torch.tensor([0.0, 0.1, 0.5, 2.0]) for k in TIMBRAL_FEATURES + SPATIAL_FEATURES}
    out = m(f)
    s = out["score"].detach().numpy()
    assert s[0] == 100.0 and np.all(np.diff(s) < 0)
    with pytest.raises(ValueError):
        QualityMapping.from_params({"timbral_weights": {}, "spatial_weights": {}, "exponent": 1})


def test_combination_rule_sum_euclidean_and_old_parameter_files():
    """``combination`` p: D = (D_t^p + D_s^p)^(1/p). p = 1 is the sum (parameter files without the
    key, versions 1-5, read as 1); p = 2 the Euclidean distance (3-4-5: D = 5 where the sum is 7);
    one dimension alone gives the same D whatever p; both 0 gives 100 with finite gradients."""
    base = {"timbral_weights": {"added_db": 1.0, "missing_db": 0.0, "incoherence": 0.0},
            "spatial_weights": {**dict.fromkeys(SPATIAL_FEATURES, 0.0), "d_ic_mean": 1.0}, "exponent": 1.0}
    f = {k: torch.zeros(4, dtype=torch.float64) for k in TIMBRAL_FEATURES + SPATIAL_FEATURES}
    f["added_db"] = torch.tensor([3.0, 3.0, 0.0, 0.0], dtype=torch.float64)
    f["d_ic_mean"] = torch.tensor([4.0, 0.0, 4.0, 0.0], dtype=torch.float64)
    old = QualityMapping.from_params(base)
    assert old.combination == 1.0 and old.to_params()["combination"] == 1.0
    euc = QualityMapping.from_params({**base, "combination": 2.0})
    s1, s2 = old(f)["score"].detach().numpy(), euc(f)["score"].detach().numpy()
    np.testing.assert_allclose(s1, 100.0 / (1.0 + np.array([7.0, 3.0, 4.0, 0.0])), rtol=1e-12)
    np.testing.assert_allclose(s2, 100.0 / (1.0 + np.array([5.0, 3.0, 4.0, 0.0])), rtol=1e-12)
    # the sub-scores do not depend on the rule
    for k in ("timbral_score", "spatial_score"):
        np.testing.assert_allclose(old(f)[k].detach().numpy(), euc(f)[k].detach().numpy(), rtol=1e-12)
    # monotone in each distortion, and differentiable at the identity
    g = {k: v.clone().requires_grad_(True) for k, v in f.items()}
    euc(g)["score"].sum().backward()
    for k in ("added_db", "d_ic_mean"):
        assert torch.isfinite(g[k].grad).all() and (g[k].grad[:2 if k == "added_db" else 3] <= 0).all()
    assert QualityMapping.from_params(euc.to_params()).combination == 2.0
    with pytest.raises(ValueError):
        QualityMapping.from_params({**base, "combination": 0.5})


def test_gradient_flows_to_degraded_signal():
    from spaq.auditory.frontend import AuditoryFrontEnd
    from spaq.metrics.quality import pool_features, quality_maps

    x = torch.from_numpy(_scene(0.12, seed=8))[None]
    y = (x + 0.003 * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    y.requires_grad_(True)
    fe = AuditoryFrontEnd()
    f = pool_features(quality_maps(x, y, fe, None, chunk_frames=None))
    m = QualityMapping.from_params({"timbral_weights": dict.fromkeys(TIMBRAL_FEATURES, 1.0),
                                    "spatial_weights": dict.fromkeys(SPATIAL_FEATURES, 1.0), "exponent": 1.0})
    m(f)["score"].sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_chunked_equals_unchunked(monkeypatch):
    from spaq.auditory.frontend import AuditoryFrontEnd
    from spaq.metrics.functional import quality as fq
    from spaq.metrics.quality import pool_features, quality_maps

    a = torch.from_numpy(_foa(0.9, seed=9))[None]
    b = a * 0.9 + 0.002 * torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fe = AuditoryFrontEnd()
    from spaq.spatial.decoders import hrtf_decoder

    dec = hrtf_decoder(1)
    # the pooled means run over bins above the hearing threshold: a bin whose level lies within
    # float32 rounding of it may count in one run and not the other (a flip moves a mean by about
    # its share of the bins), so count such bins in the unchunked run
    near = []
    orig = fq._maps_from_cues

    def spy(c, floor, gain_db, *rest):
        sl = 10 * torch.log10(c["p_ear"] / floor.view(-1, 1).to(torch.float64))
        near.append((int((sl.abs() < F32_LEVEL_DB).sum()), int((sl > 0).sum())))
        return orig(c, floor, gain_db, *rest)

    monkeypatch.setattr(fq, "_maps_from_cues", spy)
    f1 = pool_features(quality_maps(a, b, fe, dec, chunk_frames=None))
    monkeypatch.setattr(fq, "_maps_from_cues", orig)
    flip = 2 * near[0][0] / max(1, near[0][1])  # k flips among n bins move a mean by <= k/(n-k) of it
    f2 = pool_features(quality_maps(a, b, fe, dec, chunk_frames=8, context_frames=5))  # 3 chunks
    # levels use the causal real envelope (exact with enough context); coherences use the
    # circular Hilbert transform of each chunk, whose tails reach past 5 frames of context
    for k in f1:
        if k in ("incoherence", "noisiness", "d_ic", "d_ipd", "d_ic_mean"):
            tol = dict(rel=5e-2, abs=1e-9)  # Hilbert tails past the context (the algorithm, not rounding)
        elif k in ("added_db", "missing_db", "d_ild_db"):
            # complex64 bands: chunks and the whole signal round differently (other FFT lengths)
            tol = dict(rel=flip, abs=F32_LEVEL_DB)  # was rel=1e-6: 3e-6 seen on another x86 CPU
        else:  # directiveness/direction: float64 chain, eps64 x cond (< 1e3) x sqrt(log2 N) << 1e-6
            tol = dict(rel=1e-6, abs=1e-9)
        assert float(f2[k]) == pytest.approx(float(f1[k]), **tol), k


def test_compare_extra_declares_the_baselines_eval_quality_imports():
    """benchmarks/eval_quality.py --section mushra scores its baselines with the registry's classic
    metrics pesq, stoi and visqol_speech (issue 18: one implementation); the `compare` extra must
    declare exactly the distributions those metrics require (pesq, pystoi, visqol-python)."""
    import re
    import tomllib
    from pathlib import Path

    from spaq.metrics import metric_class
    from spaq.metrics.functional.classic import _PIP

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = sorted(re.split(r"[<>=!~ \[]", d)[0].lower() for d in extras["compare"])
    assert names == ["pesq", "pystoi", "visqol-python"]
    src = (root / "benchmarks" / "eval_quality.py").read_text()
    needed = set()
    for metric in ("pesq", "stoi", "visqol_speech"):
        assert f'("{metric}", "mono")' in src
        needed |= {_PIP.get(m, m) for m in metric_class(metric).requires}
    assert sorted(needed) == names


def test_gradient_matches_finite_differences():
    """Gradients of the pooled features w.r.t. the degraded signal (binaural, 0.2 s) agree with
    central finite differences (step 1e-5 of full scale: the bands are complex64) within 2 % for
    the smooth features. ``added_db``/``missing_db`` clamp the level difference at 0 dB, a kink
    where a bin's difference is exactly 0: autograd takes the one-sided slope there, finite
    differences average (measured: 15 % apart along this direction), so they are left out.
    Exact mode (float64 input) within 2 %; the default fast mode (float32 input) within 5 %."""
    from spaq.metrics.quality import Quality

    for q, tol in ((Quality(fast=False), 0.02), (Quality(), 0.05)):
        _check_fd(q, tol)


def _check_fd(q, tol):
    g0 = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 9600, dtype=torch.float64, generator=g0) * 0.05
    y0 = x + 0.01 * torch.randn(x.shape, dtype=torch.float64, generator=g0)
    v = torch.randn(y0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * 1e-5
    with torch.no_grad():
        fp, fm = q.features(x, y0 + v)[1], q.features(x, y0 - v)[1]
    for k in ("incoherence", "d_ild_db", "d_ic", "d_ipd", "d_ic_mean"):
        y = y0.clone().requires_grad_(True)
        q.features(x, y)[1][k].sum().backward()
        analytic = float((y.grad * v).sum())
        assert abs(analytic) > 1e-7, k
        assert float((fp[k] - fm[k]).sum()) / 2 == pytest.approx(analytic, rel=tol), (k, q.fast)


def test_fast_default_matches_exact_mode():
    """The default (fast) front-end gives the scores of the exact one, the mode the shipped
    parameters were fitted in, within 0.2 points; the training recipe uses exact mode."""
    from spaq.metrics.quality import Quality
    from spaq.train.quality import _metric

    fast, exact = Quality(), Quality(fast=False)
    assert fast.fast and not exact.fast and not _metric().fast
    ref = _scene(1.0)
    degs = [_degrade(ref, "noise", s) for s in (0.25, 0.75)] + [_degrade(ref, "lowpass", 0.5)]
    a = _scores(fast, ref, degs).score
    b = _scores(exact, ref, degs).score
    assert np.all(np.abs(np.asarray(a) - np.asarray(b)) < 0.2), (a, b)
    assert np.ptp(b) > 5  # the pairs span a real range of scores
    foa = _foa(1.0)
    d = _degrade(foa, "lowpass", 0.75, fmt="foa")
    a = _scores(fast, foa, [d]).score
    b = _scores(exact, foa, [d]).score
    assert abs(float(a[0]) - float(b[0])) < 0.2 and float(b[0]) < 95


def test_gain_match_hears_what_the_bands_hear():
    """Version 15 (parameters' gain_match "heard"): a low-pass above every band (14 kHz; the top band's centre is
    11.8 kHz) removes energy no feature sees, and no longer turns the degraded signal up. The same scene then reads
    the same binaurally and in FOA (identity to rounding: the band powers are unchanged), where the broadband match
    of versions 1-14 (a parameter file without the key) turned FOA's W up by 2.5 dB and scored it 66 against 100."""
    import copy

    import scipy.signal as ss

    from spaq.metrics.quality import Quality, load_quality_params
    from spaq.spatial.ambisonics import encode
    from spaq.spatial.hrtf import load_hrtf

    x = np.random.default_rng(1).standard_normal(int(1.5 * FS)) * 0.05
    h = load_hrtf("ku100", FS)
    b = ss.oaconvolve(x[None], h.hrir[int(h.nearest_index(30, 0))], axes=-1)[:, :len(x)]
    f = encode(x, 30.0, 0.0, 1)
    sos = ss.butter(8, 14000, fs=FS, output="sos")
    params, _, _ = load_quality_params()
    assert params["gain_match"] == "audible"  # heard from 20 Hz up (version 16)
    old = copy.deepcopy(params)
    del old["gain_match"]
    scores = {}
    for label, q in (("heard", Quality()), ("broadband", Quality(params=old))):
        for name, r in (("binaural", b), ("foa", f)):
            res = q.score(load_pair(r, ss.sosfiltfilt(sos, r, axis=-1), sample_rate=FS, target_rate=FS))
            scores[label, name] = (res.score, float(res.values["gain_compensation_db"]))
    for name in ("binaural", "foa"):
        score, gain = scores["heard", name]
        assert score == pytest.approx(100.0, abs=0.01) and abs(gain) < 0.1, (name, score, gain)
    # the broadband match: the energy above 14 kHz (white noise: 42 % of it in W) turned FOA up by 10 log10(1/0.58)
    assert scores["broadband", "foa"][1] == pytest.approx(2.4, abs=0.3) and scores["broadband", "foa"][0] < 80.0
    # the weights: 1 up to the top band's centre, that band's skirt above it
    fe = Quality().frontend
    w = fe.heard_weights(4800)
    fr = np.arange(len(w)) * FS / 4800
    top = float(fe.center_frequencies_hz.max())
    assert torch.all(w[torch.from_numpy(fr <= top)] == 1.0) and float(w[-1]) < 1e-3


def test_a_dc_offset_is_not_matched_as_sound():
    """The audible gain match (version 16) leaves out power below 20 Hz. With version 15's heard match a DC offset
    of 0.05 under noise at -26 dBFS (power 0.0025 against 0.0025: the energy doubled, less the gammatone skirt's
    share) turned the degraded signal down by 5.2 dB and read 15.8; it now reads as the reference does (the two
    are identical above 20 Hz)."""
    import copy

    import spaq
    from conftest import binaural_noise
    from spaq.auditory.frontend import AUDIBLE_HZ
    from spaq.metrics.quality import Quality, load_quality_params

    x = binaural_noise(2.0)
    x = x * (10 ** (-26 / 20) / np.sqrt(np.mean(np.asarray(x) ** 2)))
    r = spaq.score(x, x + 0.05, sample_rate=48000, metrics=["quality"]).results["quality"]
    assert abs(r.values["gain_compensation_db"]) < 0.01
    assert r.score > 99.0
    # a file that says "heard" (version 15) keeps its own reading: the DC counted as level
    params, _, _ = load_quality_params()
    old = copy.deepcopy(params)
    old["gain_match"] = "heard"
    r15 = Quality(params=old).score(load_pair(x, x + 0.05, sample_rate=FS, target_rate=FS))
    # DC power equal to the noise's: -10 log10(1 + 0.0025 / heard noise power) <= -3.01 dB when the bands hear the
    # noise at most whole (measured -5.2 dB, 15.8 points)
    assert float(r15.values["gain_compensation_db"]) < -3.0 and r15.score < 50.0
    # the weights: those of "heard", but 0 below 20 Hz
    fe = Quality().frontend
    w, w20 = fe.heard_weights(48000), fe.heard_weights(48000, min_hz=AUDIBLE_HZ)
    assert torch.all(w20[:20] == 0.0) and torch.equal(w20[20:], w[20:]) and torch.all(w[:20] == 1.0)


def test_a_front_back_mirror_gets_a_warning(metric):
    """An FOA plane wave at 30 deg with X negated plays at 150 deg: the interaural cues quality weighs are those
    of the cone of confusion, so it read spatial_score ~90 with no word while a 40 deg turn reads ~30. The
    intensity direction (``d_direction``, 1 = 180 deg) sees the ~120 deg move: a warning now says so. A turn the
    score already penalises, the identity and a W-only degraded signal (the direction lost, not moved) do not
    warn."""
    from spaq.spatial.ambisonics import encode

    rng = np.random.default_rng(5)
    s = rng.standard_normal(FS) * 0.05
    ref = encode(s, 30.0, 0.0, 1)
    mirror = ref.copy()
    mirror[3] *= -1  # ACN 3 = X: front <-> back
    turned, w_only = encode(s, 70.0, 0.0, 1), ref * np.array([1.0, 0.0, 0.0, 0.0])[:, None]
    res = _scores(metric, ref, [ref, mirror, turned, w_only], fmt="foa")
    d = 180 * np.asarray(res.values["d_direction"])
    assert d[1] == pytest.approx(120.0, abs=10.0) and d[2] == pytest.approx(40.0, abs=10.0)
    assert res.values["spatial_score"][1] >= 70.0 > res.values["spatial_score"][2]
    warn = [w for w in res.warnings if "front/back or up/down mirror" in w]
    assert len(warn) == 1 and "(items 1)" in warn[0], res.warnings
