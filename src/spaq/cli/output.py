"""Printing shared by the commands: JSON, numbers, the score report, a rich Console that
does not hard-wrap piped output."""
from __future__ import annotations

import json
import os
import sys

from ..errors import SpaqError
from ..files import json_safe

__all__ = ["console", "print_json", "json_safe", "fmt_num", "is_numeric", "print_report", "output_file", "output_folder"]


def console(stderr: bool = False):
    """A rich Console for stdout (or stderr). On a terminal: its width. Piped or redirected:
    long lines (paths, URLs) are not broken at 80 columns (``soft_wrap``) and tables get
    room (``COLUMNS`` if set, else 240 columns)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 240
    return Console(stderr=stderr, soft_wrap=True, width=width)


def _nearest_existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def _check_creatable_folder(folder: str, what: str, path: str) -> None:
    """``folder`` exists as a writable folder, or can be made inside one."""
    base = _nearest_existing(folder)
    if not os.path.isdir(base):
        raise SpaqError(f"cannot write {what} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise SpaqError(f"cannot write {what} {path}: the folder {base} is not writable")


def output_file(path, what: str = "output", suffixes: tuple = ()) -> str:
    """Check, before any work, that the file ``path`` can be written (its folder exists and is
    writable, or can be created; ``path`` is not a folder and does not end with a separator;
    ``suffixes``: the extensions accepted, lower case with the dot). Returns ``path`` as ``str``;
    raises :class:`SpaqError` (one line) otherwise. The write itself stays atomic
    (:func:`spaq.files.atomic_write`)."""
    path = str(path)
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise SpaqError(f"cannot write {what} {path}: it is a folder; give a file name")
    if suffixes and os.path.splitext(path)[1].lower() not in suffixes:
        raise SpaqError(f"cannot write {what} {path}: expected a file name ending in {' or '.join(suffixes)}")
    _check_creatable_folder(os.path.dirname(os.path.abspath(path)), what, path)
    return path


def output_folder(path, what: str = "output folder") -> str:
    """Check that the folder ``path`` exists and is writable, or can be created (it is not a file)."""
    path = str(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise SpaqError(f"cannot write {what} {path}: it is a file, not a folder")
    _check_creatable_folder(path, what, path)
    return path


def metric_names(values):
    """``-m`` values as metric names: each may also hold several separated by commas (``-m quality,cues``); None
    stays None (the command's default metrics)."""
    if not values:
        return values
    names = [n.strip() for v in values for n in str(v).split(",") if n.strip()]
    if not names:
        raise SpaqError(f"--metric {', '.join(map(repr, values))}: no metric name (see `spaq metrics`)")
    return names


def print_json(obj) -> None:
    """``obj`` as indented standard JSON on stdout (non-finite numbers as ``null``)."""
    sys.stdout.write(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def fmt_num(v) -> str:
    try:
        import numpy as np

        if isinstance(v, (list, tuple)) or (hasattr(v, "shape") and getattr(v, "shape", ()) != ()):
            return "[" + ", ".join(fmt_num(x) for x in np.asarray(v).ravel()) + "]"
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if v != v:
        return "n/a"
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"


def is_numeric(v) -> bool:
    """Numbers and (nested) lists of numbers; directions and other structures go to --json."""
    if isinstance(v, (list, tuple)):
        return all(is_numeric(x) for x in v) and len(v) <= 8
    if v is None:
        return True
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def print_report(report) -> None:
    """A :class:`spaq.api` score report as text: the pair, its format, a table of metrics,
    what was skipped and why, warnings."""
    from rich.table import Table

    con = console()
    fmt = report.format.get("description", report.format.get("kind"))
    con.print(f"[bold]ref[/bold] {report.ref}\n[bold]deg[/bold] {report.deg}")
    rate = f"{report.sample_rate_in} Hz" + (
        f" -> {report.sample_rate_used} Hz" if report.sample_rate_in != report.sample_rate_used else "")
    con.print(f"format: {fmt}; {report.duration_s:.2f} s; sample rate {rate}")
    al = getattr(report, "alignment", None)
    if isinstance(al, dict) and "delay_ms" in al:
        if al.get("applied"):
            state = "applied"
        elif al.get("reliable"):
            state = "not applied (below 0.5 ms: a filter's group delay)"
        else:
            state = "not applied (estimate not reliable)"
        if al.get("reliable") and al["delay_samples"] == 0:
            con.print(f"alignment: no delay found (confidence {al['confidence']:.2f})", highlight=False)
        else:
            con.print(f"alignment: degraded delayed by {al['delay_ms']:.2f} ms (confidence {al['confidence']:.2f}, "
                      f"{al['method']}), {state}", highlight=False)
    if getattr(report, "rendered", None):
        con.print(report.rendered, highlight=False)
    table = Table(show_header=True, header_style="bold")
    for col in ("metric", "score", "unit", "better", "details"):
        table.add_column(col)
    for name, res in report.results.items():
        details = ", ".join(f"{k}={fmt_num(v)}" for k, v in res.values.items() if is_numeric(v))
        table.add_row(name, fmt_num(res.score), res.unit, "higher" if res.higher_is_better else "lower", details)
    con.print(table)
    from ..metrics import metric_class

    for name in report.results:  # one line on how to read each score
        try:
            reading = metric_class(name).reading
        except Exception:  # a plugin that cannot be loaded again: nothing to add
            reading = ""
        if reading:
            con.print(f"  {name}: {reading}", highlight=False)
    for name, why in report.skipped.items():
        con.print(f"[yellow]{name} skipped:[/yellow] {why}", highlight=False)
    for w in report.warnings:
        con.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
