"""The metric registry, built in one place.

Built-in metrics are named here by import path and imported on first use; third-party
packages add metrics through the ``spaq.metrics`` entry-point group (each entry point
loads a :class:`~spaq.metrics.base.Metric` subclass; its ``name`` attribute is the registry
name). :mod:`spaq.metrics.base` holds the contract and imports no concrete metric.

    [project.entry-points."spaq.metrics"]
    mymetric = "mypackage.metric:MyMetric"
"""
from __future__ import annotations

import importlib
import warnings

from ..errors import SpaqError
from .base import Metric, MetricResult, MetricUnavailable

__all__ = ["Metric", "MetricResult", "MetricUnavailable", "BUILTIN", "ENTRY_POINT_GROUP", "metric_class",
           "list_metrics", "check_metric_names", "load_metric", "register", "registered", "default_metrics"]

ENTRY_POINT_GROUP = "spaq.metrics"

#: name -> "module:Class" of spaq's own metrics (imported lazily)
BUILTIN = {
    "qastanet": "spaq.metrics.qastanet:Qastanet",
    "cues": "spaq.metrics.cues:Cues",
    "quality": "spaq.metrics.quality:Quality",
    "localization": "spaq.metrics.localization:Localization",
    "pesq": "spaq.metrics.classic:Pesq",
    "pesq_nb": "spaq.metrics.classic:PesqNarrowBand",
    "stoi": "spaq.metrics.classic:Stoi",
    "estoi": "spaq.metrics.classic:Estoi",
    "visqol": "spaq.metrics.classic:Visqol",
    "visqol_speech": "spaq.metrics.classic:VisqolSpeech",
    "dnsmos": "spaq.metrics.classic:Dnsmos",
    "distillmos": "spaq.metrics.classic:DistillMos",
    "loudness": "spaq.metrics.classic:Loudness",
    "si_sdr": "spaq.metrics.classic:SiSdr",
    "mrstft": "spaq.metrics.classic:MrStft",
    "sqm": "spaq.metrics.sqm:Sqm",
    "predictor": "spaq.metrics.predictor:Predictor",
}

_CLASSES: dict[str, type] = {}
_EXTRA: dict[str, object] = {}  # name -> class or "module:Class" (entry points, register())
_PLUGINS_READ = False


def register(cls: type) -> type:
    """Add a :class:`Metric` subclass to the registry under ``cls.name`` (also usable as a
    class decorator). Checks the contract attributes."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise SpaqError(f"{cls!r} is not a spaq Metric subclass")
    if not cls.name:
        raise SpaqError(f"{cls.__name__} has no name")
    _EXTRA[cls.name] = cls
    _CLASSES.pop(cls.name, None)
    return cls


def _read_plugins() -> None:
    global _PLUGINS_READ
    if _PLUGINS_READ:
        return
    _PLUGINS_READ = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            warnings.warn(f"spaq: entry point {ep.name!r} ({ep.value}) ignored: a built-in metric has that name",
                          stacklevel=2)
            continue
        _EXTRA.setdefault(ep.name, ep)


def registered() -> list[str]:
    """Every metric name, built-in and added, sorted."""
    _read_plugins()
    return sorted(set(BUILTIN) | set(_EXTRA))


def metric_class(name: str) -> type:
    """The class registered as ``name`` (imported on first use)."""
    if name in _CLASSES:
        return _CLASSES[name]
    _read_plugins()
    target = _EXTRA.get(name, BUILTIN.get(name))
    if target is None:
        raise SpaqError(f"unknown metric {name!r}; available: {', '.join(registered())}")
    try:
        if isinstance(target, str):
            mod, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(mod), attr)
        elif isinstance(target, type):
            cls = target
        else:  # an entry point
            cls = target.load()
    except Exception as e:  # a broken plugin must not break spaq
        raise SpaqError(f"metric {name!r} cannot be loaded: {type(e).__name__}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise SpaqError(f"metric {name!r} ({target}) is not a spaq Metric subclass")
    if cls.name != name:
        raise SpaqError(f"metric registered as {name!r} calls itself {cls.name!r}")
    _CLASSES[name] = cls
    return cls


def check_metric_names(names, where: str = "") -> list:
    """``names`` (one name or several) as a list, refused in one line (prefixed ``where``) when one is not
    registered or one is listed twice: what ``spaq batch`` and ``spaq study embeddings`` check before any work."""
    names = [names] if isinstance(names, str) else list(names)
    known = registered()
    bad = [n for n in names if n not in known]
    if bad:
        raise SpaqError(f"{where}unknown metric {bad[0]!r}; available: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise SpaqError(f"{where}metric listed twice: {', '.join(names)}")
    return names


def list_metrics() -> dict[str, str]:
    """Name -> one-line description of every registered metric (a plugin that fails to load
    is listed with the reason)."""
    out = {}
    for n in registered():
        try:
            out[n] = metric_class(n).description
        except SpaqError as e:
            out[n] = f"(unavailable: {e})"
    return out


def load_metric(name: str, **kwargs) -> Metric:
    """An instance of metric ``name`` (``kwargs`` go to its constructor)."""
    return metric_class(name)(**kwargs)


def default_metrics() -> tuple[str, ...]:
    """The metrics ``spaq score`` runs when none are named: those with a ``default_rank``, in
    that order (a plugin may add itself)."""
    ranked = []
    for n in registered():
        try:
            r = metric_class(n).default_rank
        except SpaqError:
            continue
        if r is not None:
            ranked.append((r, n))
    return tuple(n for _, n in sorted(ranked))
