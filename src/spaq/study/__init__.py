"""Studies of what spaq's metrics agree with: ``spaq study embeddings`` (see
:mod:`spaq.study.embeddings`) and the pluggable audio encoders it uses
(:mod:`spaq.metrics.encoders`; ``spaq.study.encoders`` re-exports them)."""
from __future__ import annotations

__all__ = ["encoders", "embeddings"]
