"""Machinery shared by long jobs over many items (``spaq generate``, ``spaq batch``).

* a **journal**: a JSON-lines file, one record per finished item, appended and fsynced
  item by item, so an interrupted job knows exactly what is done; :func:`read_journal`
  reads it back keyed by one field (a line cut by the interruption is ignored), an optional
  first header line (:func:`write_journal_header` / :func:`read_journal_header`) records
  what the job was run with;
* a **worker pool**: :func:`make_pool` spawns processes with one BLAS/OpenMP thread each
  (the workers are the parallelism; spawn, not fork, so torch is safe in them).
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import threading

__all__ = ["read_journal", "append_journal", "write_journal_header", "read_journal_header", "make_pool",
           "children_ignore_sigint"]

_HEADER_KEY = "journal_header"


def read_journal(path: str, key: str = "index", cast=int) -> dict:
    """Records of the journal at ``path`` as ``{cast(record[key]): record}`` (empty if the file
    does not exist). Lines that do not parse (cut by an interruption) and lines without
    ``key`` (a header) are skipped; a key written twice keeps its last record."""
    done: dict = {}
    if not os.path.exists(path):
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
            if not isinstance(rec, dict) or key not in rec:
                continue
            done[cast(rec[key])] = rec
    return done


def append_journal(f, record: dict) -> None:
    """Append ``record`` as one JSON line to the open journal ``f`` and make it durable
    (flush + fsync) before returning: once this returns, the item counts as done."""
    f.write(json.dumps(record, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())


def write_journal_header(f, header: dict) -> None:
    """Write the header line (what the job was run with) to a new, empty journal ``f``."""
    append_journal(f, {_HEADER_KEY: header})


def read_journal_header(path: str) -> dict | None:
    """The header written by :func:`write_journal_header`, or ``None`` when the journal has
    none (or its first line is unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return None
    try:
        rec = json.loads(first)
    except json.JSONDecodeError:
        return None
    if isinstance(rec, dict) and isinstance(rec.get(_HEADER_KEY), dict):
        return rec[_HEADER_KEY]
    return None


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent, which terminates them: no traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def children_ignore_sigint():
    """Processes started inside this block (and by threads started inside it) ignore SIGINT: Ctrl-C, which
    the terminal sends to the whole foreground process group (as ``timeout -s INT`` does), reaches only
    this process, which stops them -- no KeyboardInterrupt traceback from each worker. For workers started
    by code that takes no initializer (a Dask ``LocalCluster``'s nannies).

    How: SIGINT is ignored (an ignored signal stays ignored across fork and exec, and Python then installs
    no KeyboardInterrupt handler) and blocked in this thread (a thread started meanwhile inherits the
    block, so its children do too, later restarts included). A Ctrl-C that comes meanwhile stays pending
    and is delivered when the block ends. Outside the main thread (where Python handles signals) this
    does nothing."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def make_pool(workers: int):
    """A ``multiprocessing`` pool of ``workers`` spawned processes with one BLAS/OpenMP thread
    each (the workers are the parallelism) that ignore SIGINT (Ctrl-C reaches the parent,
    which terminates them). The caller terminates/joins it."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    try:
        for k in keys:
            os.environ[k] = "1"
        return mp.get_context("spawn").Pool(workers, initializer=_ignore_sigint)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
