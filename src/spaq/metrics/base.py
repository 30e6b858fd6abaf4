"""The one metric interface: ``Metric.score(pair) -> MetricResult``, and the registry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import SpaqError

__all__ = ["MetricResult", "Metric", "register", "load_metric", "list_metrics", "MetricUnavailable"]


class MetricUnavailable(SpaqError):
    """A metric cannot score this input (wrong format, no weights): reported, not fatal."""


@dataclass
class MetricResult:
    """Result of one metric on one pair (or a batch).

    ``score``: float, or ``(B,)`` array for batched input. ``values``: named sub-scores
    (same shape rule). ``maps``: named ``(..., bands, frames)`` arrays. ``provenance``:
    metric name/version, checkpoint sha256, sample rate used, formats.
    """

    name: str
    score: float | np.ndarray
    version: str
    unit: str = ""
    higher_is_better: bool = True
    score_range: tuple | None = None
    values: dict = field(default_factory=dict)
    maps: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def to_dict(self, with_maps: bool = False) -> dict:
        def conv(v):
            if isinstance(v, np.ndarray):
                return v.tolist()
            if isinstance(v, (np.floating, np.integer)):
                return v.item()
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            return v

        d = {
            "score": conv(self.score),
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "range": list(self.score_range) if self.score_range else None,
            "version": self.version,
            "values": conv(self.values),
            "provenance": conv(self.provenance),
            "warnings": list(self.warnings),
        }
        if with_maps:
            d["maps"] = conv(self.maps)
        return d


class Metric:
    """Base class: subclasses set the class attributes and implement ``score``."""

    name: str = ""
    version: str = "0"
    description: str = ""
    unit: str = ""
    higher_is_better: bool = True
    differentiable: bool = False
    needs_weights: bool = False
    score_range: tuple | None = None
    sample_rate: int = 48000
    formats: tuple = ("binaural", "ambisonics")

    def score(self, pair, maps: bool = False) -> MetricResult:  # pragma: no cover - interface
        raise NotImplementedError

    def check_format(self, pair) -> None:
        if pair.format.kind not in self.formats:
            raise MetricUnavailable(f"{self.name} does not score {pair.format.describe()} input")


_REGISTRY: dict[str, tuple[Callable[..., Metric], str]] = {}


def register(name: str, description: str):
    def deco(factory):
        _REGISTRY[name] = (factory, description)
        return factory

    return deco


def _ensure_loaded():
    from . import cues, localization, qastanet, quality  # noqa: F401  (registration side effect)


def list_metrics() -> dict[str, str]:
    """Name -> one-line description of every registered metric."""
    _ensure_loaded()
    return {k: v[1] for k, v in sorted(_REGISTRY.items())}


def load_metric(name: str, **kwargs) -> Metric:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise SpaqError(f"unknown metric {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][0](**kwargs)
