"""Functional core of the QASTAnet metric (pure functions on tensors, differentiable).

``qastanet_features(ref, deg, frontend, decoder)`` -> ``(B, 4, 1, n_bands, n_frames)``
feature differences (d_ild, d_gamma, d_power, d_directiveness) exactly as the official
implementation computes them for ``metric(deg, ref)``; NaNs (masked bins) are kept, so the
caller decides (the official network replaces them by 0). ``qastanet(ref, deg, net, ...)``
-> score ``(B,)``.
"""
from __future__ import annotations

import torch

from ...auditory.frontend import AuditoryFrontEnd
from ...auditory.pairs import paired_cues, paired_cues_streamed
from ...auditory.streaming import SegmentReader

__all__ = ["feature_differences", "qastanet_features", "qastanet_features_streamed", "qastanet"]

FEATURE_NAMES = ("d_ild", "d_coherence", "d_power", "d_directiveness")


def feature_differences(ref_cues: dict, deg_cues: dict, dir_ref, dir_deg, floor) -> torch.Tensor:
    """Official QASTAnet comparisons. Cue dicts hold ``(B, F, nf)`` tensors (see
    :meth:`AuditoryFrontEnd.binaural`); ``dir_*`` ``(B, F, nf)`` or None. Returns
    ``(B, 4 or 3, F, nf)`` with NaN where the reference band is below the hearing floor."""
    p_ref, p_deg = ref_cues["power"], deg_cues["power"]
    masked = p_ref <= floor.to(p_ref.dtype).view(-1, 1)
    nan = torch.tensor(float("nan"), dtype=p_ref.dtype, device=p_ref.device)
    d_ild = torch.where(masked, nan, torch.abs(deg_cues["ild"] - ref_cues["ild"]))
    d_gamma = torch.abs(deg_cues["coherence"] - ref_cues["coherence"])
    d_pow = torch.clamp(torch.abs(p_deg - p_ref) / torch.minimum(p_ref, p_deg), max=20) / 2
    feats = [d_ild, d_gamma.to(d_ild.dtype), d_pow.to(d_ild.dtype)]
    if dir_ref is not None:
        d_dir = torch.where(masked, nan, (torch.abs(dir_deg - dir_ref) ** 2).to(p_ref.dtype))
        feats.append(d_dir.to(d_ild.dtype))
    return torch.stack(feats, dim=1)


def _features_from_cues(c: dict, frontend: AuditoryFrontEnd) -> torch.Tensor:
    ref_c = {k: v[:, 0] for k, v in c.items()}
    deg_c = {k: v[:, 1] for k, v in c.items()}
    d = c["directiveness"]
    return feature_differences(ref_c, deg_c, d[:, 0], d[:, 1], frontend.power_floor).unsqueeze(2)


def qastanet_features(ref: torch.Tensor, deg: torch.Tensor, frontend: AuditoryFrontEnd,
                      decoder: torch.Tensor, chunk_frames: int | None = None,
                      context_frames: int = 25) -> torch.Tensor:
    """ref, deg: ``(B, C, T)`` ambisonics ACN/SN3D (C >= 4) at the front-end's rate; decoder
    ``(2, C_dec, L)``. Returns ``(B, 4, 1, n_bands, T // frame_len)`` (NaN kept)."""
    return _features_from_cues(paired_cues(ref, deg, frontend, decoder, True, chunk_frames, context_frames), frontend)


def qastanet_features_streamed(reader: SegmentReader, frontend: AuditoryFrontEnd, decoder: torch.Tensor,
                               chunk_frames: int | None, context_frames: int = 25) -> torch.Tensor:
    """:func:`qastanet_features` of a pair read chunk by chunk (bounded memory)."""
    return _features_from_cues(paired_cues_streamed(reader, frontend, decoder, True, chunk_frames, context_frames),
                               frontend)


def qastanet(ref: torch.Tensor, deg: torch.Tensor, net, frontend: AuditoryFrontEnd, decoder: torch.Tensor,
             pooling: str = "official", chunk_frames: int | None = None) -> torch.Tensor:
    """QASTAnet score ``(B,)`` of ``(B, C, T)`` ambisonic tensors at 48 kHz (``metric(deg, ref)``;
    gradients flow to ``deg`` and ``ref``). ``net``: :class:`spaq.models.qastanet.QastanetNet`."""
    f = qastanet_features(ref, deg, frontend, decoder, chunk_frames)
    return net(f.to(torch.float32).nan_to_num(0.0), pooling=pooling)
