"""Kept for old imports: the encoders live in :mod:`spaq.metrics.encoders` (one implementation;
the ``predictor`` metric computes its embedding with them, so they sit in the metrics layer)."""
from ..metrics.encoders import *  # noqa: F401,F403
from ..metrics.encoders import __all__  # noqa: F401
