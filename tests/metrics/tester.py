"""The shared metric tester (the torchmetrics ``MetricTester`` habit): every check a metric
gets by registering. ``tests/metrics/test_contract.py`` runs it on every registered metric.

Inputs come from the metric's declared ``formats`` and ``sample_rate``: a binaural pair
(2 channels) or a first-order ambisonic scene, a degraded copy (low-passed, a little noise,
a small gain change), so that no check passes on a trivial constant.
"""
from __future__ import annotations

import numpy as np
import scipy.signal as sps
import torch

from conftest import binaural_noise, plane_wave_scene

#: constructor options per metric name for the tests (weights from ../shared where needed)
SECONDS = 1.0


def test_input(cls, seconds: float = SECONDS, batch: int = 2, seed: int = 0):
    """``(ref, deg)`` float64 numpy ``(batch, C, T)`` at ``cls.sample_rate`` in the first format
    it declares (binaural, ambisonics order 1, or mono); items differ (seeds)."""
    fs = cls.sample_rate
    refs, degs = [], []
    for i in range(batch):
        if "binaural" in cls.formats:
            r = binaural_noise(seconds, fs, seed=seed + i, itd=8 + 4 * i, ild_db=3.0 + 2 * i)
        elif "ambisonics" in cls.formats:
            r = plane_wave_scene(1, seconds, fs, seed=seed + i)
        else:
            r = binaural_noise(seconds, fs, seed=seed + i)[:1]
        b, a = sps.butter(4, 3000 + 2000 * i, fs=fs)
        rng = np.random.default_rng(100 + seed + i)
        d = sps.lfilter(b, a, r, axis=-1) * 0.9 + 0.003 * rng.standard_normal(r.shape)
        refs.append(r)
        degs.append(d)
    return np.stack(refs), np.stack(degs)


def close(a, b, tol: float) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all((np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b)))))
