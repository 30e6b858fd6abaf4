"""Direction and multi-task losses for localisers, as small modules with explicit shapes.

All direction losses take ``pred (B, 3)`` (any length, normalised inside where the loss is
angular) and ``target (B, 3)`` unit vectors, and return a scalar (``reduction="mean"``)
or ``(B,)`` (``reduction="none"``).

The angular distance is ``atan2(|a x b|, a . b)`` of the normalised vectors: exact and with
a finite, non-zero gradient at small angles (BAST's ``acos(clamp(cos, -0.999, 0.999))``
has zero gradient for every error below ``acos(0.999) = 2.56 deg``).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["angular_distance", "AngularDistanceLoss", "DirectionMSELoss", "MixLoss", "MultiTaskLoss",
           "make_direction_loss", "DIRECTION_LOSSES"]

DIRECTION_LOSSES = ("MSE", "AD", "MIX")


def _check(pred: torch.Tensor, target: torch.Tensor):
    if pred.ndim != 2 or pred.shape[-1] != 3 or pred.shape != target.shape:
        raise ValueError(f"direction loss expects pred and target of shape (B, 3), got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


def angular_distance(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Great-circle angle in radians ``(B,)`` between ``pred (B, 3)`` and ``target (B, 3)``."""
    a = pred / pred.norm(dim=-1, keepdim=True).clamp_min(eps)
    b = target / target.norm(dim=-1, keepdim=True).clamp_min(eps)
    cross = torch.linalg.cross(a, b, dim=-1)
    # sqrt(|c|^2 + eps^2) keeps the gradient finite at exactly zero angle
    sin = torch.sqrt((cross * cross).sum(-1) + eps * eps)
    cos = (a * b).sum(-1)
    return torch.atan2(sin, cos)


class AngularDistanceLoss(nn.Module):
    """Mean great-circle error (radians) between predicted and target directions.

    ``forward(pred (B, 3), target (B, 3))`` -> scalar (``reduction`` "mean"/"sum") or ``(B,)`` ("none")."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(pred, target)
        return _reduce(angular_distance(pred, target), self.reduction)


class DirectionMSELoss(nn.Module):
    """Squared error between the raw predicted vector and the unit target, summed over xyz.

    ``forward(pred (B, 3), target (B, 3))`` -> scalar (``reduction`` "mean"/"sum") or ``(B,)`` ("none")."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(pred, target)
        return _reduce(((pred - target) ** 2).sum(-1), self.reduction)


class MixLoss(nn.Module):
    """``mse_weight * MSE + ad_weight * AD`` (BAST's hybrid loss, without its clamp).

    ``forward(pred (B, 3), target (B, 3))`` -> scalar (``reduction`` "mean"/"sum") or ``(B,)`` ("none")."""

    def __init__(self, mse_weight: float = 1.0, ad_weight: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.mse = DirectionMSELoss(reduction)
        self.ad = AngularDistanceLoss(reduction)
        self.mse_weight, self.ad_weight = float(mse_weight), float(ad_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.mse_weight * self.mse(pred, target) + self.ad_weight * self.ad(pred, target)


def make_direction_loss(name: str) -> nn.Module:
    """"MSE", "AD" or "MIX" -> loss module (``(B, 3), (B, 3)`` -> scalar); ValueError otherwise."""
    key = str(name).upper()
    if key == "MSE":
        return DirectionMSELoss()
    if key == "AD":
        return AngularDistanceLoss()
    if key == "MIX":
        return MixLoss()
    raise ValueError(f"unknown direction loss {name!r}; use one of {DIRECTION_LOSSES}")


class MultiTaskLoss(nn.Module):
    """Direction loss + ``class_weight`` * cross-entropy + ``elevation_weight`` * |elevation error| (radians).

    ``forward(direction (B, 3), target_direction (B, 3), class_logits (B, K) | None,
    target_class (B,) long | None (-1 = unknown, ignored), elevation (B,) | None)`` ->
    ``(total, parts)`` where ``parts`` maps "direction", "class", "elevation" to detached scalars.
    """

    def __init__(self, direction_loss: str = "MIX", class_weight: float = 0.3, elevation_weight: float = 0.3):
        super().__init__()
        self.direction = make_direction_loss(direction_loss)
        self.ce = nn.CrossEntropyLoss(ignore_index=-1)
        self.class_weight, self.elevation_weight = float(class_weight), float(elevation_weight)

    def forward(self, direction, target_direction, class_logits=None, target_class=None, elevation=None):
        total = self.direction(direction, target_direction)
        parts = {"direction": total.detach()}
        if class_logits is not None and target_class is not None and bool((target_class >= 0).any()):
            c = self.ce(class_logits, target_class)
            total = total + self.class_weight * c
            parts["class"] = c.detach()
        if elevation is not None:
            t = target_direction / target_direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            el_t = torch.asin(t[:, 2].clamp(-1.0, 1.0))
            e = (elevation - el_t).abs().mean()
            total = total + self.elevation_weight * e
            parts["elevation"] = e.detach()
        return total, parts
