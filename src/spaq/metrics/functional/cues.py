"""Functional core of the ``cues`` metric: per-band, per-frame cue differences (pure, differentiable).

From the shared auditory front-end, per ERB band and 40 ms frame: ILD difference (dB),
interaural coherence difference, band level difference (dB) and, for ambisonics, first-order
directiveness difference. Bins where the reference is below the hearing threshold are
excluded (NaN).
"""
from __future__ import annotations

import numpy as np
import torch

from ...auditory.frontend import AuditoryFrontEnd
from ...auditory.pairs import paired_cues, paired_cues_streamed
from ...auditory.streaming import SegmentReader

__all__ = ["MAP_NAMES", "cue_maps", "cue_maps_streamed", "maps_from_cues", "summarise_cue_maps"]

MAP_NAMES = ("d_ild_db", "d_coherence", "d_level_db", "d_directiveness")


def maps_from_cues(c: dict, ambi: bool) -> dict:
    """Paired cues ``(B, 2, F, nf)`` (see :func:`spaq.auditory.pairs.paired_cues`) -> the cue
    difference maps (degraded minus reference) of :func:`cue_maps`."""
    valid = ~c["below_floor"][:, 0]
    deg_silent = c["below_floor"][:, 1]
    dev = valid.device
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=dev)
    zero = torch.zeros((), dtype=torch.float64, device=dev)
    # a degraded band below the hearing threshold has no audible interaural difference and no
    # coherence: its ILD counts as 0 dB and its |coherence| as 0 (so a lost band is scored, not NaN)
    # the front-end's ILD is 20 log10 of an envelope *power* ratio; halve it for dB
    ild_deg = torch.where(deg_silent, zero, c["ild"][:, 1] / 2)
    coh_deg = torch.where(deg_silent, zero, torch.abs(c["coherence"][:, 1]).to(torch.float64))
    d_ild = ild_deg - c["ild"][:, 0] / 2
    d_coh = coh_deg - torch.abs(c["coherence"][:, 0])
    d_lvl = 10 * torch.log10(c["power"][:, 1] / c["power"][:, 0])
    out = {
        "d_ild_db": torch.where(valid, d_ild, nan),
        "d_coherence": torch.where(valid, d_coh.to(torch.float64), nan),
        "d_level_db": torch.where(valid, d_lvl, nan),
        "valid": valid,
        "deg_audible": ~deg_silent,
    }
    if ambi:
        dd = c["directiveness"][:, 1] - c["directiveness"][:, 0]
        out["d_directiveness"] = torch.where(valid, dd, nan)
    return out


def cue_maps(ref: torch.Tensor, deg: torch.Tensor, frontend: AuditoryFrontEnd,
             decoder: torch.Tensor | None, chunk_frames: int | None = None) -> dict:
    """Per-band, per-frame cue differences (degraded minus reference).

    ref, deg: ``(B, C, T)`` at the front-end's rate (binaural C=2 with ``decoder=None``, else
    ambisonics ACN/SN3D with the binaural ``decoder (2, C_dec, L)``).
    Returns dict of ``(B, F, nf)`` float64 tensors: ``d_ild_db``, ``d_coherence`` (|gamma|
    difference), ``d_level_db`` and, for ambisonics, ``d_directiveness``; plus ``valid``
    (bool, reference above the hearing threshold) and ``deg_audible``. Differentiable.
    ``chunk_frames``: compute in chunks of that many frames (same values, bounded memory).
    """
    ambi = decoder is not None
    return maps_from_cues(paired_cues(ref, deg, frontend, decoder, ambi, chunk_frames=chunk_frames), ambi)


def cue_maps_streamed(reader: SegmentReader, frontend: AuditoryFrontEnd, decoder: torch.Tensor | None,
                      chunk_frames: int | None) -> dict:
    """:func:`cue_maps` of a pair read chunk by chunk (long files: bounded memory)."""
    ambi = decoder is not None
    return maps_from_cues(paired_cues_streamed(reader, frontend, decoder, ambi, chunk_frames=chunk_frames), ambi)


def _nan_reduce(x: np.ndarray, fn) -> np.ndarray:
    flat = x.reshape(x.shape[0], -1)
    res = np.full(flat.shape[0], np.nan)
    for i, row in enumerate(flat):
        row = row[np.isfinite(row)]
        if row.size:
            res[i] = fn(row)
    return res


def summarise_cue_maps(maps: dict) -> dict:
    """``(B,)`` arrays of summary values from :func:`cue_maps` output (lower is better, 0 for
    identical signals): ``ild_median_abs_db``, ``coherence_mean_abs``, ``level_mean_abs_db``,
    ``directiveness_mean_abs`` (ambisonics), ``audible_fraction`` (of the reference's bins) and
    ``degraded_audible_fraction`` (of those, the bins where the degraded is audible too)."""
    m = {k: v.detach().cpu().numpy() for k, v in maps.items() if k not in ("valid", "deg_audible")}
    out = {
        "ild_median_abs_db": _nan_reduce(np.abs(m["d_ild_db"]), np.median),
        "coherence_mean_abs": _nan_reduce(np.abs(m["d_coherence"]), np.mean),
        "level_mean_abs_db": _nan_reduce(np.abs(m["d_level_db"]), np.mean),
    }
    if "d_directiveness" in m:
        out["directiveness_mean_abs"] = _nan_reduce(np.abs(m["d_directiveness"]), np.mean)
    valid = maps["valid"].detach().cpu().numpy()
    b = valid.shape[0]
    out["audible_fraction"] = valid.reshape(b, -1).mean(axis=1)
    if "deg_audible" in maps:
        both = (valid & maps["deg_audible"].detach().cpu().numpy()).reshape(b, -1).sum(axis=1)
        out["degraded_audible_fraction"] = np.where(valid.reshape(b, -1).sum(axis=1) > 0,
                                                    both / np.maximum(valid.reshape(b, -1).sum(axis=1), 1), np.nan)
    return out
