"""How many threads spaq lets torch use, so a call stays fast on a busy machine.

Two settings (see the README, "Speed on a busy machine"):

* at import, :mod:`spaq` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set already, and only if
  torch is not imported yet: OpenMP reads it once, when torch loads). Active waiting makes
  torch's idle OpenMP threads spin, which steals the cores other processes need and, with
  more threads than free cores, makes each parallel region wait for a descheduled thread.
* per call (``spaq.score``, hence each pair of ``spaq.batch``), :func:`torch_threads` caps
  torch's intra-op threads to the cores this process may run on (``os.sched_getaffinity``)
  minus those other processes keep busy, never below 1 and never above torch's current
  setting, and restores the previous setting afterwards.

``SPAQ_NUM_THREADS=N`` (N >= 1) uses N threads instead; ``SPAQ_NUM_THREADS=0`` leaves torch's
own setting alone (no cap).
"""
from __future__ import annotations

import contextlib
import functools
import os

__all__ = ["available_cores", "busy_cores", "spaq_num_threads", "torch_threads", "capped"]

ENV = "SPAQ_NUM_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _procs_running() -> int | None:
    """Runnable tasks on the machine right now (4th field of /proc/loadavg), or None."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def busy_cores() -> int:
    """Cores other processes keep busy: the 1-minute load average, but no more than the tasks
    runnable right now besides the caller (so spaq's own past calls in a loop, which raise the
    load average, do not count against it once they are done). 0 where unknown."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0
    now = _procs_running()
    others = load if now is None else min(load, max(0, now - 1))
    return max(0, int(others + 0.5))


def spaq_num_threads() -> int | None:
    """The intra-op thread count spaq runs torch with now, or None to leave torch's setting:
    ``SPAQ_NUM_THREADS`` if set (0 = None), else the available cores minus the busy ones,
    at least 1."""
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"{ENV} must be a whole number (0 = leave torch's setting), not {env!r}") from None
        return None if n <= 0 else n
    return max(1, available_cores() - busy_cores())


@contextlib.contextmanager
def torch_threads(n: int | None = -1):
    """Run the body with torch on at most ``n`` intra-op threads, then restore the previous
    count. Default (-1): ``SPAQ_NUM_THREADS`` when set (exactly that many; 0: unchanged), else
    the cores free now (:func:`spaq_num_threads`) but never more than torch had (a pool worker
    started with one thread, or a caller's own lower setting, keeps it). None: unchanged.
    Never below 1; yields the count used."""
    import torch

    old = torch.get_num_threads()
    if n == -1:
        n = spaq_num_threads()
        if n is not None and not os.environ.get(ENV, "").strip():
            n = min(n, old)
    n = old if n is None else max(1, int(n))
    if n == old:
        yield old
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)


def capped(fn):
    """Decorator: run ``fn`` inside :func:`torch_threads` (default cap)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch_threads():
            return fn(*args, **kwargs)

    return wrapper
