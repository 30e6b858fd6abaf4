"""The ITD of ``quality`` (version 12): the frame-wise ITD read from the interaural coherences of the
fine-structure bands, ``d_itd``, and the lateral displacement counted once as the maximum of the
level/phase terms and the ITD term."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spaq.metrics.functional.quality import ITD_GRID_MS, frame_itd, itd_change
from spaq.metrics.quality import Quality
from spaq.models.quality import LATERAL_FEATURES, SPATIAL_FEATURES, TIMBRAL_FEATURES, QualityMapping
from spaq.train import quality as tq

SR = 48000
GRID_STEP_MS = float(ITD_GRID_MS[1] - ITD_GRID_MS[0])


@pytest.fixture(scope="module")
def metric():
    return Quality()


def _delayed(x: np.ndarray, n: int) -> np.ndarray:
    """``(2, T)``: ``x`` at the left ear, ``x`` delayed by ``n`` samples at the right (left leads)."""
    right = np.concatenate([np.zeros(n), x[:len(x) - n]]) if n > 0 else x.copy()
    return np.stack([x, right])


def _features(metric, ref, degs):
    r = torch.from_numpy(np.stack([ref] * len(degs)))
    d = torch.from_numpy(np.stack(degs))
    with torch.no_grad():
        return metric.forward(r, d)


def test_frame_itd_reads_a_pure_delay_to_the_grid_step():
    """One band pair per frequency whose coherence is the phase of a delay ``tau``: the summary
    cross-correlation peaks at ``tau`` (the nearest grid delay: error <= half a step), with peak 1
    (unit coherences), and NaN where no band has a coherence."""
    fc = torch.tensor([400.0, 600.0, 900.0, 1200.0, 2000.0], dtype=torch.float64)
    for tau_ms in (-0.63, 0.0, 0.237, 0.8, -1.24):  # -1.24: beyond natural ITDs, as a delay imposed on a lateral source
        ic = torch.exp(1j * 2 * math.pi * fc * tau_ms * 1e-3).view(1, -1, 1).repeat(1, 1, 3)
        ic[..., -1, :] = torch.exp(torch.tensor(2.0j))  # above the roll-off: must not count
        itd, peak = frame_itd(ic, fc, 1300.0)
        assert torch.all(torch.abs(itd - tau_ms) <= GRID_STEP_MS / 2 + 1e-9), (tau_ms, itd)
        # at the nearest grid delay each band's term is cos(2 pi f_c d), |d| <= half a step (5 us):
        # >= cos(2 pi 1200 Hz 5 us) = 0.99929 for the bands below the roll-off
        assert torch.allclose(peak, torch.ones_like(peak), atol=1e-3)
    nan = torch.full((1, 5, 2), float("nan"), dtype=torch.complex128)
    itd, peak = frame_itd(nan, fc, 1300.0)
    assert torch.isnan(itd).all() and torch.isnan(peak).all()


def test_itd_change_is_the_median_over_frames_with_both():
    ref = torch.tensor([[0.1, 0.1, 0.1, float("nan"), 0.1]], dtype=torch.float64)
    deg = torch.tensor([[0.3, 0.4, 0.9, 0.5, 0.35]], dtype=torch.float64)  # changes 0.2 0.3 0.8 - 0.25
    # torch's median of an even count is the lower middle value
    assert float(itd_change(ref, deg)[0]) == pytest.approx(0.25)
    assert float(itd_change(ref * float("nan"), deg)[0]) == 0.0  # no frame with both: 0


def test_d_itd_of_a_delayed_ear_is_the_delay_and_zero_for_identity_gain_and_decorrelation(metric):
    """A right ear delayed by n samples (noise, 1 s; up to 1.21 ms, beyond natural ITDs) reads n / 48 ms to
    the grid step; the identical
    pair, a 6 dB gain, and an ear replaced by independent noise (no coherent frame) read 0."""
    rng = np.random.default_rng(0)
    x = 0.05 * rng.standard_normal(SR)
    ref = _delayed(x, 0)
    degs = [_delayed(x, n) for n in (5, 14, 30, 58)] + [ref.copy(), 2.0 * ref]
    decor = ref.copy()  # independent noise at one ear: frame peaks 0.17 median, 0.30-0.38 at most over six
    decor[1] = 0.05 * rng.standard_normal(SR)  # seeds (40 ms frames, 9 bands), far below ITD_MIN_PEAK 0.7
    out = _features(metric, ref, degs + [decor])["d_itd"].numpy()
    for i, n in enumerate((5, 14, 30, 58)):  # a delay of n samples is n / 48 ms; the grid reads the nearest step
        assert abs(out[i] - n / 48.0) <= GRID_STEP_MS / 2 + 1e-9, (n, out[i])
    assert out[4] == 0.0 and out[5] == 0.0 and out[6] == 0.0


def _mapping(v_itd: float) -> QualityMapping:
    sw = {n: 0.0 for n in SPATIAL_FEATURES}
    sw.update(d_ild_db=0.1, d_ipd=0.5, d_ild_mean=0.4, d_ic_mean=3.0, d_itd=v_itd)
    return QualityMapping.from_params({"timbral_weights": {n: 0.5 for n in TIMBRAL_FEATURES}, "spatial_weights": sw,
                                       "exponent": 1.5, "combination": 2.0})


def test_lateral_terms_and_itd_enter_as_their_maximum_and_weight_zero_is_the_sum():
    feats = {n: torch.tensor([0.2, 0.2, 0.0]) for n in TIMBRAL_FEATURES}
    feats.update({n: torch.zeros(3) for n in SPATIAL_FEATURES})
    feats["d_ild_mean"] = torch.tensor([5.0, 1.0, 0.0])  # lateral sums 2.0, 0.4, 0
    feats["d_ic_mean"] = torch.tensor([0.1, 0.1, 0.0])  # 0.3, not lateral: always added
    feats["d_itd"] = torch.tensor([0.5, 0.5, 0.0])  # x 4 = 2.0 (ties), 2.0 (wins), 0
    with torch.no_grad():
        _, ds0 = _mapping(0.0).distortions(feats)
        _, ds4 = _mapping(4.0).distortions(feats)
    assert ds0.tolist() == pytest.approx([2.3, 0.7, 0.0])
    assert ds4.tolist() == pytest.approx([2.3, 2.3, 0.0])
    # the numpy rule of the recipe is the same rule
    Fs = np.stack([feats[n].numpy() for n in SPATIAL_FEATURES], axis=1).astype(np.float64)
    v = torch.exp(_mapping(4.0).log_v.detach()).numpy()
    np.testing.assert_allclose(tq.spatial_distortion(Fs, v), ds4.numpy(), rtol=1e-12)
    # parameters without d_itd (versions 1-11) load with weight 0: the plain sum
    p = _mapping(0.0).to_params()
    del p["spatial_weights"]["d_itd"]
    assert float(torch.exp(QualityMapping.from_params(p).log_v.detach()[SPATIAL_FEATURES.index("d_itd")])) == 0.0
    assert set(LATERAL_FEATURES) == {"d_ild_db", "d_ipd", "d_ild_mean"}


def test_itd_weight_is_the_median_ratio_of_the_lateral_terms_to_the_itd():
    v = np.zeros(len(SPATIAL_FEATURES))
    v[SPATIAL_FEATURES.index("d_ild_mean")] = 0.5
    v[SPATIAL_FEATURES.index("d_ipd")] = 1.0
    v[SPATIAL_FEATURES.index("d_ic_mean")] = 9.0  # not lateral: not in the ratio
    cal = np.zeros((4, len(SPATIAL_FEATURES)))
    cal[:, SPATIAL_FEATURES.index("d_ild_mean")] = [2.0, 4.0, 6.0, 3.0]
    cal[:, SPATIAL_FEATURES.index("d_ipd")] = [0.0, 0.0, 0.0, 0.5]
    cal[:, SPATIAL_FEATURES.index("d_ic_mean")] = 1.0
    cal[:, SPATIAL_FEATURES.index("d_itd")] = [0.25, 0.5, 0.5, 0.0]  # ratios 4, 4, 6; the last has no ITD
    assert tq.itd_weight(v, cal) == pytest.approx(4.0)
    assert tq.with_itd_weight(v, cal)[SPATIAL_FEATURES.index("d_itd")] == pytest.approx(4.0)
    assert tq.with_itd_weight(v, None) is v
    assert tq.itd_weight(v, cal[3:]) == 0.0


def test_a_source_moved_to_the_interaural_pole_keeps_losing_quality(metric):
    """A frontal harmonic note on the KU100 moved 20 ... 90 deg to the right: the ILD change peaks
    near 60 deg and falls towards the pole (version 11 scored 13.6 / 17.4 / 21.5 at 60 / 75 / 90 deg),
    the ITD change keeps growing, and with the lateral displacement counted as the larger of the two
    the score falls at every step. Pink noise, whose ILD change at 60 deg exceeds what the ITD reads at
    the pole, stays at the floor of the scale (below 10) past 60 deg."""
    from spaq.data.sources import make_source
    from spaq.spatial.hrtf import load_hrtf
    from spaq.spatial.render import render_binaural

    hrtf = load_hrtf("default", SR)
    angles = [0, 20, 40, 60, 75, 90]
    for kind in ("harmonic", "pink_noise"):
        s = np.asarray(make_source(kind, 1.0, SR, np.random.default_rng(0))[0], np.float64)
        s = 0.1 * s / np.sqrt(np.mean(s ** 2))
        ref = render_binaural(s, 0.0, 0.0, hrtf)
        out = _features(metric, ref, [render_binaural(s, -a, 0.0, hrtf) for a in angles])
        score, itd = out["score"].numpy(), out["d_itd"].numpy()
        print(kind, np.round(score, 2), np.round(itd, 3))
        assert score[0] == pytest.approx(100.0) and np.all(np.diff(itd) > 0)
        if kind == "harmonic":
            assert np.all(np.diff(score) < 0), score
        else:
            assert np.all(np.diff(score[:4]) < 0) and np.all(score[3:] < 10.0), score
