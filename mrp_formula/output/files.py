"""Outputs: the run folder, written atomically (a failed or interrupted run leaves the
previous results intact), and the manifest.

A command writes its folder only where that cannot destroy anything it did not write: a new or
empty folder, or a folder it recognises as its own (its ``manifest.json`` carries the marker
``"written_by": "mrp-formula"`` and the list of files that run wrote). Any other existing folder
is refused unless the user passes ``--into-existing``, and then the run's files are added to it
and nothing already there is removed or overwritten. Whatever a run did not write (another
command's sub-folder such as ``recovery/``, a file the user put there) is kept by later runs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mrp_formula.errors import MrpError, OutputError, Problem, SpecError, UsageError
from mrp_formula.system import device, exchange, exchanged, locked, new_dir, owned_name, owner_gone, remove_tree, rename_new

WRITTEN_BY = "mrp-formula"  # the marker in manifest.json of every folder the tool writes
MANIFEST = "manifest.json"
SHOWN = 8  # entries named in a refusal


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- whose folder is it


@dataclass(frozen=True)
class Origin:
    """Who chose an output folder: the ``--out`` flag (exit 2 when refused), the spec's
    ``report.out`` (exit 3, with the spec file and line), or nobody (the default, exit 2)."""

    option: str = "--out"  # "--out", "report.out" or "" (the default folder)
    file: str = ""
    line: int | None = None

    def error(self, folder: Path, message: str, hint: str) -> MrpError:
        """``message`` says what is wrong with "the output folder"; the folder is named in front
        (a flag or the default) or in the message (report.out, whose place is the spec)."""
        if self.option == "report.out":
            return SpecError(Problem(message.replace("the output folder", f"the output folder {folder}", 1),
                                     key="report.out", file=self.file, line=self.line, hint=hint))
        return UsageError(Problem(message, key=self.option or "output folder", file=str(folder), hint=hint))

    @property
    def elsewhere(self) -> str:
        return {"report.out": "set report.out to a new or empty folder",
                "--out": "pass --out with a new or empty folder"}.get(self.option, "pass --out DIR")


@dataclass(frozen=True)
class FolderState:
    """What an output folder holds before a command writes it."""

    kind: str  # "missing", "empty", "own" (mrp-formula wrote it), "foreign", "file" (not a folder)
    owned: frozenset[str] | None = frozenset()  # names the earlier run listed; None: an older manifest
    foreign: tuple[str, ...] = ()  # entries mrp-formula did not write


def manifest_of(folder: Path) -> dict | None:
    """The folder's manifest when mrp-formula wrote it: the marker, or (runs before the marker
    existed) the keys every earlier manifest had."""
    try:
        m = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict):
        return None
    if m.get("written_by") == WRITTEN_BY:
        return m
    spec = m.get("spec")
    legacy = "mrp_formula" in m or (isinstance(spec, dict) and "sha256" in spec and "name" in m)
    return m if legacy and "written_by" not in m else None


def _ours(entry: Path) -> bool:
    """A sub-folder mrp-formula wrote: another command's results (``recovery/``, ``prior/``),
    the cache of fits, what an interrupted command left of its temporary folders, or the lock a
    command holds while it writes a sub-folder."""
    from mrp_formula.model.cache import CACHE_DIR

    if entry.is_symlink():
        return False
    if entry.is_file():
        return re.fullmatch(r"\..+\.lock", entry.name) is not None
    if not entry.is_dir():
        return False
    return entry.name == CACHE_DIR or _leftover(entry.name) or manifest_of(entry) is not None


def _leftover(name: str) -> bool:
    """The name of a temporary folder of :func:`staged_dir` (``.NAME.tmp-XXXXXXXX``, ``.old-``, with
    the owner's process id after it: ``.NAME.tmp-XXXXXXXX.PID@HOST``)."""
    return re.fullmatch(r"\..+\.(tmp|old)-[0-9a-f]{8}(\.\d+@[0-9a-f]{8})?", name) is not None


def inspect_folder(folder: Path) -> FolderState:
    folder = Path(folder)
    if not os.path.lexists(folder):
        return FolderState("missing")
    if not folder.is_dir():
        return FolderState("file")
    entries = sorted(p.name for p in folder.iterdir())
    m = manifest_of(folder)
    if m is not None:
        files = m.get("files")
        owned = frozenset(files) if isinstance(files, list) and m.get("written_by") == WRITTEN_BY else None
        foreign = tuple(e for e in _extra(folder, owned or frozenset()) if not _ours(folder / e))
        return FolderState("own", owned, foreign)
    if not entries:
        return FolderState("empty")
    foreign = tuple(e for e in entries if not _ours(folder / e))
    return FolderState("foreign" if foreign else "own", frozenset(), foreign)


def _listing(folder: Path, names) -> str:
    names = list(names)
    shown = [f"{n}/" if (folder / n).is_dir() else n for n in names[:SHOWN]]
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(shown) + more


def check_out(folder: Path, *, into_existing: bool = False, origin: Origin = Origin(), writes=()) -> FolderState:
    """Refuse an output folder that writing would damage, or that cannot be written; return what
    it holds.

    A folder that is new, empty or mrp-formula's own is fine. A folder holding anything else is
    refused unless ``into_existing``; even then a ``manifest.json`` that is not mrp-formula's
    would be overwritten, so it is refused too. ``writes``: the top-level names the command
    writes; one that is already there and not mrp-formula's is refused (before the work, rather
    than at its end). A read-only place is an :class:`OutputError`."""
    folder = Path(folder)
    state = inspect_folder(folder)
    if state.kind == "file":
        raise origin.error(folder, "the output folder exists and is not a folder",
                           f"{origin.elsewhere}; nothing was written")
    if state.kind == "foreign":
        what = _listing(folder, state.foreign)
        if not into_existing:
            raise origin.error(
                folder, f"the output folder already holds files that mrp-formula did not write ({what})",
                f"{origin.elsewhere}, or pass --into-existing to add the run's files to this folder "
                f"(nothing already in it is removed or overwritten); nothing was written")
        if MANIFEST in state.foreign:
            raise origin.error(folder, f"the output folder holds a {MANIFEST} that mrp-formula did not write, "
                               f"and a run writes its own {MANIFEST}", f"{origin.elsewhere}; nothing was written")
    mine = set(writes) - {MANIFEST}
    clash = ([n for n in state.foreign if n in mine and not ((folder / n).is_dir() and not (folder / n).is_symlink())]
             if state.owned is not None else [])  # a folder of the user's that the run writes into is no clash
    if clash:
        never = "; --into-existing never replaces a file" if state.kind == "foreign" else ""
        raise origin.error(folder, f"the output folder already holds {_listing(folder, clash)}, which mrp-formula "
                                   f"did not write and this run would replace{never}",
                           f"move {'it' if len(clash) == 1 else 'them'} away, or {origin.elsewhere}; nothing was "
                           f"written")
    _check_writable(folder, state, origin)
    return state


def _check_writable(folder: Path, state: FolderState, origin: Origin) -> None:
    """A new folder needs its nearest existing ancestor writable; an existing one, itself."""
    place = folder if state.kind != "missing" else next(p for p in folder.parents if p.exists())
    if os.access(place, os.W_OK | os.X_OK):
        return
    try:
        read_only = bool(os.statvfs(place).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    why = "is on a read-only file system" if read_only else "is not writable (permissions)"
    raise OutputError(Problem(f"the output folder cannot be written: {place} {why}",
                              key=origin.option or "output folder", file=str(folder),
                              hint=f"{origin.elsewhere} in a writable place; nothing was written"))


# ----------------------------------------------------------------------------- writing

LOCK_WAIT = 60.0  # seconds a commit waits for another command's commit into the same folder
_UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


@contextlib.contextmanager
def staged_dir(final: Path, *, into_existing: bool = False, origin: Origin = Origin(), writes=()):
    """Yield a temporary folder; on success its files become ``final``.

    The temporary folder follows the user's umask (as ``mkdir`` does) and carries this process's
    id in its name (:func:`tidy` removes it should the process be killed). On success it is stamped
    (``manifest.json`` gets the marker and the list of files written, those of sub-folders as
    ``plots/forest.png``) and committed while a lock beside ``final`` is held (a second command
    committing into the same folder waits for it):

    - ``final`` new: the temporary folder is renamed to it;
    - ``final`` holds only the files the earlier run listed: the two folders are exchanged in one
      step (Linux's ``RENAME_EXCHANGE``; elsewhere two renames), then the earlier run's files are
      removed (anything saved into the earlier folder meanwhile is moved into the new one);
    - ``final`` holds anything else (files the user added, other commands' sub-folders, a file in
      ``plots/``), or ``into_existing`` a folder mrp-formula did not write: the run's files are
      moved into it one by one (each replacing the earlier run's file of its name in one step),
      ``manifest.json`` last, then the earlier run's files this run did not write again are
      removed. A name the earlier run did not write is refused, never replaced.

    ``writes``: the top-level names the command will write, so that a clash with a file that is
    not mrp-formula's is refused before the work. A failure before the commit (or an interrupt)
    removes the temporary folder and leaves ``final`` as it was; a read-only place or a full disk
    is an :class:`OutputError` naming the path."""
    final = Path(os.path.abspath(final))
    if final.is_symlink():
        final = final.resolve()
    tmp = None
    try:
        tidy(final)
        into = check_out(final, into_existing=into_existing, origin=origin, writes=writes).kind == "foreign"
        final.parent.mkdir(parents=True, exist_ok=True)
        # into someone's folder, or beside it where that is not allowed: the temporary folder inside it
        inside = into or (final.is_dir() and not os.access(final.parent, os.W_OK | os.X_OK))
        tmp = new_dir(final if inside else final.parent, f".{final.name}.tmp-")
        yield tmp
        _stamp(tmp)
        with _commit_lock(final, origin):
            state = check_out(final, into_existing=into_existing, origin=origin)  # it may have changed since
            _commit(tmp, final, state, origin)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                remove_tree(tmp)
        if isinstance(exc, OSError) and exc.errno in _UNWRITABLE:
            raise cannot_write(final, exc, origin) from exc
        raise


def cannot_write(final: Path, exc: OSError, origin: Origin = Origin()) -> OutputError:
    """A read-only place, a full disk, no permission: what and where, and that nothing was lost."""
    where = exc.filename or final
    return OutputError(Problem(f"the results could not be written to {where}: {exc.strerror or exc}",
                               key=origin.option or "output folder", file=str(final),
                               hint=f"make room or choose a writable place ({origin.elsewhere}); "
                                    f"earlier results are untouched"))


@contextlib.contextmanager
def _commit_lock(final: Path, origin: Origin):
    """Hold the lock of ``final`` (the file ``.NAME.lock`` beside it; the folder itself where its
    parent is read-only) while committing; another command's commit is waited for."""
    folder = final.is_dir() and not os.access(final.parent, os.W_OK | os.X_OK)
    lock = final if folder else final.parent / f".{final.name}.lock"
    held = locked(lock, wait=LOCK_WAIT, folder=folder)
    try:
        held.__enter__()
    except TimeoutError as exc:
        raise OutputError(Problem(f"another mrp-formula command has been writing the output folder for over "
                                  f"{LOCK_WAIT:.0f} s (it holds {lock})", key=origin.option or "output folder",
                                  file=str(final), hint=f"run again once it is done, or {origin.elsewhere}; "
                                                        f"nothing was written")) from exc
    try:
        yield
    finally:
        held.__exit__(None, None, None)


def _stamp(folder: Path) -> None:
    """Mark the manifest as mrp-formula's and list the files this run wrote."""
    path = folder / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {}
    names = sorted(set(_files(folder)) | {MANIFEST})
    write_json({"written_by": WRITTEN_BY, "files": names,
                **{k: v for k, v in manifest.items() if k not in ("written_by", "files")}}, path)


def _files(folder: Path) -> list[str]:
    """Every file (and link) under ``folder``, as a relative path with '/', ``manifest.json`` last."""
    out = []
    for root, dirs, names in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out += [(rel / n).as_posix() for n in names]
        out += [(rel / d).as_posix() for d in dirs if os.path.islink(os.path.join(root, d))]
    return sorted(out, key=lambda r: (r == MANIFEST, r))


def _owns(owned, rel: str) -> bool:
    """Whether the earlier run wrote ``rel``: listed, or inside a folder it listed whole (a
    manifest of a version that listed ``plots`` rather than its files)."""
    parts = rel.split("/")
    return any("/".join(parts[:i]) in owned for i in range(1, len(parts) + 1))


def _holds_owned(owned, rel: str) -> bool:
    return _owns(owned, rel) or any(o.startswith(rel + "/") for o in owned)


def _extra(folder: Path, owned, rel: str = "") -> list[str]:
    """What ``folder`` holds that the earlier run did not write (other commands' folders, leftovers
    and the lock included), looking into the folders it wrote files in."""
    out = []
    for entry in sorted(os.scandir(folder / rel) if rel else os.scandir(folder), key=lambda e: e.name):
        r = f"{rel}{entry.name}"
        if _owns(owned, r) or r == MANIFEST:
            continue
        if entry.is_dir(follow_symlinks=False) and _holds_owned(owned, r):
            out += _extra(folder, owned, r + "/")
        else:
            out.append(r)
    return out


def _commit(tmp: Path, final: Path, state: FolderState, origin: Origin) -> None:
    if state.kind == "missing":
        rename_new(tmp, final)
        return
    new = _files(tmp)
    # an older manifest lists no files: what this run writes again is taken to be its own
    owned = frozenset(new) if state.owned is None else (state.owned if state.kind == "own" else frozenset())
    # a folder the run puts files in may be the user's (their plots/ with their own figure); a file of
    # the run's, or a file where the run needs a folder, may not
    clash = list(dict.fromkeys(p for r in new for p in _prefixes(r)
                               if os.path.lexists(final / p) and not _holds_owned(owned, p)
                               and (p == r or not (final / p).is_dir() or (final / p).is_symlink())))
    if clash:
        raise origin.error(final, f"the output folder holds {_listing(final, clash)}, which mrp-formula did not "
                                  f"write and this run would replace; a run never replaces a file it did not write",
                           f"move {'it' if len(clash) == 1 else 'them'} away, or {origin.elsewhere}")
    whole = (tmp.parent == final.parent and not _extra(final, owned)
             and device(final) == device(final.parent))
    if whole:
        _commit_swap(tmp, final, owned)
    else:
        _commit_files(tmp, final, new, owned)


def _prefixes(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _commit_swap(tmp: Path, final: Path, owned) -> None:
    """``final`` holds only the earlier run's files: exchange it with ``tmp`` in one step, then
    remove them."""
    old = final.parent / owned_name(f".{final.name}.old-")
    if exchanged(tmp, final):
        os.rename(tmp, old)
    else:  # two renames: killed between them, `final` is missing and `tidy` puts `.NAME.old-*` back
        os.rename(final, old)
        try:
            os.rename(tmp, final)
        except BaseException:
            os.rename(old, final)
            raise
    _retire(old, final, owned)


def _commit_files(tmp: Path, final: Path, new: list[str], owned) -> None:
    """Move the run's files into ``final`` one by one (``manifest.json`` last), each replacing the
    earlier run's file of its name in one step; on a failure every file is put back."""
    moved, made = [], []
    try:
        for rel in new:
            made += _parents(final, rel)
            if os.path.lexists(final / rel):
                exchange(tmp / rel, final / rel)
                moved.append((rel, True))
            else:
                rename_new(tmp / rel, final / rel)
                moved.append((rel, False))
    except BaseException:
        for rel, swapped in reversed(moved):  # the folder as it was
            with contextlib.suppress(OSError):
                exchange(tmp / rel, final / rel) if swapped else os.rename(final / rel, tmp / rel)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    for rel in sorted(owned - set(new)):  # the earlier run's files that this run did not write again
        if not any(n.startswith(rel + "/") for n in new):
            _drop(final, rel)
    remove_tree(tmp)  # the earlier run's versions of the files replaced


def _parents(final: Path, rel: str) -> list[Path]:
    """Make the folders ``rel`` is in; the ones made."""
    made = []
    for p in _prefixes(rel)[:-1]:
        if not os.path.lexists(final / p):
            os.mkdir(final / p, 0o777)
            made.append(final / p)
    return made


def _drop(folder: Path, rel: str) -> None:
    """Remove a file an earlier run wrote (a folder it listed whole, short of other file systems),
    then the folders it was in that are left empty."""
    path = folder / rel
    with contextlib.suppress(FileNotFoundError):
        remove_tree(path)
    for p in reversed(_prefixes(rel)[:-1]):
        with contextlib.suppress(OSError):
            os.rmdir(folder / p)  # only when empty


def _retire(old: Path, final: Path, owned) -> None:
    """An earlier run folder moved aside by the exchange: its run's files are removed, and anything
    else (saved into it while it was replaced) is moved into ``final``; what cannot be is left."""
    for rel in sorted(owned | {MANIFEST}):
        with contextlib.suppress(OSError):
            _drop(old, rel)
    for rel in _files(old):
        with contextlib.suppress(OSError):
            _parents(final, rel)
            rename_new(old / rel, final / rel)
            _drop(old, rel)
    with contextlib.suppress(OSError):
        os.rmdir(old)


def tidy(final: Path) -> list[str]:
    """What commands killed while writing ``final`` left, found before a new one writes it: their
    temporary folders (beside it, and inside it those of any command's sub-folder) are removed once
    the process named in them has ended (an older version's, which name none, at once); an earlier
    run folder moved aside (``.NAME.old-*``) is put back when ``final`` is missing (a run killed
    between the two renames of a swap, where the OS cannot exchange), or retired when it is not.
    Notes of what was restored, or is left for the user to look at."""
    final = Path(os.path.abspath(final))
    notes = []
    for name, path, kind in _leftovers(final):
        gone = owner_gone(name) or not _OWNED.search(name)
        with contextlib.suppress(OSError):
            if kind == "tmp" and gone:
                remove_tree(path)
            elif kind == "old" and gone and not os.path.lexists(final):
                os.rename(path, final)
                notes.append(f"restored the earlier run folder {final} from {name}, where a run killed while "
                             f"replacing it had left it")
            elif kind == "old" and gone:
                m = manifest_of(path) or {}
                _retire(path, final, frozenset(m.get("files") or ()))
                if os.path.lexists(path):
                    notes.append(f"{path} holds what a run killed while replacing {final} left there")
    return notes


_OWNED = re.compile(r"\.\d+@[0-9a-f]{8}$")


def _leftovers(final: Path) -> list[tuple[str, Path, str]]:
    """``(name, path, "tmp" or "old")`` of the temporary folders of ``final`` beside it, and of any
    command's inside it."""
    found = []
    for place, prefix in ((final.parent, re.escape(f".{final.name}.")), (final, r"\..+\.")):
        try:
            names = sorted(os.listdir(place)) if place.is_dir() else []
        except OSError:
            continue
        for name in names:
            match = re.fullmatch(prefix + r"(tmp|old)-[0-9a-f]{8}(\.\d+@[0-9a-f]{8})?", name)
            if place == final and match and match.group(1) == "old":
                continue  # another command's earlier results, put back when it runs again
            if match and (place / name).is_dir() and not (place / name).is_symlink():
                found.append((name, place / name, match.group(1)))
    return found


def write_table(df: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)


def write_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if np.isnan(o) else float(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def table_records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe rows: NaN, None and an empty text become null (as the CSV, where all three are an
    empty field)."""
    return [{k: (None if v == "" else v) for k, v in row.items()} for row in json.loads(df.to_json(orient="records"))]
