"""Functional core of the QASTAnet metric (pure functions on tensors, differentiable).

``qastanet_features(ref, deg, frontend, decoder)`` -> ``(B, 4, 1, n_bands, n_frames)``
feature differences (d_ild, d_gamma, d_power, d_directiveness) exactly as the official
implementation computes them for ``metric(deg, ref)``; NaNs (masked bins) are kept, so the
caller decides (the official network replaces them by 0).
"""
from __future__ import annotations

import torch

from ..auditory.frontend import AuditoryFrontEnd
from ..dsp import mimo_fir_filter

__all__ = ["decode_to_binaural", "qastanet_features", "feature_differences"]


def decode_to_binaural(hoa: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    """Ambisonics ``(..., C, T)`` ACN/SN3D -> binaural ``(..., 2, T)`` with an FIR decoder
    ``(2, C_dec, L)``. Orders below the decoder's are zero-padded (the decoder's first C
    columns); higher orders are truncated to the decoder's order."""
    c = min(hoa.shape[-2], decoder.shape[1])
    return mimo_fir_filter(hoa[..., :c, :], decoder[:, :c, :])


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


def qastanet_features(ref: torch.Tensor, deg: torch.Tensor, frontend: AuditoryFrontEnd,
                      decoder: torch.Tensor) -> torch.Tensor:
    """ref, deg: ``(B, C, T)`` ambisonics ACN/SN3D (C >= 4) at the front-end's rate.
    Returns ``(B, 4, 1, n_bands, T // frame_len)`` (NaN kept)."""
    ref_bin = decode_to_binaural(ref, decoder.to(ref.dtype))
    deg_bin = decode_to_binaural(deg, decoder.to(deg.dtype))
    cues = frontend.binaural(torch.stack((ref_bin, deg_bin), dim=1))  # (B, 2, F, nf)
    ref_c = {k: v[:, 0] for k, v in cues.items()}
    deg_c = {k: v[:, 1] for k, v in cues.items()}
    d = frontend.directiveness(torch.stack((ref, deg), dim=1))  # (B, 2, F, nf)
    feats = feature_differences(ref_c, deg_c, d[:, 0], d[:, 1], frontend.power_floor)
    return feats.unsqueeze(2)
