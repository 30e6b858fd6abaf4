"""Render mono sources to binaural signals by HRIR convolution (anechoic), and source
trajectories. (Ambisonic plane-wave encoding is :func:`spaq.spatial.ambisonics.encode`.)

Shapes: a source is ``(T,)``; directions are scalars (static) or ``(T,)`` arrays
(moving source, degrees); binaural output ``(2, T)``. Output length equals input length
(the HRIR tail is cut).
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve, oaconvolve

__all__ = ["render_binaural", "trajectory"]


def trajectory(az0_deg: float, el0_deg: float, n_samples: int, sample_rate: int,
               azimuth_speed_deg_s: float = 0.0, elevation_speed_deg_s: float = 0.0,
               elevation_limits=(-89.0, 89.0)):
    """Per-sample (azimuth_deg, elevation_deg), each ``(T,)``, of a source moving at
    constant angular speeds; elevation is reflected at ``elevation_limits``."""
    t = np.arange(n_samples) / sample_rate
    az = az0_deg + azimuth_speed_deg_s * t
    el = el0_deg + elevation_speed_deg_s * t
    lo, hi = elevation_limits
    span = hi - lo
    if span > 0 and elevation_speed_deg_s != 0.0:
        p = np.mod(el - lo, 2 * span)
        el = lo + np.where(p > span, 2 * span - p, p)
    az = np.mod(az + 180.0, 360.0) - 180.0
    return az, el


def render_binaural(signal, azimuth_deg, elevation_deg, hrtf, method: str = "interpolated",
                    block: int = 1024) -> np.ndarray:
    """Binaural rendering of a mono ``signal (T,)`` by HRIR convolution -> ``(2, T)``.

    Static directions (scalars) use one HRIR. Moving directions (``(T,)`` arrays):
    Hann-windowed blocks at 50 % overlap (``block`` samples), each convolved with the
    HRIR of its centre direction, overlap-added (the windows sum to one).
    The HRTF must be at the signal's sample rate (see ``HRTFSet.resampled``).
    """
    s = np.asarray(signal, dtype=np.float64)
    T = s.shape[-1]
    az = np.asarray(azimuth_deg, dtype=np.float64)
    el = np.asarray(elevation_deg, dtype=np.float64)
    if az.ndim == 0 and el.ndim == 0:
        h = hrtf.lookup(az, el, method)  # (2, taps)
        return oaconvolve(s[None, :], h, axes=-1)[:, :T]
    az, el = np.broadcast_to(az, (T,)), np.broadcast_to(el, (T,))
    hop = block // 2
    n_blocks = int(np.ceil(T / hop)) + 1
    pad = np.zeros(n_blocks * hop + block)
    pad[hop:hop + T] = s  # block b covers padded [b*hop, b*hop+block)
    win = np.hanning(block + 1)[:-1]  # periodic Hann: sums to 1 at 50 % overlap
    idx = np.arange(n_blocks)[:, None] * hop + np.arange(block)[None, :]
    frames = pad[idx] * win  # (B, block)
    centre = np.clip(np.arange(n_blocks) * hop, 0, T - 1)  # block centre in signal time
    h = hrtf.lookup(az[centre], el[centre], method)  # (B, 2, taps)
    y = fftconvolve(frames[:, None, :], h, axes=-1)  # (B, 2, block+taps-1)
    L = y.shape[-1]
    out = np.zeros((2, n_blocks * hop + L))
    for b in range(n_blocks):  # overlap-add: B ~ T/hop additions of short blocks
        out[:, b * hop:b * hop + L] += y[b]
    return out[:, hop:hop + T]
