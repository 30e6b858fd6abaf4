"""How many threads spaq lets torch use, so a call stays fast on a busy machine.

Two settings (see the README, "Speed on a busy machine"):

* at import, :mod:`spaq` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set already, and only if
  torch is not imported yet: OpenMP reads it once, when torch loads). Active waiting makes
  torch's idle OpenMP threads spin, which steals the cores other processes need and, with
  more threads than free cores, makes each parallel region wait for a descheduled thread.
* per call (``spaq.score``, hence each pair of ``spaq.batch``, and ``Metric.__call__``),
  :func:`torch_threads` caps torch's intra-op threads to the cores this process can really
  use (its CPU affinity and cgroup CPU quota: torch counts the machine's cores, so in a
  container limited to 2 of 16 cores it would run 16 threads on 2), never below 1 and never
  above torch's current setting, and restores the previous setting afterwards.

The cap does not shrink further when the load average shows other processes busy: measured
beside other CPU-bound processes with passive waiting (benchmarks/bench_busy.py, 2 cores,
load 5-11), 2 threads took a median 2.2 s per 10 s 3OA qastanet call and 1 thread 4.1 s (the
scheduler shares the cores per thread, and passive threads give theirs back while they wait).

``SPAQ_NUM_THREADS=N`` (N >= 1) uses N threads instead; ``SPAQ_NUM_THREADS=0`` leaves torch's
own setting alone (no cap).

Within those calls (and ``spaq.localize``) numpy's and scipy's BLAS (OpenBLAS, BLIS) run on one thread
(:func:`numpy_blas_one_thread`, through threadpoolctl where it is installed): their threads busy-wait after
each product, and on 2 cores that took the core spaq's second stream needed (10 ms stalls; the localiser's 20 s
stream 99-105x -> 110-126x real time in alternated runs); spaq's products are small, and its large ones run in
torch.

A third, for one call's independent parts: :func:`in_background` runs a function on one worker
thread while the caller goes on with other work, where the call may use two or more threads
(:func:`parallel_streams`). The front-end's band groups (:class:`spaq.auditory.binaural_features.BandCues`)
and the reference-free predictor's spatial features are computed that way: their many small
operations gain nothing from torch's intra-op threads (on a loaded machine those made them 10-30x
slower), but two such streams do run side by side, since torch releases the GIL in its kernels.
:func:`intra_op_threads` lowers torch's intra-op threads for such code and keeps the call's own
count as its budget of streams.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import threading

__all__ = ["available_cores", "spaq_num_threads", "torch_threads", "capped", "in_background", "intra_op_threads",
           "parallel_streams", "numpy_blas_one_thread", "call_threads"]

ENV = "SPAQ_NUM_THREADS"


def _cgroup_cpus() -> float | None:
    """The CPU quota of this process's cgroup in cores (``docker --cpus``, Kubernetes limits),
    or None when unlimited or unknown (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``)."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as f:
            period = int(f.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process can really use: its CPU affinity (``os.sched_getaffinity``;
    ``os.cpu_count()`` where unknown), no more than its cgroup's CPU quota rounded up; >= 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def spaq_num_threads() -> int | None:
    """The intra-op thread count spaq runs torch with, or None to leave torch's setting:
    ``SPAQ_NUM_THREADS`` if set (0 = None), else :func:`available_cores`."""
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"{ENV} must be a whole number (0 = leave torch's setting), not {env!r}") from None
        return None if n <= 0 else n
    return available_cores()


@contextlib.contextmanager
def torch_threads(n: int | None = -1):
    """Run the body with torch on at most ``n`` intra-op threads, then restore the previous
    count. Default (-1): ``SPAQ_NUM_THREADS`` when set (exactly that many; 0: unchanged), else
    the cores this process can use (:func:`available_cores`) but never more than torch had (a pool worker
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


@contextlib.contextmanager
def call_threads():
    """The thread settings of one spaq call (``spaq.score``, ``Metric.__call__``): :func:`torch_threads`' default
    cap and :func:`numpy_blas_one_thread`; yields torch's count."""
    with torch_threads() as n, numpy_blas_one_thread():
        yield n


def capped(fn):
    """Decorator: run ``fn`` inside :func:`call_threads`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with call_threads():
            return fn(*args, **kwargs)

    return wrapper


_BLAS_LOCK = threading.Lock()
_BLAS = {"pid": None, "depth": 0, "limiter": None, "select": None}
#: the BLAS libraries :func:`numpy_blas_one_thread` limits (threadpoolctl's ``internal_api``; not MKL, which torch may share)
BLAS_LIBRARIES = ("openblas", "blis")


@contextlib.contextmanager
def numpy_blas_one_thread():
    """Run the body with numpy's and scipy's BLAS (:data:`BLAS_LIBRARIES`) on one thread, then restore their
    counts (once the outermost of nested or concurrent bodies ends). Nothing where threadpoolctl is not installed,
    or where ``SPAQ_NUM_THREADS=0`` asks spaq to leave thread settings alone."""
    if os.environ.get(ENV, "").strip() == "0":
        yield
        return
    with _BLAS_LOCK:
        if _BLAS["pid"] != os.getpid():  # a forked child: its own count (its parent's limiter is not its own)
            _BLAS.update(pid=os.getpid(), depth=0, limiter=None)
        if _BLAS["depth"] == 0:
            _BLAS["limiter"] = _blas_limit()
        _BLAS["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            if _BLAS["pid"] == os.getpid():
                _BLAS["depth"] -= 1
                if _BLAS["depth"] == 0 and _BLAS["limiter"] is not None:
                    _BLAS["limiter"].restore_original_limits()
                    _BLAS["limiter"] = None


def _blas_limit():
    """threadpoolctl's limiter holding :data:`BLAS_LIBRARIES` at one thread (None without threadpoolctl). The
    libraries are found once per process (5 ms)."""
    if _BLAS["select"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _BLAS["select"] = False
        else:
            import warnings

            with warnings.catch_warnings():  # its notes on the OpenMP runtimes loaded are about the environment, not
                warnings.simplefilter("ignore")  # about anything a spaq call can change
                _BLAS["select"] = ThreadpoolController().select(internal_api=list(BLAS_LIBRARIES))
    return _BLAS["select"].limit(limits=1) if _BLAS["select"] else None


#: the threads the current call may use, where :func:`intra_op_threads` lowered torch's count below it
_STREAMS: contextvars.ContextVar = contextvars.ContextVar("spaq_streams", default=None)


def parallel_streams() -> int:
    """How many threads the current call may run side by side: torch's intra-op count, or the count it had
    before an enclosing :func:`intra_op_threads` lowered it (never below 1). A worker thread of
    :func:`in_background` reads 1, so work it starts runs in it."""
    import torch

    budget = _STREAMS.get()
    return max(1, torch.get_num_threads() if budget is None else budget)


@contextlib.contextmanager
def intra_op_threads(n: int | None):
    """Run the body with torch on ``n`` intra-op threads (None: unchanged), then restore the previous count; the
    call's budget of threads (:func:`parallel_streams`) stays what it was, so :func:`in_background` may still
    run a second stream. For code made of many small operations, which torch's intra-op threads slow down."""
    token = _STREAMS.set(parallel_streams())
    try:
        with torch_threads(n):
            yield
    finally:
        _STREAMS.reset(token)


_POOL: list = [None, None]  # (pid, executor): a forked child gets its own (a fork copies no worker thread)


def _run_single_threaded(fn, args, kwargs):
    import torch

    # torch sets a new thread's count lazily, on its first parallel operation or count query, to its global count,
    # which the caller's own set_num_threads calls (intra_op_threads restoring its count) rewrite meanwhile: the
    # worker's first task ran on two threads and gave other values than later ones (e.g. the predictor's MFCCs, 1e-6)
    torch.get_num_threads()  # so that initialisation is done first, and does not undo the next line
    torch.set_num_threads(1)  # the worker's own count (per thread under OpenMP): the caller keeps its threads
    token = _STREAMS.set(1)  # a budget of one, whatever context the thread started with: work it starts runs in it,
    try:  # never queued behind itself on the one worker
        return fn(*args, **kwargs)
    finally:
        _STREAMS.reset(token)


def in_background(fn, *args, **kwargs):
    """Start ``fn(*args, **kwargs)`` and return a function that waits for its result (and re-raises its
    exception). Where the call may use at least two threads (:func:`parallel_streams`; :func:`torch_threads`'
    cap applies inside spaq's calls), it runs on spaq's one worker thread, with torch on one thread
    there, while the caller goes on; else it runs at once in the caller. Either way the result is the
    same: use it only for work that shares no mutable state with what the caller does meanwhile."""
    if parallel_streams() < 2:
        try:
            value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 -- re-raised when the result is asked for, as a worker's would be
            err = e

            def fail():
                raise err
            return fail
        return lambda: value
    from concurrent.futures import ThreadPoolExecutor

    if _POOL[0] != os.getpid():
        _POOL[:] = [os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="spaq")]
    future = _POOL[1].submit(_run_single_threaded, fn, args, kwargs)
    return future.result
