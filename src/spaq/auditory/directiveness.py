"""First-order directiveness of ambisonic signals (intensity / energy), per ERB band and frame.

Directiveness is 1 for a single plane wave and 0 for a diffuse field. Intensity and energy
are recursively smoothed per frequency (time constant 20 periods, capped above 3 kHz) as in
QASTAnet, then grouped in ERB bands.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .gammatone import erb_bandwidth

__all__ = ["smoothing_coefficients", "erb_grouping_matrix", "directiveness", "recursive_smooth"]


def smoothing_coefficients(n_fft: int, hop: int, sample_rate: float, cycles: float = 20.0,
                           limit_hz: float = 3000.0) -> np.ndarray:
    """Per-frequency recursive coefficients ``(n_fft//2+1,)``: tau = cycles / f, frame rate fs/hop,
    frequencies above ``limit_hz`` use the smallest coefficient found below it."""
    n_freq = n_fft // 2 + 1
    freq = np.linspace(0, sample_rate / 2, n_freq)
    freq[0] = freq[1]
    tau = cycles / freq
    alpha = np.exp(-1.0 / (tau * (sample_rate / hop)))
    alpha[freq > limit_hz] = np.min(alpha[freq <= limit_hz])
    return alpha


def erb_grouping_matrix(center_hz, n_fft: int, sample_rate: float, fmin: float = 315.0,
                        fmax: float = 12500.0) -> np.ndarray:
    """``(n_bands, n_fft//2+1)`` averaging matrix of STFT bins into ERB bands whose edges are
    built from fmin by adding half-ERBs of neighbouring centres (integer Hz, as QASTAnet)."""
    fc = np.asarray(center_hz, dtype=np.float64)
    edges = np.zeros(len(fc) + 1, dtype=np.float32)
    edges[0], edges[-1] = fmin, fmax
    for i in range(1, len(fc)):
        edges[i] = int(edges[i - 1] + erb_bandwidth(fc[i - 1]) / 2 + erb_bandwidth(fc[i]) / 2)
    freq = np.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=np.float32)
    m = np.zeros((len(fc), len(freq)), dtype=np.float32)
    for i in range(len(fc)):
        inside = (freq > edges[i]) & (freq < edges[i + 1])
        m[i] = inside / max(inside.sum(), 1)
    return m


def recursive_smooth(x: torch.Tensor, alpha: torch.Tensor, initial: torch.Tensor | None = None,
                     block: int = 32) -> torch.Tensor:
    """``y[t] = a y[t-1] + (1-a) x[t]`` along the last axis. x ``(..., F, T)``, alpha ``(F,)``.

    ``initial=None``: ``y[0] = 0`` (the first frame is dropped, as QASTAnet does);
    otherwise ``initial`` ``(..., F)`` is ``y[-1]`` (the state carried from a previous chunk).
    Computed block by block (``block`` frames at a time) with a lower-triangular matrix of
    the exponential kernel: direct sums of non-negative terms keep exact zeros zero (the
    official code turns 0/0 into NaN on silent frames; FFT round-off would not), vectorised
    over batch and frequency, differentiable."""
    t = x.shape[-1]
    a = alpha.to(device=x.device, dtype=torch.float64)
    k = min(block, t)
    idx = torch.arange(k, device=x.device)
    lag = (idx[:, None] - idx[None, :]).to(torch.float64)  # i - j
    la = torch.log(a)[:, None, None]
    w = torch.where(lag >= 0, (1 - a)[:, None, None] * torch.exp(lag.clamp(min=0) * la), torch.zeros((), dtype=torch.float64, device=x.device))
    carry_w = torch.exp((idx + 1).to(torch.float64)[None, :] * torch.log(a)[:, None])  # (F, k): a^(i+1)
    w = w.to(x.dtype)
    carry_w = carry_w.to(x.dtype)
    if initial is None:
        x = torch.cat([torch.zeros_like(x[..., :1]), x[..., 1:]], dim=-1)
        prev = torch.zeros_like(x[..., 0])
    else:
        prev = initial
    out = []
    for s0 in range(0, t, k):
        xb = x[..., s0:s0 + k]
        n = xb.shape[-1]
        yb = torch.einsum("fij,...fj->...fi", w[:, :n, :n], xb) + prev.unsqueeze(-1) * carry_w[:, :n]
        out.append(yb)
        prev = yb[..., -1]
    return torch.cat(out, dim=-1)


def directiveness(hoa: torch.Tensor, window: torch.Tensor, alpha: torch.Tensor,
                  grouping: torch.Tensor, eps: float = 0.0, state: torch.Tensor | None = None,
                  return_state: bool = False):
    """Directiveness per ERB band and frame.

    hoa: ``(..., C>=4, T)`` ACN/SN3D (only W, Y, Z, X are used); window ``(L,)`` (hop = L,
    no centring); alpha ``(L//2+1,)``; grouping ``(n_bands, L//2+1)``.
    Returns ``(..., n_bands, T // L)`` in [1e-3, 1-1e-3] (NaN on frames with no energy).
    ``state``/``return_state``: the smoothed (intensity, energy) ``(..., 2, L//2+1)`` of the last
    frame, to continue on the next chunk of a long signal with identical results.
    """
    win_len = window.shape[0]
    nf = hoa.shape[-1] // win_len
    # hop = window length, no centring: the STFT frames are a reshape of the signal
    frames = hoa[..., :4, : nf * win_len].unflatten(-1, (nf, win_len)) * window.to(hoa.dtype)
    spec = torch.fft.rfft(frames, dim=-1).transpose(-1, -2) / win_len  # (..., 4, F, nf)
    w = spec[..., 0, :, :]
    xyz = spec[..., 1:4, :, :] * math.sqrt(3 / 2)
    intensity = torch.real(w.unsqueeze(-3).conj() * xyz)
    i2 = torch.sum(intensity ** 2, dim=-3) + eps
    i_norm = torch.where(i2 > 0, torch.sqrt(torch.where(i2 > 0, i2, torch.ones_like(i2))), torch.zeros_like(i2))
    energy = (w.real ** 2 + w.imag ** 2 + torch.sum(xyz.real ** 2 + xyz.imag ** 2, dim=-3)) / 2
    sm = recursive_smooth(torch.stack((i_norm, energy), dim=-3), alpha.to(hoa.device), initial=state)
    e_s = sm[..., 1, :, :] + eps
    d = sm[..., 0, :, :] / torch.where(e_s > 0, e_s, torch.ones_like(e_s))
    d = torch.clamp(d, 1e-3, 1 - 1e-3)
    grouping = grouping.to(d.dtype)
    out = torch.einsum("kf,...fl->...kl", grouping, d)
    # bins without energy are 0/0 in the official code: the whole ERB band becomes NaN
    empty = torch.einsum("kf,...fl->...kl", (grouping > 0).to(d.dtype), (e_s <= 0).to(d.dtype)) > 0
    out = torch.where(empty, torch.full_like(out, float("nan")), out)
    if return_state:
        return out, sm[..., -1]
    return out
