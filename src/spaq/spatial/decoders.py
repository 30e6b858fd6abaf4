"""Ambisonics -> binaural decoders of the default HRTF, cached in memory and on disk.

One place for the decoder every metric uses, so the ear cues mean the same thing for
binaural and ambisonic input: MagLS from the default HRTF set (Neumann KU100), keyed by the
SOFA file's sha256, the order and the sample rate, written atomically into the spaq cache.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = ["hrtf_decoder", "hrtf_decoders", "effective_order", "pair_orders", "channel_energy", "by_order",
           "decode_binaural_effective",
           "ORDER_PRESENT_SHARE",
           "DEFAULT_DECODER"]

DEFAULT_DECODER = "MagLS from the default HRTF (KU100)"


@lru_cache(maxsize=8)
def _decoder_cached(order: int, sample_rate: int) -> np.ndarray:
    from ..cache import cached_array
    from .hrtf import default_hrtf_path, file_sha256

    def make():
        from .ambisonics import binaural_decoder
        from .hrtf import load_hrtf

        return binaural_decoder(load_hrtf("default", sample_rate=sample_rate), order, method="magls")

    key = f"decoders/magls_kr_{file_sha256(default_hrtf_path())[:16]}_o{order}_{sample_rate}"
    return cached_array(key, make, check=lambda d: d.ndim == 3 and d.shape[:2] == (2, (order + 1) ** 2))


def hrtf_decoder(order: int, sample_rate: int = 48000) -> torch.Tensor:
    """Ambisonics -> binaural MagLS decoder ``(2, (order+1)^2, taps)`` (float64) from the default HRTF."""
    return torch.from_numpy(_decoder_cached(int(order), int(sample_rate)))


#: an ambisonic order counts as present in a signal when its channels hold more than this share of
#: the signal's energy (-100 dB): channels a lower-order signal was zero-padded with hold none
ORDER_PRESENT_SHARE = 1e-10


def effective_order(channel_energy: torch.Tensor) -> torch.Tensor:
    """Per-channel energies ``(..., (N+1)^2)`` of ACN ambisonic signals -> ``(...,)`` int64: the
    highest order whose channels carry more than :data:`ORDER_PRESENT_SHARE` of the signal's
    energy (0 for silence). A third-order file that holds first-order content (orders 2 and 3
    zero) has effective order 1: first-order content is played with a first-order decoder, and the
    metrics decode it so (:func:`hrtf_decoders`)."""
    e = torch.as_tensor(channel_energy, dtype=torch.float64)
    c = e.shape[-1]
    n_max = int(round(c ** 0.5)) - 1
    if (n_max + 1) ** 2 != c:
        raise ValueError(f"expected (N+1)^2 ambisonic channels, got {c}")
    total = e.sum(dim=-1)
    out = torch.zeros(e.shape[:-1], dtype=torch.int64, device=e.device)
    for n in range(1, n_max + 1):
        present = e[..., n * n:(n + 1) ** 2].sum(dim=-1) > ORDER_PRESENT_SHARE * total
        out = torch.where(present, torch.full_like(out, n), out)
    return out


def channel_energy(x: torch.Tensor) -> torch.Tensor:
    """``(..., C, T)`` -> ``(..., C)`` energy of each channel (float64, no gradient: it only chooses
    decoders, :func:`effective_order`)."""
    return torch.linalg.vector_norm(x.detach(), dim=-1).to(torch.float64) ** 2  # one pass, no squared copy


def pair_orders(e_ref: torch.Tensor, e_deg: torch.Tensor) -> torch.Tensor:
    """The orders ``(..., 2)`` (reference, degraded) a pair is decoded at, from their channel
    energies ``(..., C)`` over the whole signals (:func:`channel_energy`): each signal's
    :func:`effective_order`, but an omnidirectional signal (order 0: W alone) compared with a signal
    of order >= 1 takes that signal's order. The one rule of every metric that decodes a pair.

    Lower-order content in a higher-order file is played with its own order's decoder (first-order
    content with a first-order decoder). W alone has no order of its own to be played at: it is what
    is left of the other signal's field (a downmix, the last step of an order truncation), so it
    goes through the decoder that field is heard with. Decoded with the order-0 decoder instead (the
    HRTFs' diffuse-field magnitude, a correction no playback applies), it sounded better than the
    same field with its directional channels at a quarter of their level (issue 19: the corpus's
    ``downmix`` ladders of third-order scenes; ``quality`` 13.0)."""
    r, d = effective_order(e_ref), effective_order(e_deg)
    return torch.stack([torch.where((r == 0) & (d > 0), d, r), torch.where((d == 0) & (r > 0), r, d)], dim=-1)


class _OrderDecoders(dict):
    """``{n: hrtf_decoder(n)}`` for ``n <= order``, each made (or read from the cache) when first
    asked for: a signal that fills every order never builds the lower orders' decoders."""

    def __init__(self, order: int, sample_rate: int, device):
        super().__init__()
        self.order, self.sample_rate, self.device = int(order), int(sample_rate), device

    def __missing__(self, n):
        if not 0 <= int(n) <= self.order:
            raise KeyError(n)
        d = hrtf_decoder(int(n), self.sample_rate).to(self.device)
        self[int(n)] = d
        return d


def hrtf_decoders(order: int, sample_rate: int = 48000, device=None) -> dict:
    """``{n: hrtf_decoder(n)}`` for every order ``n <= order`` (on ``device``; each built when first
    used): the decoders effective-order decoding chooses from (each signal decoded at its
    :func:`effective_order`)."""
    return _OrderDecoders(order, sample_rate, device)


def by_order(x: torch.Tensor, orders: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn(n, x_n)`` to the signals of each order: ``x (..., C, T)``, ``orders`` int of shape
    ``(...)``; ``x_n (K, (n+1)^2, T)`` holds the K signals of order ``n`` (their first channels)
    and ``fn`` returns ``(K, ...)``; the results are put back in the signals' places ->
    ``(..., ...)``. One order present (the usual case): a single call, no copies."""
    lead = x.shape[:-2]
    flat, o = x.reshape(-1, *x.shape[-2:]), orders.reshape(-1)
    present = sorted({int(v) for v in o.tolist()})
    if len(present) == 1:
        n = present[0]
        y = fn(n, flat[:, :(n + 1) ** 2])
        return y.reshape(*lead, *y.shape[1:])
    out = None
    for n in present:
        idx = torch.nonzero(o == n).view(-1)
        y = fn(n, flat[idx][:, :(n + 1) ** 2])
        if out is None:
            out = y.new_zeros((flat.shape[0],) + tuple(y.shape[1:]))
        elif y.shape[1:] != out.shape[1:]:
            raise ValueError("the decoders of effective-order decoding must have one tap length")
        out = out.index_put((idx,), y)
    return out.reshape(*lead, *out.shape[1:])


def decode_binaural_effective(x: torch.Tensor, sample_rate: int = 48000,
                              orders: torch.Tensor | None = None) -> torch.Tensor:
    """Ambisonics ACN/SN3D ``(B, C, T)`` -> binaural ``(B, 2, T')`` (:func:`spaq.dsp.mimo_fir_filter`'s
    length), each signal with the decoder of its :func:`effective_order` (float64), or of ``orders``
    ``(B,)`` when given (a pair's, :func:`pair_orders`): what the metrics that decode whole signals
    at once (``sqm``, the classic metrics) hear."""
    from ..dsp import mimo_fir_filter

    x = x.to(torch.float64)
    if orders is None:
        orders = effective_order(channel_energy(x))
    return by_order(x, orders, lambda n, xn: mimo_fir_filter(xn, hrtf_decoder(n, sample_rate).to(x.device)))
