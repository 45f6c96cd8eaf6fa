"""The machine helpers (mrp_formula/system.py): work done beside the caller in a forked child.

``beside`` forks only while no other Python thread runs; a test worker may have threads left by
earlier tests, so the tests that need the fork say that none runs (their work takes no lock), and
every work that must not run in the worker itself checks where it runs."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from mrp_formula.system import ahead, beside, cpu_count, without_dask

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


# ahead: a child forked before its work, which it imports for meanwhile


def _where(tag: str) -> tuple:
    """Module-level (work handed to a child forked ahead travels by reference)."""
    return tag, os.getpid(), "colorsys" in sys.modules


def _fails() -> None:
    raise ValueError("no ink")


@linux
def test_a_child_forked_ahead_imports_then_does_the_work_it_is_handed(alone, monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    with ahead(("colorsys",)) as helper:
        assert "colorsys" not in sys.modules  # imported there, not here
        job = helper.beside(_where, "drawn")
        job_file = job._job
        (tag, pid, imported), error, seconds = job.result()
    assert (tag, error, imported) == ("drawn", "", True) and pid != os.getpid() and seconds >= 0
    assert not Path(job_file).exists()  # the file that handed the work over is gone


@linux
def test_work_that_fails_ahead_is_the_results_error(alone):
    with ahead(()) as helper:
        value, error, _ = helper.beside(_fails).result()
    assert value is None and error == "ValueError: no ink"


def _gone(pid: int, seconds: float = 10.0) -> bool:
    """Whether the child ``pid`` has ended (reaped here or already by the module) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
        except ChildProcessError:
            return True
        time.sleep(0.05)
    return False


@linux
def test_work_that_cannot_be_handed_over_is_done_as_beside_does(alone):
    with ahead(()) as helper:
        child = helper._pid
        value, error, _ = helper.beside(lambda: os.getpid()).result()  # a lambda does not pickle
        assert error == "" and value != os.getpid()  # forked anew, by beside
        assert _gone(child)  # the child forked ahead, let go, has left


@linux
def test_a_child_forked_ahead_and_never_used_leaves_once_let_go(alone):
    helper = ahead(("colorsys",))
    pid = helper._pid
    assert pid is not None
    helper.cancel()
    helper.cancel()  # twice is harmless
    assert _gone(pid)


@linux
def test_a_child_of_a_forked_child_ends_with_it(alone, tmp_path):
    """A child given up (killed) takes its own child with it: no drawing goes on into a folder
    that is gone."""
    marker = tmp_path / "grandchild"

    def work():
        inner = beside(lambda: time.sleep(60))  # the grandchild
        marker.write_text(str(inner._pid))
        time.sleep(60)

    job = beside(_in_child(work))
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(marker.read_text())
    job.cancel()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{grandchild}").exists() and "Z" not in _state(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in _state(grandchild)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@linux
def test_a_child_waiting_for_its_own_busy_child_is_not_stalled(alone):
    def work():
        inner = beside(lambda: sum(i * i for i in range(8_000_000)))
        return inner.result()[1]

    value, error, _ = beside(_in_child(work)).result(stalled=1)
    assert (value, error) == ("", "")


def test_without_a_fork_the_work_is_beside_s():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with ahead(("colorsys",)) as helper:
            assert helper._pid is None  # another thread runs: no fork
            assert helper.beside(_where, "here").result()[0][:2] == ("here", os.getpid())
    finally:
        stop.set()
        t.join()


# without_dask: xarray's import of dask kept off a run


def test_inside_dask_cannot_be_imported_and_after_it_is_found_again():
    code = """
import sys, xarray as xr, numpy as np
from mrp_formula.system import without_dask
with without_dask():
    xr.DataArray(np.ones(3), dims="x").to_dataset(name="v").to_netcdf(sys.argv[1], engine="h5netcdf")
    assert "dask" not in sys.modules or sys.modules["dask"] is None
    try:
        import dask
    except ImportError:
        pass
    else:
        raise AssertionError("dask was importable inside")
assert "dask" not in sys.modules
import dask.array as da
arr = xr.DataArray(da.ones(3, chunks=1), dims="x")
assert arr.chunks == ((1, 1, 1),), arr.chunks  # xarray knows dask again
assert xr.DataArray(np.ones(4), dims="x").chunk(2).chunks == ((2, 2),)  # its chunk manager too
assert isinstance(arr.isnull().data, da.Array)  # and its element-wise functions stay lazy
print("ok")
"""
    import subprocess
    import tempfile as tf

    with tf.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", code, str(Path(d) / "a.nc")], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"


def test_xarray_first_imported_inside_finds_dask_after():
    code = """
import sys
from mrp_formula.system import without_dask
assert "xarray" not in sys.modules
with without_dask():
    import numpy as np, xarray as xr
    xr.DataArray(np.ones(3), dims="x").to_dataset(name="v").to_netcdf(sys.argv[1], engine="h5netcdf")
    from xarray.namedarray import daskmanager  # noqa: F401 - imported inside, as a run may
import dask.array as da
assert xr.DataArray(np.ones(4), dims="x").chunk(2).chunks == ((2, 2),)
assert isinstance(xr.DataArray(da.ones(3, chunks=1), dims="x").isnull().data, da.Array)
print("ok")
"""
    import subprocess
    import tempfile as tf

    with tf.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", code, str(Path(d) / "a.nc")], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"


def test_once_dask_is_imported_nothing_changes(monkeypatch):
    sentinel = object()
    monkeypatch.setitem(sys.modules, "dask", sentinel)
    with without_dask():
        assert sys.modules["dask"] is sentinel
    assert sys.modules["dask"] is sentinel


# import_deferring: a module's import kept off the path until a function of it is called


def _fresh(code: str, *args: str) -> str:
    import subprocess

    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_formulae_is_imported_without_scipy_interpolate_and_its_splines_still_work():
    code = """
import sys
import numpy as np, pandas as pd
from mrp_formula.spec.formula import describe, formulae
describe("y ~ x + (1|g)")
assert "scipy.interpolate" not in sys.modules, "imported with formulae"
d = pd.DataFrame({"y": np.arange(20.0), "x": np.linspace(0, 1, 20)})
print(np.asarray(formulae().design_matrices("y ~ bs(x, df=4)", d).common).round(12).tolist())
assert "scipy.interpolate" in sys.modules  # imported by the first call of splev
"""
    plain = """
import numpy as np, pandas as pd, formulae
d = pd.DataFrame({"y": np.arange(20.0), "x": np.linspace(0, 1, 20)})
print(np.asarray(formulae.design_matrices("y ~ bs(x, df=4)", d).common).round(12).tolist())
"""
    assert _fresh(code) == _fresh(plain)


def _modules(tmp_path, monkeypatch, takes: str) -> None:
    (tmp_path / "mrp_heavy.py").write_text("def a():\n    return 'a'\n\ndef b():\n    return 'b'\n")
    (tmp_path / "mrp_light.py").write_text(f"from mrp_heavy import {takes}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("mrp_heavy", "mrp_light"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_the_deferred_module_is_imported_at_the_first_call(tmp_path, monkeypatch, alone):  # other tests may leave threads
    from mrp_formula.system import import_deferring

    _modules(tmp_path, monkeypatch, "a")
    light = import_deferring("mrp_light", "mrp_heavy", ("a",))
    assert "mrp_heavy" not in sys.modules
    assert light.a() == "a" and light.a.__name__ == "a"
    assert "mrp_heavy" in sys.modules


def test_a_module_that_takes_more_than_the_stand_in_is_imported_as_usual(tmp_path, monkeypatch, alone):  # other tests may leave threads
    from mrp_formula.system import import_deferring

    _modules(tmp_path, monkeypatch, "a, b")
    light = import_deferring("mrp_light", "mrp_heavy", ("a",))
    assert light.a() == "a" and light.b() == "b"
    assert light.a is sys.modules["mrp_heavy"].a  # the real function, not a stand-in


def test_while_another_thread_runs_nothing_is_deferred(tmp_path, monkeypatch):
    from mrp_formula.system import import_deferring

    _modules(tmp_path, monkeypatch, "a")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        light = import_deferring("mrp_light", "mrp_heavy", ("a",))
    finally:
        stop.set()
        other.join()
    assert light.a is sys.modules["mrp_heavy"].a


def test_a_module_kept_as_a_stand_in_by_another_is_imported_as_usual(tmp_path, monkeypatch, alone):  # other tests may leave threads
    from mrp_formula.system import import_deferring

    _modules(tmp_path, monkeypatch, "a")
    (tmp_path / "mrp_light.py").write_text("import mrp_heavy as heavy\n")
    light = import_deferring("mrp_light", "mrp_heavy", ("a",))
    assert light.heavy is sys.modules["mrp_heavy"] and light.heavy.b() == "b"  # the real module
