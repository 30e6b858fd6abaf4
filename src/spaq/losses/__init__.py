"""Training losses as small ``nn.Module``s with explicit shapes.

* :mod:`spaq.losses.direction`: direction losses for localisers (angular distance, MSE, their
  mix) and the multi-task loss (direction + class + elevation); ``pred``/``target`` ``(B, 3)``.
"""
from .direction import (DIRECTION_LOSSES, AngularDistanceLoss, DirectionMSELoss, MixLoss, MultiTaskLoss,
                        angular_distance, make_direction_loss)

__all__ = ["angular_distance", "AngularDistanceLoss", "DirectionMSELoss", "MixLoss", "MultiTaskLoss",
           "make_direction_loss", "DIRECTION_LOSSES"]
