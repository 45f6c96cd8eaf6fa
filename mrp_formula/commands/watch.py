"""`mrp watch`: rerun a spec whenever it or its input files change, and say what moved.

The loop (:func:`watch`) takes any iterable of change sets, so a test feeds it changes without
waiting on the file system; :func:`file_changes` is the real source (watchfiles). Each rerun is
``mrp run`` itself: the fit cache beside the run folder reuses the posterior when only the
population, the estimands or the report settings changed (the cache key is the data and the
model part of the spec), and the run folder, report.html included, is rewritten in place. A
rerun is compared with the run before it by ``mrp diff`` (commands/diff.py). A spec that fails
(a typo while editing) is reported and the loop goes on watching.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from mrp_formula.commands.diff import RunDiff, diff_runs
from mrp_formula.commands.run import RunResult
from mrp_formula.commands.run import run as run_spec
from mrp_formula.errors import MrpError, Problem
from mrp_formula.progress import SILENT, Reporter
from mrp_formula.spec.tree import load_spec, spec_files

# what the comparison with the previous run reads (not the posterior or the figures)
KEPT = ("manifest.json", "estimands.csv", "spec.toml", "ppc.csv")


@dataclass(frozen=True)
class Rerun:
    """One run of the loop: its result, or the error that stopped it, and what moved since the
    previous successful run."""

    number: int  # 1 for the first run
    changed: tuple[Path, ...]  # the files whose change caused it (empty for the first run)
    result: RunResult | None = None
    error: MrpError | None = None
    diff: RunDiff | None = None
    diff_error: str = ""  # why there is no comparison, when the comparison itself failed

    @property
    def reused_fit(self) -> bool:
        return bool(self.result is not None and self.result.manifest.get("fit_cache", {}).get("reused"))


def watched_files(spec, overrides=()) -> tuple[Path, ...]:
    """The spec file, the specs it extends and the files it reads (data, population, joins, the
    known means of ``[calibrate]``, adjacency tables); the spec alone while it does not load."""
    spec = Path(spec).resolve()
    try:
        loaded = load_spec(spec, tuple(overrides))
        files = list(spec_files(spec))
    except MrpError:
        return (spec,)
    s = loaded.spec
    files.append(loaded.resolve(s.data.source))
    if s.population.source:
        files.append(loaded.resolve(s.population.source))
    files += [loaded.resolve(j.source) for j in s.join]
    if s.calibrate is not None:
        files.append(loaded.resolve(s.calibrate.source))
    files += [loaded.resolve(st.adjacency) for st in s.model.structure.values()
              if getattr(st, "adjacency", None)]
    return tuple(dict.fromkeys(files))


def watch(spec, changes: Iterable[Iterable[Path]], *, out=None, overrides=(), on_rerun: Callable[[Rerun], None],
          reporter: Reporter = SILENT, run_fn=run_spec) -> int:
    """Run ``spec``, then rerun it for each change set of ``changes`` (an empty set is skipped);
    ``on_rerun`` hears every run. Returns the number of runs. Errors of a run are handed to
    ``on_rerun`` (``Rerun.error``), never raised: the loop goes on."""
    out_dir = Path(out) if out else None
    with tempfile.TemporaryDirectory(prefix="mrp-watch-") as tmp:
        previous = Path(tmp) / "previous"
        have_previous = _one(spec, 1, (), out_dir, overrides, on_rerun, reporter, run_fn, previous, False)
        n = 1
        for changed in changes:
            changed = tuple(Path(c) for c in changed)
            if not changed:
                continue
            n += 1
            have_previous = _one(spec, n, changed, out_dir, overrides, on_rerun, reporter, run_fn, previous,
                                 have_previous)
    return n


def _one(spec, n, changed, out_dir, overrides, on_rerun, reporter, run_fn, previous: Path,
         have_previous: bool) -> bool:
    reporter.start()
    try:
        result = run_fn(spec, out=out_dir, overrides=tuple(overrides), reporter=reporter)
    except MrpError as exc:
        on_rerun(Rerun(number=n, changed=changed, error=exc))
        return have_previous
    except Exception as exc:  # noqa: BLE001 - a bug in one rerun must not end the watch
        on_rerun(Rerun(number=n, changed=changed, error=MrpError(Problem(
            f"internal error: {type(exc).__name__}: {exc}", hint="please report this with the spec"))))
        return have_previous
    d, why = None, ""
    if have_previous:
        try:
            d = diff_runs(previous, result.out)
        except Exception as exc:  # noqa: BLE001 - the comparison is a courtesy; the run stands
            why = f"{type(exc).__name__}: {exc}"
    keep(result.out, previous)
    on_rerun(Rerun(number=n, changed=changed, result=result, diff=d, diff_error=why))
    return True


def keep(folder: Path, previous: Path) -> None:
    """Copy what the next comparison needs out of the run folder (which the next run replaces)."""
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir(parents=True)
    for name in KEPT:
        if (Path(folder) / name).is_file():
            shutil.copy2(Path(folder) / name, previous / name)


def file_changes(spec, overrides=(), *, stop_event=None, debounce_ms: int = 400) -> Iterable[set[Path]]:
    """Change sets of the watched files (:func:`watched_files`, looked up again after each change,
    so a spec that starts reading another file has it watched), from watchfiles. Folders are
    watched, not files, so an editor that saves by renaming a new file over the old one is seen;
    the run folder's own writes are ignored. A file saved while the consumer runs (no watch is open
    then: the first run, and each rerun) is yielded when it asks for the next change: each file's
    stamp is taken when this is called and whenever a change set is handed over, and compared when
    the consumer comes back. Ends when ``stop_event`` is set."""
    before = {p: _stamp(p) for p in watched_files(spec, overrides)}  # now: before the first run
    return _changes(spec, overrides, before, stop_event, debounce_ms)


def _changes(spec, overrides, before: dict, stop_event, debounce_ms: int):
    import watchfiles

    while stop_event is None or not stop_event.is_set():
        targets = set(watched_files(spec, overrides))
        hit = {p for p in targets if p in before and _stamp(p) != before[p]}  # saved while the consumer ran
        if not hit:
            folders = sorted({p.parent for p in targets if p.parent.is_dir()})
            for batch in watchfiles.watch(*folders, stop_event=stop_event, debounce=debounce_ms, recursive=False,
                                          rust_timeout=500, yield_on_timeout=False, raise_interrupt=True):
                hit = {Path(p).resolve() for _, p in batch} & targets
                if hit:
                    break  # look the targets up again after the rerun: the spec may name other files now
            else:
                return  # the watch ended (stop_event)
        before = {p: _stamp(p) for p in targets}
        yield hit


def _stamp(path: Path):
    """What changes when a file is saved: its modification time, size and inode (None: absent)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


__all__ = ["Rerun", "file_changes", "watch", "watched_files"]
