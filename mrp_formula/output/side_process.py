"""The report's figures drawn in a second process while the run draws its PNGs in this one.

Once the posterior exists the run is one thread of Python (checks, writing, figures) and the
other core is idle; matplotlib is not thread-safe, so the second core gets a process. It is a
fresh interpreter (``python -m mrp_formula.output.side_process``: nothing of this process is
copied, and unlike multiprocessing's ``spawn`` it never re-runs the caller's script), started as
soon as the spec is read; it imports matplotlib, xarray and the report's modules while the run
reads the data, fits or reads the fit cache, poststratifies and checks, then waits for the staged
run folder's name on its stdin, reads the folder back and draws the page's figures exactly as
:func:`mrp_formula.output.report.document.figures_of` draws them here (so the page is the same
byte for byte either way), and hands them back pickled on its stdout.

It is off unless ``MRP_FORMULA_SIDE_PROCESS=1``, and then not started with one core or in a
daemonic process (a Dask worker of ``mrp batch``, whose workers already fill every core). Off by
default because the numbers did not support it on the 2-core machine it was measured on: the
cached primer took 16.8 s of wall and 16.7 s of CPU without it, 20.8 s and 20.9 s with it (the
second process's imports and second reading of the folder cost about 4 s of CPU, and the run's
two processes never ran side by side for long, other sessions holding the other core). On a
machine with a core to spare it may pay; measure before switching it on.

Whatever goes wrong there (no process to be had, a process that dies or draws nothing) costs
only the parallelism: :meth:`SideProcess.figures` returns None and the run draws
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


SWITCH = "MRP_FORMULA_SIDE_PROCESS"  # "1": use a side process (where one can start and help)


def may_help() -> bool:
    """Whether to start the side process: asked for, two cores or more, not a daemonic process."""
    import multiprocessing

    return (os.environ.get(SWITCH, "").strip() == "1" and system.cpu_count() >= 2
            and not multiprocessing.current_process().daemon)


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
