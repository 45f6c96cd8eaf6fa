"""The machine helpers (mrp_formula/system.py): work done beside the caller in a forked child.

``beside`` forks only while no other Python thread runs; a test worker may have threads left by
earlier tests, so the tests that need the fork say that none runs (their work takes no lock), and
every work that must not run in the worker itself checks where it runs."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from mrp_formula.system import beside, cpu_count

linux = pytest.mark.skipif(sys.platform != "linux" or cpu_count() < 2, reason="forks only on Linux, on 2+ cores")


@pytest.fixture
def alone(monkeypatch):
    """As if no other Python thread ran in this process."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)


def _in_child(action):
    """``action`` in a forked child; in this process, an error instead."""
    parent = os.getpid()

    def work():
        if os.getpid() == parent:
            raise RuntimeError("ran in the caller")
        return action()

    return work


@linux
def test_the_child_answers_and_its_files_are_there(tmp_path, alone):
    touched = []

    def work():
        touched.append(1)  # in the child's copy of memory, not the caller's
        (tmp_path / "a.txt").write_text("drawn")
        return {"pid": os.getpid()}

    value, error, seconds = beside(work).result()
    assert error == "" and seconds > 0
    assert value["pid"] != os.getpid()  # it ran in another process
    assert touched == [] and (tmp_path / "a.txt").read_text() == "drawn"


def test_without_parallel_the_work_runs_here_and_now():
    touched = []
    job = beside(lambda: touched.append(1) or os.getpid(), parallel=False)
    assert touched == [1]
    assert job.result()[:2] == (os.getpid(), "")


@pytest.mark.parametrize("parallel", [pytest.param(True, marks=linux), False])
def test_an_exception_is_the_results_error_never_the_callers(parallel, alone):
    def work():
        raise ValueError("no ink")

    value, error, _ = beside(work, parallel=parallel).result()
    assert value is None and error == "ValueError: no ink"


@linux
def test_a_child_that_dies_or_hangs_is_an_error_not_a_hang(alone):
    value, error, _ = beside(_in_child(lambda: os._exit(3))).result()
    assert value is None and "stopped without an answer" in error
    start = time.monotonic()
    job = beside(_in_child(lambda: time.sleep(60)))
    value, error, _ = job.result(timeout=0.5)
    assert value is None and error.startswith("did not finish in")
    assert time.monotonic() - start < 10
    job.cancel()  # twice is harmless


@linux
def test_a_child_that_stops_working_is_given_up_long_before_the_timeout(alone):
    # a forked child blocked on a lock that another thread held at the fork uses no CPU time:
    # waiting for it would cost the whole timeout (900 s), so it is killed once it has stalled
    lock = threading.Lock()
    lock.acquire()  # as if held by a thread that does not exist in the child
    start = time.monotonic()
    value, error, _ = beside(_in_child(lambda: lock.acquire())).result(stalled=2)
    assert value is None and error == "stopped working (no CPU time for 2 s)"
    assert time.monotonic() - start < 30
    # a child that works (uses CPU) is waited for
    busy = beside(_in_child(lambda: sum(i * i for i in range(3_000_000)))).result(stalled=2)
    assert busy[1] == "" and busy[0] > 0


@linux
def test_the_child_never_frees_what_the_caller_left_to_the_collector(tmp_path, alone):
    # nutpie's sampler leaves objects in reference cycles whose native destructors wait for the
    # sampler's threads: freed in a forked child (which has no such threads) they hung it
    import gc

    freed = tmp_path / "freed"

    class Native:
        def __del__(self):
            freed.write_text(str(os.getpid()))

    gc.disable()
    try:
        a = Native()
        a.cycle = [a]
        del a  # garbage only the collector can free
        value, error, _ = beside(_in_child(lambda: gc.collect() >= 0)).result()
        assert (value, error) == (True, "")
        assert not freed.exists()  # the child's collection left it alone
    finally:
        gc.enable()
    gc.collect()
    assert freed.read_text() == str(os.getpid())  # the caller's collections go on


@linux
def test_an_answer_that_cannot_travel_back_is_an_error(alone):
    value, error, _ = beside(_in_child(lambda: (lambda: None))).result()  # a lambda does not pickle
    assert value is None and "stopped without an answer" in error


@linux
def test_cancel_stops_a_running_child(alone):
    job = beside(_in_child(lambda: time.sleep(60)))
    pid = job._pid
    assert pid is not None
    job.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no such child any more


def test_while_another_python_thread_runs_the_work_stays_here():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert beside(os.getpid).result()[0] == os.getpid()
    finally:
        stop.set()
        t.join()
