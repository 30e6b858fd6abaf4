"""Public Python API: ``spaq.score``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import SpaqError
from .io import SignalPair, load_pair
from .metrics.base import MetricResult, MetricUnavailable, list_metrics, load_metric

__all__ = ["score", "ScoreReport", "DEFAULT_METRICS", "METRIC_RATE", "clear_metric_cache"]

METRIC_RATE = 48000
DEFAULT_METRICS = ("quality", "qastanet", "cues", "localization")


@dataclass
class ScoreReport:
    """What ``spaq.score`` returns: the pair's facts, one :class:`MetricResult` per metric that
    could score it, and for the others the one-line reason (``skipped``)."""

    ref: str
    deg: str
    format: dict
    sample_rate_in: int
    sample_rate_used: int
    duration_s: float
    batch_size: int | None
    streamed: bool = False
    warnings: list = field(default_factory=list)
    results: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> MetricResult:
        return self.results[name]

    def to_dict(self, with_maps: bool = False) -> dict:
        return {
            "ref": self.ref, "deg": self.deg, "format": self.format,
            "sample_rate_in": self.sample_rate_in, "sample_rate_used": self.sample_rate_used,
            "duration_s": self.duration_s, "batch_size": self.batch_size, "streamed": self.streamed,
            "warnings": list(self.warnings),
            "results": {k: v.to_dict(with_maps) for k, v in self.results.items()},
            "skipped": dict(self.skipped),
        }


def _metric_class(name: str):
    from .metrics import base

    return base._REGISTRY[name][0]


def _metric_kwargs(name: str, checkpoint, offline, device, fast: bool | None = None) -> dict:
    kw = {"device": device}
    if name in ("qastanet", "cues", "quality") and fast is not None:
        kw["fast"] = fast
    if name == "qastanet":
        kw.update(checkpoint=checkpoint, offline=offline)
    return kw


_METRICS: dict = {}  # metric instances reused across calls (their per-length tables stay warm)
_METRICS_MAX = 8


def _metric_key(name: str, kwargs: dict) -> tuple:
    """What decides a metric instance: its name and arguments, the ``SPAQ_*`` environment
    (checkpoint overrides, offline, cache dir) and the size/mtime of a checkpoint path given."""
    ck = kwargs.get("checkpoint")
    stat = None
    if ck is not None and os.path.isfile(ck):
        st = os.stat(ck)
        stat = (st.st_size, st.st_mtime_ns)
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("SPAQ_")))
    return (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())), stat, env)


def _get_metric(name: str, kwargs: dict):
    """A metric instance for ``name(**kwargs)``, reused from earlier calls when nothing that
    decides it has changed (at most ``_METRICS_MAX`` kept). A metric that fails to load is
    never cached, so a missing checkpoint is looked for again on the next call."""
    key = _metric_key(name, kwargs)
    m = _METRICS.pop(key, None)
    if m is None:
        m = load_metric(name, **kwargs)
    _METRICS[key] = m  # most recently used last
    while len(_METRICS) > _METRICS_MAX:
        _METRICS.pop(next(iter(_METRICS)))
    return m


def clear_metric_cache() -> None:
    """Forget the metric instances ``score`` keeps between calls (frees their tables)."""
    _METRICS.clear()


def score(ref, deg, sample_rate: int | None = None, metrics=None, fmt=None, trim: bool = False,
          checkpoint=None, offline: bool | None = None, maps: bool = False, device: str = "cpu",
          strict: bool = False, fast: bool | None = None, stream: bool | None = None,
          progress=None) -> ScoreReport:
    """Score ``deg`` against ``ref``.

    ref, deg: file paths, numpy arrays or torch tensors ``[channels, time]`` or
    ``[batch, channels, time]`` (then ``sample_rate`` is required). Binaural (2 channels) or
    ambisonics ACN/SN3D ((N+1)^2 channels; ``fmt`` overrides, e.g. ``"foa/fuma"``).
    Everything is resampled to 48 kHz. ``metrics``: names (default: ``DEFAULT_METRICS``).
    Batched input gives ``(B,)`` scores. ``fast``: ``None`` (default) leaves each metric its
    default mode (fast for qastanet, cues and quality); ``True`` computes every auditory band
    at a reduced rate from a window of its spectrum, ``False`` at full rate in float64
    (qastanet: within 1.8e-3 of the official scores on the 17 test pairs in fast mode, 7e-5 in
    exact mode; quality: fast within 0.14 points of exact; see the README). A metric that
    cannot score this input (binaural for qastanet, missing weights) is listed in ``skipped``
    with the reason, unless ``strict``.
    ``stream``: two long files (above ``SPAQ_STREAM_MB``, 256 MiB of samples at 48 kHz by
    default: about 40 s of 3OA) are read chunk by chunk, never whole, so memory stays bounded
    (same scores); ``True``/``False`` force it on/off for file inputs (see
    :func:`spaq.io.load_pair`). ``progress``: for streamed pairs, called as
    ``progress(metric, fraction)`` as each metric reads through the files (``quality`` reads
    them twice: its gain pass, then the scoring pass).

    Metric instances are kept between calls (same arguments and ``SPAQ_*`` environment), so a
    loop over many pairs loads each checkpoint once and reuses its tables;
    :func:`clear_metric_cache` frees them.
    """
    pair: SignalPair = load_pair(ref, deg, sample_rate=sample_rate, target_rate=METRIC_RATE, fmt=fmt, trim=trim,
                                 stream=stream)
    warnings = list(pair.warnings)
    if pair.sample_rate_in != pair.sample_rate_used:
        warnings.append(f"resampled from {pair.sample_rate_in} Hz to {pair.sample_rate_used} Hz (the metrics' rate)")
    names = list(metrics) if metrics else list(DEFAULT_METRICS)
    known = list_metrics()
    for n in names:
        if n not in known:
            raise SpaqError(f"unknown metric {n!r}; available: {', '.join(known)}")
    report = ScoreReport(
        ref=pair.ref_name, deg=pair.deg_name, format=pair.format.to_dict(),
        sample_rate_in=pair.sample_rate_in, sample_rate_used=pair.sample_rate_used,
        duration_s=round(pair.duration_s, 6), batch_size=pair.ref.shape[0] if pair.batched else None, streamed=pair.streamed,
        warnings=warnings,
    )
    for n in names:
        formats = getattr(_metric_class(n), "formats", None)
        if formats and pair.format.kind not in formats and not strict:
            # before loading it: a missing checkpoint is not the reason it cannot score this pair
            report.skipped[n] = f"{n} scores {' or '.join(formats)} input only, not {pair.format.describe()}"
            continue
        if pair.streamed and progress is not None:
            pair.reader.on_read = lambda a, b, n=n: progress(n, b / pair.n_samples)
        try:
            metric = _get_metric(n, _metric_kwargs(n, checkpoint, offline, device, fast))
            res = metric.score(pair, maps=maps)
        except MetricUnavailable as e:
            if strict:
                raise
            report.skipped[n] = str(e)
            continue
        except SpaqError as e:
            if strict:
                raise
            report.skipped[n] = str(e)
            continue
        res.provenance.setdefault("metric", n)
        res.provenance.setdefault("input_format", pair.format.describe())
        report.results[n] = res
        report.warnings.extend(f"{n}: {w}" for w in res.warnings)
    if not report.results and report.skipped:
        raise SpaqError("no metric could score this pair: " + "; ".join(f"{k}: {v}" for k, v in report.skipped.items()))
    return report
