"""Corpus scoring: a manifest of (reference, degraded) pairs -> one results table.

    >>> from spaq.batch import score_batch, summary
    >>> df = score_batch("corpus/", "scores.parquet", metrics=["quality", "cues"], workers=2)
    >>> summary(df)["metrics"]["quality"]["mean"]

Input (:func:`read_pairs`): a spaq corpus folder (its ``manifest.parquet``), a ``.parquet``
or a ``.csv`` with columns ``reference_path``/``degraded_path`` (corpus manifests) or
``ref``/``deg``; optional ``id`` or ``item_id`` (default: the row number) and ``format``
(``binaural``, ``foa``, ``hoa3/n3d`` ...; default: detected from the channel count); optional
``ref_source``/``deg_source`` (both): the dry mono signal each side was rendered from, passed to
the metrics that use them (``sqm``; as ``spaq score --source``), and listed in the table after
``deg``; a row with both cells empty is scored without them.
Relative paths are relative to the manifest's folder.

Output (:func:`score_batch`): one row per pair, in manifest order, columns

    id, ref, deg, status ("ok" | "error"), error (one line, "" when ok), format, duration_s,
    delay_ms (the delay of deg found by the alignment; NaN when none was estimated) and delay_applied
    ("yes" | "no": an unreliable or sub-millisecond estimate is reported, not applied), then per metric M
    (in the order asked):  M (its score), M.<value> for each numeric
    scalar in ``MetricResult.values`` (e.g. ``quality.timbral_score``; a short list of numbers or
    of such dicts, one entry per source, becomes ``M.<value>.<i>[.<key>]``, i from 1, e.g.
    ``localization.error_deg.2``, ``localization.reference_directions.1.azimuth_deg``), M.skipped
    (why M could not score this pair, "" when it did). The manifest's other columns (a listening test's
    condition and item, a corpus's severity...) come after ``duration_s``, as they are (a name the table
    already uses gets ``manifest.``).

A pair that cannot be scored (missing file, silence, wrong channel count, NaN samples,
lengths that differ: any :class:`~spaq.errors.SpaqError` of :func:`spaq.score`, or an
unexpected exception, then recorded as ``TypeName: message``) gets status ``error`` and
NaN scores; the run goes on.

Resumable: each finished pair is appended to the journal ``OUT.partial.jsonl`` (fsynced)
whose first line records the metrics and options; ``resume=True`` skips the pairs it holds
(and refuses a journal written with other metrics/options, naming them, or for other files), except
those whose files changed since they were scored (each record holds a :func:`file_fingerprint` of its
files; records without one, from an earlier spaq, are scored again too). The table
is written to ``OUT`` (``.parquet`` or ``.csv``) atomically at the end and the journal
removed, so an interrupted run leaves the journal and never a partial ``OUT``. While items
failed the journal stays beside the table, and ``resume=True`` scores only those again.

Parallel: ``workers > 1`` scores in spawned processes (one BLAS thread each);
``dask="tcp://host:8786"`` on a running Dask cluster (the workers must have spaq installed
and see the audio files under the same paths), ``dask="local"`` on a local cluster of
``workers`` processes. Every pair is one task returning a plain dict; the table is the
same for any number of workers.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import threading

from .errors import SpaqError
from .extras import install_hint
from .jobs import append_journal, children_ignore_sigint, make_pool, read_journal, read_journal_header, write_journal_header

__all__ = ["read_pairs", "score_batch", "summary", "BatchFailed", "BatchInterrupted", "BASE_COLUMNS", "SOURCE_COLUMNS",
           "journal_path", "file_fingerprint"]

BASE_COLUMNS = ["id", "ref", "deg", "status", "error", "format", "duration_s", "delay_ms", "delay_applied", "warnings"]
#: the base columns that hold numbers (NaN where a pair was not scored, or an older journal has no value)
_NUMERIC_BASE = ("duration_s", "delay_ms")
#: optional manifest columns: the dry mono sources of each side (metrics with ``accepts_sources``)
SOURCE_COLUMNS = ("ref_source", "deg_source")
_JOURNAL_VERSION = 1


class BatchFailed(SpaqError):
    """Raised by ``score_batch(..., strict=True)`` after the table was written when some pairs
    failed; ``.table`` is the table, ``.n_failed`` / ``.n_items`` the counts."""

    def __init__(self, message: str, table, n_failed: int, n_items: int):
        super().__init__(message)
        self.table = table
        self.n_failed = n_failed
        self.n_items = n_items


class BatchInterrupted(KeyboardInterrupt):
    """Raised by :func:`score_batch` in place of the KeyboardInterrupt (Ctrl-C, or SIGTERM where the
    caller turns it into one) that stopped a run once its journal was open: ``.n_done`` of ``.n_items``
    pairs are recorded in ``.journal``, and the same call with ``resume=True`` scores the rest."""

    def __init__(self, n_done: int, n_items: int, journal: str):
        super().__init__(f"{n_done} of {n_items} pairs done; the pairs scored so far are in {journal}")
        self.n_done = n_done
        self.n_items = n_items
        self.journal = journal


def _pandas():
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is in the data extra
        raise SpaqError(f"spaq batch needs pandas and pyarrow: {install_hint('data')}") from None
    return pd


def _one_line(s) -> str:
    return " ".join(str(s).split())


def journal_path(out) -> str:
    """Where :func:`score_batch` journals a run writing ``out``: ``<out>.partial.jsonl``."""
    return os.fspath(out) + ".partial.jsonl"


# --------------------------------------------------------------------------- input


def _cell(v) -> str:
    """A manifest cell as a string ("" for missing/NaN)."""
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return ""
    return str(v).strip()


def _normalise_pairs(df, base: str, source: str):
    """``df`` with ref/deg (or reference_path/degraded_path), optional id/item_id, format ->
    DataFrame ``id, ref, deg, format`` (all strings; paths resolved against ``base``)."""
    pd = _pandas()
    cols = set(df.columns)
    if {"ref", "deg"} <= cols:
        rc, dc = "ref", "deg"
    elif {"reference_path", "degraded_path"} <= cols:
        rc, dc = "reference_path", "degraded_path"
    elif "deg" in cols or "degraded_path" in cols:  # no reference column: reference-free metrics only
        rc, dc = None, ("deg" if "deg" in cols else "degraded_path")
    else:
        raise SpaqError(f"{source} needs columns ref,deg (or reference_path,degraded_path; a degraded column "
                        f"alone for reference-free metrics); it has: {', '.join(map(str, df.columns)) or 'none'}")
    if len(df) == 0:
        raise SpaqError(f"{source} lists no pairs")
    idc = "id" if "id" in cols else ("item_id" if "item_id" in cols else None)
    ids = [_cell(v) for v in df[idc]] if idc else [str(i) for i in range(len(df))]
    if idc and any(not i for i in ids):
        raise SpaqError(f"{source}: empty {idc} in row {ids.index('')}")
    seen, dups = set(), []
    for i in ids:
        if i in seen and i not in dups:
            dups.append(i)
        seen.add(i)
    if dups:
        more = f" and {len(dups) - 5} more" if len(dups) > 5 else ""
        raise SpaqError(f"{source}: duplicate {idc} {', '.join(dups[:5])}{more}")

    def resolve(p: str) -> str:
        return os.path.normpath(os.path.join(base, os.path.expanduser(p))) if p else ""

    refs = [resolve(_cell(v)) for v in df[rc]] if rc else [""] * len(df)
    degs = [resolve(_cell(v)) for v in df[dc]]
    if not any(degs):
        raise SpaqError(f"{source}: no row has a {dc} (a corpus of single signals has no pairs to score)")
    fmts = [_cell(v) for v in df["format"]] if "format" in cols else [""] * len(df)
    out = pd.DataFrame({"id": ids, "ref": refs, "deg": degs, "format": fmts}, dtype=object)
    used = {rc, dc, idc, "format", *SOURCE_COLUMNS}
    for c in df.columns:  # the manifest's other columns travel to the results table (manifest_columns)
        if c not in used and str(c) not in out.columns:
            out[str(c)] = df[c].to_numpy()
    src_cols = [c for c in SOURCE_COLUMNS if c in cols]
    if src_cols:
        if len(src_cols) == 1:
            other = next(c for c in SOURCE_COLUMNS if c not in cols)
            raise SpaqError(f"{source} has a {src_cols[0]} column but no {other}: dry sources come in pairs, "
                            f"one for each side")
        for c in SOURCE_COLUMNS:
            out[c] = [resolve(_cell(v)) for v in df[c]]
        half = [i for i, r, d in zip(ids, out["ref_source"], out["deg_source"]) if bool(r) != bool(d)]
        if half:
            raise SpaqError(f"{source}: item {half[0]} has only one of ref_source, deg_source (give both, or "
                            f"neither to score it without sources)")
    return out


def read_pairs(manifest):
    """The pairs of a manifest as a DataFrame ``id, ref, deg, format`` (strings, one row per
    pair, manifest order; ``format`` "" means detect from the channel count), plus
    ``ref_source, deg_source`` when the manifest has them ("" where a row has none).

    ``manifest``: a spaq corpus folder (``spaq generate`` output: its ``manifest.parquet``), a
    ``.parquet`` file or a ``.csv`` file (read as text: ids keep their leading zeros). Columns:
    ``ref``/``deg`` or ``reference_path``/``degraded_path``; optional ``id`` or ``item_id``
    (default: the row number "0", "1", ...), optional ``format``. Relative paths resolve
    against the manifest's folder. Raises :class:`SpaqError` for a missing or unreadable
    manifest, missing columns, duplicate ids or no pairs.
    """
    pd = _pandas()
    path = os.path.abspath(os.path.expanduser(os.fspath(manifest)))
    if os.path.isdir(path):
        from .data.corpus import read_manifest

        df = read_manifest(path)
        base, source = path, os.path.join(os.fspath(manifest), "manifest.parquet")
    elif not os.path.exists(path):
        raise SpaqError(f"manifest {manifest} not found")
    else:
        base, source = os.path.dirname(path), os.fspath(manifest)
        ext = os.path.splitext(path)[1].lower()
        try:
            if ext == ".parquet":
                df = pd.read_parquet(path)
            elif ext == ".csv":
                df = pd.read_csv(path, dtype=str, keep_default_na=False)
            else:
                raise SpaqError(f"manifest {manifest}: expected a corpus folder, a .parquet or a .csv file")
        except SpaqError:
            raise
        except pd.errors.EmptyDataError:
            raise SpaqError(f"manifest {manifest} is empty") from None
        except Exception as e:  # pyarrow / parser errors: one line, no traceback
            raise SpaqError(f"cannot read manifest {manifest}: {_one_line(e)}") from None
    return _normalise_pairs(df, base, source)


def _as_pairs(pairs_or_manifest):
    pd = _pandas()
    if isinstance(pairs_or_manifest, pd.DataFrame):
        return _normalise_pairs(pairs_or_manifest, os.getcwd(), "pairs table")
    if isinstance(pairs_or_manifest, (list, tuple)):
        rows = [p if isinstance(p, dict) else {"ref": p[0], "deg": p[1]} for p in pairs_or_manifest]
        return _normalise_pairs(pd.DataFrame(rows, columns=None if rows else ["ref", "deg"]), os.getcwd(),
                                "pairs list")
    return read_pairs(pairs_or_manifest)


# --------------------------------------------------------------------------- one pair (runs in workers)

_SCORE_LOCK = threading.Lock()  # score() caches metric instances per process: one pair at a time


def _num(v):
    """A numeric scalar as float, else None (lists, dicts, strings, bools are not columns)."""
    if isinstance(v, bool):
        return None
    try:
        import numpy as np

        if isinstance(v, np.ndarray):
            if v.ndim != 0:
                return None
            v = v.item()
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            return float(v)
    except (TypeError, ValueError):
        pass
    return None


#: the longest list value flattened into columns (one entry per source; per-band arrays stay out)
MAX_LIST_COLUMNS = 16


def _flat_values(values: dict):
    """``(column suffix, float)`` of a result's values: numeric scalars as they are; a list of at most
    :data:`MAX_LIST_COLUMNS` numbers or dicts of numbers (one per source) as ``name.i`` /
    ``name.i.key``, i from 1. Anything else (strings, long arrays, nested lists) is no column."""
    for k, v in values.items():
        x = _num(v)
        if x is not None:
            yield k, x
        elif isinstance(v, (list, tuple)) and 0 < len(v) <= MAX_LIST_COLUMNS:
            for i, e in enumerate(v, 1):
                if isinstance(e, dict):
                    for kk, vv in e.items():
                        if _num(vv) is not None:
                            yield f"{k}.{i}.{kk}", _num(vv)
                elif _num(e) is not None:
                    yield f"{k}.{i}", _num(e)


#: a file's fingerprint reads at most this many blocks of :data:`_FP_BLOCK` bytes (the first, the last and
#: evenly spaced ones between): 16 KiB per file, whatever its length
_FP_BLOCKS = 4
_FP_BLOCK = 4096


def file_fingerprint(path: str):
    """A cheap fingerprint of the file at ``path``, as a resume checks that an item's files are the ones
    it scored: ``{"size": int, "mtime_ns": int, "sample_sha256": str}`` (the sha256 of :data:`_FP_BLOCKS`
    blocks of :data:`_FP_BLOCK` bytes at evenly spaced offsets, the first and last among them: the whole
    file up to 16 KiB), or ``None`` when the file cannot be read. A file rewritten since has another mtime;
    one copied over it with its mtime kept (``cp -p``, ``rsync -a``) and the same size (same length and
    format) is caught by the sampled blocks unless it differs only between them."""
    import hashlib

    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            h = hashlib.sha256()
            last = max(st.st_size - _FP_BLOCK, 0)
            for k in range(_FP_BLOCKS):
                f.seek(last * k // (_FP_BLOCKS - 1))
                h.update(f.read(_FP_BLOCK))
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sample_sha256": h.hexdigest()}


def _input_paths(ref: str, deg: str, sources) -> dict:
    """``{role: path}`` of an item's input files (``ref``, ``deg``, ``ref_source``, ``deg_source``; only
    those it has)."""
    paths = {"ref": ref, "deg": deg}
    if sources:
        paths["ref_source"], paths["deg_source"] = sources
    return {k: v for k, v in paths.items() if v}


def _score_one(task: dict) -> dict:
    """Score one pair; never raises for a bad pair. ``task``: ``id, ref, deg, format,
    metrics, fast, device``. Returns a plain (JSON-able, picklable) record: ``id, ref, deg,
    status, error, format, duration_s, results {metric: {"score": float, "values": [[name,
    float], ...]}}, skipped {metric: reason}``, ``inputs {role: file_fingerprint(path)}`` (taken
    before the files are read: a file changed while it is scored is scored again on a resume)."""
    from .api import score

    rec = {"id": task["id"], "ref": task["ref"], "deg": task["deg"], "status": "ok", "error": "",
           "format": "", "duration_s": float("nan"), "delay_ms": float("nan"), "delay_applied": "", "warnings": "",
           "results": {}, "skipped": {}}
    if task.get("sources"):
        rec["ref_source"], rec["deg_source"] = task["sources"]
    rec["inputs"] = {k: file_fingerprint(p) for k, p in _input_paths(task["ref"], task["deg"], task.get("sources")).items()}
    try:
        from .metrics import metric_class

        names = list(task["metrics"])
        if not task["deg"]:
            raise SpaqError("no degraded path in the manifest")
        if not task["ref"]:  # only the reference-free metrics can score it; the others are skipped
            need = [n for n in names if metric_class(n).needs_reference]
            names = [n for n in names if n not in need]
            if not names:
                raise SpaqError("no reference path in the manifest")
            rec["skipped"] = {n: "no reference path in the manifest" for n in need}
        fmt = task["format"] or None
        if not task["ref"] and fmt is None:
            fmt = _mono_or_none(task["deg"])
        src = task.get("sources")
        with _SCORE_LOCK:
            rep = score(task["ref"] or None, task["deg"], metrics=names, fmt=fmt,
                        fast=task["fast"], device=task["device"], checkpoint=task.get("checkpoint"),
                        offline=task.get("offline"), align=task.get("align", True),
                        sources=tuple(src) if src else None, n_sources=task.get("n_sources"))
        rec["format"] = rep.format.get("description") or rep.format.get("kind", "")
        rec["duration_s"] = float(rep.duration_s)
        # what spaq score would print above its table (the reader's findings, each metric's, prefixed): one cell
        rec["warnings"] = " | ".join(_one_line(w) for w in rep.warnings)
        if rep.alignment:  # the delay found (NaN when not estimated: --no-align, reference-free metrics only)
            rec["delay_ms"] = float(rep.alignment.get("delay_ms", float("nan")))
            rec["delay_applied"] = "yes" if rep.alignment.get("applied") else "no"
        for name, res in rep.results.items():
            vals = [[k, v] for k, v in _flat_values(res.values)]
            s = _num(res.score)
            rec["results"][name] = {"score": float("nan") if s is None else s, "values": vals}
        rec["skipped"].update({k: _one_line(v) for k, v in rep.skipped.items()})
    except SpaqError as e:
        rec.update(status="error", error=_one_line(e))
    except Exception as e:  # a bug or an odd file: record it, keep going
        rec.update(status="error", error=_one_line(f"{type(e).__name__}: {e}"))
    if rec["status"] == "error" and task["format"]:
        rec["format"] = _describe_format(task["format"])
    return rec


def _mono_or_none(path: str):
    """"mono" for a one-channel file (a reference-free metric scores it as mono), else None."""
    try:
        import soundfile as sf

        return "mono" if sf.info(path).channels == 1 else None
    except Exception:  # unreadable: scoring says why
        return None


def _describe_format(fmt: str) -> str:
    try:
        from .formats import parse_format

        return parse_format(fmt).describe()
    except Exception:
        return fmt


# --------------------------------------------------------------------------- executors


@contextlib.contextmanager
def _executor(n_tasks: int, workers: int, dask):
    """Start what scores the pairs (nothing, a spawn pool, a Dask client) and yield
    ``run(tasks) -> iterator of _score_one records`` (completion order); stops it on exit.
    Entered before any file is touched, so a wrong scheduler address changes nothing."""
    if dask is not None:
        with _dask_client(workers, dask) as client:
            import distributed

            futures: list = []

            def run_dask(tasks):
                futures.extend(client.map(_score_one, tasks, pure=False))
                return (f.result() for f in distributed.as_completed(futures))

            try:
                yield run_dask
            except KeyboardInterrupt:
                # a cluster of our own is closed with its workers: cancelling their running tasks first only
                # makes each worker log a warning per task; a cluster of the user's keeps running, so cancel
                if futures and dask != "local":
                    client.cancel(futures)
                raise
            else:
                if futures:
                    client.cancel(futures)
        return
    if workers == 1 or n_tasks <= 1:
        yield lambda tasks: map(_score_one, tasks)
        return
    pool = make_pool(min(workers, n_tasks))
    try:
        yield lambda tasks: pool.imap_unordered(_score_one, tasks, chunksize=1)
    finally:
        pool.terminate()
        pool.join()


class _QuietClose(logging.Filter):
    """Drops what the workers of a local cluster log when the run stops them mid-task (Ctrl-C, SIGTERM):
    the warning for each task still running ("Async instruction ... ended with CancelledError", logged only
    by ``Worker.close``) and the traceback of a heartbeat that finds the scheduler gone (it lives in the
    process that runs spaq batch, so it is gone only when that process stops the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.endswith("ended with CancelledError")
                    or msg.startswith("Failed to communicate with scheduler during heartbeat"))


def _quiet_close_plugin():
    """A Dask worker plugin that adds :class:`_QuietClose` to each worker's loggers (local clusters only)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietClose(WorkerPlugin):
        name = "spaq-quiet-close"

        def setup(self, worker):
            for name in ("distributed.worker.state_machine", "distributed.worker"):
                logging.getLogger(name).addFilter(_QuietClose())

    return QuietClose()


@contextlib.contextmanager
def _dask_client(workers: int, dask):
    """A ``distributed.Client``: the one given, one connected to a scheduler address, or one
    on a new LocalCluster of ``workers`` one-thread processes (``"local"``); closed on exit
    unless it was given."""
    try:
        import distributed
    except ImportError:
        raise SpaqError(f"--dask needs dask.distributed: {install_hint('dask')}") from None
    if isinstance(dask, distributed.Client):
        yield dask
        return
    cluster = client = quiet = quiet_level = None
    try:
        if dask == "local":
            import dask as dask_mod

            # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers (memory goes back to
            # the OS sooner); with torch's many short-lived buffers that made scoring 1.5-2x
            # slower (24 two-second binaural pairs, default metrics, 2 workers: 8.0 s -> 3.6 s
            # warm). Keep the one-thread settings, leave malloc alone.
            key = "distributed.nanny.pre-spawn-environ"
            env = {k: v for k, v in (dask_mod.config.get(key, None) or {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
            env.update(OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1)
            try:  # workers that ignore Ctrl-C: this process stops them (no traceback from each)
                with dask_mod.config.set({key: env}), children_ignore_sigint():
                    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=None)
            except Exception as e:  # workers that do not start (e.g. a main module they cannot import)
                raise SpaqError(f"could not start a local Dask cluster: {_one_line(e)}") from None
            client = distributed.Client(cluster)
            client.register_plugin(_quiet_close_plugin())
        elif isinstance(dask, str) and dask:
            try:
                client = distributed.Client(dask, timeout="10s")
            except (OSError, TimeoutError, ValueError) as e:
                raise SpaqError(f"cannot connect to the dask scheduler at {dask}: {_one_line(e)}") from None
        else:
            raise SpaqError(f"--dask takes a scheduler address (tcp://host:8786) or 'local', not {dask!r}")
        yield client
    except KeyboardInterrupt:  # tasks cut short: the scheduler's and nannies' warnings about them are noise
        quiet = logging.getLogger("distributed")
        quiet_level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        raise
    finally:
        try:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        finally:
            if quiet is not None:
                quiet.setLevel(quiet_level)


# --------------------------------------------------------------------------- table


def _table(pairs, done: dict, names: list):
    """Rows of ``done`` (journal records keyed by id) in the order of ``pairs``."""
    pd = _pandas()
    recs = [done[i] for i in pairs["id"] if i in done]
    value_names = {n: [] for n in names}
    for r in recs:
        for n, res in r["results"].items():
            if n in value_names:
                for k, _ in res["values"]:
                    if k not in value_names[n]:
                        value_names[n].append(k)
    base = list(BASE_COLUMNS)
    if "ref_source" in pairs.columns:
        base[3:3] = list(SOURCE_COLUMNS)
    cols = {c: [] for c in base}
    for n in names:
        cols[n] = []
        for k in value_names[n]:
            cols[f"{n}.{k}"] = []
        cols[f"{n}.skipped"] = []
    nan = float("nan")
    for r in recs:
        for c in base:
            cols[c].append(r.get(c, nan if c in _NUMERIC_BASE else ""))
        for n in names:
            res = r["results"].get(n)
            cols[n].append(res["score"] if res else nan)
            vals = dict(res["values"]) if res else {}
            for k in value_names[n]:
                v = vals.get(k)
                cols[f"{n}.{k}"].append(nan if v is None else v)
            cols[f"{n}.skipped"].append(r["skipped"].get(n, ""))
    df = pd.DataFrame(cols)
    for c in cols:
        if c in _NUMERIC_BASE or (c not in base and not c.endswith(".skipped")):
            df[c] = df[c].astype("float64")
    # the manifest's other columns (condition, item, severity...), as they are, after the bookkeeping ones: the
    # table joins with listening scores on them; a name the table already uses gets "manifest."
    extra = manifest_columns(pairs)
    if extra:
        rows = pairs.set_index("id").loc[[r["id"] for r in recs], extra] if recs else pairs[extra].iloc[:0]
        at = len(base)
        for c in extra:
            name = c if c not in df.columns else f"manifest.{c}"
            df.insert(at, name, rows[c].to_numpy())
            at += 1
    return df


def manifest_columns(pairs) -> list:
    """The columns of a pairs table (:func:`read_pairs`) that come from the manifest as they are: every column
    but the pair's own (``id``, ``ref``, ``deg``, ``format``, the dry sources)."""
    return [c for c in pairs.columns if c not in ("id", "ref", "deg", "format", *SOURCE_COLUMNS)]


def metric_columns(df) -> list:
    """The metric columns of a :func:`score_batch` table: each metric ``M`` has its ``M.skipped`` column."""
    return [c for c in df.columns if f"{c}.skipped" in df.columns]


def _write_table(df, out: str) -> None:
    from .files import atomic_write  # temp file in the same folder + os.replace

    if out.lower().endswith(".parquet"):
        atomic_write(out, lambda p: df.to_parquet(p, index=False))
    else:
        atomic_write(out, lambda p: df.to_csv(p, index=False))


# --------------------------------------------------------------------------- driver


def _packaged_weights() -> dict:
    """``{name: sha256}`` of every weight file shipped inside the package (``spaq.weights.REGISTRY``):
    part of the resume fingerprint, so that weights replaced under the same spaq version (a
    development install, a retrained model) never mix two models' scores in one table."""
    from .weights import REGISTRY

    return {n: spec.sha256 for n, spec in sorted(REGISTRY.items()) if spec.packaged}


def _fingerprint(names: list, fast, device: str, checkpoint=None, align: bool = True, n_sources=None) -> dict:
    from . import __version__

    fp = {"tool": "spaq batch", "journal_version": _JOURNAL_VERSION, "spaq": __version__, "metrics": list(names),
          "fast": fast, "device": str(device), "weights": _packaged_weights()}
    if checkpoint is not None:
        fp["checkpoint"] = str(checkpoint)
    if not align:  # absent when True: journals written before alignment existed still resume
        fp["align"] = False
    if n_sources is not None:  # likewise absent unless given
        fp["n_sources"] = int(n_sources)
    return fp


#: how each setting of the journal header reads in a message, and its value when the header lacks it
_SETTINGS = {
    "tool": (None, lambda v: f"tool {v}"),
    "journal_version": (None, lambda v: f"journal version {v}"),
    "spaq": (None, lambda v: f"spaq {v}"),
    "metrics": (None, lambda v: f"metrics {','.join(map(str, v or []))}"),
    "fast": (None, lambda v: {True: "--fast", False: "--exact"}.get(v, "each metric's default speed")),
    "device": (None, lambda v: f"device {v}"),
    "checkpoint": (None, lambda v: "no --checkpoint" if v is None else f"--checkpoint {v}"),
    "align": (True, lambda v: "--align" if v else "--no-align"),
    "n_sources": (None, lambda v: "no --n-sources" if v is None else f"--n-sources {v}"),
}


def _settings_diff(old: dict, new: dict):
    """``(what the journal was written with, what this run asks for)``: each setting that differs
    between the headers ``old`` and ``new`` (packaged weights aside), as a user reads it, joined by ", "."""
    was, now = [], []
    for k in list(_SETTINGS) + sorted((set(old) | set(new)) - set(_SETTINGS) - {"weights"}):
        default, show = _SETTINGS.get(k, (None, lambda v, k=k: f"{k} {v}"))
        a, b = old.get(k, default), new.get(k, default)
        if a != b:
            was.append(show(a))
            now.append(show(b))
    return ", ".join(was), ", ".join(now)


def _check_out(out: str, journal: str, resume: bool, overwrite: bool) -> None:
    """Refuse a table or journal in the way (nothing is removed here: see ``overwrite`` in
    :func:`score_batch`)."""
    if resume and overwrite:
        raise SpaqError("choose one of --resume and --overwrite")
    if not out.lower().endswith((".parquet", ".csv")):
        raise SpaqError(f"--out {out}: the table is written as .parquet or .csv; name it so")
    if os.path.isdir(out):
        raise SpaqError(f"--out {out} is a folder; give a .parquet or .csv file name")
    if overwrite:
        return
    has_journal = os.path.exists(journal) and os.path.getsize(journal) > 0
    if has_journal and not resume:
        what = "the items that failed in" if os.path.exists(out) else "an unfinished run for"
        raise SpaqError(f"{journal} holds {what} {out}: pass --resume to score them (again) "
                        f"or --overwrite to start again")
    if os.path.exists(out) and not has_journal:
        if resume:
            raise SpaqError(f"{out} already exists and is complete (no journal to resume); "
                            f"pass --overwrite to score again")
        raise SpaqError(f"{out} already exists: pass --overwrite to replace it")


def _source_pairs(pairs):
    """``(ref_source, deg_source)`` of every row of ``pairs`` (``("", "")`` without source columns)."""
    import itertools

    if "ref_source" in pairs.columns:
        return zip(pairs["ref_source"], pairs["deg_source"])
    return itertools.repeat(("", ""), len(pairs))


def _load_journal(journal: str, fp: dict, pairs):
    """``(done, changed, unrecorded)`` for a resume: the journal's records (by id) of the items of
    ``pairs`` scored ok with the files as they are now; the ids of those scored ok whose files changed
    since (size, mtime or sampled bytes: :func:`file_fingerprint`), and of those whose record has no
    fingerprint (an earlier spaq): both are scored again. Raises :class:`SpaqError` for a journal written
    with other settings (naming them) or for other files."""
    if not os.path.exists(journal) or os.path.getsize(journal) == 0:
        return {}, [], []
    old = read_journal_header(journal)
    if old is None:
        raise SpaqError(f"{journal} is not a spaq batch journal (no header); remove it or pass --overwrite")
    if old != fp and {k: v for k, v in old.items() if k != "weights"} == {k: v for k, v in fp.items() if k != "weights"}:
        was = old.get("weights")
        if not isinstance(was, dict):
            raise SpaqError(f"{journal} was written by an earlier spaq that did not record its weights; resuming "
                            f"could mix two models in one table: --overwrite to start again")
        names = ", ".join(n for n in sorted(set(was) | set(fp["weights"])) if was.get(n) != fp["weights"].get(n))
        raise SpaqError(f"{journal} was scored with other packaged weights ({names}) than this spaq ships; resuming "
                        f"would mix two models in one table: --overwrite to start again")
    if old != fp:
        was, now = _settings_diff(old, fp)
        if old.get("weights") != fp.get("weights"):
            was, now = f"{was}, other packaged weights", f"{now}, the weights this spaq ships"
        raise SpaqError(f"{journal} was written with {was}; this run asks for {now}: use the same options to "
                        f"resume, or --overwrite to start again")
    done = read_journal(journal, key="id", cast=str)
    # a pair's files and dry sources ("" where it has none, as in a journal written without them)
    files = {i: (r, d, rs, ds) for i, r, d, (rs, ds) in zip(pairs["id"], pairs["ref"], pairs["deg"], _source_pairs(pairs))}
    for i, rec in done.items():
        if i in files and files[i] != (rec.get("ref"), rec.get("deg"), rec.get("ref_source", ""),
                                       rec.get("deg_source", "")):
            raise SpaqError(f"{journal}: item {i} was scored for other files ({rec.get('ref')}, {rec.get('deg')}) "
                            f"than the manifest lists now; pass --overwrite to start again")
    # items that failed are scored again (a file fixed since, a metric installed since), and so are those whose
    # files changed since they were scored (same paths, other contents), or whose record has no fingerprint of
    # them (written by an earlier spaq: nothing says they are the files scored)
    kept, changed, unrecorded = {}, [], []
    cache: dict = {}
    for i, rec in done.items():
        if i not in files or rec.get("status") != "ok":
            continue
        was = rec.get("inputs")
        if not isinstance(was, dict):
            unrecorded.append(i)
            continue
        r, d, rs, ds = files[i]
        now = {k: cache[p] if p in cache else cache.setdefault(p, file_fingerprint(p))
               for k, p in _input_paths(r, d, (rs, ds) if rs and ds else None).items()}
        if now != was:
            changed.append(i)
            continue
        kept[i] = rec
    return kept, changed, unrecorded


@contextlib.contextmanager
def _output_lock(out: str):
    """Hold ``out + ".lock"`` exclusively while a run writes ``out`` and its journal: a second
    ``spaq batch`` on the same output (a ``--resume`` started while the first still runs) is refused
    in one line instead of interleaving both runs' records. POSIX ``flock``; without it no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = out + ".lock"
    try:
        f = open(lock, "a+") if os.path.isdir(os.path.dirname(lock)) else None
    except OSError:  # an unwritable folder: the checks of --out say so
        f = None
    if f is None:  # a new folder (made later) cannot hold another run's output yet
        yield
        return
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SpaqError(f"another spaq batch is writing {out} (lock {lock}); wait for it, or stop it and "
                            "add --resume") from None
        try:
            yield
        finally:
            try:
                os.remove(lock)
            except OSError:
                pass
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


def score_batch(pairs_or_manifest, out, metrics=None, workers: int = 1, dask=None, resume: bool = False,
                fast: bool | None = None, device: str = "cpu", progress: bool = True, strict: bool = False,
                overwrite: bool = False, checkpoint=None, offline: bool | None = None, align: bool = True,
                n_sources: int | None = None):
    """Score every pair of a manifest; returns the results table (see the module doc for its
    columns: ``id, ref, deg, status, error, format, duration_s``, then ``M``, ``M.<value>``,
    ``M.skipped`` per metric; one row per pair in manifest order).

    ``pairs_or_manifest``: a manifest path (see :func:`read_pairs`), a DataFrame with the same
    columns, or a list of ``(ref, deg)`` tuples (ids: the row numbers); relative paths in a
    DataFrame or list are relative to the current folder. ``out``: the ``.parquet`` or ``.csv`` table to
    write (atomically, at the end); its journal is ``out + ".partial.jsonl"``. ``metrics``:
    metric names (default :data:`spaq.api.DEFAULT_METRICS`). ``workers``: processes (local
    pool, or the size of ``dask="local"``). ``dask``: ``None``, a scheduler address,
    ``"local"`` or a ``distributed.Client``. ``resume``: continue an interrupted run from its
    journal; ``overwrite``: remove an existing journal and table first. ``fast``/``device``:
    as in :func:`spaq.score`; so are ``checkpoint`` (one metric's weights, QASTAnet's when it is named: :func:`spaq.api.checkpoint_metric`; a path, resolved once
    here so a missing file is one error, not one per pair), ``offline``, ``align`` and ``n_sources``
    (how many sources ``localization`` finds in each signal; each source's values become columns).
    ``progress``: a progress bar on stderr. ``strict``: after
    writing the table, raise :class:`BatchFailed` if any pair failed (otherwise failed pairs
    are only rows with status ``error``).

    On a resume, the items whose files changed since the journal recorded them (:func:`file_fingerprint`),
    or whose record has no fingerprint (written by an earlier spaq), are scored again; their ids are in
    ``df.attrs["rescored"]`` (``{"files_changed": [...], "no_fingerprint": [...]}``).

    Raises :class:`SpaqError` before scoring anything for a bad manifest, unknown metric, bad
    option or a journal/table in the way. KeyboardInterrupt leaves the journal (resume with
    ``resume=True``) and no ``out``; once the journal is open it comes as :class:`BatchInterrupted`
    (a KeyboardInterrupt that counts the pairs done).
    """
    from .api import DEFAULT_METRICS
    from .metrics import check_metric_names, metric_class, registered

    _pandas()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SpaqError(f"--workers must be a whole number >= 1, not {workers!r}")
    names = check_metric_names(list(metrics) if metrics else list(DEFAULT_METRICS))
    from .api import check_device, check_n_sources, checkpoint_metric

    device = check_device(device)

    classes = {n: metric_class(n) for n in names}
    n_sources = check_n_sources(n_sources, classes)
    checkpoint_metric(classes, checkpoint)  # which metric it is for: one line if none
    pairs = _as_pairs(pairs_or_manifest)
    if not any(pairs["ref"]):  # no reference anywhere: one error before any work, not one per pair
        need = [n for n in names if metric_class(n).needs_reference]
        if len(need) == len(names):
            free = [n for n in registered() if not metric_class(n).needs_reference]
            raise SpaqError(f"the manifest has no reference paths, but {', '.join(need)} "
                            f"need{'s' if len(need) == 1 else ''} one (reference-free metrics: {', '.join(free)})")
    out = os.path.abspath(os.path.expanduser(os.fspath(out)))
    with _output_lock(out):
        journal = journal_path(out)
        _check_out(out, journal, resume, overwrite)
        if checkpoint is not None:
            checkpoint = os.path.abspath(os.path.expanduser(os.fspath(checkpoint)))
            if not os.path.isfile(checkpoint):
                raise SpaqError(f"checkpoint not found: {checkpoint}")
        fp = _fingerprint(names, fast, device, checkpoint, align, n_sources)
        done, changed, unrecorded = _load_journal(journal, fp, pairs) if resume else ({}, [], [])
        has_src = "ref_source" in pairs.columns
        if has_src and not any(metric_class(n).accepts_sources for n in names):
            raise SpaqError(f"the manifest has ref_source/deg_source columns but none of {', '.join(names)} uses dry "
                            f"sources (sqm does: --metric sqm)")
        todo = [{"id": i, "ref": r, "deg": d, "format": f, "metrics": names, "fast": fast, "device": device,
                 "checkpoint": checkpoint, "offline": offline, "align": align, "n_sources": n_sources,
                 "sources": [rs, ds] if rs and ds else None}
                for i, r, d, f, (rs, ds) in zip(pairs["id"], pairs["ref"], pairs["deg"], pairs["format"], _source_pairs(pairs))
                if i not in done]

        prog = None
        if progress:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            prog = Progress(TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn(),
                            console=Console(stderr=True))
        n_failed = sum(r["status"] != "ok" for r in done.values())
        # workers / Dask first: a scheduler that cannot be reached leaves every file as it was
        with (_executor(len(todo), workers, dask) if todo else contextlib.nullcontext(lambda tasks: iter(()))) as run:
            if overwrite:
                for p in (journal, out):
                    if os.path.exists(p):
                        os.remove(p)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            new_journal = not os.path.exists(journal) or os.path.getsize(journal) == 0
            with open(journal, "a", encoding="utf-8") as jf, (prog or contextlib.nullcontext()):
                if new_journal:
                    write_journal_header(jf, fp)
                bar = prog.add_task("pairs", total=len(pairs), completed=len(done), failed=n_failed) if prog else None
                try:
                    for rec in run(todo):
                        append_journal(jf, rec)
                        done[rec["id"]] = rec
                        n_failed += rec["status"] != "ok"
                        if prog:
                            prog.update(bar, advance=1, failed=n_failed)
                except KeyboardInterrupt as e:  # the executor stops its workers on the way out
                    if isinstance(e, BatchInterrupted):
                        raise
                    raise BatchInterrupted(len(done), len(pairs), journal) from None
        df = _table(pairs, done, names)
        _write_table(df, out)
        # after writing: the table on disk is the same whether or not a resume scored items again
        df.attrs["rescored"] = {"files_changed": list(changed), "no_fingerprint": list(unrecorded)}
        if os.path.exists(journal) and not n_failed:  # kept while items failed: --resume retries only them
            os.remove(journal)
        if strict and n_failed:
            raise BatchFailed(f"{n_failed} of {len(df)} items failed (see the status column of {out})", df, n_failed,
                              len(df))
        return df


def summary(df) -> dict:
    """Counts and per-metric statistics of a :func:`score_batch` table, JSON-able:
    ``n_items, n_ok, n_error, errors [{id, error}], metrics {M: {n, mean, median}}`` (over
    the pairs M scored; None when it scored none) and ``skipped {M: {reason: count}}``."""
    ok = df["status"] == "ok"
    metric_cols = metric_columns(df)
    stats = {}
    for m in metric_cols:
        v = df.loc[ok, m].astype("float64").dropna()
        stats[m] = {"n": int(len(v)), "mean": float(v.mean()) if len(v) else None,
                    "median": float(v.median()) if len(v) else None}
    skipped = {}
    for m in metric_cols:
        col = f"{m}.skipped"
        if col in df.columns:
            reasons = df.loc[ok & (df[col] != ""), col].value_counts()
            if len(reasons):
                skipped[m] = {str(k): int(v) for k, v in reasons.items()}
    errs = df.loc[~ok, ["id", "error"]]
    return {"n_items": int(len(df)), "n_ok": int(ok.sum()), "n_error": int((~ok).sum()),
            "errors": [{"id": str(i), "error": str(e)} for i, e in zip(errs["id"], errs["error"])],
            "metrics": stats, "skipped": skipped}
