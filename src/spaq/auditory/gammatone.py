"""Complex 4th-order gammatone filterbank (Hohmann 2002), the one auditory filterbank of spaq.

Band centres are spaced 1 ERB apart around a base frequency (QASTAnet / eMoBi-Q:
315-12500 Hz around 500 Hz -> 29 bands). The complex output's magnitude is the band
envelope and its real part the band-limited signal.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..dsp import fft_convolve

__all__ = [
    "erb_bandwidth",
    "erb_center_frequencies",
    "hohmann_coefficients",
    "gammatone_fir",
    "GammatoneFilterbank",
]


def erb_bandwidth(f_hz):
    """Glasberg & Moore (1990) ERB in Hz of a centre frequency."""
    return 24.7 * (4.37 * np.asarray(f_hz, dtype=np.float64) / 1000.0 + 1.0)


def erb_center_frequencies(fmin: float = 315.0, fmax: float = 12500.0, fbase: float = 500.0,
                           filters_per_erb: float = 1.0) -> np.ndarray:
    """Centre frequencies (Hz) on the ERB-number scale, one at ``fbase``, spaced
    ``1/filters_per_erb`` ERB, within [fmin, fmax] (29 bands for the defaults)."""
    step = 1.0 / filters_per_erb
    lim = 9.2645 * np.log1p(np.array([fmin, fmax, fbase], dtype=np.float64) * 0.00437)
    n_low = int((lim[2] - lim[0]) // step)
    n_high = int((lim[1] - lim[2]) // step)
    pts = np.arange(-n_low, n_high + 1) * step + lim[2]
    return (np.exp(pts / 9.2645) - 1.0) / 0.00437


def hohmann_coefficients(fc_hz, sample_rate: float):
    """(a1 complex pole, b0 normalisation) of each band's 4 cascaded one-pole filters."""
    fc = np.asarray(fc_hz, dtype=np.float64)
    erb_aud = 24.7 + fc / 9.265
    a_gamma = math.pi * 720 * 2 ** (-6) / 36
    lam = np.exp(-2 * math.pi * (erb_aud / a_gamma) / sample_rate)
    coef = lam * np.exp(1j * 2 * math.pi * fc / sample_rate)
    norm = 2 * (1 - np.abs(coef)) ** 4
    return coef, norm


def gammatone_fir(fc_hz, sample_rate: float, n_taps: int = 2048) -> np.ndarray:
    """Impulse responses ``(n_bands, n_taps)`` complex128 of the Hohmann gammatone bands:
    h[n] = b0 * C(n+3, 3) * a1^n (closed form of four cascaded one-pole filters)."""
    coef, norm = hohmann_coefficients(fc_hz, sample_rate)
    n = np.arange(n_taps, dtype=np.float64)
    binom = (n + 1) * (n + 2) * (n + 3) / 6.0
    # a1^n computed as exp(n log a1) for accuracy over long responses
    return norm[:, None] * binom[None, :] * np.exp(n[None, :] * np.log(coef)[:, None])


class GammatoneFilterbank(nn.Module):
    """FIR-truncated Hohmann gammatone filterbank, applied by FFT convolution.

    ``forward(x)``: ``(..., T)`` real -> ``(..., n_bands, T)`` complex (causal, zero state).
    Differentiable; runs on any device. Buffers ``fir_real``/``fir_imag`` ``(n_bands, L)``
    may be overwritten by a checkpoint (QASTAnet ships them).
    """

    def __init__(self, sample_rate: int = 48000, fmin: float = 315.0, fmax: float = 12500.0,
                 fbase: float = 500.0, n_taps: int = 2048):
        super().__init__()
        self.sample_rate = int(sample_rate)
        fc = erb_center_frequencies(fmin, fmax, fbase)
        fc = fc[fc < sample_rate / 2]
        h = gammatone_fir(fc, sample_rate, n_taps)
        self.register_buffer("center_frequencies_hz", torch.from_numpy(fc))
        self.register_buffer("fir_real", torch.from_numpy(h.real.astype(np.float32)))
        self.register_buffer("fir_imag", torch.from_numpy(h.imag.astype(np.float32)))

    @property
    def n_bands(self) -> int:
        return self.fir_real.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.complex(self.fir_real, self.fir_imag).to(
            torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        return fft_convolve(x.unsqueeze(-2), h)
