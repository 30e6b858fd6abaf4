"""Issue 7 in small: the shipped quality score falls monotonically along corpus-engine sweeps
of the direction and head families whose ladders were made monotone (rotation, misplacement,
HRTF swap, mp3). Short held-out-style sweeps (seed 90000+, KU100 or SONICOM-2), each format
on its own."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from spaq.metrics import load_metric
from spaq.spatial.hrtf import named_hrtf_paths
from spaq.train.quality import sweep

SEVS = [0.0, 0.25, 0.5, 0.75, 1.0]
#: scores below this are the floor of the scale (see test_direction_sweeps_fall_monotonically)
FLOOR = 5.0


@pytest.fixture(scope="module")
def metric():
    return load_metric("quality")


def _scores(metric, ref, degs):
    r = torch.from_numpy(np.stack([ref] * len(degs)))
    d = torch.from_numpy(np.stack(degs))
    with torch.no_grad():
        return metric.forward(r, d)["score"].numpy()


@pytest.mark.parametrize("family", ["rotation", "misplacement"])
@pytest.mark.parametrize("fmt,index", [("binaural", 1), ("hoa3", 2), ("binaural", 3)])
def test_direction_sweeps_fall_monotonically(metric, family, fmt, index):
    """Strictly down to the floor: once a score is below :data:`FLOOR` (the bottom of MUSHRA's
    "bad" band, where a 135 vs 180 degree change of a noise source differs by hundredths of a
    point: version 4 scores one 3OA rotation 2.52 then 2.58) later ones must stay there, and the
    sweep keeps the issue's criterion, Spearman <= -0.9."""
    from scipy.stats import spearmanr

    ref, degs = sweep(family, fmt, "pink_noise", SEVS, 90100, index, duration_s=0.5)
    s = _scores(metric, ref, degs)
    print(family, fmt, index, np.round(s, 2))
    assert s[0] == pytest.approx(100.0)
    above = int(np.argmax(s < FLOOR)) if np.any(s < FLOOR) else len(s) - 1
    assert np.all(np.diff(s[:above + 1]) < 0), s
    assert np.all(s[above:] < FLOOR) if np.any(s < FLOOR) else True, s
    assert spearmanr(SEVS, s)[0] <= -0.9 + 1e-9, s  # one swap of 5: exactly -0.9


@pytest.mark.skipif("sonicom-2" not in named_hrtf_paths(), reason="SONICOM heads need spatialaudiometrics")
@pytest.mark.parametrize("source", ["pink_noise", "harmonic"])
def test_hrtf_swap_sweep_falls_monotonically(metric, source):
    ref, degs = sweep("hrtf_swap", "binaural", source, SEVS, 90100, 7, duration_s=0.5, hrtf="sonicom-2",
                      heads=["default"])
    s = _scores(metric, ref, degs)
    print("hrtf_swap", source, np.round(s, 2))
    assert np.all(np.diff(s) < 0), s


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_mp3_sweep_has_no_ties(metric):
    ref, degs = sweep("mp3", "binaural", "harmonic", SEVS, 90100, 9, duration_s=0.5)
    s = _scores(metric, ref, degs)
    print("mp3", np.round(s, 2))
    assert np.all(np.diff(s) < 0), s
