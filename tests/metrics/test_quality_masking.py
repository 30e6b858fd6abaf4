"""Version 5 of the quality features (issue 19): both signals' band levels entering added_db /
missing_db are floored at the reference's masked threshold (simultaneous masking by the other
bands, forward masking by the frames before), so that what the reference's own sound masks is not
counted when a codec removes it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import spaq.metrics.functional.quality as fq
from spaq.metrics.functional.quality import masked_threshold, pool_features, quality_maps

FS = 48000


def test_masked_threshold_reference_values():
    # 3 bands x 2 frames; up 15 dB / band, down 35 dB / band, 10 dB / frame, offset 6 dB
    lv = torch.tensor([[[60.0, 60.0], [0.0, 0.0], [30.0, 0.0]]], dtype=torch.float64)
    got = masked_threshold(lv, 15.0, 35.0, 10.0, 6.0, horizon=2)
    want = [[-35 - 6, 60 - 10 - 6],          # band 0: band 1 (35 dB below it) ; frame 1: its own level, 1 frame back
            [60 - 15 - 6, 60 - 15 - 6],       # band 1: band 0, one band below it (15 dB up-spread)
            [60 - 30 - 6, 60 - 30 - 6]]       # band 2: band 0 two bands below; its own 30 dB only forward
    assert torch.allclose(got[0], torch.tensor(want, dtype=torch.float64))
    # forward masking ends after the horizon; a silent pattern masks nothing above -inf
    long = torch.zeros(1, 1, 12, dtype=torch.float64)
    long[..., 0] = 80.0
    thr = masked_threshold(long, 15.0, 35.0, 10.0, 0.0, horizon=8)[0, 0]
    assert torch.isneginf(thr[0])  # one band, nothing before: no masker
    assert thr[1].item() == pytest.approx(70.0) and thr[8].item() == pytest.approx(0.0)  # 80 - 8 x 10
    assert thr[9].item() == pytest.approx(-10.0)  # the 80 dB frame is past the horizon: the 0 dB frame before


def _pooled(fe, ref, deg):
    r = torch.from_numpy(np.ascontiguousarray(ref))[None]
    d = torch.from_numpy(np.ascontiguousarray(deg))[None]
    with torch.no_grad():
        return {k: float(v[0]) for k, v in pool_features(quality_maps(r, d, fe, None)).items()}


def _missing(p_ref, p_deg):
    """missing_db pooled from ear powers ``(F, nf)`` (both ears alike, fully coherent)."""
    F, nf = p_ref.shape
    p = torch.stack([torch.stack([p_ref, p_ref]), torch.stack([p_deg, p_deg])])[None]  # (1, S, E, F, nf)
    ones = torch.ones(1, 2, F, nf, dtype=torch.complex128)
    c = {"p_ear": p, "ic": ones, "xc": torch.ones(1, F, nf, dtype=torch.complex128),
         "fluct": torch.zeros(1, 2, F, nf, dtype=torch.float64)}  # steady bands (version 14's noisiness: 0)
    maps = fq._maps_from_cues(c, torch.full((F,), 1e-10, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    return float(pool_features(maps)["missing_db"][0])


@pytest.mark.parametrize("below_db, masked", [(45.0, True), (20.0, False)])
def test_a_removed_component_counts_only_where_the_reference_does_not_mask_it(monkeypatch, below_db, masked):
    """A band two ERB bands above a loud one (masked threshold 15 x 2 + 4 = 34 dB below it), removed
    by the degraded signal: 45 dB below the loud band it is masked (not counted); 20 dB below it is
    heard missing, but only down to the masked threshold (14 dB, less the 1.5 dB JND, in half of
    the active bins), not down to the hearing threshold as without masking."""
    F, nf = 29, 6
    ref = torch.full((F, nf), 1e-10, dtype=torch.float64)
    ref[10] = 1e-2
    ref[12] = 1e-2 * 10 ** (-below_db / 10)
    deg = ref.clone()
    deg[12] = 1e-10
    with_mask = _missing(ref, deg)
    monkeypatch.setattr(fq, "MASKING", None)
    without = _missing(ref, deg)
    assert without > 0.5
    if masked:
        assert with_mask == 0.0
    else:
        assert with_mask == pytest.approx((34.0 - below_db - fq.LEVEL_JND_DB) / 2, rel=1e-9)
        assert without > 2 * with_mask


def test_forward_masking_hides_what_follows_a_loud_frame(monkeypatch):
    """A component 25 dB below a loud frame of its band, in the next frame (threshold 10 + 4 dB below
    the loud frame: masked), removed: not counted; two frames later it would be (24 dB below)."""
    F, nf = 29, 8
    ref = torch.full((F, nf), 1e-10, dtype=torch.float64)
    ref[10, 2] = 1e-2
    ref[10, 3] = 1e-2 * 10 ** (-2.5)
    deg = ref.clone()
    deg[10, 3] = 1e-10
    assert _missing(ref, deg) == 0.0
    monkeypatch.setattr(fq, "MASKING", None)
    assert _missing(ref, deg) > 0.5


def test_identical_signals_and_masking_keep_zero(fe):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, FS // 2)) * 0.05
    f = _pooled(fe, x, x.copy())
    assert f["added_db"] == 0.0 and f["missing_db"] == 0.0
