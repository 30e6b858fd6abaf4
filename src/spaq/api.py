"""Public Python API: ``spaq.score``. Never names a metric: it reads each metric's contract
(:mod:`spaq.metrics.base`) for its rate, formats, reference need and constructor options."""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field

from .errors import SpaqError
from .io import SignalPair, load_pair
from .metrics import default_metrics, metric_class
from .metrics.base import MetricResult, MetricUnavailable
from .threads import capped

__all__ = ["score", "predict", "ScoreReport", "DEFAULT_METRICS", "clear_metric_cache"]


def __getattr__(name):  # DEFAULT_METRICS is read from the registry when asked
    if name == "DEFAULT_METRICS":
        return default_metrics()
    raise AttributeError(name)


class _Results(dict):
    """``{metric name: MetricResult}`` whose missing key says why: a metric ``spaq.score`` skipped gives its
    one-line reason (``KeyError("qastanet was skipped: ...")``), one not asked for says which were."""

    def __init__(self, items=(), skipped=None):
        super().__init__(items)
        self._skipped = {} if skipped is None else skipped

    def __missing__(self, name):
        if name in self._skipped:
            raise KeyError(f"{name} was skipped: {self._skipped[name]} (report.skipped)")
        raise KeyError(f"{name} was not scored; scored: {', '.join(self) or 'none'}")


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
    alignment: dict | None = None
    rendered: str | None = None

    def __post_init__(self):
        # report.results["x"] for a skipped metric says why instead of a bare KeyError
        self.results = _Results(self.results, self.skipped)

    def __getitem__(self, name: str) -> MetricResult:
        return self.results[name]

    def to_dict(self, with_maps: bool = False) -> dict:
        return {
            "ref": self.ref, "deg": self.deg, "format": self.format,
            "sample_rate_in": self.sample_rate_in, "sample_rate_used": self.sample_rate_used,
            "duration_s": self.duration_s, "batch_size": self.batch_size, "streamed": self.streamed,
            "warnings": list(self.warnings), "alignment": self.alignment, "rendered": self.rendered,
            "results": {k: v.to_dict(with_maps) for k, v in self.results.items()},
            "skipped": dict(self.skipped),
        }


#: constructor options ``spaq.score`` may pass; each metric gets those its ``__init__`` takes
_OPTIONS = ("device", "fast", "checkpoint", "offline")


def _init_params(cls) -> set:
    """The names a metric class's constructor takes."""
    return set(inspect.signature(cls.__init__).parameters)


def check_n_sources(n_sources, classes: dict) -> int | None:
    """``n_sources`` as an int (None stays None), or a one-line :class:`SpaqInputError`: not a whole
    number >= 1, or none of ``classes`` (``{name: metric class}``) finds sources."""
    if n_sources is None:
        return None
    from .errors import SpaqInputError
    from .localization.localize import check_source_count

    n_sources = check_source_count(n_sources)
    if not any("n_sources" in _init_params(c) for c in classes.values()):
        raise SpaqInputError(f"none of {', '.join(classes)} finds sources (localization does: --metric localization)")
    return n_sources


def checkpoint_metric(classes: dict, checkpoint) -> str | None:
    """The one metric of ``classes`` (``{name: metric class}``) that ``checkpoint`` is for, or None when
    no checkpoint is given: ``qastanet`` when it is named (the CLI's ``--checkpoint`` is QASTAnet's),
    else the one metric named that loads a checkpoint. A one-line :class:`SpaqInputError` when none of
    them loads one, or when several do and ``qastanet`` is not among them (a file of one metric given to
    another would only fail, e.g. QASTAnet's weights read as ``quality``'s parameters)."""
    if checkpoint is None:
        return None
    from .errors import SpaqInputError

    takes = [n for n, c in classes.items() if "checkpoint" in _init_params(c)]
    if "qastanet" in takes:
        return "qastanet"
    if len(takes) == 1:
        return takes[0]
    if not takes:
        raise SpaqInputError(f"a checkpoint was given, but none of {', '.join(classes)} loads one "
                             "(qastanet, quality, sqm and predictor do)")
    raise SpaqInputError(f"a checkpoint was given, but {', '.join(takes)} each load their own: "
                         "score them in separate calls, one checkpoint each")


def _metric_kwargs(cls, **options) -> dict:
    params = _init_params(cls)
    return {k: v for k, v in options.items() if k in params and (v is not None or k == "device")}


def check_device(device) -> str:
    """``device`` as a torch device string, or a one-line :class:`~spaq.errors.SpaqInputError`: an
    unknown device type, or CUDA/MPS asked for where this torch has none (checked before any work)."""
    import torch

    from .errors import SpaqInputError

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise SpaqInputError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise SpaqInputError(f"device {device!r}: CUDA is not available to this torch "
                                 f"({torch.__version__}); use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise SpaqInputError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif d.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SpaqInputError(f"device {device!r}: MPS is not available to this torch; use --device cpu")
    elif d.type not in ("cpu", "cuda", "mps"):
        raise SpaqInputError(f"device {device!r}: spaq runs on cpu or cuda")
    return str(device)


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
        m = metric_class(name)(**kwargs)
    _METRICS[key] = m  # most recently used last
    while len(_METRICS) > _METRICS_MAX:
        _METRICS.pop(next(iter(_METRICS)))
    return m


def clear_metric_cache() -> None:
    """Forget the metric instances ``score`` keeps between calls (frees their tables)."""
    _METRICS.clear()


def _binaural_view(pair: SignalPair) -> SignalPair:
    """The pair's loudspeaker feeds (a layout or mono) rendered binaurally through virtual
    loudspeakers (:func:`spaq.spatial.layouts.render_layout_binaural`); streamed pairs are
    rendered chunk by chunk with the HRIR length of context before each chunk (exact)."""
    from dataclasses import replace

    from .formats import BINAURAL
    from .spatial.layouts import layout_hrirs, render_layout_binaural

    fmt, sr = pair.format, pair.sample_rate_used
    lay = fmt.layout_spec if fmt.layout is not None else "mono"
    if not pair.streamed:
        return replace(pair, ref=render_layout_binaural(pair.ref, lay, sample_rate=sr),
                       deg=render_layout_binaural(pair.deg, lay, sample_rate=sr), format=BINAURAL)
    from .spatial.hrtf import load_hrtf

    taps = layout_hrirs(lay, load_hrtf("default", sr)).shape[-1]
    inner = pair.reader

    class _Rendered:
        n_samples, n_channels, dtype = inner.n_samples, 2, inner.dtype
        on_read = None

        def read(self, a, b):
            a0 = max(0, a - taps)
            r, d = inner.read(a0, b)
            out = tuple(render_layout_binaural(x, lay, sample_rate=sr)[..., a - a0:] for x in (r, d))
            if self.on_read is not None:
                self.on_read(a, b)
            return out

    return replace(pair, format=BINAURAL, reader=_Rendered())


@capped
def score(ref, deg, sample_rate: int | None = None, metrics=None, fmt=None, trim: bool = False,
          checkpoint=None, offline: bool | None = None, maps: bool = False, device: str = "cpu",
          strict: bool = False, fast: bool | None = None, stream: bool | None = None,
          progress=None, align: bool = True, sources=None, n_sources: int | None = None,
          format=None) -> ScoreReport:
    """Score ``deg`` against ``ref``.

    ref, deg: file paths, numpy arrays or torch tensors ``[channels, time]`` or
    ``[batch, channels, time]`` (then ``sample_rate`` is required). Binaural (2 channels) or
    ambisonics ACN/SN3D ((N+1)^2 channels; ``fmt`` overrides, e.g. ``"foa/fuma"``; ``format=`` is the same
    argument under the CLI's name). Each metric gets the pair at its own rate (its ``sample_rate`` attribute; resampled with a
    warning naming the rate). ``metrics``: names (default: the registry's default metrics,
    :func:`spaq.metrics.default_metrics`). Batched input gives ``(B,)`` scores. ``fast``:
    ``None`` (default) leaves each metric its default mode; ``True`` computes every auditory
    band at a reduced rate from a window of its spectrum, ``False`` at full rate in float64
    (see the README). A metric that cannot score this input (binaural for qastanet, missing
    weights) is listed in ``skipped`` with the reason, unless ``strict``.
    ``stream``: two long files (above ``SPAQ_STREAM_MB``, 256 MiB of samples at 48 kHz by
    default: about 44 s of 3OA) are read chunk by chunk, never whole, so memory stays bounded
    (same scores); ``True``/``False`` force it on/off for file inputs (see
    :func:`spaq.io.load_pair`). ``progress``: for streamed pairs, called as
    ``progress(metric, fraction)`` as each metric reads through the files.
    ``ref`` None: reference-free metrics only (``needs_reference = False``); ``deg`` is scored alone.
    When every metric named is reference-free, a ``ref`` given is not read (a warning says so).
    ``device``: checked first (:func:`check_device`: one line for an unknown or unavailable one).
    ``n_sources``: for the metrics that find sources (``localization``), how many to find in each
    signal (default 1); each source's directions and error are in its result's ``values``.
    ``checkpoint``: the weights file of one metric (:func:`checkpoint_metric`: ``qastanet``'s when it is
    named, else the one metric named that loads a checkpoint); the others use their registry's.
    ``align`` (default True): the delay of ``deg`` against ``ref`` is estimated
    (:func:`spaq.auditory.alignment.estimate_delay`: band envelopes, refined on the fine
    structure when it is coherent; +-300 ms) and both are trimmed to their overlap before the
    metrics that declare ``align_input`` see them (``qastanet`` reproduces the official model
    and gets the pair as given); ``report.alignment`` says what was found and done, and an
    estimate too weak to trust is not applied (a warning says so).
    Loudspeaker layouts (``fmt="5.1"``, ...) and mono are rendered binaurally through virtual
    loudspeakers (:func:`spaq.spatial.layouts.render_layout_binaural`, default HRTF, LFE
    dropped) for metrics that score binaural input; ``report.rendered`` says so.

    ``sources``: ``(ref_source, deg_source)``, the dry mono signal each of ``ref`` and ``deg`` was
    rendered from (paths or arrays, same lengths as their signals, at the gain they were rendered
    with), for the metrics that use them (``accepts_sources``: ``sqm`` then scores with its
    source-informed encoder); loaded at each such metric's rate and trimmed like the pair.

    Metric instances are kept between calls (same arguments and ``SPAQ_*`` environment), so a
    loop over many pairs loads each checkpoint once and reuses its tables;
    :func:`clear_metric_cache` frees them.

    Threads: torch runs on the cores free now, at most its current setting
    (:func:`spaq.threads.torch_threads`; ``SPAQ_NUM_THREADS`` overrides), restored afterwards.
    """
    from .formats import format_argument

    fmt = format_argument(fmt, format)
    if isinstance(metrics, str):  # one name: a list of one, not of its letters
        metrics = [metrics]
    names = list(metrics) if metrics else list(default_metrics())
    classes = {n: metric_class(n) for n in names}  # unknown names: one-line error before any work
    device = check_device(device)
    n_sources = check_n_sources(n_sources, classes)
    for_checkpoint = checkpoint_metric(classes, checkpoint)
    if sources is not None:
        from .errors import SpaqInputError

        if not isinstance(sources, (list, tuple)) or len(sources) != 2:
            raise SpaqInputError("sources takes two dry mono signals: the reference's and the degraded signal's")
        if not any(c.accepts_sources for c in classes.values()):
            raise SpaqInputError(f"none of {', '.join(classes)} uses dry sources (sqm does: --metric sqm)")
    ref_free = unused_ref = False
    if ref is None:  # reference-free metrics only: the degraded signal stands in for the pair
        need = [n for n, c in classes.items() if c.needs_reference]
        if need:
            from .errors import SpaqInputError

            raise SpaqInputError(f"no reference given, but {', '.join(need)} need{'s' if len(need) == 1 else ''} one "
                                 f"(reference-free metrics: {', '.join(n for n, c in classes.items() if not c.needs_reference) or 'none named'})")
        ref, align, ref_free = deg, False, True
    elif all(not c.needs_reference for c in classes.values()):  # given, but none of them reads it
        from .io import ARRAY_NAME, _is_pathlike

        unused_ref = str(ref) if _is_pathlike(ref) else ARRAY_NAME
        ref, align, ref_free = deg, False, True
    rates = []
    for cls in classes.values():
        if cls.sample_rate not in rates:
            rates.append(cls.sample_rate)
    pairs: dict = {}

    def pair_at(rate, aligned: bool, common: bool = True) -> SignalPair:
        key = (rate, bool(aligned and align), bool(common))
        if key not in pairs:
            pairs[key] = load_pair(ref, deg, sample_rate=sample_rate, target_rate=rate, fmt=fmt, trim=trim,
                                   stream=stream, align=key[1], keep_lengths=not key[2], reference_free=ref_free)
        return pairs[key]

    first_cls = next(iter(classes.values()))
    first: SignalPair = pair_at(first_cls.sample_rate, first_cls.align_input, first_cls.common_length)
    warnings = list(first.warnings)
    if unused_ref:
        warnings.insert(0, f"{', '.join(classes)} need{'s' if len(classes) == 1 else ''} no reference: "
                           "the reference was not read, the degraded signal is scored alone")
    report = ScoreReport(
        ref=unused_ref or first.ref_name, deg=first.deg_name, format=first.format.to_dict(),
        sample_rate_in=first.sample_rate_in, sample_rate_used=first.sample_rate_used,
        duration_s=round(first.duration_s, 6), batch_size=first.ref.shape[0] if first.batched else None,
        streamed=first.streamed, warnings=warnings, alignment=first.alignment,
    )
    resampled = {}
    kind = first.format.kind
    for n, cls in classes.items():
        render = kind not in cls.formats and kind in ("layout", "mono") and "binaural" in cls.formats
        if kind not in cls.formats and not render and not strict:
            # before loading it: a missing checkpoint is not the reason it cannot score this pair
            report.skipped[n] = f"{n} scores {' or '.join(cls.formats)} input only, not {first.format.describe()}"
            continue
        try:
            pair = pair_at(cls.sample_rate, cls.align_input, cls.common_length)
            if report.alignment is None and pair.alignment is not None:
                report.alignment = pair.alignment
                report.warnings.extend(w for w in pair.warnings if w not in report.warnings)
            if render:
                pair = _binaural_view(pair)
                report.rendered = f"{first.format.describe()} rendered binaurally (virtual loudspeakers, default HRTF)"
            if pair.sample_rate_in != pair.sample_rate_used:
                resampled.setdefault(pair.sample_rate_used, []).append(n)
            if pair.streamed and progress is not None:
                pair.reader.on_read = lambda a, b, n=n, p=pair: progress(n, b / p.n_samples)
            if pair.streamed and not cls.streamable:
                raise MetricUnavailable(f"{n} does not stream long files; score a shorter excerpt")
            kwargs = _metric_kwargs(cls, device=device, fast=fast, checkpoint=checkpoint if n == for_checkpoint else None,
                                    offline=offline, n_sources=n_sources)
            extra = {}
            if sources is not None and cls.accepts_sources:
                try:
                    extra["sources"] = load_pair(sources[0], sources[1], sample_rate=sample_rate,
                                                 target_rate=cls.sample_rate, fmt="mono", trim=trim, stream=False,
                                                 align=False, keep_lengths=not cls.common_length)
                except SpaqError as e:  # its labels say ref/deg: say which pair it is
                    raise type(e)(f"the dry sources (ref source, deg source) must be one mono signal each: {e}") from None
            res = _get_metric(n, kwargs).score(pair, maps=maps, **extra)
        except SpaqError as e:  # MetricUnavailable included
            if strict:
                raise
            report.skipped[n] = str(e)
            continue
        res.provenance.setdefault("metric", n)
        res.provenance["input_format"] = (f"{first.format.describe()} (rendered binaurally)" if render
                                          else pair.format.describe())
        report.results[n] = res
        report.warnings.extend(f"{n}: {w}" for w in res.warnings)
    for rate, who in resampled.items():
        who = [n for n in who if n in report.results]  # a metric skipped afterwards scored nothing at that rate
        if who:
            report.warnings.insert(0, f"resampled from {first.sample_rate_in} Hz to {rate} Hz ({', '.join(who)}'s rate)")
    if not report.results and report.skipped:
        raise SpaqError("no metric could score this pair: " + "; ".join(f"{k}: {v}" for k, v in report.skipped.items()))
    return report


def _all_zero_items(x):
    """For an array/tensor ``(C, T)`` or ``(B, C, T)`` with samples: whether each item is all
    zeros (a 0-d or ``(B,)`` bool array); None for anything else (the loader reports it)."""
    import numpy as np

    try:
        a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    except Exception:
        return None
    if a.ndim not in (2, 3) or a.size == 0 or a.dtype.kind not in "fiu":
        return None
    z = ~np.any(a != 0, axis=(-2, -1))
    return np.asarray(z)


def _silent_kind(n_ch: int, fmt) -> str:
    """The format :func:`predict` reports for a silent signal of ``n_ch`` channels (what the
    ``predictor`` metric detects for a sounding one); a channel count or ``fmt`` that is no format it
    scores raises the same one-line :class:`SpaqInputError` as for sound."""
    from .errors import SpaqInputError
    from .io import _resolve_format
    from .metrics.functional.predictor import signal_kind

    f, _ = _resolve_format(fmt, n_ch, "the signal")
    if f.kind in ("mono", "layout"):  # layouts are rendered binaurally before the predictor sees them
        return "mono" if f.kind == "mono" else "binaural"
    try:
        return signal_kind(n_ch, f.kind)
    except ValueError as e:
        raise SpaqInputError(f"predictor: {e}") from None


def predict(x, sample_rate: int | None = None, fmt=None, checkpoint=None, *, format=None) -> dict | list:
    """Reference-free quality of ``x`` (the ``predictor`` metric): a file path, a numpy array /
    torch tensor ``(channels, time)`` or ``(batch, channels, time)`` (``sample_rate`` required),
    ``(time,)`` (mono), or a list of those or of paths (each scored on its own: lengths may differ).
    1 channel is mono, 2 binaural, (N+1)^2 ambisonics ACN/SN3D (``fmt`` or ``format`` overrides, e.g. ``"foa/fuma"``
    or a loudspeaker layout, rendered binaurally: ``format`` is then ``binaural``, ``input_format`` the
    layout, and a warning says so).

    Returns, per signal, ``{"score": 0..100, "class": "low"|"medium"|"high" (the class head),
    "score_band": the band the score falls in (the score head; the two estimates disagree on about one
    item in eight), "mushra_calibrated":
    0..100 (the score mapped to the speech-codec MUSHRA ratings), "probabilities":
    {...}, "format": detected, "level_dbfs": the mono mix's RMS level (None when silent; a warning
    when it is off the levels the weights were trained on), "warnings": [...]}``: one dict, or a list for a batch or a list
    of paths. Raises :class:`SpaqInputError` (one line) for empty, too short, non-finite input
    or channel counts that are no known format; silence scores 0 (class low) with a warning."""
    import numpy as np

    from .errors import SpaqInputError
    from .formats import format_argument
    from .io import _is_pathlike

    fmt = format_argument(fmt, format)
    if isinstance(x, (list, tuple)) and len(x) == 0:
        raise SpaqInputError("nothing to predict: x is an empty list; give a file path, an array or a list of them")
    if isinstance(x, (list, tuple)) and x and any(_is_pathlike(p) or len(getattr(p, "shape", ())) > 0 for p in x):
        # (numpy scalars have a shape too, (): a list of them is one signal's samples, read below)
        # a list of signals (paths, arrays, tensors; lengths may differ): each on its own
        out = []
        for i, p in enumerate(x):
            try:
                out.append(predict(p, sample_rate=None if _is_pathlike(p) else sample_rate, fmt=fmt,  # files: their own
                                   checkpoint=checkpoint))
            except SpaqInputError as e:
                where = str(p) if _is_pathlike(p) else f"item {i}"
                msg = str(e)
                raise SpaqInputError(msg if _is_pathlike(p) and str(p) in msg else f"{where}: {msg}") from None
        return out
    if _is_pathlike(x):  # read once (the pair below is this signal twice)
        from .io import check_file_rate, read_audio

        name = str(x)
        x, file_rate = read_audio(x)
        sample_rate = check_file_rate(file_rate, sample_rate, name)
    elif isinstance(x, (list, tuple)):  # one signal's samples as a (nested) list
        from .io import as_audio_array

        x = as_audio_array(x, "x")
    if hasattr(x, "shape") and len(x.shape) == 1:  # one channel given as (time,): mono
        x = x[None]
    if fmt is None and hasattr(x, "shape") and len(x.shape) >= 2 and int(x.shape[-2]) == 1:
        fmt = "mono"
    silent = _all_zero_items(x)
    if silent is not None and silent.any():  # digital silence: the defined answer, no features
        from .models.predictor import CLASS_NAMES

        answer = {"score": 0.0, "class": "low", "score_band": "low", "mushra_calibrated": 0.0,
                  "probabilities": {c: float(c == "low") for c in CLASS_NAMES},
                  "format": _silent_kind(int(np.shape(x)[-2]), fmt), "level_dbfs": None,
                  "warnings": ["silent input (all samples are zero): score 0, class low by definition"]}
        if silent.ndim == 0:
            return answer
        rest = predict(np.asarray(x)[~silent], sample_rate=sample_rate, fmt=fmt,
                       checkpoint=checkpoint) if (~silent).any() else []
        it = iter(rest)
        return [dict(answer) if z else next(it) for z in silent]
    try:
        rep = score(None, x, sample_rate=sample_rate, metrics=["predictor"], fmt=fmt, checkpoint=checkpoint,
                    strict=True, align=False)
    except SpaqInputError as e:
        # one signal, not a pair: the loader's "deg <array>" label reads "the signal" where it is the
        # subject ("... is too short") and goes where it is a prefix ("deg <array>: 3 channels ...")
        import re

        msg = re.sub(r"\b(?:ref|deg|reference|degraded) <array>(: ?| )",
                     lambda m: "" if m.group(1).startswith(":") else "the signal ", str(e)).strip()
        raise SpaqInputError(re.sub(r"^(?:ref|deg) is an array", "x is an array", msg)) from None
    r = rep.results["predictor"]
    rendered = rep.rendered is not None  # a loudspeaker layout, heard binaurally: say what it was
    import re

    # the reader's warnings (content that does not fit the format, clipping, resampling), about one signal:
    # "deg (f.wav): ..." reads "f.wav: ...", "deg <array> ..." "the signal ..."
    loader = [re.sub(r"\bdeg <array>", "the signal", re.sub(r"\bdeg \(([^)]*)\)", r"\1", w)) for w in rep.warnings
              if not w.startswith("predictor: ")]  # (the metric's own are in r.warnings, below)
    from .models.predictor import CLASS_NAMES

    def one(i=None):
        g = (lambda k: float(r.values[k])) if i is None else (lambda k: float(r.values[k][i]))
        cls = r.values["class"] if i is None else r.values["class"][i]
        return {"score": float(r.score) if i is None else float(r.score[i]), "class": cls,
                "score_band": r.values["score_band"] if i is None else r.values["score_band"][i],
                "mushra_calibrated": g("mushra_calibrated"),
                "probabilities": {c: g(f"proba_{c}") for c in CLASS_NAMES},
                "format": r.values["detected_format"], "level_dbfs": round(g("level_dbfs"), 2),
                **({"input_format": rep.format["description"]} if rendered else {}),
                "warnings": loader + ([f"{rep.rendered}: scored as binaural"] if rendered else []) + list(r.warnings)}

    if rep.batch_size is None:
        return one()
    if rep.batch_size == 0:
        raise SpaqInputError("empty batch")
    return [one(i) for i in range(rep.batch_size)]
