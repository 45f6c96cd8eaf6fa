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
import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mrp_formula.errors import MrpError, Problem, SpecError, UsageError

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
    the cache of fits, or what an interrupted command left of its temporary folders."""
    from mrp_formula.model.cache import CACHE_DIR

    if entry.is_symlink() or not entry.is_dir():
        return False
    return entry.name == CACHE_DIR or _leftover(entry.name) or manifest_of(entry) is not None


def _leftover(name: str) -> bool:
    """The name of a temporary folder of :func:`staged_dir` (``.NAME.tmp-XXXXXXXX``, ``.old-``)."""
    return re.fullmatch(r"\..+\.(tmp|old)-[0-9a-f]{8}", name) is not None


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
        foreign = tuple(e for e in entries
                        if e != MANIFEST and not (owned and e in owned) and not _ours(folder / e))
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


def check_out(folder: Path, *, into_existing: bool = False, origin: Origin = Origin()) -> FolderState:
    """Refuse an output folder that writing would damage; return what it holds.

    A folder that is new, empty or mrp-formula's own is fine. A folder holding anything else is
    refused unless ``into_existing``; even then a ``manifest.json`` that is not mrp-formula's
    would be overwritten, so it is refused too."""
    folder = Path(folder)
    state = inspect_folder(folder)
    if state.kind == "file":
        raise origin.error(folder, "the output folder exists and is not a folder",
                           f"{origin.elsewhere}; nothing was written")
    if state.kind != "foreign":
        return state
    what = _listing(folder, state.foreign)
    if not into_existing:
        raise origin.error(
            folder, f"the output folder already holds files that mrp-formula did not write ({what})",
            f"{origin.elsewhere}, or pass --into-existing to add the run's files to this folder "
            f"(nothing already in it is removed or overwritten); nothing was written")
    if MANIFEST in state.foreign:
        raise origin.error(folder, f"the output folder holds a {MANIFEST} that mrp-formula did not write, "
                           f"and a run writes its own {MANIFEST}", f"{origin.elsewhere}; nothing was written")
    return state


# ----------------------------------------------------------------------------- writing


@contextlib.contextmanager
def staged_dir(final: Path, *, into_existing: bool = False, origin: Origin = Origin()):
    """Yield a temporary folder; on success its files become ``final``.

    The temporary folder follows the user's umask (as ``mkdir`` does). On success it is stamped
    (``manifest.json`` gets the marker and the list of files written) and committed:

    - ``final`` new, empty or mrp-formula's own: the new folder replaces it in one rename, and
      everything the earlier run did not write (other commands' sub-folders such as
      ``recovery/``, files the user added) is carried over (hard links, else copies);
    - ``final`` holds other files and ``into_existing``: the run's files (written in a temporary
      folder inside it) are moved into it one by one, ``manifest.json`` last; a name that is
      already there is refused, never replaced.

    A failure before the commit (or an interrupt) removes the temporary folder and leaves
    ``final`` as it was."""
    final = Path(os.path.abspath(final))
    if final.is_symlink():
        final = final.resolve()
    into = check_out(final, into_existing=into_existing, origin=origin).kind == "foreign"
    final.parent.mkdir(parents=True, exist_ok=True)
    # into someone's folder: the temporary folder inside it (where writing is allowed anyway)
    tmp = _new_dir(final if into else final.parent, f".{final.name}.tmp-")
    try:
        yield tmp
        _stamp(tmp)
        state = check_out(final, into_existing=into_existing, origin=origin)  # it may have changed since
        if into or state.kind == "foreign":
            _commit_into(tmp, final, origin)
        else:
            _commit_swap(tmp, final, state, origin)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _new_dir(parent: Path, prefix: str) -> Path:
    """A new folder with a random name, made with the mode the umask gives (``mkdtemp`` makes
    it private to the owner)."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary name in {parent}")


def _stamp(folder: Path) -> None:
    """Mark the manifest as mrp-formula's and list the files this run wrote."""
    path = folder / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {}
    names = sorted({p.name for p in folder.iterdir()} | {MANIFEST})
    write_json({"written_by": WRITTEN_BY, "files": names,
                **{k: v for k, v in manifest.items() if k not in ("written_by", "files")}}, path)


def _commit_swap(tmp: Path, final: Path, state: FolderState, origin: Origin) -> None:
    if state.kind in ("own", "empty"):
        # an older manifest lists no files: what this run writes again is taken to be its own
        clash = [n for n in state.foreign if os.path.lexists(tmp / n)] if state.owned is not None else []
        if clash:
            raise origin.error(final, f"the output folder holds {_listing(final, clash)}, which mrp-formula "
                               f"did not write and this run would replace",
                               f"move {'it' if len(clash) == 1 else 'them'} away, or {origin.elsewhere}")
        for entry in final.iterdir():
            if os.path.lexists(tmp / entry.name):
                continue  # written again by this run (an earlier run's file)
            if state.owned and entry.name in state.owned:
                continue  # the earlier run's file that this run no longer writes
            if _leftover(entry.name) and entry.is_dir() and not entry.is_symlink():
                continue  # a temporary folder an interrupted command left
            try:
                _link_tree(entry, tmp / entry.name)
            except OSError as exc:
                raise origin.error(final, f"the output folder cannot keep {entry.name} in the new run "
                                                  f"({exc.strerror or exc})",
                                   f"move it out of {final}, or {origin.elsewhere}") from exc
    if state.kind == "missing":
        os.replace(tmp, final)
        return
    old = _new_dir(final.parent, f".{final.name}.old-")
    os.rmdir(old)
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _commit_into(tmp: Path, final: Path, origin: Origin) -> None:
    names = sorted(p.name for p in tmp.iterdir())
    clash = [n for n in names if os.path.lexists(final / n)]
    if clash:
        raise origin.error(final, f"the output folder already holds {_listing(final, clash)}, which "
                           f"mrp-formula did not write; --into-existing never replaces a file",
                           f"move {'it' if len(clash) == 1 else 'them'} away, or {origin.elsewhere}")
    moved = []
    try:
        for name in [n for n in names if n != MANIFEST] + [MANIFEST]:
            os.replace(tmp / name, final / name)
            moved.append(name)
    except BaseException:
        for name in moved:  # take this run's files back out: the folder is as it was
            with contextlib.suppress(OSError):
                os.replace(final / name, tmp / name)
        raise
    os.rmdir(tmp)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _link_tree(src: Path, dst: Path) -> None:
    """``src`` at ``dst`` without copying bytes where a hard link will do; the original stays."""
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


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
