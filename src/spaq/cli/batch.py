"""``spaq batch MANIFEST``: score every pair of a corpus into one table.

Exit status: 0 when the table was written, also when some pairs could not be scored (they
are rows with status ``error``; a one-line note on stderr says how many), so a corpus with a
few bad files still yields its table in scripts and pipelines; ``--strict`` makes such a run
exit 1. User errors (bad manifest, unknown metric, a journal or table in the way) are raised
as :class:`~spaq.errors.SpaqError`: ``spaq.cli.main`` prints one line and exits 2. Ctrl-C or SIGTERM
stops the workers and prints one line (``spaq: interrupted: N of M pairs done (in OUT.partial.jsonl);
run the same command with --resume ...``), exit 130 or 143; the lock is released and the journal kept.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["register", "batch_command"]

_MAX_ERRORS_SHOWN = 20


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}")


def _print_summary(s: dict, out: str) -> None:
    from rich.table import Table

    from .output import console

    con = console()
    con.print(f"[bold]{s['n_ok']}[/bold] of {s['n_items']} pairs scored, "
              f"[bold]{s['n_error']}[/bold] failed -> {out}", highlight=False)
    table = Table(show_header=True, header_style="bold")
    for col in ("metric", "scored", "mean", "median"):
        table.add_column(col)
    for m, st in s["metrics"].items():
        table.add_row(m, str(st["n"]), _fmt(st["mean"]), _fmt(st["median"]))
    con.print(table)
    for m, reasons in s["skipped"].items():
        for why, n in reasons.items():
            con.print(f"[yellow]{m} skipped[/yellow] on {n} pair(s): {why}", highlight=False)
    for e in s["errors"][:_MAX_ERRORS_SHOWN]:
        con.print(f"[red]failed[/red] {e['id']}: {e['error']}", highlight=False)
    if len(s["errors"]) > _MAX_ERRORS_SHOWN:
        con.print(f"... and {len(s['errors']) - _MAX_ERRORS_SHOWN} more (status column of {out})", highlight=False)


@contextlib.contextmanager
def _interrupts(got: list):
    """While inside, Ctrl-C and SIGTERM (``timeout``, ``kill``, a job scheduler) stop the run the same way:
    a KeyboardInterrupt in the main thread, so the workers are stopped, the lock released and the journal
    kept (SIGTERM's default action killed this process on the spot: a stale ``OUT.lock``, leaked
    semaphores). The first signal's number is appended to ``got``; the signals that come while the run
    stops are ignored (``timeout`` sends its signal twice, to this process and to its group; a second
    KeyboardInterrupt would cut the workers' shutdown short and print its traceback)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM)

    def on_signal(signo, frame):
        if got:
            return
        got.append(signo)
        # Dask's scheduler and nannies run in this process: workers stopped mid-task (or killed by the same
        # signal, sent to the whole process group) are expected now, not worth a warning each
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in sigs}
    try:
        yield
    finally:
        for s in sigs:
            signal.signal(s, old[s])


def batch_command(
    manifest: Path = typer.Argument(..., help="spaq corpus folder, or a .parquet/.csv manifest with columns ref,deg "
                                              "(or reference_path,degraded_path), optional id/item_id, format and ref_source,deg_source "
                                              "(dry mono sources, for sqm)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="PATH", help="Results table to write: .parquet or .csv (one row per pair)."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", metavar="NAME", help="Metric to run (repeatable, or several separated by commas); default: quality, qastanet, cues, localization."),
    workers: int = typer.Option(1, "--workers", "-w", metavar="N", help="Worker processes (local pool, or the size of --dask local)."),
    dask: Optional[str] = typer.Option(None, "--dask", metavar="ADDRESS", help="Run on a Dask cluster: scheduler address (tcp://host:8786) or 'local'."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from OUT.partial.jsonl."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT (and drop its journal)."),
    fast: Optional[bool] = typer.Option(None, "--fast/--exact", help="As in `spaq score` (default: each metric's default, fast)."),
    device: str = typer.Option("cpu", "--device", metavar="DEVICE", help="torch device (cpu, cuda)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (summary and output path)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any pair could not be scored (default: 0)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="PATH", help="Weights file of one metric: QASTAnet's (official format) when qastanet is scored, else that of the one metric named that loads weights; default: spaq's registry (cache, SPAQ_QASTANET_CHECKPOINT)."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network (spaq never downloads unless `spaq weights fetch` is run; this also sets SPAQ_OFFLINE for the workers)."),
    align: bool = typer.Option(True, "--align/--no-align", help="As in `spaq score`: remove the delay between REF and DEG first (default)."),
    n_sources: Optional[int] = typer.Option(None, "--n-sources", metavar="N", help="As in `spaq score`: how many sources localization finds in each signal (default 1); each one's values become columns."),
) -> None:
    """Score every (reference, degraded) pair of MANIFEST into one table, resumably (local processes or Dask)."""
    from ..batch import BatchInterrupted, journal_path, score_batch, summary
    from ..errors import Interrupted
    from .output import metric_names, output_file

    output_file(out, "results table")  # a folder that cannot be written fails before any pair is scored
    signum: list = []
    try:
        with _interrupts(signum):
            df = score_batch(str(manifest), str(out), metrics=metric_names(metric), workers=workers, dask=dask, resume=resume,
                             overwrite=overwrite, fast=fast, device=device, progress=not quiet, strict=False,
                             checkpoint=checkpoint, offline=True if offline else None, align=align,
                             n_sources=n_sources)
    except BatchInterrupted as e:  # one line from spaq.cli.app.main; exit 130 (Ctrl-C) or 143 (SIGTERM)
        raise Interrupted(f"{e.n_done} of {e.n_items} pairs done (in {e.journal}); run the same command with "
                          f"--resume to score the rest", signum[0] if signum else signal.SIGINT) from None
    except KeyboardInterrupt:  # before the run opened its journal (reading the manifest, starting workers)
        j = journal_path(out)
        if os.path.exists(j):
            raise Interrupted(f"the pairs scored so far are in {j}; run the same command with --resume to score "
                              f"the rest", signum[0] if signum else signal.SIGINT) from None
        raise Interrupted("no pair was scored", signum[0] if signum else signal.SIGINT) from None
    s = summary(df)
    rescored = df.attrs.get("rescored") or {"files_changed": [], "no_fingerprint": []}
    if as_json:
        from .output import print_json

        print_json({"out": str(out), **s, "rescored": rescored})
    else:
        _print_summary(s, str(out))
    for key, why in (("files_changed", "{its} files changed since the journal recorded {it}"),
                     ("no_fingerprint", "the journal (an earlier spaq) holds no fingerprint of {its} files")):
        ids = rescored.get(key) or []
        if ids:
            one = len(ids) == 1
            more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
            why = why.format(its="its" if one else "their", it="it" if one else "them")
            sys.stderr.write(f"spaq: --resume scored {len(ids)} pair{'' if one else 's'} again: {why} "
                             f"({', '.join(ids[:5])}{more})\n")
    if s["n_error"]:
        sys.stderr.write(f"spaq: {s['n_error']} of {s['n_items']} items failed (see the status column of {out}; "
                         "once fixed, the same command with --resume scores only those)\n")
        if strict:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``batch`` to ``app``."""
    app.command("batch")(batch_command)
