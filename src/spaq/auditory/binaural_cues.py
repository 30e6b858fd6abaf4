"""Per-band, per-frame binaural cues from complex gammatone outputs (eMoBi-Q / QASTAnet style):
band power with hearing-threshold floor, ILD, and interaural coherence (fine structure below
the MSO roll-off, envelope above)."""
from __future__ import annotations

import math

import torch

__all__ = ["frame", "binaural_frame_features"]


def frame(x: torch.Tensor, frame_len: int) -> torch.Tensor:
    """``(..., T)`` -> ``(..., T // frame_len, frame_len)`` (the tail is dropped)."""
    nf = x.shape[-1] // frame_len
    return x[..., : nf * frame_len].unflatten(-1, (nf, frame_len))


def _power(a: torch.Tensor) -> torch.Tensor:
    return a.real ** 2 + a.imag ** 2


def _safe(x: torch.Tensor) -> torch.Tensor:
    """x where x > 0, else 1: keeps divisions, logs and roots finite (and their gradients)
    on bins that are masked afterwards anyway."""
    return torch.where(x > 0, x, torch.ones_like(x))


def _coherence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex normalised cross-correlation over the last axis (NaN where an input is all zero)."""
    num = torch.mean(a * torch.conj(b), dim=-1)
    den2 = torch.mean(_power(a), dim=-1) * torch.mean(_power(b), dim=-1)
    coh = num / torch.sqrt(_safe(den2))
    return torch.where(den2 > 0, coh, torch.full_like(coh, float("nan")))


def binaural_frame_features(band: torch.Tensor, env: torch.Tensor, frame_len: int,
                            power_floor: torch.Tensor, fine_structure_bands: torch.Tensor) -> dict:
    """Binaural cues per band and frame.

    band: ``(..., 2, F, T)`` complex gammatone outputs of the two ears (left, right).
    env:  ``(..., 2, F, T)`` complex low-passed analytic envelopes of ``|band|``.
    power_floor: ``(F,)`` floor; fine_structure_bands: ``(F,)`` bool (True: coherence of the
    fine structure, else of the envelope).
    Returns dict of ``(..., F, nf)`` tensors: ``power`` (floored; mean of both ears),
    ``ild`` (dB, 20 log10 of the ears' envelope power ratio), ``coherence`` (complex; NaN where
    the power is at the floor), ``below_floor`` (bool).
    """
    env_f = frame(env, frame_len)  # (..., 2, F, nf, fl)
    he = env_f.real / math.sqrt(2.0)
    mean_ears = he.mean(dim=-1)  # (..., 2, F, nf)
    power = ((mean_ears[..., 0, :, :] + mean_ears[..., 1, :, :]) / 2) ** 2 / 2
    floor = power_floor.to(power.dtype).view(-1, 1)
    below = power <= floor
    power = torch.where(below, floor, power)
    p_ild = mean_ears ** 2
    pl, pr = p_ild[..., 0, :, :], p_ild[..., 1, :, :]
    ild = 20 * torch.log10(_safe(pl) / _safe(pr))
    ild = torch.where((pl > 0) & (pr > 0), ild, (torch.log10(pl / pr) * 20).detach())  # official +-inf/NaN kept
    band_f = frame(band, frame_len)
    # fine-structure coherence only where it is used (low bands), envelope elsewhere
    lo = fine_structure_bands.nonzero().flatten()
    hi = (~fine_structure_bands).nonzero().flatten()
    coh = torch.empty(power.shape, dtype=torch.complex64 if band.dtype == torch.complex64 else band.dtype,
                      device=band.device)
    coh[..., lo, :] = _coherence(band_f[..., 0, lo, :, :], band_f[..., 1, lo, :, :]).to(coh.dtype)
    coh[..., hi, :] = _coherence(env_f[..., 0, hi, :, :], env_f[..., 1, hi, :, :]).to(coh.dtype)
    coh = torch.where(below, torch.full_like(coh, float("nan")), coh)
    return {"power": power, "ild": ild, "coherence": coh, "below_floor": below}
