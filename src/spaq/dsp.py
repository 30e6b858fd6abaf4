"""Small signal-processing helpers shared by every module (torch, any device).

Shapes follow ``[..., channels, time]``; every function says its contract.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["next_fast_len", "fft_convolve", "mimo_fir_filter", "wpe_stft", "wpe_dereverberate", "wpe_min_samples", "wpe_max_taps",
           "resample_poly", "low_band_coherence", "LowBandCoherence"]


@functools.lru_cache(maxsize=4096)
def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT-friendly size; cached: the front-end asks for the same lengths per band)."""
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


def wpe_min_samples(channels: int, n_fft: int = 1024, hop: int = 256, taps: int = 20, delay: int = 2) -> int:
    """The shortest signal :func:`wpe_dereverberate` takes: twice as many frames past the filter's reach
    as the filter has coefficients per bin (fewer would fit the signal itself, not its reverberation)."""
    return (2 * channels * taps + delay + taps) * hop + n_fft


def wpe_max_taps(n_samples: int, channels: int, n_fft: int = 1024, hop: int = 256, delay: int = 2) -> int:
    """The most taps :func:`wpe_min_samples` allows a signal of ``n_samples`` (its inverse; may be <= 0)."""
    return ((n_samples - n_fft) // hop - delay) // (2 * channels + 1)


#: bytes of the block transforms :func:`wpe_stft` holds at once while it applies its filter
WPE_APPLY_BYTES = 32 << 20


def wpe_stft(Y: torch.Tensor, taps: int = 20, delay: int = 2, iterations: int = 1, max_frames: int | None = None,
             eps: float = 1e-10) -> torch.Tensor:
    """Weighted prediction error on an STFT ``Y (F, C, N)`` complex (bins, channels, frames) -> the
    dereverberated STFT, same shape: in every bin, each frame minus its prediction from the ``taps``
    frames that start ``delay`` frames earlier, in all channels, by the multichannel linear filter that
    minimises the prediction error weighted by the inverse of the current estimate's power
    (``iterations`` passes; the first weighs by the observation's power). The filter's statistics use
    at most ``max_frames`` frames spread evenly over the signal (None: all); it is applied to every
    frame. The algorithm of ``nara_wpe.wpe.wpe`` (MIT; tests/test_dsp_wpe.py compares them), batched
    over bins, with a small diagonal loading so that silent bins stay solvable."""
    F, C, N = Y.shape
    K, lag = C * taps, delay + taps - 1
    L = N + lag
    pad = torch.nn.functional.pad(Y, (lag, 0)).reshape(F, C * L)  # pad[:, c L + t + lag] = Y[:, c, t]
    idx = torch.arange(N, device=Y.device)
    if max_frames is not None and N > max_frames:
        idx = torch.linspace(0, N - 1, int(max_frames), device=Y.device).round().long()
    n = len(idx)
    # the observation vectors of the frames idx, row by row: Yt[:, i, c taps + j] = Y[:, c, t_i - lag + j], tap
    # j = taps - 1 - k for the frame k frames before t_i - delay (one gather; each row's runs contiguous)
    flat = (torch.arange(C, device=Y.device)[None, :, None] * L + idx[:, None, None]
            + torch.arange(taps, device=Y.device)[None, None, :]).reshape(-1)
    Yt = pad.index_select(1, flat).reshape(F, n, K)
    Q = torch.view_as_real(Yt).reshape(F, n, 2 * K)  # the same as real columns (c taps + j, re / im)
    Ys = Y[:, :, idx]  # (F, C, n)
    X = Ys
    eye = torch.eye(K, device=Y.device, dtype=Y.dtype)
    for it in range(int(iterations)):
        lam = (X.real ** 2 + X.imag ** 2).mean(1).clamp_min(eps)  # (F, n): the desired signal's power
        Qw = Q * lam.reciprocal()[:, :, None]
        # R = sum_t y y^H / lam as one real product (a transposed operand costs no copy, a conjugated one does)
        M = (Qw.mT @ Q).view(F, K, 2, K, 2)
        R = torch.complex(M[:, :, 0, :, 0] + M[:, :, 1, :, 1], M[:, :, 1, :, 0] - M[:, :, 0, :, 1])  # (F, K, K)
        P = torch.view_as_complex(Qw.view(F, n, K, 2)).mT @ Ys.conj().mT  # (F, K, C)
        diag = torch.diagonal(R, dim1=1, dim2=2).real.mean(-1)  # (F,): diagonal loading, relative per bin and
        load = 1e-6 * diag + 1e-9 * diag.max().clamp_min(eps)  # overall
        G = torch.linalg.solve(R + load[:, None, None] * eye, P)  # (F, K, C)
        if it + 1 < int(iterations):
            X = Ys - (Yt @ G.conj()).mT
    # the prediction of every frame: each bin's filter (taps frames from ``delay`` back) convolved along
    # the frames, by FFT in overlapping blocks of B frames (overlap-save: the filter's transform is B long,
    # not the signal's length; one product per output and input channel)
    h = torch.zeros(F, C, C, lag + 1, dtype=Y.dtype, device=Y.device)
    h[..., delay:] = G.conj().mT.reshape(F, C, C, taps).flip(-1)  # (F, C_out, C_in, lag + 1)
    B = 1 << max(5, math.ceil(math.log2(4 * (lag + 1))))
    step = B - lag
    nb = -(-N // step)
    blocks = torch.nn.functional.pad(Y, (lag, nb * step - N)).unfold(-1, B, step)  # (F, C, nb, B), a view
    Hf = torch.fft.fft(h, n=B)  # (F, C, C, B)
    out = Y.clone()
    # a group of blocks at a time: the transforms and products of every block at once took about five times the
    # STFT's memory (a long recording's); each block's own arithmetic is the same
    per = max(1, (WPE_APPLY_BYTES // (16 * F * C * B)))
    for b0 in range(0, nb, per):
        b1 = min(nb, b0 + per)
        Yf = torch.fft.fft(blocks[:, :, b0:b1], dim=-1)  # (F, C, n, B)
        pred = sum(Hf[:, :, i, None] * Yf[:, None, i] for i in range(C))  # (F, C_out, n, B); faster than an einsum
        t0, t1 = b0 * step, min(N, b1 * step)
        out[..., t0:t1] -= torch.fft.ifft(pred, dim=-1)[..., lag:].reshape(F, C, (b1 - b0) * step)[..., :t1 - t0]
    return out


def wpe_dereverberate(x: torch.Tensor, n_fft: int = 1024, hop: int = 256, taps: int = 20, delay: int = 2,
                      iterations: int = 1, max_frames: int | None = 400, band_hz: tuple | None = None,
                      sample_rate: int | None = None, eps: float = 1e-10) -> torch.Tensor:
    """Weighted prediction error dereverberation (Nakatani et al. 2010; Yoshioka & Nakatani 2012).

    ``x (C, T)`` real -> ``(C, T)``, same dtype: :func:`wpe_stft` on the STFT of ``x`` (Hann, ``n_fft`` /
    ``hop``, computed in float32). What arrives within ``delay`` frames of a sound (the direct sound and
    the first reflections) is kept, and the channels' relation (the interaural cues) with it, since one
    filter serves every channel; later reverberation, as far as ``taps`` frames reach, is removed.
    ``band_hz (lo, hi)`` with ``sample_rate``: only the bins in that band are dereverberated (the others
    pass through), for a consumer that reads no other frequencies. Raises ValueError below
    :func:`wpe_min_samples`.
    """
    if x.dim() != 2:
        raise ValueError(f"wpe_dereverberate needs (C, T), got {tuple(x.shape)}")
    if x.shape[-1] < wpe_min_samples(x.shape[0], n_fft, hop, taps, delay):
        raise ValueError(f"wpe_dereverberate: {x.shape[-1]} samples are too few for {taps} taps of "
                         f"{x.shape[0]} channels (at least wpe_min_samples)")
    win = torch.hann_window(n_fft, dtype=torch.float32, device=x.device)
    full = torch.stft(x.to(torch.float32), n_fft, hop, window=win, return_complex=True).permute(1, 0, 2)  # (F, C, N)
    band = slice(None)
    if band_hz is not None:
        if sample_rate is None:
            raise ValueError("wpe_dereverberate: band_hz needs sample_rate")
        lo, hi = (int(round(f * n_fft / sample_rate)) for f in band_hz)
        band = slice(max(lo, 0), min(hi, n_fft // 2) + 1)
    # contiguous bins first: the filter's gathers and products on the permuted view cost ~40 % more
    full[band] = wpe_stft(full[band].contiguous(), taps, delay, iterations, max_frames, eps)
    y = torch.istft(full.permute(1, 0, 2), n_fft, hop, window=win, length=x.shape[-1])
    return y.to(x.dtype)


def resample_poly(x: torch.Tensor, sr_from: int, sr_to: int) -> torch.Tensor:
    """Differentiable polyphase resampling of ``x (..., T)`` (real, float) from ``sr_from`` to ``sr_to`` Hz:
    the arithmetic of :func:`scipy.signal.resample_poly` with its default filter (a Kaiser-windowed sinc,
    beta 5, 10 zero crossings per side at the higher rate; output ``ceil(T * sr_to / sr_from)`` samples), in
    torch, so gradients flow through it (for losses fed at another rate). :func:`spaq.io.resample` is the
    numpy path the metrics' inputs take (``tests/metrics/test_sqm.py::test_resample_poly_is_scipys`` checks this
    one against scipy)."""
    from scipy.signal import firwin

    up, down = int(sr_to), int(sr_from)
    if up <= 0 or down <= 0:
        raise ValueError(f"resample_poly: rates must be positive, got {sr_from} -> {sr_to}")
    g = math.gcd(up, down)
    up, down = up // g, down // g
    if up == down:
        return x
    n_in = x.shape[-1]
    n_out = -(-n_in * up // down)
    max_rate = max(up, down)
    half = 10 * max_rate
    h = firwin(2 * half + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    pre = down - half % down
    pre_remove = (half + pre) // down
    # taps appended at the end until the output reaches n_out samples past those removed (scipy's loop)
    post = 0
    while ((n_in - 1) * up + len(h) + pre + post - 1) // down + 1 < n_out + pre_remove:
        post += 1
    h = torch.as_tensor(np.concatenate([np.zeros(pre), h, np.zeros(post)]), dtype=x.dtype, device=x.device)
    zeros = torch.zeros_like(x)
    xu = torch.stack([x] + [zeros] * (up - 1), dim=-1).reshape(*x.shape[:-1], n_in * up)  # x0 0 .. 0 x1 0 ..
    full = fft_convolve(xu, h, n_out=n_in * up + h.shape[-1] - 1)
    return full[..., ::down][..., pre_remove:pre_remove + n_out]


@functools.lru_cache(maxsize=8)
def _band_dft(n: int, sample_rate: int, lo_hz: float, hi_hz: float):
    """``(hann window (n,) float32, DFT columns (n, 2 bins) float32 of the bins in [lo_hz, hi_hz]: their real
    parts, then their imaginary parts; or None)``. Real, so that the product with real frames is one float32
    matrix product (numpy's float32 @ complex64 takes a loop about 200x slower than BLAS)."""
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    k = np.flatnonzero((f >= lo_hz) & (f <= hi_hz))
    if not len(k):
        return np.hanning(n).astype(np.float32), None
    e = np.exp(-2j * np.pi * np.outer(np.arange(n), k) / n)
    return np.hanning(n).astype(np.float32), np.ascontiguousarray(np.concatenate([e.real, e.imag], 1), np.float32)


def _band_terms(a: np.ndarray, starts: np.ndarray, n: int, win: np.ndarray, dft: np.ndarray) -> tuple:
    """Per segment ``a[:, s:s + n]`` (``s`` in ``starts``) of ``a (2, T)``, Hann-windowed: ``(sxx, syy, sxy,
    total)``, the two channels' band powers ``(K, bins)``, their cross power (complex) and each frame pair's
    total power ``(K,)`` by Parseval (the DFT's sum of |X|^2 over all n bins is n times the frames' energy).
    The band's few DFT bins come as one matrix product (a whole FFT per segment would compute ~100x more bins)."""
    # (2, K, n): only these are read, slice by slice (a fancy index over a transposed file read is 3-5x slower)
    frames = np.stack([a[:, int(s0):int(s0) + n].astype(np.float32) for s0 in starts], axis=1) * win
    Y = (frames @ dft).astype(np.float64)  # (2, K, 2 bins): real parts, imaginary parts
    b = dft.shape[1] // 2
    X = Y[..., :b] + 1j * Y[..., b:]  # (2, K, bins)
    total = n * np.einsum("ckn,ckn->k", frames, frames, dtype=np.float64)
    p = X.real ** 2 + X.imag ** 2
    return p[0], p[1], X[0] * np.conj(X[1]), total


def _band_sums(a: np.ndarray, starts: np.ndarray, n: int, win: np.ndarray, dft: np.ndarray) -> tuple:
    """:func:`_band_terms` summed over the segments: ``(sxx, syy, sxy)`` per bin and the total power."""
    sxx, syy, sxy, total = _band_terms(a, starts, n, win, dft)
    return sxx.sum(0), syy.sum(0), sxy.sum(0), float(total.sum())


def _band_coherence(sxx, syy, sxy, total: float) -> float | None:
    """The power-weighted mean magnitude-squared coherence of :func:`_band_sums`' sums (None: the band
    holds no power, below 1e-8 of the frames')."""
    if total <= 0.0 or float(2.0 * (sxx.sum() + syy.sum())) <= 1e-8 * total:
        return None
    w = np.sqrt(sxx * syy)
    msc = np.abs(sxy) ** 2 / np.maximum(sxx * syy, 1e-300)
    return float((msc * w).sum() / max(float(w.sum()), 1e-300))


def low_band_coherence(x, sample_rate: int, band_hz: tuple = (50.0, 250.0), segments: int = 32,
                       segment_s: float = 2048 / 48000, min_segments: int = 16) -> float | None:
    """The long-term magnitude-squared coherence of the two channels of ``x (2, T)`` (numpy or torch, real)
    in ``band_hz``, per frequency bin over up to ``segments`` Hann-windowed segments of ``segment_s``
    (2048 samples at 48 kHz) spread over the signal, then averaged over the band's bins weighted by their
    geometric-mean power. None when it cannot be read: fewer than ``min_segments`` half-overlapping
    segments fit (the estimate's bias is about 1 / segments: 0.15 with 7 segments of independent noise), or
    the band holds no power (below 1e-8 of the signal's). :class:`LowBandCoherence` reads the same from a
    signal given block by block.

    Two ears are coherent at these frequencies whatever the sound field, because they are 15-25 cm apart:
    one source anywhere reads >= 0.99, rooms and diffuse noise 0.39-0.84 on the KU100, SONICOM and KEMAR
    heads; two independent signals read about 1 / segments (0.02-0.04 for 1 s or more). So a value near 0 says
    that a 2-channel signal is not a binaural one (``spaq.localize``'s warning)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 2 or a.shape[0] != 2:
        raise ValueError(f"low_band_coherence takes (2, T), got {tuple(a.shape)}")
    n = next_fast_len(max(16, int(round(segment_s * int(sample_rate)))))
    T = a.shape[-1]
    if T < n or (T - n) // (n // 2) + 1 < min_segments:
        return None
    starts = np.linspace(0, T - n, min(int(segments), (T - n) // (n // 2) + 1)).astype(np.int64)
    win, dft = _band_dft(n, int(sample_rate), float(band_hz[0]), float(band_hz[1]))
    if dft is None:
        return None
    return _band_coherence(*_band_sums(a, starts, n, win, dft))


class LowBandCoherence:
    """:func:`low_band_coherence` of a 2-channel signal given block by block (a file streamed in one pass):
    :meth:`add` each block ``(2, n)`` in order, :meth:`value` at the end. Its half-overlapping segments are
    kept one in ``stride`` (the stride doubles whenever more than ``segments`` would be held, so that they
    stay spread evenly over everything read, whatever its length); a
    segment may straddle two blocks. The same arithmetic as the whole-signal function (:func:`_band_sums`,
    :func:`_band_coherence`), on a different but equally spread choice of segments (``segments / 2`` to
    ``segments`` of them)."""

    def __init__(self, sample_rate: int, band_hz: tuple = (50.0, 250.0), segments: int = 32,
                 segment_s: float = 2048 / 48000, min_segments: int = 16):
        self.n = next_fast_len(max(16, int(round(segment_s * int(sample_rate)))))
        self.hop = self.n // 2
        self.win, self.dft = _band_dft(self.n, int(sample_rate), float(band_hz[0]), float(band_hz[1]))
        self.segments, self.min_segments = int(segments), int(min_segments)
        self.stride = 1          # every stride-th half-overlapping segment is kept
        self.count = 0           # half-overlapping segments seen so far
        self.held: list = []     # (index, (sxx, syy, sxy, total)) of the kept ones
        self.tail = np.zeros((2, 0), np.float32)  # samples not yet in a complete segment
        self.offset = 0          # the signal position of tail[:, 0]

    def add(self, block) -> None:
        b = np.asarray(block)
        if b.ndim != 2 or b.shape[0] != 2 or b.shape[1] == 0 or self.dft is None:
            return
        a = b if self.tail.shape[1] == 0 else np.concatenate([self.tail, b.astype(self.tail.dtype, copy=False)], axis=1)
        k0 = -(-self.offset // self.hop)  # the first segment that starts within a
        k1 = (self.offset + a.shape[1] - self.n) // self.hop  # the last that ends within a
        if k1 >= k0:
            ks = np.arange(k0, k1 + 1)
            # thin before computing: a long block (a whole signal in memory) adds at most what is kept
            while len(self.held) + int(np.count_nonzero(ks % self.stride == 0)) > self.segments:
                self.stride *= 2
                self.held = [h for h in self.held if h[0] % self.stride == 0]
            kept = ks[ks % self.stride == 0]
            if len(kept):
                terms = _band_terms(a, kept * self.hop - self.offset, self.n, self.win, self.dft)
                self.held += [(int(k), tuple(t[i] for t in terms)) for i, k in enumerate(kept)]
            self.count = int(k1) + 1
        keep_from = max(0, self.count * self.hop - self.offset)
        self.tail = a[:, keep_from:].astype(np.float32)  # fewer than n samples: a copy
        self.offset += keep_from

    def value(self) -> float | None:
        """The coherence of what was added (None: fewer than ``min_segments`` segments, or no power in the band)."""
        if self.dft is None or self.count < self.min_segments or not self.held:
            return None
        sxx, syy, sxy, total = (np.stack([h[1][j] for h in self.held]).sum(0) for j in range(4))
        return _band_coherence(sxx, syy, sxy, float(total))
