"""Joint fit of the quality parameters on two listening tests (issue 19): the fitting code on
synthetic items with known parameters, and the spatial-codings ratings table against the
numbers the issue states (BAM-Q 0.747 / PEMO-Q 0.550 on the 42 rebuildable items)."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from spaq.train import quality as tq

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "listening-tests" / "ambisonics-param-coding"


def _items(rng, n, w, v, k, spatial_scale=1.0, p=1.0):
    Ft = rng.uniform(0, 1.5, (n, len(tq.TIMBRAL_FEATURES)))
    Fs = np.zeros((n, len(tq.SPATIAL_FEATURES)))
    Fs[:, :3] = rng.uniform(0, 0.3, (n, 3)) * spatial_scale
    Fs[:, 5:7] = rng.uniform(0, 0.3, (n, 2)) * spatial_scale  # d_ic_mean, d_ild_mean (d_order: 0, binaural)
    d = ((Ft @ w) ** p + (Fs @ v) ** p) ** (1 / p)
    return Ft, Fs, 100 / (1 + d ** k)


def test_joint_fit_recovers_known_parameters_and_cv_predicts_held_out_groups():
    rng = np.random.default_rng(0)
    w, v0, k = np.array([0.3, 0.4, 0.2, 0.5]), np.array([0.2, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]), 2.0
    a = 0.4  # true spatial factor on v0
    t1 = _items(rng, 40, w, a * v0, k, spatial_scale=0.0)  # a timbral-only test
    t2 = _items(rng, 30, w, a * v0, k, spatial_scale=1.0)  # a spatial test
    th = tq.fit_joint([t1, t2], v0, "scale", seed=1, starts=3)
    w_f, v_f, k_f = tq._unpack(th, v0, "scale")
    assert np.allclose(w_f, w, rtol=1e-3) and k_f == pytest.approx(k, rel=1e-3)
    assert np.allclose(v_f, a * v0, rtol=1e-3) and v_f[3] == 0 and v_f[4] == 0
    g = [np.repeat(np.arange(8), 5), np.repeat(np.arange(6), 5)]
    held = tq.joint_cv([t1, t2], g, v0, "scale", seed=1, starts=2)
    assert np.allclose(held[0], t1[2], atol=0.05) and np.allclose(held[1], t2[2], atol=0.05)
    # the binaural mode frees the three binaural weights, keeps the ambisonics-only ones
    th_b = tq.fit_joint([t1, t2], v0 * np.array([1, 1, 1, 0, 0, 0, 0, 0, 0]), "binaural", seed=1, starts=3)
    assert np.allclose(tq._unpack(th_b, v0, "binaural")[1][:3], a * v0[:3], rtol=1e-2)


def test_statistic_mode_recovers_the_coherence_statistic_and_keeps_the_ild_shift_weight():
    """Version 3's mode: one factor on the synthetic frame-wise weights, a free d_ic_mean weight,
    and d_ild_mean at v0's d_ild_db weight (not scaled, not fitted)."""
    rng = np.random.default_rng(3)
    w, k = np.array([0.3, 0.4, 0.2, 0.5]), 2.0
    v0 = np.array([0.2, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    v = 0.3 * v0
    v[5], v[6] = 5.0, v0[0]  # d_ic_mean 5.0; d_ild_mean = v0's d_ild_db weight
    t1 = _items(rng, 40, w, v, k, spatial_scale=0.0)
    t2 = _items(rng, 30, w, v, k, spatial_scale=1.0)
    th = tq.fit_joint([t1, t2], v0, "statistic", seed=1, starts=3)
    w_f, v_f, k_f = tq._unpack(th, v0, "statistic")
    assert np.allclose(w_f, w, rtol=1e-3) and k_f == pytest.approx(k, rel=1e-3)
    assert np.allclose(v_f, v, rtol=1e-3)
    assert v_f[tq.SPATIAL_FEATURES.index("d_ild_mean")] == v0[tq.SPATIAL_FEATURES.index("d_ild_db")]


def test_per_test_offset_ignores_a_test_sitting_higher_on_the_scale():
    """fit.per_test = offset (version 5): a test whose raters sit 12 points higher everywhere (the
    context of the test) does not pull the parameters; fitted as they are ("none") it does."""
    e = np.array([3.0, -1.0, 4.0, 2.0])
    assert tq._test_error(e, np.zeros(4), "offset") == pytest.approx(np.var(e), rel=1e-12)
    assert tq._test_error(e, np.zeros(4), "none") == pytest.approx(np.mean(e ** 2), rel=1e-12)
    y = np.array([10.0, 30.0, 50.0, 90.0])  # normalised: the share of the ratings' variance left
    assert tq._test_error(y + e, y, "offset_normalised") == pytest.approx(np.var(e) / np.var(y), rel=1e-12)
    assert tq._test_error(2 * (y + e), 2 * y, "offset_normalised") == pytest.approx(np.var(e) / np.var(y), rel=1e-12)
    rng = np.random.default_rng(5)
    w, k = np.array([0.3, 0.4, 0.2, 0.5]), 2.0
    v0 = np.array([0.2, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    t1 = _items(rng, 40, w, 0.4 * v0, k, spatial_scale=0.0)
    Ft, Fs, y = _items(rng, 30, w, 0.4 * v0, k, spatial_scale=1.0)
    t2 = (Ft, Fs, y + 12.0)  # the same ratings, 12 points higher
    for per_test in ("offset", "offset_normalised"):
        th = tq.fit_joint([t1, t2], v0, "scale", seed=1, starts=3, per_test=per_test)
        w_f, v_f, k_f = tq._unpack(th, v0, "scale")
        assert np.allclose(w_f, w, rtol=1e-2) and k_f == pytest.approx(k, rel=1e-2)
        assert np.allclose(v_f, 0.4 * v0, rtol=1e-2)
    w_n, _, _ = tq._unpack(tq.fit_joint([t1, t2], v0, "scale", seed=1, starts=3), v0, "scale")
    assert np.max(np.abs(w_n / w - 1)) > 0.05  # the shift biases the plain fit


def test_euclidean_combination_is_fitted_by_the_same_rule_and_matches_the_model():
    """fit.combination = 2 (version 6): ratings made with D = sqrt(D_t^2 + D_s^2) are fitted exactly
    by the joint fit told the same rule, and not by the sum; the numpy rule of the fit agrees with
    the metric's QualityMapping on the same parameters."""
    import torch

    from spaq.models.quality import QualityMapping

    rng = np.random.default_rng(11)
    w, k = np.array([0.3, 0.4, 0.2, 0.5]), 2.0
    v0 = np.array([0.2, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    v = 0.3 * v0
    v[5], v[6] = 5.0, v0[0]
    t1 = _items(rng, 40, w, v, k, spatial_scale=0.0, p=2.0)
    t2 = _items(rng, 40, w, v, k, spatial_scale=3.0, p=2.0)  # spatial and timbral distortions of like size
    th = tq.fit_joint([t1, t2], v0, "statistic", seed=1, starts=3, combination=2.0)
    w_f, v_f, k_f = tq._unpack(th, v0, "statistic")
    assert np.allclose(w_f, w, rtol=1e-3) and np.allclose(v_f, v, rtol=1e-3) and k_f == pytest.approx(k, rel=1e-3)
    err2 = np.abs(tq.joint_pred(th, t2[0], t2[1], v0, "statistic", 2.0) - t2[2]).max()
    th1 = tq.fit_joint([t1, t2], v0, "statistic", seed=1, starts=3, combination=1.0)
    err1 = np.abs(tq.joint_pred(th1, t2[0], t2[1], v0, "statistic", 1.0) - t2[2]).max()
    assert err2 < 0.01 < 1.0 < err1
    m = QualityMapping.from_params({"timbral_weights": dict(zip(tq.TIMBRAL_FEATURES, w_f)),
                                    "spatial_weights": dict(zip(tq.SPATIAL_FEATURES, v_f)), "exponent": k_f,
                                    "combination": 2.0})
    feats = {n: torch.from_numpy(t2[0][:, i]) for i, n in enumerate(tq.TIMBRAL_FEATURES)}
    feats.update({n: torch.from_numpy(t2[1][:, j]) for j, n in enumerate(tq.SPATIAL_FEATURES)})
    np.testing.assert_allclose(m(feats)["score"].detach().numpy(),
                               tq.joint_pred(th, t2[0], t2[1], v0, "statistic", 2.0), rtol=1e-10)
    assert tq.combine(np.array([3.0, 0.0]), np.array([4.0, 2.0]), 2.0).tolist() == [5.0, 2.0]


def test_joint_prediction_is_100_at_zero_distortion_and_monotone():
    v0 = np.array([0.1, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    th = np.array([math.log(0.3)] * 4 + [0.0, math.log(2.0)])
    Ft = np.array([[0, 0, 0, 0], [0.1, 0, 0, 0], [0.5, 0, 0, 0], [0.5, 0.5, 0.5, 0.1]], dtype=float)
    s = tq.joint_pred(th, Ft, np.zeros((4, len(tq.SPATIAL_FEATURES))), v0, "scale")
    assert s[0] == 100.0 and np.all(np.diff(s) < 0)
    with pytest.raises(Exception, match="fit.spatial"):
        tq._unpack(th, v0, "wobble")


def test_recipe_has_the_listening_test_sections():
    tc = tq.QualityTrainConfig.from_yaml(REPO / "configs" / "train" / "quality.yaml")
    # the shipped recipe (version 3): both listening tests, delay-aligned, the statistic mode
    assert tc.mushra["align"] is True and tc.param_coding["use"] is True
    assert tc.fit["spatial"] == "statistic" and tc.fit["timbral"] == "joint"
    assert tc.fit["per_test"] == "offset_normalised"  # version 5
    assert tc.param_coding_dir().name == "param_coding"
    with pytest.raises(Exception, match="spatial-codings items not found"):
        tq.param_coding_table(REPO / "no-such-folder")


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared listening test not found at {SHARED}")
def test_param_coding_ratings_table_matches_the_published_objective_scores():
    pytest.importorskip("yaml")
    spec = importlib.util.spec_from_file_location("rebuild_param_coding", REPO / "benchmarks" / "rebuild_param_coding.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    t = mod.ratings_table()
    assert len(t) == 42 and set(t["n"]) == {22}
    assert t.groupby("trial").size().eq(6).all() and t["trial"].nunique() == 7
    y = t["mean"].to_numpy()
    # the numbers: BAM-Q 0.747, PEMO-Q 0.550 on these 42 items with the mean ratings
    assert np.corrcoef(t["bamq"], y)[0, 1] == pytest.approx(0.747, abs=5e-4)
    assert np.corrcoef(t["pemoq"], y)[0, 1] == pytest.approx(0.550, abs=5e-4)
    assert t[t["condition"] == "Mono"]["mean"].max() < 25  # the anchor-like condition


def test_order_weight_is_recovered_from_ambisonic_items_and_is_never_negative():
    """``fit_order_weight`` (version 8): items whose scores carry a known ``d_order`` weight, seen
    through a test offset, give that weight back; items that score too low already give 0."""
    rng = np.random.default_rng(3)
    w, k = np.array([0.3, 0.4, 0.2, 0.5]), 2.0
    v = np.array([0.2, 0.0, 0.5, 0.0, 0.0, 1.0, 0.4, 0.0, 0.0])
    j = tq.SPATIAL_FEATURES.index("d_order")
    Ft, Fs, _ = _items(rng, 12, w, v, k)
    Fs[:, j] = rng.uniform(0.3, 1.0, 12)
    vt = v.copy()
    vt[j] = 0.35
    d = tq.combine(Ft @ w, Fs @ vt, 2.0)
    y = 100 / (1 + d ** k)
    offset = -4.0  # the test's mean error (score - rating): ratings sit 4 points above the scores
    assert tq.fit_order_weight(Ft, Fs, y - offset, w, v, k, offset, 2.0) == pytest.approx(0.35, rel=1e-4)
    # ratings far above what the weight 0 already gives: the weight stays at 0, not below
    assert tq.fit_order_weight(Ft, Fs, y + 30.0, w, v, k, 0.0, 2.0) == 0.0
