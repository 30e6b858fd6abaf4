"""Band envelopes: magnitude, analytic (Hilbert) envelope and the 150 Hz envelope low-pass."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..dsp import fft_convolve

__all__ = ["analytic_signal", "first_order_lowpass_fir", "lowpass_envelope"]


def analytic_signal(x: torch.Tensor) -> torch.Tensor:
    """Analytic signal of a real ``(..., T)`` tensor by the circular FFT Hilbert transform
    (DC and Nyquist bins of the quadrature part zeroed, as in QASTAnet/eMoBi-Q).
    Returns complex ``(..., T)``; works for odd T too."""
    t = x.shape[-1]
    spec = torch.fft.rfft(x, dim=-1)
    spec = spec * (-1j)
    spec[..., 0] = 0
    quad = torch.fft.irfft(spec, n=t, dim=-1)
    return torch.complex(x, quad)


def first_order_lowpass_fir(cutoff_hz: float, sample_rate: float, tol: float = 1e-9) -> np.ndarray:
    """Impulse response of ``scipy.signal.butter(1, cutoff)`` truncated where it falls below
    ``tol`` of its first tap (float64)."""
    import scipy.signal as sps  # here: scipy.signal takes ~1 s to import

    b, a = sps.butter(1, 2 * cutoff_hz / sample_rate)
    pole = -a[1]
    n = int(math.ceil(math.log(tol) / math.log(pole))) + 2 if 0 < pole < 1 else 2
    imp = np.zeros(n)
    imp[0] = 1.0
    return sps.lfilter(b, a, imp)


def lowpass_envelope(env: torch.Tensor, fir: torch.Tensor) -> torch.Tensor:
    """Causal low-pass of ``(..., T)`` (real or complex) by ``fir`` ``(L,)``; zero initial state."""
    if env.is_complex():
        fir = fir.to(torch.complex128 if env.dtype == torch.complex128 else torch.complex64)
    else:
        fir = fir.to(env.dtype)
    return fft_convolve(env, fir)
