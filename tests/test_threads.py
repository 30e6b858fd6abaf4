"""spaq.threads: the per-call cap on torch's intra-op threads (not timed; speed is in
benchmarks/bench_busy.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from spaq import threads


@pytest.fixture
def restore_threads():
    old = torch.get_num_threads()
    yield old
    torch.set_num_threads(old)


def _load(monkeypatch, cores: int, quota: float | None = None):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: quota)


def test_cap_follows_usable_cores_never_below_one(monkeypatch):
    monkeypatch.delenv("SPAQ_NUM_THREADS", raising=False)
    _load(monkeypatch, 4)
    assert threads.spaq_num_threads() == 4  # every core of the affinity mask
    _load(monkeypatch, 16, 2.0)
    assert threads.spaq_num_threads() == 2  # a container limited to 2 CPUs of 16
    _load(monkeypatch, 16, 1.5)
    assert threads.spaq_num_threads() == 2  # a fractional quota rounds up
    _load(monkeypatch, 16, 0.2)
    assert threads.spaq_num_threads() == 1  # never below 1
    _load(monkeypatch, 0)
    assert threads.spaq_num_threads() == 1


def test_env_overrides_and_zero_leaves_torch_alone(monkeypatch, restore_threads):
    _load(monkeypatch, 2)
    monkeypatch.setenv("SPAQ_NUM_THREADS", "3")
    assert threads.spaq_num_threads() == 3
    torch.set_num_threads(1)
    with threads.torch_threads() as n:
        assert n == 3 and torch.get_num_threads() == 3  # an explicit count is used as given
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("SPAQ_NUM_THREADS", "0")
    assert threads.spaq_num_threads() is None
    with threads.torch_threads() as n:
        assert n == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("SPAQ_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="SPAQ_NUM_THREADS"):
        threads.spaq_num_threads()


def test_cap_restores_previous_setting_even_on_error(monkeypatch, restore_threads):
    monkeypatch.delenv("SPAQ_NUM_THREADS", raising=False)
    _load(monkeypatch, 1)  # one usable core
    torch.set_num_threads(3)
    with threads.torch_threads() as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3
    with pytest.raises(RuntimeError):
        with threads.torch_threads(2):
            assert torch.get_num_threads() == 2
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 3
    with threads.torch_threads(0) as n:  # below 1 -> 1
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3


def test_cap_never_raises_a_lower_setting(monkeypatch, restore_threads):
    monkeypatch.delenv("SPAQ_NUM_THREADS", raising=False)
    _load(monkeypatch, 8)  # 8 cores, but a pool worker started with one thread
    torch.set_num_threads(1)
    with threads.torch_threads() as n:
        assert n == 1 and torch.get_num_threads() == 1


def test_score_runs_capped_and_restores(monkeypatch, restore_threads):
    import spaq
    from spaq.metrics.cues import Cues

    seen = []
    orig = Cues.score

    def spy(self, pair, maps=False):
        seen.append(torch.get_num_threads())
        return orig(self, pair, maps=maps)

    monkeypatch.setattr(Cues, "score", spy)
    monkeypatch.setenv("SPAQ_NUM_THREADS", "1")
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((2, 4800))).astype(np.float32)
    spaq.score(x, 0.9 * x, sample_rate=48000, metrics=["cues"])
    assert seen == [1] and torch.get_num_threads() == 2


def test_import_sets_passive_wait_only_before_torch():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, spaq; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, OMP_WAIT_POLICY="ACTIVE"), capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "ACTIVE"  # the user's own setting wins
    code = "import os, torch, spaq; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None"  # torch already loaded: setting it now would be a no-op, so it is not set


def test_in_background_runs_beside_the_caller_only_where_two_threads_are_allowed(restore_threads):
    """``in_background``: the same result (and the same exception) whether it runs on the worker or inline; on the
    worker torch has one thread and the caller keeps its own; one thread allowed: inline, in the caller's thread.
    ``intra_op_threads(1)`` keeps the call's budget of two streams and restores torch's count."""
    import threading

    def where(v):
        return v, threading.current_thread().name, torch.get_num_threads()

    def boom():
        raise ValueError("from the task")

    torch.set_num_threads(2)
    assert threads.parallel_streams() == 2
    v, name, n = threads.in_background(where, 7)()
    assert (v, n) == (7, 1) and name != threading.current_thread().name and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="from the task"):
        threads.in_background(boom)()
    with threads.intra_op_threads(1):
        assert torch.get_num_threads() == 1 and threads.parallel_streams() == 2
        assert threads.in_background(where, 1)()[1] != threading.current_thread().name
        # on the worker the budget is one thread: work it starts runs in it, never queued behind itself
        inner = threads.in_background(lambda: threads.in_background(where, 2)())()
        assert inner[0] == 2 and inner[1] != threading.current_thread().name
    assert torch.get_num_threads() == 2 and threads.parallel_streams() == 2
    torch.set_num_threads(1)
    assert threads.parallel_streams() == 1
    assert threads.in_background(where, 3)() == (3, threading.current_thread().name, 1)
    with pytest.raises(ValueError, match="from the task"):
        threads.in_background(boom)()


def test_in_background_after_a_fork_gets_a_new_worker(restore_threads, monkeypatch):
    """A forked child inherits the executor object but not its thread: the worker is keyed by process id."""
    torch.set_num_threads(2)
    threads.in_background(int)()
    pid, pool = threads._POOL
    assert pid == os.getpid()
    monkeypatch.setattr(threads, "_POOL", [pid + 1, pool])  # as a child sees its parent's
    assert threads.in_background(lambda: 5)() == 5
    assert threads._POOL[0] == os.getpid() and threads._POOL[1] is not pool


def test_in_background_first_task_of_a_new_worker_runs_on_one_thread(restore_threads, monkeypatch):
    """torch gives a new thread its count lazily (on its first parallel operation or count query) from its global
    count, which the caller's own ``set_num_threads`` rewrites meanwhile: the worker's first task ran on the caller's
    two threads (the predictor's first call in a process gave MFCCs 1e-6 off every later call's)."""
    import threading

    started, go = threading.Event(), threading.Event()

    def task():
        started.set()
        assert go.wait(30)
        return torch.get_num_threads()

    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "_POOL", [-1, None])  # a new worker thread, as a fresh process has
    result = threads.in_background(task)
    assert started.wait(30)
    torch.set_num_threads(2)  # what the caller does meanwhile (intra_op_threads restoring its count)
    go.set()
    assert result() == 1


def test_numpy_blas_runs_on_one_thread_within_spaq_calls(monkeypatch):
    """numpy's / scipy's OpenBLAS threads busy-wait after each product and took the core of spaq's second stream:
    within a spaq call (``capped``, ``Metric.__call__``, ``localize``) they run on one thread, restored when the
    outermost call ends, whichever thread ends last; ``SPAQ_NUM_THREADS=0`` leaves them alone."""
    import threading

    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is a dependency of spaq")
    ctl = threadpoolctl.ThreadpoolController().select(internal_api=list(threads.BLAS_LIBRARIES))
    if not ctl.lib_controllers:
        pytest.skip("this numpy / scipy has no OpenBLAS or BLIS (e.g. an MKL build): nothing to limit")
    monkeypatch.delenv(threads.ENV, raising=False)

    def counts():
        return [c.num_threads for c in ctl.lib_controllers]

    start = counts()
    if max(start) < 2:
        pytest.skip(f"BLAS already runs on one thread here ({start}): a limit to one cannot be seen")
    one = [1] * len(start)
    with threads.numpy_blas_one_thread():
        assert counts() == one
        with threads.numpy_blas_one_thread():
            assert counts() == one
        assert counts() == one  # the outer body still runs
    assert counts() == start
    # two threads whose calls overlap, the first to start ending first: restored once, after the last (a recording
    # limiter: OpenBLAS itself ignores a count set from another thread once the main thread has set one)
    events = []

    class Limiter:
        def restore_original_limits(self):
            events.append("restore")
    monkeypatch.setattr(threads, "_blas_limit", lambda: events.append("limit") or Limiter())
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with threads.numpy_blas_one_thread():
            a_in.set()
            assert b_in.wait(30)
        events.append("a out")
        a_out.set()

    def b():
        assert a_in.wait(30)
        with threads.numpy_blas_one_thread():
            b_in.set()
            assert a_out.wait(30)
        events.append("b out")
    ts = [threading.Thread(target=f) for f in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert events == ["limit", "a out", "restore", "b out"]
    monkeypatch.undo()
    monkeypatch.delenv(threads.ENV, raising=False)
    # an entry point
    from spaq.localization import localize

    rec = []

    def stop(*a, **k):
        rec.append(counts())
        raise RuntimeError("stop")
    monkeypatch.setattr(sys.modules["spaq.localization.localize"], "_localize_binaural_any", stop)
    with pytest.raises(RuntimeError, match="stop"):
        localize(np.random.default_rng(0).standard_normal((2, 48000)) * 0.1, 48000)
    assert rec == [one] and counts() == start
    monkeypatch.setenv(threads.ENV, "0")
    with threads.numpy_blas_one_thread():
        assert counts() == start
