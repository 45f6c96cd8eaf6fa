"""What the code needs of the machine and the file system, in one place: the cores this process
may use, a text file written in one rename (the umask's mode, never half-written), two paths
exchanged in one step, temporary names that say which process owns them, a lock held while a
folder is written, room on a disk, SIGTERM taken as an interrupt, and work done in a forked child
beside the caller's own (forked when the work is due, or ahead of it, so that the child imports
what the work needs while the caller goes on)."""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import importlib
import os
import re
import secrets
import socket
import pickle
import select
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path


@contextlib.contextmanager
def without_dask():
    """Inside, ``import dask`` fails (unless dask was imported before, when nothing changes).

    xarray imports dask whenever it is installed: every array it wraps is checked against
    ``dask.array.Array``, and every netCDF file it writes asks dask (and distributed) which scheduler
    runs, which costs about a second a process on a two-core machine. A run's arrays are numpy
    arrays, so that second buys nothing: ``mrp run`` runs inside this. On leaving, dask is
    importable again and xarray's records of it (which modules are available, its chunk managers)
    are forgotten, so code after it finds dask as usual. While inside, another thread of the process
    cannot import dask either."""
    if "dask" in sys.modules:
        yield
        return
    _forget_dask_records()
    sys.modules["dask"] = None  # the import system's "not importable" mark
    try:
        yield
    finally:
        if "dask" in sys.modules and sys.modules["dask"] is None:
            del sys.modules["dask"]
        _forget_dask_records(after=True)


def import_deferring(module: str, deferred: str, names: tuple[str, ...]):
    """``import module``, where ``module`` takes only ``names`` from ``deferred`` when it is imported:
    meanwhile ``deferred`` stands in as functions of those names that import it on their first call,
    so a process that never calls them never imports it. formulae takes ``splev`` from
    scipy.interpolate (for its ``bs()`` transform, which mrp-formula's formulas do not allow), and
    scipy.interpolate imports scipy.optimize: 0.26 s of every ``mrp run`` and ``mrp check`` on a
    two-core machine for a function they never call.

    The module is imported as usual when either is imported already, while another thread runs
    (it could be handed the stand-in), or when the stand-in does not do: ``module`` takes more
    than ``names`` (an ImportError), or a module it imports keeps the stand-in itself (``import
    scipy.interpolate as si``); what that attempt imported is forgotten first."""
    if module in sys.modules or deferred in sys.modules or threading.active_count() > 1:
        return importlib.import_module(module)
    stand_in = type(sys)(deferred)
    stand_in.__dict__.update({name: _deferred(deferred, name) for name in names})
    before = set(sys.modules)
    sys.modules[deferred] = stand_in
    try:
        imported = importlib.import_module(module)
    except ImportError:
        imported = None
    finally:
        if sys.modules.get(deferred) is stand_in:
            del sys.modules[deferred]
    new = set(sys.modules) - before
    if imported is not None and not any(_holds(sys.modules.get(name), stand_in) for name in new):
        return imported
    for name in new:
        if name == module or name.startswith(module + ".") or _holds(sys.modules.get(name), stand_in):
            sys.modules.pop(name, None)
    return importlib.import_module(module)


def _holds(module, stand_in) -> bool:
    return any(value is stand_in for value in getattr(module, "__dict__", {}).values())


def _deferred(module: str, name: str):
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on the first call"
    return call


# xarray's modules that note at their import whether dask is installed (``dask_available``)
_NOTING_DASK = ("xarray.core.duck_array_ops", "xarray.namedarray.daskmanager")


def _forget_dask_records(*, after: bool = False) -> None:
    """xarray's cached answers to "is dask there?", when xarray is imported (private names: a
    version without them has nothing to forget), and, ``after`` leaving, the notes of modules
    imported inside, taken again (a version that keeps such answers elsewhere would go on without
    dask after a run; ``tests/test_system.py`` checks that this one does not)."""
    if "xarray" not in sys.modules:
        return
    with contextlib.suppress(Exception):
        from xarray.namedarray import pycompat

        known = pycompat._cached_duck_array_modules.get("dask")
        if known is not None and not known.available:
            del pycompat._cached_duck_array_modules["dask"]
    with contextlib.suppress(Exception):
        from xarray.namedarray.utils import module_available

        module_available.cache_clear()
    with contextlib.suppress(Exception):
        from xarray.namedarray.parallelcompat import list_chunkmanagers

        list_chunkmanagers.cache_clear()
    if after:
        with contextlib.suppress(Exception):
            from xarray.namedarray.utils import module_available

            for name in _NOTING_DASK:
                module = sys.modules.get(name)
                if module is not None and hasattr(module, "dask_available"):
                    module.dask_available = module_available("dask")
                    if hasattr(module, "DaskManager"):
                        module.DaskManager.available = module.dask_available


def cpu_count() -> int:
    """The cores this process may run on (its affinity where the OS says, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- the file system

_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)


def _renameat2(src, dst, flags: int) -> bool:
    """Linux's ``renameat2``; False where the OS or the file system lacks it (or the flag)."""
    if sys.platform != "linux":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):  # a C library before glibc 2.28
        return False
    call.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


def exchanged(a, b) -> bool:
    """Swap the entries at ``a`` and ``b`` in one step where the OS and the file system can
    (``RENAME_EXCHANGE``); False, with nothing moved, where they cannot."""
    return _renameat2(a, b, _RENAME_EXCHANGE)


def exchange(a, b) -> None:
    """Swap the entries at ``a`` and ``b`` (files or folders, both existing) in one step, so that
    neither path is ever missing (``RENAME_EXCHANGE``); where the OS or the file system cannot,
    three renames through a name beside ``a``."""
    if _renameat2(a, b, _RENAME_EXCHANGE):
        return
    aside = Path(a).with_name(f"{Path(a).name}.x-{secrets.token_hex(4)}")
    os.rename(a, aside)
    try:
        os.rename(b, a)
    except BaseException:
        os.rename(aside, a)
        raise
    os.rename(aside, b)


def rename_new(src, dst) -> None:
    """Rename ``src`` to ``dst``, which must not exist: FileExistsError rather than replace an entry
    that appeared meanwhile (``RENAME_NOREPLACE``; elsewhere checked just before)."""
    if _renameat2(src, dst, _RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def owned_name(prefix: str) -> str:
    """A new temporary name, ``PREFIX<random>.<pid>@<host>``: the process that owns it is in it, so
    that what a killed process left can be told from what a running one is writing."""
    return f"{prefix}{secrets.token_hex(4)}.{os.getpid()}@{_host()}"


_OWNER = re.compile(r"\.(\d+)@([0-9a-f]{8})$")


def owner_gone(name: str) -> bool:
    """Whether the process named in ``name`` (see :func:`owned_name`) has ended. False when
    unknown: no owner in the name (an older version's), or another machine's (a shared folder)."""
    found = _OWNER.search(name)
    if found is None or found.group(2) != _host():
        return False
    pid = int(found.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process
        return False
    return False


def new_dir(parent: Path, prefix: str) -> Path:
    """A new folder ``parent/<owned_name(prefix)>``, made with the mode the umask gives (``mkdtemp``
    makes it private to the owner)."""
    for _ in range(100):
        path = Path(parent) / owned_name(prefix)
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, f"no free temporary name in {parent}", str(parent))


def remove_tree(path: Path) -> bool:
    """Remove ``path`` and what it holds, never crossing into another file system (a folder mounted
    inside, with the folders above it, is left); True when everything went."""
    path = Path(path)
    if not os.path.lexists(path):
        return True
    if not path.is_dir() or path.is_symlink():
        os.unlink(path)
        return True
    return _remove_within(path, device(path))


def _remove_within(path: Path, dev: int) -> bool:
    whole = True
    for entry in os.scandir(path):
        sub = Path(entry.path)
        if not entry.is_dir(follow_symlinks=False):
            os.unlink(sub)
        elif device(sub) != dev:
            whole = False  # a mount point: another file system, not ours to empty
        else:
            whole = _remove_within(sub, dev) and whole
    if whole:
        os.rmdir(path)
    return whole


def device(path) -> int:
    """The file system ``path`` (not followed) is on."""
    return os.lstat(path).st_dev


@contextlib.contextmanager
def locked(path: Path, *, wait: float, folder: bool = False):
    """Hold an exclusive lock (``flock``) while inside: on the file ``path`` (made if missing, and
    removed on leaving), or with ``folder``, on the folder ``path`` itself. Waits up to ``wait``
    seconds for another holder, then raises TimeoutError. Without ``fcntl`` (Windows) no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY) if folder else os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(errno.EAGAIN, "held by another process", str(path)) from None
                    time.sleep(0.05)
            if folder or _same_file(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder removed it meanwhile: lock the file there now
    try:
        yield
    finally:
        if not folder:
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def room_for(path: Path, nbytes: int) -> None:
    """Raise ENOSPC, naming the file ``path`` about to be written, when its file system has less than
    ``nbytes`` (and a margin) free: a netCDF writer that meets a full disk can crash the process
    (h5py) rather than fail."""
    try:
        st = os.statvfs(Path(path).parent)
    except (OSError, AttributeError):
        return
    free = st.f_bavail * st.f_frsize
    if free < int(nbytes * 1.05) + (1 << 20):
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({free // 1024} KiB free, "
                                    f"{nbytes // 1024} KiB needed)", str(path))


# ----------------------------------------------------------------------------- SIGTERM

_TERMINATED = threading.Event()


def terminate_as_interrupt() -> None:
    """From now on SIGTERM (``timeout``, systemd, Slurm, ``kill``) raises
    :class:`~mrp_formula.errors.Terminated`, an interrupt, wherever Ctrl-C's would be raised: the same
    clean-up runs. Only the main thread can set a handler; elsewhere nothing changes."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _on_terminate)


def terminated() -> bool:
    """Whether a SIGTERM arrived (a library that takes the interrupt and returns what it had is
    then reported as terminated all the same)."""
    return _TERMINATED.is_set()


def _on_terminate(signum, frame) -> None:
    from mrp_formula.errors import Terminated

    _TERMINATED.set()
    raise Terminated()


def _default_signals() -> None:
    """In a forked child: Ctrl-C and SIGTERM end it, as they end any process."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Beside:
    """Work running beside the caller; :meth:`result` waits for it (see :func:`beside`)."""

    def __init__(self, pid: int | None, fd: int | None, value=None, error: str = "", seconds: float = 0.0,
                 job: str | None = None) -> None:
        self._pid, self._fd = pid, fd
        self._value, self._error, self._seconds = value, error, seconds
        self._job = job  # the file that handed the work to a child forked ahead (removed with it)

    def result(self, timeout: float = 900.0, stalled: float = 30.0) -> tuple[object, str, float]:
        """``(value, error, seconds)``: the work's return value (None when it failed), what went
        wrong ('' when nothing did), and how long it ran. A child that has not answered after
        ``timeout`` seconds, or that has used no CPU time for ``stalled`` seconds (the work is
        CPU-bound: such a child waits on a lock that a thread of this process held when it was
        forked, and never will answer), is killed and reported as an error (the classical
        estimates and the page's figures are then computed here; missing PNGs are a run note)."""
        if self._pid is None:
            return self._value, self._error, self._seconds
        chunks, deadline = [], time.monotonic() + timeout
        busy, busy_at = _cpu_ticks(self._pid), time.monotonic()
        poller = select.poll()  # not select.select: it fails on descriptors above 1023
        poller.register(self._fd, select.POLLIN | select.POLLHUP)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._error = f"did not finish in {timeout:.0f} s"
                    break
                if not poller.poll(min(left, 1.0) * 1000):
                    ticks = _cpu_ticks(self._pid)
                    if ticks != busy:
                        busy, busy_at = ticks, time.monotonic()
                    elif ticks is not None and time.monotonic() - busy_at > stalled:
                        self._error = f"stopped working (no CPU time for {stalled:.0f} s)"
                        break
                    continue
                chunk = os.read(self._fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            self.cancel()
        if not self._error:
            try:
                self._value, self._error, self._seconds = pickle.loads(b"".join(chunks))
            except Exception:  # noqa: BLE001 - the child died before answering
                self._error = "the forked process stopped without an answer"
        return self._value, self._error, self._seconds

    def cancel(self) -> None:
        """Stop the child (if it still runs) and reap it; safe to call twice."""
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self._pid, 0)
            except ChildProcessError:
                pass
            os.close(self._fd)
            self._pid = None
        if self._job is not None:
            Path(self._job).unlink(missing_ok=True)
            self._job = None


def _cpu_ticks(pid: int) -> int | None:
    """CPU time a process and its live descendants have used (user + system, in clock ticks; a
    child that waits for its own child's work is not stalled), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return ticks + sum(_cpu_ticks(int(c)) or 0 for c in children)


def beside(work, *, parallel: bool = True) -> Beside:
    """Run ``work()`` in a forked child while the caller goes on; the child sees the caller's
    memory as it was (nothing is pickled but the answer) and may write files. On a platform
    without a safe ``fork`` (anything but Linux), on one core, while another Python thread runs
    (it may hold a lock the child would wait for forever, matplotlib's drawing lock among them), or
    with ``parallel=False``, ``work()`` runs here and now. An exception in ``work`` becomes the
    result's error text, never the caller's.

    For CPU-bound work that would otherwise follow the caller's: on two cores, drawing the PNGs
    beside the report page takes the longer of the two instead of their sum."""
    if not parallel or sys.platform != "linux" or cpu_count() < 2 or threading.active_count() > 1:
        return _inline(work)
    _reap_leaving()
    parent = os.getpid()
    try:
        read_fd, write_fd = os.pipe()
    except OSError:  # out of descriptors: do it here
        return _inline(work)
    with warnings.catch_warnings():
        # Python warns about forking a process with threads: the ones left here are native (BLAS,
        # the sampler's), which hold no Python lock; a child that hangs anyway is killed at the
        # timeout of ``result``
        warnings.simplefilter("ignore", DeprecationWarning)
        # Everything the caller holds is frozen out of the child's garbage collections: an object
        # left to the collector here (nutpie's sampler keeps some in reference cycles) would
        # otherwise be freed there, and a native destructor that waits for threads the child does
        # not have (nutpie's does) hangs it. The caller's own collections go on as before.
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:  # no memory or process slot for a child: do it here
            gc.unfreeze()
            os.close(read_fd)
            os.close(write_fd)
            return _inline(work)
        if pid != 0:
            gc.unfreeze()
    if pid == 0:  # the child: answer, then leave without running the parent's exit handlers
        code = 0
        try:
            os.close(read_fd)
            _default_signals()
            _die_with_parent(parent)
            _answer(write_fd, work)
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            code = 1
        os._exit(code)
    os.close(write_fd)
    return Beside(pid, read_fd)


class Ahead:
    """A child forked ahead of its work (see :func:`ahead`): :meth:`beside` hands it the work."""

    def __init__(self, pid: int | None = None, job_fd: int | None = None, answer_fd: int | None = None) -> None:
        self._pid, self._job_fd, self._answer_fd = pid, job_fd, answer_fd

    def beside(self, fn, *args) -> Beside:
        """Run ``fn(*args)`` in the child, beside the caller, as :func:`beside` does; ``fn`` is a
        module-level function and ``args`` are pickled (through a private temporary file, so that
        the caller never waits for a child still importing). Without a child, or when the work
        cannot be handed over (an argument that does not pickle, a child that died), it is
        :func:`beside`'s: forked now, or run here."""
        if self._pid is None:
            return beside(lambda: fn(*args))
        path = None
        try:
            fd, path = tempfile.mkstemp(prefix="mrp-work-", suffix=".pickle")
            with os.fdopen(fd, "wb") as f:
                pickle.dump((fn, args), f, protocol=pickle.HIGHEST_PROTOCOL)
            name = os.fsencode(path)
            os.write(self._job_fd, len(name).to_bytes(4, "little") + name)  # a few bytes: never blocks
        except BaseException as exc:
            if path is not None:
                Path(path).unlink(missing_ok=True)
            self.cancel()
            if not isinstance(exc, Exception):  # an interrupt: the caller's to handle
                raise
            return beside(lambda: fn(*args))  # done the usual way
        pid, answer_fd = self._pid, self._answer_fd
        os.close(self._job_fd)
        self._pid = self._job_fd = self._answer_fd = None
        return Beside(pid, answer_fd, job=path)

    def cancel(self) -> None:
        """Let the child go when it was given no work; safe to call twice. It is not killed (it
        may be writing matplotlib's font cache, whose lock would outlive it): the pipe it waits on
        closes, and it leaves once its imports are done (reaped by a later fork, or by init)."""
        if self._pid is not None:
            os.close(self._job_fd)
            os.close(self._answer_fd)
            _LEAVING.append(self._pid)
            self._pid = self._job_fd = self._answer_fd = None
            _reap_leaving()

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()


_LEAVING: list[int] = []  # children forked ahead and let go, not yet reaped


def _reap_leaving() -> None:
    for pid in list(_LEAVING):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _LEAVING.remove(pid)


def _die_with_parent(parent: int) -> None:
    """From now on this forked child is killed when the process that forked it ends (Linux's
    parent-death signal), so that no child of a child that was given up goes on writing into a
    folder; it leaves at once if that process has already ended."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def ahead(modules: tuple[str, ...], *, parallel: bool = True) -> Ahead:
    """Fork a child now that imports ``modules`` and then waits for one piece of work
    (:meth:`Ahead.beside`): the imports (matplotlib's alone takes a second) run on another core
    while the caller reads, fits and summarises, and the work, when it comes, starts at once.
    Under :func:`beside`'s conditions only (Linux, two or more cores, no other Python thread,
    ``parallel``); otherwise :meth:`Ahead.beside` falls back to :func:`beside`. A module that
    fails to import is left to the work, which then meets the error itself. The child imports
    undisturbed (an interrupt of the caller's terminal reaches the caller alone), then leaves
    when the caller lets it go or ends, or once it has answered."""
    _reap_leaving()
    if not parallel or sys.platform != "linux" or cpu_count() < 2 or threading.active_count() > 1:
        return Ahead()
    try:
        job_r, job_w = os.pipe()
    except OSError:
        return Ahead()
    try:
        answer_r, answer_w = os.pipe()
    except OSError:
        os.close(job_r)
        os.close(job_w)
        return Ahead()
    parent = os.getpid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as in beside: native threads only
        gc.freeze()  # as in beside: the caller's objects are never the child's to collect
        try:
            pid = os.fork()
        except OSError:
            gc.unfreeze()
            for fd in (job_r, job_w, answer_r, answer_w):
                os.close(fd)
            return Ahead()
        if pid != 0:
            gc.unfreeze()
            os.close(job_r)
            os.close(answer_w)
            return Ahead(pid, job_w, answer_r)
    code = 0  # the child
    try:
        os.close(job_w)
        os.close(answer_r)
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - the work meets it
                pass
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent(parent)
        job = _read_job(job_r)
        if job is not None:
            with open(job, "rb") as f:
                fn, args = pickle.load(f)
            os.unlink(job)
            _answer(answer_w, lambda: fn(*args))
    except BaseException:  # noqa: BLE001 - nothing may escape a forked child
        code = 1
    os._exit(code)


def _read_job(fd: int) -> str | None:
    """The path a caller wrote to ``fd`` (4 bytes of length, then the name), or None at its end."""
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "little"):
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    return os.fsdecode(data[4:4 + int.from_bytes(data[:4], "little")])


def _answer(fd: int, work) -> None:
    """In a forked child: do ``work`` and write its ``(value, error, seconds)`` to ``fd``, pickled."""
    done = _inline(work)
    payload = pickle.dumps((done._value, done._error, done._seconds))
    with os.fdopen(fd, "wb") as f:
        f.write(payload)


def _inline(work) -> Beside:
    start = time.perf_counter()
    try:
        value, error = work(), ""
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        value, error = None, f"{type(exc).__name__}: {exc}"
    return Beside(None, None, value=value, error=error, seconds=time.perf_counter() - start)
