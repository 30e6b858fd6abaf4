"""The built-in demo pair: a deterministic third-order ambisonic scene and a low-passed copy."""
from __future__ import annotations

import numpy as np
import scipy.signal as sps

from .spatial.sh import sh_matrix

__all__ = ["demo_pair"]


def _tone_melody(n: int, fs: int, rng) -> np.ndarray:
    t = np.arange(n) / fs
    notes = np.array([220.0, 262.0, 294.0, 330.0, 294.0, 262.0])
    f0 = notes[np.minimum((t / (t[-1] / len(notes) + 1e-9)).astype(int), len(notes) - 1)]
    f0 = f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    ph = 2 * np.pi * np.cumsum(f0) / fs
    x = sum(k ** -1.1 * np.sin(k * ph + rng.uniform(0, 2 * np.pi)) for k in range(1, 24) if 220 * k < 16000)
    env = 0.6 + 0.4 * np.abs(np.sin(np.pi * t * len(notes) / t[-1]))
    return x * env


def _noise_bursts(n: int, fs: int, rng) -> np.ndarray:
    b, a = sps.butter(2, [300, 9000], btype="bandpass", fs=fs)
    x = sps.lfilter(b, a, rng.standard_normal(n))
    gate = (np.sin(2 * np.pi * 2.0 * np.arange(n) / fs) > 0.3).astype(float)
    return x * sps.lfilter([0.01], [1, -0.99], gate)


def demo_pair(seconds: float = 4.0, fs: int = 48000, order: int = 3):
    """-> (ref ``(16, T)``, deg ``(16, T)``, fs, description). Two plane waves (a harmonic
    melody at azimuth 30°, elevation 10°; noise bursts at -110°, 0°), W RMS -26 dBFS; the
    degraded signal is the scene low-passed at 4 kHz (8th-order Butterworth, zero phase)."""
    rng = np.random.default_rng(20261125)
    n = int(seconds * fs)
    s1 = _tone_melody(n, fs, rng)
    s2 = _noise_bursts(n, fs, rng)
    s1 /= np.sqrt(np.mean(s1 ** 2))
    s2 /= np.sqrt(np.mean(s2 ** 2)) * 2
    y = sh_matrix(order, [30.0, -110.0], [10.0, 0.0])  # (16, 2)
    ref = y @ np.stack([s1, s2])
    ref *= 10 ** (-26 / 20) / np.sqrt(np.mean(ref[0] ** 2))
    sos = sps.butter(8, 4000, fs=fs, output="sos")
    deg = sps.sosfiltfilt(sos, ref, axis=-1)
    return ref.astype(np.float32), deg.astype(np.float32), fs, "3rd-order ambisonic scene, 2 sources"
