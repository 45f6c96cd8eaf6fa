"""One way to run many independent jobs: on Dask (``dask.distributed``) workers.

``Scheduler`` is a context manager over a Dask client: a ``LocalCluster`` of worker processes
(one thread each, ``workers`` of them, default one per core) or, with ``address``
(``tcp://HOST:PORT``), an existing cluster started with ``dask scheduler`` / ``dask worker``,
dask-jobqueue or Kubernetes. ``mrp batch`` and ``mrp recover`` both submit through
:meth:`Scheduler.run`, which returns the results in the order of the tasks and calls
``on_event`` as tasks start and finish.

Tasks are small frozen records (a spec's path and text, overrides, seeds), never pickled
models: a worker reads the data itself (and any spec the task's spec extends), so data paths must
be reachable from every worker (a shared file system on a cluster). Each worker process compiles PyTensor code in its own
directory (:func:`worker_compiledir`, set before PyTensor is imported): PyTensor's compile cache
is not safe to share between concurrent processes. The directory is one per worker slot, kept
between runs, so later batches reuse what earlier ones compiled.

A task that raises is retried (``retries``); a worker that dies mid-task has its task moved to
another worker by the Dask scheduler (after ``distributed.scheduler.allowed-failures`` deaths a
task fails with ``KilledWorker``). Nothing here prints.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mrp_formula.errors import Problem, UsageError
from mrp_formula.system import cpu_count

RETRIES = 2  # a task that raised is run again this many times (a worker death is handled by Dask)
COMPILE_ROOT_ENV = "MRP_COMPILE_ROOT"  # where the per-worker PyTensor compile directories live
ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+$")


@dataclass(frozen=True)
class Event:
    """What happened to one task: ``started`` (submitted), ``done`` or ``failed`` (it raised
    after its retries, or its workers kept dying); ``index`` is the task's position."""

    kind: str
    index: int
    error: str | None = None
    result: object = None  # the task's result, with ``done``


def default_workers() -> int:
    return cpu_count()


def check_address(address: str) -> str:
    if not ADDRESS.match(address) or not _port_ok(address):
        raise UsageError(Problem("a scheduler address is PROTOCOL://HOST:PORT (a port from 1 to 65535)",
                                 key="--scheduler", got=repr(address),
                                 hint="e.g. --scheduler tcp://10.0.0.5:8786 (the address `dask scheduler` prints)"))
    return address


def _port_ok(address: str) -> bool:
    """The port, where the address has one, is a number from 1 to 65535."""
    from urllib.parse import urlsplit

    try:
        port = urlsplit(address).port
    except ValueError:
        return False
    return port is None or 1 <= port <= 65535


def _listening(address: str, timeout: float = 5.0) -> None:
    """An OSError at once when nothing listens at a tcp:// address (Dask's client would retry until
    its timeout, then say only "Timed out"); other protocols are left to Dask."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme != "tcp" or parts.hostname is None or parts.port is None:
        return
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=timeout).close()
    except OSError as exc:
        raise OSError(f"nothing answers at {address} ({exc.strerror or exc})") from None


class Scheduler:
    """A Dask client over a local cluster of worker processes, or over an existing scheduler."""

    def __init__(self, *, workers: int | None = None, address: str | None = None, retries: int = RETRIES,
                 timeout: float = 30.0):
        if address is not None and workers is not None:
            raise UsageError(Problem("--workers starts a local cluster; --scheduler uses an existing one",
                                     key="--workers", hint="give one of them: the cluster's own workers are used "
                                                           "with --scheduler"))
        if workers is not None and workers < 1:
            raise UsageError(Problem("--workers must be at least 1", key="--workers", got=str(workers)))
        self.address = check_address(address) if address is not None else None
        self.workers = workers if workers is not None else (None if address else default_workers())
        self.retries = retries
        self.timeout = timeout
        self._cluster = None
        self._client = None

    def __enter__(self) -> "Scheduler":
        import logging

        from distributed import Client, LocalCluster

        for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
            logging.getLogger(name).setLevel(logging.ERROR)  # progress is ours; Dask's chatter goes
        try:
            if self.address is None:
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=":0", silence_logs=logging.ERROR)
                self._client = Client(self._cluster, timeout=self.timeout)
            else:
                _listening(self.address)
                self._client = Client(self.address, timeout=self.timeout)
        except OSError as exc:
            self.close()
            raise UsageError(Problem(f"cannot reach the Dask scheduler: {exc}", key="--scheduler",
                                     got=self.address, hint="start one with `dask scheduler` and workers with "
                                                           "`dask worker ADDRESS`, or leave --scheduler out for a "
                                                           "local cluster")) from None
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    @property
    def client(self):
        return self._client

    @property
    def dashboard(self) -> str | None:
        """The Dask dashboard's address, when the scheduler serves one (it needs ``bokeh``; a local
        cluster without it has no dashboard, whatever port it reserved)."""
        import importlib.util

        if self.address is None and importlib.util.find_spec("bokeh") is None:
            return None
        try:
            info = self._client.scheduler_info()
            port = info.get("services", {}).get("dashboard")
        except Exception:  # pragma: no cover - an old or unusual scheduler
            return None
        if not port:
            return None
        host = re.sub(r"^\w+://", "", info.get("address", "")).rsplit(":", 1)[0]
        return f"http://{host}:{port}/status"

    @property
    def n_workers(self) -> int:
        return len(self._client.scheduler_info().get("workers", {}))

    def describe(self) -> str:
        where = f"scheduler {self.address}" if self.address else "a local cluster"
        return f"{self.n_workers} Dask worker(s) on {where}"

    def run(self, fn: Callable, tasks: Sequence, on_event: Callable[[Event], None] | None = None) -> list:
        """``fn(task)`` for every task on the workers; the results in the order of ``tasks``.

        A task that still fails after its retries (or whose workers kept dying) gives the
        exception in its place; the other tasks finish."""

        from distributed import as_completed

        batch = uuid.uuid4().hex[:12]
        futures = [self._client.submit(in_worker, fn, t, key=f"mrp-{batch}-{i}",
                                       retries=self.retries, pure=False) for i, t in enumerate(tasks)]
        index = {f.key: i for i, f in enumerate(futures)}
        if on_event:
            for i in range(len(tasks)):
                on_event(Event("started", i))
        results: list = [None] * len(tasks)
        try:
            for fut in as_completed(futures):
                i = index[fut.key]
                try:
                    results[i] = fut.result()
                    if on_event:
                        on_event(Event("done", i, result=results[i]))
                except Exception as exc:  # the task raised after its retries, or KilledWorker
                    results[i] = exc
                    if on_event:
                        on_event(Event("failed", i, f"{type(exc).__name__}: {exc}".splitlines()[0]))
        finally:
            for f in futures:
                f.release()
        return results


# ----------------------------------------------------------------------------- on the worker


_SLOT: dict = {}


def in_worker(fn: Callable, task):
    """What a worker runs: its own compile directory first, then ``fn(task)``."""
    worker_compiledir()
    return fn(task)


def compile_root() -> Path:
    root = os.environ.get(COMPILE_ROOT_ENV)
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mrp-formula" / "pytensor-workers"


def worker_compiledir() -> Path | None:
    """Give this process its own PyTensor compile directory, once, before PyTensor is imported.

    The directory is the first slot ``root/slot-N`` whose lock this process can take (held until
    the process ends), so concurrent workers never share one and a later worker reuses an earlier
    one's compiled code. A process that has imported PyTensor already keeps its directory."""

    if "dir" in _SLOT:
        return _SLOT["dir"]
    if "pytensor" in sys.modules:
        _SLOT["dir"] = None
        return None
    root = compile_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        root = Path(tempfile.mkdtemp(prefix="mrp-pytensor-"))
    slot = 0
    while True:
        path = root / f"slot-{slot}"
        path.mkdir(exist_ok=True)
        handle = open(path / ".lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            slot += 1
            continue
        break
    _SLOT.update(dir=path, lock=handle)  # the lock lives as long as the process
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith(
        ("base_compiledir=", "compiledir="))]
    os.environ["PYTENSOR_FLAGS"] = ",".join(flags + [f"base_compiledir={path}"])
    sys.stdout = sys.stderr  # nothing from a worker may reach a --json stdout
    return path
