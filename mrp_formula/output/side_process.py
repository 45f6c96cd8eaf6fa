"""The report's figures drawn in a second process while the run draws its PNGs in this one.

Once the posterior exists the run is one thread of Python (checks, writing, figures) and the
other core is idle; matplotlib is not thread-safe, so the second core gets a process. It is a
fresh interpreter (``python -m mrp_formula.output.side_process``: nothing of this process is
copied, and unlike multiprocessing's ``spawn`` it never re-runs the caller's script), started as
soon as the spec is read; it imports matplotlib, xarray and the report's modules while the run
reads the data, fits (compiling takes one core) or reads the fit cache, poststratifies and checks, then waits for the staged run folder's name on its stdin, reads the
folder back and draws the page's figures exactly as
:func:`mrp_formula.output.report.document.figures_of` draws them here (so the page is the same
byte for byte either way), and hands them back pickled on its stdout.

It is started only where a core may be idle: not with one core, not in a daemonic process (a
Dask worker of ``mrp batch``, whose workers already fill every core), and not while other work
uses the cores (:func:`cores_busy`): Linux shares the cores between sessions, so beside another
busy session the second process only splits this run's share and adds its imports (measured on
a shared machine: the cached primer 17 s of CPU and wall without it, 21 s with it).
``MRP_FORMULA_SIDE_PROCESS=0`` never starts it (the test suite sets it: its workers fill every
core), ``=1`` always does (to measure it). Whatever goes wrong there (one core only, no process to be had, a process that dies or draws
nothing) costs only the parallelism: :meth:`SideProcess.figures` returns None and the run draws
the figures itself.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import weakref
from pathlib import Path

from mrp_formula import system


def _warm() -> None:
    """Import what drawing the page's figures needs (the first figure then costs no imports)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.backends.backend_svg  # noqa: F401
    import xarray  # noqa: F401

    from mrp_formula.output.report import document  # noqa: F401

    try:  # xarray asks for dask when it opens a file
        import dask.array  # noqa: F401
        import h5netcdf  # noqa: F401
    except ImportError:
        pass


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


SWITCH = "MRP_FORMULA_SIDE_PROCESS"  # "0": never, "1": always (where a process can start), else as below
IDLE = 10.0  # % of the last 10 s in which some task waited for a core (Linux's CPU pressure)


def may_help() -> bool:
    """Whether a second process may find an idle core (see the module's docstring)."""
    import multiprocessing

    switch = os.environ.get(SWITCH, "").strip()
    if switch == "0" or system.cpu_count() < 2 or multiprocessing.current_process().daemon:
        return False
    return switch == "1" or not cores_busy()


def cores_busy(pressure: str = "/proc/pressure/cpu") -> bool:
    """Whether other work is using the cores now: tasks waited for a core more than ``IDLE`` % of
    the last 10 s (Linux's pressure stall information), else a 1-minute load average of at least
    one. The scheduler shares the cores between sessions, not processes, so while another session
    runs a second process only takes its share from this one (and pays its imports)."""
    try:
        with open(pressure) as fh:
            some = fh.readline().split()
        return float(dict(f.split("=") for f in some[1:])["avg10"]) > IDLE
    except (OSError, ValueError, KeyError, IndexError):
        pass
    try:
        return os.getloadavg()[0] >= 1.0
    except OSError:
        return False


class SideProcess:
    """One helper process for the page's figures; a context manager that ends it."""

    def __init__(self, enabled: bool = True) -> None:
        self._proc: subprocess.Popen | None = None
        self._started = False
        if not enabled or not may_help():
            return
        root = str(Path(__file__).resolve().parents[2])  # this copy of mrp_formula, wherever it came from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "mrp_formula.output.side_process"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, env=env)
        except Exception:  # no process to be had: the run draws everything itself
            self._proc = None
            return
        weakref.finalize(self, _kill, self._proc)  # a run that fails before its folder is written

    def start_figures(self, folder: Path) -> None:
        """Begin drawing the page's figures of the staged run folder ``folder`` (its files all written)."""
        if self._proc is None:
            return
        try:
            self._proc.stdin.write(os.fsencode(str(Path(folder).resolve())) + b"\n")
            self._proc.stdin.close()
            self._started = True
        except Exception:
            self.close()

    def figures(self) -> dict | None:
        """The figures begun by :meth:`start_figures`, or None (then the caller draws them)."""
        if self._proc is None or not self._started:
            return None
        try:
            out = self._proc.stdout.read()
            if self._proc.wait() != 0:
                return None
            figures = pickle.loads(out)
        except Exception:  # the process died or could not draw: the run draws them itself
            return None
        finally:
            self.close()
        return figures if isinstance(figures, dict) else None

    def close(self) -> None:
        if self._proc is not None:
            _kill(self._proc)
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
            self._proc = None

    def __enter__(self) -> "SideProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main() -> int:
    _warm()
    folder = sys.stdin.buffer.readline().rstrip(b"\n")
    if not folder:
        return 0  # the run ended before it had a folder to show
    from mrp_formula.output.report.document import figures_of

    figures = figures_of(Path(os.fsdecode(folder)))
    sys.stdout.buffer.write(pickle.dumps(figures, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
