"""Training losses as small ``nn.Module``s with explicit shapes.

* :mod:`spaq.losses.direction`: direction losses for localisers (angular distance, MSE, their
  mix) and the multi-task loss (direction + class + elevation); ``pred``/``target`` ``(B, 3)``.
* :mod:`spaq.losses.spatial`: spatial losses on binaural signals ``(B, 2, T)``: ``SpatialLoss``
  (frozen SQM encoder: deep features + embedding distance) and ``CueLoss`` (ILD/IPD/coherence
  differences of the differentiable front-end).
"""
from .direction import (DIRECTION_LOSSES, AngularDistanceLoss, DirectionMSELoss, MixLoss, MultiTaskLoss,
                        angular_distance, make_direction_loss)
from .spatial import CueLoss, SpatialLoss

__all__ = ["angular_distance", "AngularDistanceLoss", "DirectionMSELoss", "MixLoss", "MultiTaskLoss",
           "make_direction_loss", "DIRECTION_LOSSES", "SpatialLoss", "CueLoss"]
