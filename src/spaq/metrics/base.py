"""The metric contract: what every metric declares and returns. Imports no concrete metric.

A metric is a functional core (a pure function on tensors ``(..., channels, time)`` in
``spaq.metrics.functional``, differentiable where the maths allows) plus a thin class that
owns weights and configuration. The class declares, as class attributes that ``spaq.score``,
``spaq batch``, the CLI and the shared metric tester read:

==================  ===========================================================================
``name``            registry name (``spaq score --metric NAME``)
``version``         the metric's own version string
``description``     one line for ``spaq metrics``
``unit``            unit of ``score``
``higher_is_better`` direction of ``score``
``score_range``     ``(low, high)``, ``None`` for an open end
``best_value``      the score of an identical pair (``None``: derived from range and direction)
``sample_rate``     the rate (Hz) the metric works at; ``spaq.score`` resamples to it
``formats``         input kinds it scores (``binaural``, ``ambisonics``, ``mono``, ``layout``)
``needs_reference`` False for reference-free metrics (``deg`` only)
``differentiable``  gradients flow through :meth:`Metric.forward`
``needs_weights``   a checkpoint has to be found (``spaq weights``)
``streamable``      scores long files chunk by chunk without loading them whole
``min_duration_s``  below this the score is not meaningful: a warning says so
``align_input``     ``spaq.score`` time-aligns the pair before this metric sees it (False:
                    the metric reproduces a published model that does not align)
``common_length``   the two signals are trimmed to one length (False: each is scored whole and
                    the lengths may differ, e.g. an embedding distance; ``trim`` still trims)
``default_rank``    position among ``spaq score``'s default metrics (None: only when asked)
``reading``         one line on how to read the score (shown under ``spaq score``'s table)
==================  ===========================================================================

:meth:`Metric.forward` is the one tensor entry point: ``(B, C, T)`` at ``sample_rate`` ->
dict of ``(B,)`` tensors with at least ``score``. :meth:`Metric.score` scores a
:class:`spaq.io.SignalPair` (in memory or streamed) and :meth:`Metric.result` builds every
:class:`MetricResult` from the class attributes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import SpaqError, SpaqInputError
from ..files import json_safe

__all__ = ["MetricResult", "Metric", "MetricUnavailable", "CONTRACT_ATTRIBUTES"]

CONTRACT_ATTRIBUTES = ("name", "version", "description", "unit", "higher_is_better", "score_range", "best_value",
                       "sample_rate", "formats", "needs_reference", "differentiable", "needs_weights", "streamable",
                       "min_duration_s", "align_input", "common_length", "default_rank", "reading", "produces_maps")


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
        d = {
            "score": json_safe(self.score),
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "range": list(self.score_range) if self.score_range else None,
            "version": self.version,
            "values": json_safe(self.values),
            "provenance": json_safe(self.provenance),
            "warnings": list(self.warnings),
        }
        if with_maps:
            d["maps"] = json_safe(self.maps)
        return d


def _per_item(v, batched: bool):
    """A ``(B,)`` tensor/array -> numpy array (batched) or a Python float (one item); other
    values (dicts, lists, strings) pass through."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray) and v.ndim >= 1 and v.dtype.kind in "fiub":
        v = v.astype(np.float64)
        return v if batched else (float(v[0]) if v.ndim == 1 else v[0])
    return v


class Metric:
    """Base class: subclasses set the contract attributes and implement :meth:`forward` (and
    :meth:`score` when scoring a pair needs more than ``forward``: streaming, maps)."""

    name: str = ""
    version: str = "0"
    description: str = ""
    unit: str = ""
    higher_is_better: bool = True
    score_range: tuple | None = None
    best_value: float | None = None
    sample_rate: int = 48000
    formats: tuple = ("binaural", "ambisonics")
    needs_reference: bool = True
    differentiable: bool = False
    needs_weights: bool = False
    streamable: bool = False
    min_duration_s: float = 0.04
    align_input: bool = True
    common_length: bool = True
    #: ``score(pair, maps, sources=...)`` takes the dry mono source of each signal (a mono
    #: :class:`~spaq.io.SignalPair`) when the user gives them (``spaq.score(..., sources=)``)
    accepts_sources: bool = False
    default_rank: int | None = None
    reading: str = ""
    #: ``score(pair, maps=True)`` gives per-band / per-frame maps (``spaq score --maps`` refuses, before any work,
    #: a run whose metrics give none)
    produces_maps: bool = False

    # ----------------------------------------------------------------- contract
    @classmethod
    def best(cls) -> float | None:
        """The score of an identical pair: ``best_value``, else the range's end in the metric's
        direction (None when that end is open, and for reference-free metrics: no identical pair)."""
        if cls.best_value is not None:
            return cls.best_value
        if not cls.needs_reference:
            return None
        if cls.score_range is None:
            return None
        return cls.score_range[1] if cls.higher_is_better else cls.score_range[0]

    @classmethod
    def contract(cls) -> dict:
        """The declared attributes, JSON-ready (``spaq metrics --json``)."""
        d = {a: json_safe(getattr(cls, a)) for a in CONTRACT_ATTRIBUTES}
        d["best_value"] = cls.best()
        return d

    @classmethod
    def available(cls) -> str | None:
        """None when the metric can run here, else the one-line reason (a missing optional
        package: ``spaq metrics`` shows it; constructing the metric raises MetricUnavailable)."""
        return None

    # ----------------------------------------------------------------- entry points
    def forward(self, ref: torch.Tensor, deg: torch.Tensor) -> dict:  # pragma: no cover - interface
        """``ref``, ``deg``: ``(B, C, T)`` at :attr:`sample_rate` (``ref`` None for reference-free
        metrics) -> dict of ``(B,)`` tensors with at least ``score``."""
        raise NotImplementedError

    def double(self) -> "Metric":
        """Compute in float64 throughout (finite-difference checks of gradients); metrics whose
        networks run in float32 override this. Returns self."""
        return self

    def __call__(self, ref, deg) -> dict:
        """:meth:`forward` with torch's threads capped to the free cores (:mod:`spaq.threads`). Also takes numpy
        arrays, and integer PCM (arrays or tensors) scaled to [-1, 1) by its type's full scale, as every other
        entry point reads it (:func:`spaq.io.as_audio_array`); float tensors pass unchanged (gradients kept)."""
        from ..threads import call_threads

        ref, deg = self._as_tensor(ref, "reference"), self._as_tensor(deg, "degraded")
        with call_threads():
            return self.forward(ref, deg)

    def _as_tensor(self, x, label: str):
        if x is None or (isinstance(x, torch.Tensor) and x.is_floating_point()):
            return x
        from ..io import as_audio_array

        device = x.device if isinstance(x, torch.Tensor) else None
        t = torch.from_numpy(as_audio_array(x, f"{self.name}: the {label} signal"))
        return t if device is None else t.to(device)

    def check_tensors(self, ref, deg) -> None:
        """One-line errors for tensors :meth:`forward` cannot take: not ``(B, C, T)`` floating-point tensors
        (a shape with more channels than samples is most likely ``(B, T, C)``), shapes that differ, NaN or
        infinite samples (which no score can read: a NaN counted as no distortion by a NaN-skipping mean scored
        99 with ``quality``)."""
        for label, x in (("reference", ref), ("degraded", deg)):
            if x is None:
                if label == "reference" and not self.needs_reference:
                    continue
                raise SpaqInputError(f"{self.name}: the {label} signal is missing")
            if not isinstance(x, torch.Tensor):
                shape = tuple(x.shape) if hasattr(x, "shape") else ""
                raise SpaqInputError(f"{self.name}: expected a (batch, channels, time) torch tensor for the {label}, "
                                     f"got {type(x).__name__} {shape}".rstrip() + " (calling the metric converts arrays)")
            if x.dim() != 3:
                raise SpaqInputError(f"{self.name}: expected a (batch, channels, time) tensor for the {label}, "
                                     f"got {tuple(x.shape)}")
            if not x.is_floating_point():
                raise SpaqInputError(f"{self.name}: the {label} tensor is {x.dtype}; give float samples in [-1, 1) "
                                     "(calling the metric scales integer PCM by its full scale)")
            if x.shape[-2] > x.shape[-1] and x.shape[-2] > 256:
                raise SpaqInputError(f"{self.name}: the {label} tensor {tuple(x.shape)} has {x.shape[-2]} channels of "
                                     f"{x.shape[-1]} samples: expected (batch, channels, time); is it transposed "
                                     "(batch, time, channels)?")
            if not bool(torch.isfinite(x.detach()).all()):
                bad = int((~torch.isfinite(x.detach())).sum())
                raise SpaqInputError(f"{self.name}: the {label} signal contains NaN or Inf samples ({bad} non-finite "
                                     "values)")
        if ref is not None and ref.shape != deg.shape:
            raise SpaqInputError(f"{self.name}: reference and degraded shapes differ: {tuple(ref.shape)} vs {tuple(deg.shape)}")

    def check_format(self, pair) -> None:
        if pair.format.kind not in self.formats:
            raise MetricUnavailable(f"{self.name} scores {' or '.join(self.formats)} input only, not "
                                    f"{pair.format.describe()}")

    def score(self, pair, maps: bool = False) -> MetricResult:
        """Score a :class:`spaq.io.SignalPair` at :attr:`sample_rate`: the default runs
        :meth:`forward` on the pair's tensors (in memory) under ``no_grad``."""
        self.check_format(pair)
        if pair.streamed:
            raise MetricUnavailable(f"{self.name} does not stream long files; score a shorter excerpt")
        ref = torch.from_numpy(pair.ref) if self.needs_reference else None
        with torch.no_grad():
            out = self.forward(ref, torch.from_numpy(pair.deg))
        s = out.pop("score")
        return self.result(s, out, pair=pair)

    def result(self, score, values: dict | None = None, *, pair=None, batched: bool | None = None,
               provenance: dict | None = None, warnings: list | None = None, maps: dict | None = None) -> MetricResult:
        """The one builder of results: ``score`` and ``values`` as ``(B,)`` tensors/arrays (or
        plain values), unbatched to floats for a single pair; unit, direction, range and
        version from the class attributes; provenance gains the sample rate and input format;
        a pair shorter than ``min_duration_s`` gets a warning."""
        if batched is None:
            batched = bool(pair.batched) if pair is not None else False
        vals = {k: _per_item(v, batched) for k, v in (values or {}).items()}
        prov = {"sample_rate": self.sample_rate}
        if pair is not None:
            prov["input_format"] = pair.format.describe()
        prov.update(provenance or {})
        warn = list(warnings or [])
        if pair is not None and self.min_duration_s and pair.duration_s < self.min_duration_s:
            warn.append(f"{pair.duration_s * 1000:.0f} ms of audio is below the {self.min_duration_s:g} s "
                        f"this metric needs to be meaningful: read the score with care")
        mp = {}
        for k, v in (maps or {}).items():
            a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            mp[k] = a if batched else a[0]
        return MetricResult(name=self.name, score=_per_item(score, batched), version=self.version, unit=self.unit,
                            higher_is_better=self.higher_is_better, score_range=self.score_range, values=vals,
                            maps=mp, provenance=prov, warnings=warn)
