"""Functional core of the ``sqm`` metric: distances between SQM embeddings (:mod:`spaq.models.sqm`).

Reference and degraded signal are embedded separately, so they need not share content, length
or time alignment:

* ``cosine_distance``: ``1 - cos`` of the utterance embeddings ``(B, E)`` -> ``(B,)`` in [0, 2]
  (0: the same spatial image);
* ``deep_feature_distance``: for every layer of the encoder, the L1 difference of the
  activations ``(B, C_l, nf)`` normalised by time x channels (mean over both), summed over
  layers; the two signals are cut to their common number of frames;
* ``frame_distance``: the cosine distance of the frame embeddings over the common frames,
  ``(B, nf)`` (the metric's map).
"""
from __future__ import annotations

import torch

__all__ = ["cosine_distance", "deep_feature_distance", "frame_distance", "sqm_input", "sqm_distances", "embed"]


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(..., E)`` embeddings -> ``(...)`` cosine distance, computed in float64."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    num = (a * b).sum(-1)
    den = (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)
    return (1.0 - num / den).clamp_min(0.0)


def deep_feature_distance(acts_ref: list, acts_deg: list) -> torch.Tensor:
    """Lists of ``(B, C_l, nf)`` activations -> ``(B,)``: sum over layers of the mean |difference|
    over channels and the common frames."""
    out = 0.0
    for r, d in zip(acts_ref, acts_deg):
        n = min(r.shape[-1], d.shape[-1])
        out = out + (r[..., :n].to(torch.float64) - d[..., :n].to(torch.float64)).abs().mean(dim=(-2, -1))
    return out


def frame_distance(frames_ref: torch.Tensor, frames_deg: torch.Tensor) -> torch.Tensor:
    """``(B, nf, E)`` frame embeddings -> ``(B, min nf)`` cosine distance per frame."""
    n = min(frames_ref.shape[1], frames_deg.shape[1])
    return cosine_distance(frames_ref[:, :n], frames_deg[:, :n])


def sqm_input(x: torch.Tensor, cfg) -> tuple:
    """What an encoder of config ``cfg`` (:class:`~spaq.models.sqm.SQMConfig`) reads of ``x (B, C, T)`` at
    ``cfg.sample_rate``: with ``cfg.dereverb``, each signal whose ears the localiser's room gate reads as
    reverberant with its late reverberation removed
    (:func:`spaq.localization.templates.dereverberate_where_reverberant`; other channels as given) ->
    ``(x', flags (B,) bool)``; without it ``(x, None)``. Not differentiable."""
    if not cfg.dereverb:
        return x, None
    from ...localization.templates import dereverberate_where_reverberant

    rows, flags = [], []
    for xi in x:
        y, info = dereverberate_where_reverberant(xi[:2].detach().cpu().double().numpy(), cfg.sample_rate)
        if info["dereverberated"]:
            xi = xi.clone()
            xi[:2] = torch.from_numpy(y).to(device=xi.device, dtype=xi.dtype)
        rows.append(xi)
        flags.append(bool(info["dereverberated"]))
    return torch.stack(rows), torch.tensor(flags)


def embed(model, x: torch.Tensor) -> dict:
    """``x (B, C, T)`` binaural (or with the source, as the model takes) -> the model's dict."""
    return model(x)


def sqm_distances(model, ref: torch.Tensor, deg: torch.Tensor) -> dict:
    """``ref (B, C, T_r)``, ``deg (B, C, T_d)`` (lengths may differ) -> dict: ``score`` and
    ``cosine_distance`` ``(B,)``, ``deep_feature_distance`` ``(B,)``, ``frame_distance``
    ``(B, nf)``, ``doa_ref``/``doa_deg`` ``(B, 3)`` unit vectors of the DoA head (if any),
    ``dereverberated_ref``/``_deg`` ``(B,)`` bool where the encoder dereverberates (``cfg.dereverb``)."""
    ref, fr = sqm_input(ref, model.cfg)
    deg, fd = sqm_input(deg, model.cfg)
    er, ed = model(ref), model(deg)
    cd = cosine_distance(er["utterance"], ed["utterance"])
    out = {"score": cd, "cosine_distance": cd,
           "deep_feature_distance": deep_feature_distance(er["activations"], ed["activations"]),
           "frame_distance": frame_distance(er["frames"], ed["frames"])}
    if fr is not None:  # which signals the encoder read dereverberated (SQMConfig.dereverb)
        out["dereverberated_ref"], out["dereverberated_deg"] = fr, fd
    if "doa" in er:
        out["doa_ref"] = torch.nn.functional.normalize(er["doa"], dim=-1)
        out["doa_deg"] = torch.nn.functional.normalize(ed["doa"], dim=-1)
    return out
