"""The shared metric tester (the torchmetrics ``MetricTester`` habit): every check a metric
gets by registering. ``tests/metrics/test_contract.py`` runs it on every registered metric.

Inputs come from the metric's declared ``formats`` and ``sample_rate``: a binaural pair
(2 channels) or a first-order ambisonic scene, a degraded copy (low-passed, a little noise,
a small gain change), so that no check passes on a trivial constant.
"""
from __future__ import annotations

import numpy as np
import scipy.signal as sps

from conftest import binaural_noise, plane_wave_scene

#: constructor options per metric name for the tests (weights from ../shared where needed)
SECONDS = 1.0
#: low-pass corner (Hz) of the first item's degradation where 3 kHz floors the score of every item
#: (ViSQOL audio mode gives its minimum, 1.0, to a 3 and 5 kHz low-pass of 14 kHz noise)
LOWPASS_HZ = {"visqol": 8000}


def test_input(cls, seconds: float = SECONDS, batch: int = 2, seed: int = 0):
    """``(ref, deg)`` float64 numpy ``(batch, C, T)`` at ``cls.sample_rate`` in the first format
    it declares (binaural, ambisonics order 1, or mono); items differ (seeds)."""
    fs = cls.sample_rate
    refs, degs = [], []
    for i in range(batch):
        if "binaural" in cls.formats:
            r = _binaural(seconds, fs, seed=seed + i, itd=8 + 4 * i, ild_db=3.0 + 2 * i)
        elif "ambisonics" in cls.formats:
            r = plane_wave_scene(1, seconds, fs, seed=seed + i)
        else:
            r = _binaural(seconds, fs, seed=seed + i)[:1]
        fc = LOWPASS_HZ.get(cls.name, 3000) + 2000 * i
        b, a = sps.butter(4, min(fc, 0.4 * fs), fs=fs)  # below Nyquist at 8/16 kHz too
        rng = np.random.default_rng(100 + seed + i)
        d = sps.lfilter(b, a, r, axis=-1) * 0.9 + 0.003 * rng.standard_normal(r.shape)
        refs.append(r)
        degs.append(d)
    return np.stack(refs), np.stack(degs)


def _binaural(seconds: float, fs: int, **kw) -> np.ndarray:
    """:func:`binaural_noise` (150 Hz to 14 kHz); below 32 kHz (speech metrics at 8/16 kHz) it is
    made at 48 kHz and resampled (the band would pass Nyquist); 48 kHz input is unchanged."""
    if fs >= 32000:
        return binaural_noise(seconds, fs, **kw)
    from spaq.io import resample

    x = resample(binaural_noise(seconds, 48000, **kw), 48000, fs)
    return x[..., :int(seconds * fs)]


def close(a, b, tol: float) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all((np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b)))))
