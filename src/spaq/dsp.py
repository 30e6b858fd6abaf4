"""Small signal-processing helpers shared by every module (torch, any device).

Shapes follow ``[..., channels, time]``; every function says its contract.
"""
from __future__ import annotations

import math

import torch

__all__ = ["next_fast_len", "fft_convolve", "mimo_fir_filter"]


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT-friendly size)."""
    best = 1 << max(0, math.ceil(math.log2(max(n, 1))))
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            f = f35
            while f < n:
                f *= 2
            best = min(best, f)
            f35 *= 3
        f5 *= 5
    return best


def fft_convolve(x: torch.Tensor, h: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
    """Causal linear convolution along the last axis, truncated to ``n_out`` samples.

    x: ``(..., T)`` real or complex; h: broadcastable ``(..., L)`` real or complex.
    Returns ``(..., n_out)`` (default ``T``): ``y[t] = sum_k h[k] x[t-k]``, zero initial state.
    """
    t = x.shape[-1]
    n_out = t if n_out is None else n_out
    n = next_fast_len(t + h.shape[-1] - 1)
    if not x.is_complex() and not h.is_complex():
        y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(h, n=n), n=n)
    else:
        y = torch.fft.ifft(torch.fft.fft(x, n=n) * torch.fft.fft(h, n=n), n=n)
    return y[..., :n_out]


def mimo_fir_filter(x: torch.Tensor, fir: torch.Tensor) -> torch.Tensor:
    """Multichannel FIR matrix: ``x`` ``(..., C_in, T)``, ``fir`` ``(C_out, C_in, L)`` ->
    ``(..., C_out, T)`` with ``y_o = sum_i fir[o, i] * x_i`` (causal, truncated to T)."""
    t = x.shape[-1]
    n = next_fast_len(t + fir.shape[-1] - 1)
    xf = torch.fft.rfft(x, n=n)  # (..., C_in, F)
    hf = torch.fft.rfft(fir.to(x.dtype), n=n)  # (C_out, C_in, F)
    yf = torch.einsum("...if,oif->...of", xf, hf)
    return torch.fft.irfft(yf, n=n)[..., :t]
