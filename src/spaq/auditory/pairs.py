"""Reference and degraded through the shared auditory front-end, side by side.

Pure functions on tensors (differentiable): the ears of a pair (ambisonics decoded to
binaural with an FIR decoder, block by block), their binaural cues, and the per-chunk core
that the streaming wrapper (:func:`spaq.auditory.streaming.run_chunked`) runs over long
pairs.
"""
from __future__ import annotations

from functools import partial

import torch

from ..spatial.decoders import by_order, channel_energy, pair_orders
from .frontend import AuditoryFrontEnd
from .streaming import SegmentReader, run_chunked

__all__ = ["decode_blocks", "ear_spectrum", "binaural_cue_pair", "paired_cues_chunk", "paired_cues",
           "paired_cues_streamed"]


def decode_blocks(x: torch.Tensor, decoder: torch.Tensor, frontend: AuditoryFrontEnd,
                  n_fft: int = 16384, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Ambisonics ``(..., C, T)`` -> binaural ``(..., 2, T + L - 1)`` (the full linear convolution
    with the FIR decoder ``(2, C, L)``), by overlap-add over blocks of ``n_fft - L + 1`` samples:
    memory stays a few blocks whatever T; the decoder's spectra at ``n_fft`` are cached.
    ``dtype``: the real dtype to compute and return in (default ``x``'s; blocks are converted
    one at a time)."""
    t, taps = x.shape[-1], decoder.shape[-1]
    dtype = dtype or x.dtype
    block = n_fft - taps + 1
    dec = frontend.decoder_spectrum(decoder, n_fft)  # (2, C, n_fft//2+1)
    out = x.new_zeros(*x.shape[:-2], 2, t + taps - 1, dtype=dtype)
    for b0 in range(0, t, block):
        seg = torch.fft.rfft(x[..., b0:b0 + block].to(dtype), n=n_fft, dim=-1)  # (..., C, F)
        acc = seg[..., :1, :] * dec[:, 0, :]
        for ch in range(1, x.shape[-2]):
            acc.addcmul_(seg[..., ch:ch + 1, :], dec[:, ch, :])
        y = torch.fft.irfft(acc, n=n_fft, dim=-1)
        stop = min(b0 + n_fft, out.shape[-1])
        out[..., b0:stop] += y[..., :stop - b0]
    return out


def ear_spectrum(x: torch.Tensor, frontend: AuditoryFrontEnd, decoder, n_min: int = 0,
                 orders: torch.Tensor | None = None) -> torch.Tensor:
    """``x (..., C, T)`` -> half spectrum of the ears ``(..., 2, n//2+1)``, ``n`` =
    ``frontend.spectrum_length`` (even), in ``frontend.spectrum_dtype`` (float64 in exact mode:
    weak bands need it); ambisonics decoded with ``decoder (2, C_dec, L)`` block by block in
    the time domain (:func:`decode_blocks`, in the same dtype), then one FFT per ear. Orders
    below the decoder's use its first C columns; higher orders are truncated. ``n_min``:
    compute the spectrum at the length a signal of ``n_min`` samples would get (chunks of a
    long signal then share one length, and the front-end's per-length tables).

    Effective-order decoding: ``decoder`` a dict ``{order: (2, (order+1)^2, L)}``
    (:func:`spaq.spatial.decoders.hrtf_decoders`, one tap length) and ``orders`` an int tensor of
    ``x``'s leading shape ``(...)``: each signal is decoded with the decoder of its own order
    (:func:`spaq.spatial.decoders.effective_order`), as lower-order content is played."""
    if isinstance(decoder, dict):
        if orders is None:
            raise ValueError("effective-order decoding needs the orders of the signals")
        return by_order(x, orders, lambda n, xn: ear_spectrum(xn, frontend, decoder[n], n_min))
    t = x.shape[-1]
    dt = frontend.spectrum_dtype
    if decoder is None:
        n = frontend.spectrum_length(max(t, n_min))
        half = torch.fft.rfft(x.to(dt), n=n, dim=-1)
    else:
        c = min(x.shape[-2], decoder.shape[1])
        n = frontend.spectrum_length(max(t, n_min), extra=decoder.shape[-1])
        ears = decode_blocks(x[..., :c, :], decoder[:, :c], frontend, dtype=dt)
        half = torch.fft.rfft(ears, n=n, dim=-1)
        del ears
    return half


def reader_orders(reader: SegmentReader, step: int) -> torch.Tensor:
    """:func:`pair_orders` of a pair read in blocks of ``step`` samples (the whole signals, never
    held at once): a chunked metric decodes every chunk at the order of the whole signal."""
    er = ed = 0
    for a in range(0, reader.n_samples, max(1, int(step))):
        r, d = reader.read(a, min(reader.n_samples, a + step))
        er, ed = er + channel_energy(r), ed + channel_energy(d)
    return pair_orders(er, ed)


def binaural_cue_pair(ref: torch.Tensor, deg: torch.Tensor, frontend: AuditoryFrontEnd,
                      decoder, n_min: int = 0, orders: torch.Tensor | None = None) -> dict:
    """Binaural cues of the reference and degraded signals ``(B, C, T)``: decoded to binaural
    with ``decoder`` ``(2, C_dec, L)`` when given (ambisonics), else taken as binaural; with a
    dict of decoders by order and ``orders (B, 2)``, each signal at its own order
    (:func:`ear_spectrum`). Returns dict of ``(B, 2, F, nf)`` (index 0 reference, 1 degraded)."""
    # one signal at a time: no stacked copy of the multichannel input, half the band buffers
    cues = [frontend.binaural_from_spectrum(ear_spectrum(x, frontend, decoder, n_min,
                                                         None if orders is None else orders[:, i]), x.shape[-1])
            for i, x in enumerate((ref, deg))]
    return {k: torch.stack([cues[0][k], cues[1][k]], dim=1) for k in cues[0]}


def paired_cues_chunk(ref: torch.Tensor, deg: torch.Tensor, keep: tuple, n_min: int, state, *,
                      frontend: AuditoryFrontEnd, decoder, with_directiveness: bool,
                      orders: torch.Tensor | None = None):
    """The core on one chunk ``(B, C, n)``: cues of frames ``keep = (k0, k1)`` -> ``(dict of
    (B, 2, F, k1 - k0), state)``; ``state`` carries the directiveness smoothing of reference
    and degraded from one chunk to the next (None at the start)."""
    k0, k1 = keep
    cues = binaural_cue_pair(ref, deg, frontend, decoder, n_min=n_min, orders=orders)
    cues = {k: v[..., k0:k1] for k, v in cues.items()}
    if with_directiveness:
        fl = frontend.frame_len
        d0, d1 = k0 * fl, k1 * fl
        # one signal at a time (smaller peak), each with its own smoothing state
        out = [frontend.directiveness(x[..., :4, d0:d1], state=None if state is None else state[i],
                                      return_state=True) for i, x in enumerate((ref, deg))]
        cues["directiveness"] = torch.stack([o[0] for o in out], dim=1)
        state = [o[1] for o in out]
    return cues, state


def paired_cues_streamed(reader: SegmentReader, frontend: AuditoryFrontEnd, decoder,
                         with_directiveness: bool, chunk_frames: int | None = None,
                         context_frames: int = 25) -> dict:
    """:func:`paired_cues_chunk` run over a :class:`SegmentReader` in chunks of
    ``chunk_frames`` frames with ``context_frames`` of context on each side (gammatone,
    low-pass and Hilbert transients), carrying the directiveness smoothing state exactly, so
    memory stays bounded whatever the duration. ``decoder`` a dict by order: each signal decoded
    at its effective order over the whole signal (:func:`reader_orders`)."""
    orders = None
    if isinstance(decoder, dict):
        step = reader.n_samples if chunk_frames is None else chunk_frames * frontend.frame_len
        orders = reader_orders(reader, step)
    core = partial(paired_cues_chunk, frontend=frontend, decoder=decoder, with_directiveness=with_directiveness,
                   orders=orders)
    return run_chunked(reader, frontend.frame_len, chunk_frames, context_frames, core)


def paired_cues(ref: torch.Tensor, deg: torch.Tensor, frontend: AuditoryFrontEnd,
                decoder: torch.Tensor | None, with_directiveness: bool,
                chunk_frames: int | None = None, context_frames: int = 25) -> dict:
    """Cues of reference and degraded ``(B, C, T)``: dict of ``(B, 2, F, nf)`` tensors (index 0
    reference, 1 degraded): ``power``, ``ild``, ``coherence``, ``below_floor`` and, if asked,
    ``directiveness``. ``chunk_frames`` None: the whole signal in one pass (differentiable);
    else the same results computed in chunks (see :func:`paired_cues_streamed`)."""
    return paired_cues_streamed(SegmentReader.from_tensors(ref, deg), frontend, decoder, with_directiveness,
                                chunk_frames, context_frames)
