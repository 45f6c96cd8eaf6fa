"""``mrp batch``: many specs (and each spec's variants) fitted and poststratified on Dask workers.

Every spec, and every ``[variants.NAME]`` of a spec, becomes one run: ``mrp run`` on a worker,
writing its run folder ``OUT/<name>`` (the spec itself, variant ``base``) or
``OUT/<name>.<variant>``. The client then writes ``OUT/batch.csv`` (one row per run and estimand
row: spec, variant, status, exit code, error, then the estimands' columns), ``OUT/batch.json``
(each run's key, status and timings: what a rerun checks) and ``OUT/index.html`` (a page linking
every run's report). Where a spec's runs are fitted on the same observations they are compared by
PSIS-LOO (``OUT/<name>.compare.csv``) and their estimands stacked: a per-draw mixture of the
runs' estimand draws by stacking weight (rows with variant ``stacked``).

A run that fails (spec, data, fit, or its checks under ``strict``) is a row with its error and
exit code; the others finish. A run that finishes carries its run page's verdict (``page.verdict``:
ok, look at this, do not use), its failed checks and its warnings, and its status says the same
(ok, warned, checks failed). A rerun skips a run whose folder's own manifest was made from the same
key (the spec as run with its overrides, every input file's hash, the package version): the folder,
not batch.json, is what says which configuration its numbers belong to. batch.json, batch.csv and
index.html are written again as each run finishes, so an interrupted batch records what it finished.
Each run folder, and each of the batch's files, is written in one rename: a batch that fails leaves
earlier results as they were. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mrp_formula import __version__
from mrp_formula.commands.scheduler import Event, Scheduler
from mrp_formula.errors import EXIT_DIAGNOSTICS, EXIT_INTERNAL, MrpError, Problem, UsageError
from mrp_formula.output.files import MANIFEST, inspect_folder, manifest_of
from mrp_formula.output.manifest import input_files
from mrp_formula.spec.tree import LoadedSpec, load_spec, variant_overrides
from mrp_formula.system import write_text_atomic

BASE = "base"
STACKED = "stacked"
LEAD = ["spec", "variant", "run", "status", "exit_code", "error"]
SHOWN = ["scale", "mean", "sd", "lower", "upper", "ci_prob", "ci_kind", "r_hat", "ess_bulk"]
TAIL = ["verdict", "failed_checks", "warnings", "elpd_loo", "stacking_weight"]
# a run's status: it ran, and its page's verdict was ok / look at this / do not use; not rerun; failed
OK, WARNED, CHECKS_FAILED, CURRENT, FAILED = "ok", "warned", "checks failed", "current", "failed"
STATUS_OF_LEVEL = {"ok": OK, "look": WARNED, "bad": CHECKS_FAILED}  # page.Verdict.level -> status
SUCCEEDED = (OK, WARNED, CHECKS_FAILED, CURRENT)  # the run's folder holds its results
UNUSABLE = "do not use"  # page.verdict's word for a run that failed a check it is judged by
BATCH_FILES = ("batch.csv", "batch.json", "index.html")  # with <name>.compare.csv: what a batch writes in OUT
STACK_SEED = 7  # the stacking mixture's stream: default_rng([spec seed, STACK_SEED])


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to run one spec or variant: the spec's text as the client read it (and
    its path: the folder its relative paths start from), the overrides, where to write. The data
    files it names are read by the worker: they must be reachable from every worker."""

    index: int
    spec: str  # the spec file, absolute
    spec_text: str
    variant: str
    overrides: tuple[str, ...]
    out: str  # the run folder
    strict: bool = False
    refit: bool = False
    sets: tuple[str, ...] = ()  # the variant's own keys (the batch's --set are in overrides too)


@dataclass(frozen=True)
class RunRecord:
    """What comes back from one run: small and typed (no posterior, no model)."""

    index: int
    spec: str
    variant: str
    run: str
    status: str  # ok, warned, checks failed (by its verdict), current (skipped: results up to date), failed
    exit_code: int
    error: str = ""
    verdict: str = ""  # the run page's word (page.verdict): ok, look at this, do not use
    failed_checks: tuple[str, ...] = ()  # the checks it failed (what --strict fails on)
    warnings: tuple[str, ...] = ()  # the run's warnings (manifest.json's), failed checks among them
    reasons: tuple[str, ...] = ()  # the verdict's reasons, short (the page's)
    sets: tuple[str, ...] = ()  # the variant's own keys
    rows: tuple = ()  # the estimand rows (estimands.csv's label and summary columns), as dicts
    group_columns: tuple[str, ...] = ()
    seconds: float = 0.0
    fit: str = ""  # sampled or cached
    worker: str = ""  # the Dask worker's address
    key: str = ""


@dataclass(frozen=True)
class Comparison:
    """The LOO comparison of one spec's runs (or why there is none)."""

    spec: str
    name: str
    runs: tuple[str, ...]
    table: pd.DataFrame | None = None  # compare.csv's columns, one row per run
    notes: tuple[str, ...] = ()
    stacked: tuple = ()  # stacked estimand rows, as dicts


@dataclass(frozen=True)
class BatchResult:
    table: pd.DataFrame  # batch.csv
    records: tuple[RunRecord, ...]
    comparisons: tuple[Comparison, ...]
    out: Path
    exit_code: int
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    dashboard: str | None = None
    manifest: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- on the worker


def run_task(task: RunTask) -> RunRecord:
    """``mrp run`` of one spec or variant; never raises for the spec's own failures (the error
    and its exit code are returned)."""

    from mrp_formula.commands.run import run

    t0 = time.perf_counter()
    base = dict(index=task.index, spec=task.spec, variant=task.variant, run=Path(task.out).name,
                worker=_worker_name(), sets=task.sets)
    path = Path(task.spec)
    try:
        res = run(path, out=Path(task.out), overrides=task.overrides, refit=task.refit, spec_text=task.spec_text)
        judged = judge(Path(task.out))
    except MrpError as exc:
        return RunRecord(**base, status=FAILED, exit_code=exc.exit_code, error=_first(exc),
                         seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - isolated: one run's crash is its row, not the batch's
        return RunRecord(**base, status=FAILED, exit_code=EXIT_INTERNAL,
                         error=f"internal error: {type(exc).__name__}: {exc}".splitlines()[0],
                         seconds=time.perf_counter() - t0)
    failed = tuple(res.failed)
    strict_failed = task.strict and bool(failed)
    rows, groups = estimand_rows(res.estimands)
    return RunRecord(**base, status=FAILED if strict_failed else STATUS_OF_LEVEL[judged.level],
                     exit_code=EXIT_DIAGNOSTICS if strict_failed else 0,
                     error=("diagnostics failed under --strict: " + "; ".join(failed)) if strict_failed else "",
                     verdict=judged.word, failed_checks=failed, warnings=judged.warnings, reasons=judged.reasons,
                     rows=rows, group_columns=groups, seconds=time.perf_counter() - t0,
                     fit="cached" if res.manifest.get("fit_cache", {}).get("reused") else "sampled")


@dataclass(frozen=True)
class Judgement:
    """What a run's folder says of its numbers: its page's verdict (level, word, reasons) and its
    warnings."""

    level: str  # ok, look, bad
    word: str  # ok, look at this, do not use
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]


def judge(folder: Path) -> Judgement:
    """The verdict of a run folder, by the rule of its report page (``page.verdict``)."""
    from mrp_formula.output.report import page
    from mrp_formula.output.report.view import RunView

    view = RunView.from_folder(folder, draws=False)
    v = page.verdict(view)
    return Judgement(level=v.level, word=v.word, reasons=tuple(v.reasons), warnings=tuple(view.warnings))


def _worker_name() -> str:
    """The Dask worker's address (which process ran the run: a retried run names its second
    worker), or the host's name outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return socket.gethostname()


def _first(exc: MrpError) -> str:
    p = exc.problems[0] if exc.problems else Problem(str(exc))
    more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
    return p.render().splitlines()[0] + more


def estimand_rows(table: pd.DataFrame) -> tuple[tuple, tuple[str, ...]]:
    """The label and summary columns of estimands.csv, as plain records."""
    cols = list(table.columns)
    groups = tuple(cols[1: cols.index("scale")]) if "scale" in cols else ()
    keep = ["estimand", *groups] + [c for c in SHOWN if c in cols]
    rows = tuple({k: _plain(v) for k, v in r.items()} for r in table[keep].to_dict("records"))
    return rows, groups


def _plain(v):
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v if isinstance(v, (int, str, bool)) else str(v)


# ----------------------------------------------------------------------------- the batch


def spec_files(args: Sequence) -> list[Path]:
    """Files as given, folders as their ``*.toml`` files (sorted); a missing path is a usage error."""
    files: list[Path] = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            found = sorted(q for q in p.glob("*.toml") if q.is_file())
            if not found:
                raise UsageError(Problem("the folder holds no spec (*.toml)", file=str(p),
                                         hint="give spec files, or a folder of them"))
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(Problem("no such spec file or folder", file=str(p)))
    if not files:
        raise UsageError(Problem("no specs given", hint="mrp batch SPEC... --out OUT, or mrp batch DIR --out OUT"))
    seen, unique = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f.resolve())
    return unique


def run_key(loaded: LoadedSpec, overrides: Sequence[str]) -> str:
    """What a run's results depend on: the spec as run (``extends`` merged, overrides applied), the
    overrides, the content of every file it reads (``manifest.input_files``: data, population,
    joins, calibration targets, adjacency tables), the package version (the fit cache then decides
    whether to sample). The same key as :func:`folder_key` of the manifest that run writes."""
    resolved = json.loads(json.dumps(loaded.raw, default=str))  # as manifest.json's spec.resolved
    inputs = {name: entry["sha256"] for name, entry in input_files(loaded).items()}
    return _key(resolved, list(overrides), __version__, inputs)


def folder_key(manifest: dict) -> str | None:
    """The key of the run a folder's manifest.json records (its spec as run, overrides, inputs'
    hashes, version); None when the manifest lacks any of them (another command's, an older one)."""
    spec = manifest.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    resolved, overrides, inputs = spec.get("resolved"), spec.get("overrides"), manifest.get("inputs")
    if not (isinstance(resolved, dict) and isinstance(overrides, list) and isinstance(inputs, dict)):
        return None
    hashes = {name: entry.get("sha256") if isinstance(entry, dict) else None for name, entry in inputs.items()}
    return _key(resolved, overrides, manifest.get("mrp_formula"), hashes)


def _key(resolved: dict, overrides: list, version, inputs: dict) -> str:
    spec = {k: v for k, v in resolved.items() if k != "variants"}  # a variant's edit is not the base's
    parts = {"spec": spec, "overrides": [str(o) for o in overrides], "version": version, "inputs": inputs}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def plan_runs(files: Sequence[Path], out: Path, overrides: Sequence[str], *, strict: bool, refit: bool):
    """Every run of the batch: (tasks to run, records of specs that failed to load)."""
    tasks: list[RunTask] = []
    failed: list[RunRecord] = []
    keys: dict[int, str] = {}
    names: dict[str, Path] = {}
    folders: dict[str, str] = {}  # run folder -> the run that writes it, in words
    for f in files:
        try:
            loaded = load_spec(f, tuple(overrides))
        except MrpError as exc:
            failed.append(RunRecord(index=-1, spec=str(f), variant=BASE, run=f.stem, status=FAILED,
                                    exit_code=exc.exit_code, error=_first(exc)))
            continue
        name = loaded.spec.name
        if name in names:
            failed.append(RunRecord(index=-1, spec=str(f), variant=BASE, run=name, status=FAILED, exit_code=2,
                                    error=f"{f}: name '{name}' is also the name of {names[name]}: each spec of a "
                                          f"batch names its own run folder; rename one"))
            continue
        if name in folders:
            failed.append(_clash(f, BASE, name, folders[name]))
            continue
        names[name] = f
        variants = [(BASE, ())] + [(v, variant_overrides(loaded, v)) for v in loaded.spec.variants]
        for variant, sets in variants:
            run = name if variant == BASE else f"{name}.{variant}"
            if run in folders:
                failed.append(_clash(f, variant, run, folders[run]))
                continue
            folders[run] = _run_words(f, variant)
            all_sets = tuple(sets) + tuple(overrides)
            try:
                key = run_key(loaded if variant == BASE else load_spec(f, all_sets), all_sets)
            except MrpError as exc:
                failed.append(RunRecord(index=-1, spec=str(f), variant=variant, run=run, status=FAILED,
                                        exit_code=exc.exit_code, error=_first(exc), sets=tuple(sets)))
                continue
            task = RunTask(index=len(tasks), spec=str(f), spec_text=loaded.text, variant=variant, overrides=all_sets,
                           out=str(out / run), strict=strict, refit=refit, sets=tuple(sets))
            keys[task.index] = key
            tasks.append(task)
    return tasks, failed, keys


def _run_words(spec: Path, variant: str) -> str:
    return str(spec) if variant == BASE else f"the variant '{variant}' of {spec}"


def _clash(spec: Path, variant: str, run: str, owner: str) -> RunRecord:
    """The row of a run whose folder another run of the batch writes (a spec named ``ab.narrow``
    beside the variant ``narrow`` of a spec named ``ab``): refused before anything runs."""
    return RunRecord(index=-1, spec=str(spec), variant=variant, run=run, status=FAILED, exit_code=2,
                     error=f"{_run_words(spec, variant)} would write the run folder '{run}', which "
                           f"{owner} writes: each run of a batch needs its own folder; rename the spec "
                           f"(name) or the variant")


def current_record(task: RunTask, key: str) -> RunRecord | None:
    """The run's record read back from its folder, when the folder's own manifest records a run of
    this key (the same spec as run, overrides, inputs and version) and its results are complete;
    None when it must run (whatever batch.json says: an interrupted batch may have left another
    configuration's folder)."""
    folder = Path(task.out)
    manifest = manifest_of(folder)
    if manifest is None or folder_key(manifest) != key or not (folder / "estimands.csv").is_file():
        return None
    try:
        table = pd.read_csv(folder / "estimands.csv")
        judged = judge(folder)
    except (OSError, ValueError, MrpError):
        return None
    failed = tuple(str(f) for f in (manifest.get("diagnostics") or {}).get("failed") or ())
    if task.strict and failed:
        return None  # run it again to report the failure under --strict
    rows, groups = estimand_rows(table)
    return RunRecord(index=task.index, spec=task.spec, variant=task.variant, run=folder.name, status=CURRENT,
                     exit_code=0, verdict=judged.word, failed_checks=failed, warnings=judged.warnings,
                     reasons=judged.reasons, rows=rows, group_columns=groups, fit="cached", key=key, sets=task.sets)


def batch(specs: Sequence, *, out, overrides: Sequence[str] = (), workers: int | None = None,
          scheduler: str | None = None, strict: bool = False, refit: bool = False, compare: bool = True,
          on_event: Callable[[str, RunRecord | None, dict], None] | None = None,
          on_ready: Callable[[Scheduler], None] | None = None) -> BatchResult:
    """Run every spec and variant on Dask workers; write batch.csv, batch.json and index.html (again
    as each run finishes, and once more with the variants' comparison at the end).

    ``on_event(kind, record, counts)`` is called when the batch starts, as runs finish, and for
    runs skipped as current (``counts``: total, done, running, failed, current);
    ``on_ready(scheduler)`` once the cluster is up (its dashboard, its workers)."""

    t0 = time.perf_counter()
    out = Path(out).resolve()
    _check_batch_out(out)
    files = spec_files(specs)
    tasks, load_failed, keys = plan_runs(files, out, overrides, strict=strict, refit=refit)
    records: dict[int, RunRecord] = {}
    todo: list[RunTask] = []
    for t in tasks:
        rec = None if refit else current_record(t, keys[t.index])
        if rec is not None:
            records[t.index] = rec
        else:
            todo.append(t)
    counts = {"total": len(tasks) + len(load_failed), "done": 0, "running": 0, "queued": 0,
              "failed": len(load_failed),
              "current": len(records)}
    setting = BatchSetting(out=out, files=tuple(files), overrides=tuple(overrides), strict=strict,
                           scheduler=scheduler, workers=workers)

    def write_so_far() -> None:  # what the batch has finished, should it be interrupted
        done = [records[t.index] for t in tasks if t.index in records] + load_failed
        pending = [Path(t.out).name for t in tasks if t.index not in records]
        write_batch(setting, done, (), time.perf_counter() - t0, pending=pending)

    if on_event:
        on_event("start", None, dict(counts))
        for rec in load_failed:
            on_event("failed", rec, dict(counts))
        for rec in records.values():
            on_event("current", rec, dict(counts))
    dashboard = None
    out.mkdir(parents=True, exist_ok=True)
    write_so_far()
    if todo:
        with Scheduler(workers=workers, address=scheduler) as sched:
            dashboard = sched.dashboard
            if on_ready:
                on_ready(sched)

            slots = max(1, sched.n_workers)
            pending = [0]

            def event(e: Event) -> None:  # running: what the workers hold; queued: the rest not done
                pending[0] += 1 if e.kind == "started" else -1
                counts["running"] = min(pending[0], slots)
                counts["queued"] = pending[0] - counts["running"]
                if e.kind == "started":
                    return
                t = todo[e.index]
                rec = _keyed(e.result if e.kind == "done" else _crashed(t, e.error), keys[t.index])
                records[t.index] = rec
                write_so_far()
                counts["failed" if rec.status == FAILED else "done"] += 1
                if on_event:
                    on_event(rec.status, rec, dict(counts))

            results = sched.run(run_task, todo, on_event=event)
        for t, res in zip(todo, results):
            if isinstance(res, BaseException):  # the worker kept dying, or the task crashed outside run()
                res = _crashed(t, f"{type(res).__name__}: {res}".splitlines()[0])
            records[t.index] = _keyed(res, keys[t.index])
    ordered = [records[t.index] for t in tasks] + load_failed
    comparisons = tuple(_compare_all(tasks, records, out)) if compare else ()
    seconds = time.perf_counter() - t0
    table, manifest = write_batch(setting, ordered, comparisons, seconds)
    notes = tuple(n for c in comparisons for n in c.notes)
    return BatchResult(table=table, records=tuple(ordered), comparisons=comparisons, out=out,
                       exit_code=manifest["exit_code"], notes=notes, seconds=seconds, dashboard=dashboard,
                       manifest=manifest)


@dataclass(frozen=True)
class BatchSetting:
    """What the batch was asked to do (batch.json's head)."""

    out: Path
    files: tuple[Path, ...]
    overrides: tuple[str, ...]
    strict: bool
    scheduler: str | None
    workers: int | None


def write_batch(setting: BatchSetting, records: Sequence[RunRecord], comparisons: Sequence[Comparison],
                seconds: float, pending: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """batch.csv, batch.json, each comparison's compare.csv and index.html, each in one rename.
    ``pending``: the runs not finished yet (None: the batch is complete)."""
    out = setting.out
    table = batch_table(records, comparisons)
    manifest = batch_manifest(setting, records, comparisons, seconds, pending)
    for c in comparisons:
        if c.table is not None:
            _write_csv(c.table, out / f"{c.name}.compare.csv")
    _write_csv(table, out / "batch.csv")
    write_text_atomic(out / "batch.json", json.dumps(manifest, indent=2, default=str) + "\n")
    from mrp_formula.output.report.batch import write_index

    write_index(out, records, comparisons, manifest)
    return table, manifest


def batch_manifest(setting: BatchSetting, records: Sequence[RunRecord], comparisons: Sequence[Comparison],
                   seconds: float, pending: Sequence[str] | None = None) -> dict:
    """batch.json: the batch's setting, each run's record and the comparisons; ``complete`` false
    and the runs ``pending`` while it runs (what an interrupted batch leaves)."""
    return {
        "mrp_formula": __version__, "out": str(setting.out), "specs": [str(f) for f in setting.files],
        "overrides": list(setting.overrides), "strict": setting.strict,
        "complete": pending is None, "pending": list(pending or ()),
        "exit_code": max((r.exit_code for r in records), default=0), "seconds": round(seconds, 2),
        "scheduler": setting.scheduler or "local", "workers": setting.workers,
        "runs": {name: {"spec": r.spec, "variant": r.variant, "sets": list(r.sets), "status": r.status,
                        "exit_code": r.exit_code, "error": r.error, "verdict": r.verdict,
                        "failed_checks": list(r.failed_checks), "warnings": list(r.warnings), "key": r.key,
                        "seconds": round(r.seconds, 2), "fit": r.fit, "worker": r.worker}
                 for name, r in _by_name(records).items()},
        "comparisons": [{"spec": c.spec, "runs": list(c.runs), "notes": list(c.notes)} for c in comparisons],
    }


def _by_name(records: Sequence[RunRecord]) -> dict[str, RunRecord]:
    """The records by their run's name: the planned runs first; a run refused before it was planned
    (its spec did not load, or its folder is another run's) under ``NAME (SPEC)`` when another
    record has its name, so that it never hides the run that owns the folder."""
    named: dict[str, RunRecord] = {}
    for r in sorted(records, key=lambda r: r.index < 0):
        named[r.run if r.run not in named else f"{r.run} ({r.spec})"] = r
    return named


def _keyed(rec: RunRecord, key: str) -> RunRecord:
    """A finished run's record with its key (a failed run has none: nothing to skip next time)."""
    return dataclasses.replace(rec, key=key if rec.status != FAILED else "")


def _crashed(t: RunTask, error: str | None) -> RunRecord:
    return RunRecord(index=t.index, spec=t.spec, variant=t.variant, run=Path(t.out).name, status=FAILED,
                     exit_code=EXIT_INTERNAL, error=f"the task failed on the workers: {error}", sets=t.sets)


def _check_batch_out(out: Path) -> None:
    """OUT is new, empty, an earlier batch's (it has batch.json), or holds only what a batch writes
    (run folders whose manifest marks them as the tool's, the fit cache, the batch's own files): an
    interrupted first batch's. Anything else is refused, naming what is in the way."""
    if out.exists() and not out.is_dir():
        raise UsageError(Problem("is a file, not a folder for the batch's runs", key="--out", file=str(out)))
    if not out.is_dir() or (out / "batch.json").is_file():
        return
    foreign = _not_the_batchs(out)
    if foreign:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise UsageError(Problem(f"the folder holds files that no batch wrote: {shown}", key="--out", file=str(out),
                                 hint="give a new or empty folder (a batch's own folder is reused: its current "
                                      "runs are skipped)"))


def _not_the_batchs(out: Path) -> list[str]:
    """The entries of OUT that no batch wrote (a folder with its own manifest.json is a run's, not a
    batch's: all of it)."""
    if (out / MANIFEST).exists():
        return sorted(p.name for p in out.iterdir())
    return [e for e in inspect_folder(out).foreign if not _batch_file(e)]


def _batch_file(name: str) -> bool:
    """batch.csv, index.html, a comparison's compare.csv, or what an interrupted atomic write of
    one left (``.batch.csv.XXXX.tmp``)."""
    own = name in BATCH_FILES or name.endswith(".compare.csv")
    leftover = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", name)
    return own or bool(leftover and _batch_file(leftover.group(1)))


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, df.to_csv(index=False))


def batch_table(records: Sequence[RunRecord], comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """batch.csv: one row per run and estimand row (a failed run: one row with its error)."""
    groups: list[str] = []
    for r in records:
        groups += [g for g in r.group_columns if g not in groups]
    scores = {}
    for c in comparisons:
        if c.table is not None:
            for _, row in c.table.iterrows():
                scores[row["model"]] = (row["elpd_loo"], row["weight"])
    rows = []
    for r in records:
        lead = {"spec": r.spec, "variant": r.variant, "run": r.run, "status": r.status, "exit_code": r.exit_code,
                "error": r.error}
        elpd, weight = scores.get(r.run, (None, None))
        tail = {"verdict": r.verdict, "failed_checks": "; ".join(r.failed_checks), "warnings": "; ".join(r.warnings),
                "elpd_loo": elpd, "stacking_weight": weight}
        if not r.rows:
            rows.append({**lead, **tail})
        for est in r.rows:
            rows.append({**lead, **est, **tail})
    for c in comparisons:
        for est in c.stacked:
            rows.append({"spec": c.spec, "variant": STACKED, "run": f"{c.name}.{STACKED}", "status": STACKED,
                         "exit_code": 0, "error": "", **est, "verdict": "", "failed_checks": "", "warnings": "", "elpd_loo": None,
                         "stacking_weight": None})
    cols = LEAD + ["estimand", *groups] + SHOWN + TAIL
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- variants compared


def _compare_all(tasks: Sequence[RunTask], records: dict, out: Path) -> list[Comparison]:
    by_spec: dict[str, list[RunTask]] = {}
    for t in tasks:
        by_spec.setdefault(t.spec, []).append(t)
    found = []
    for spec, ts in by_spec.items():
        ok = [t for t in ts if records[t.index].status in SUCCEEDED]
        if len(ts) < 2:
            continue
        name = Path(ts[0].out).name
        if len(ok) < 2:
            found.append(Comparison(spec=spec, name=name, runs=tuple(Path(t.out).name for t in ok),
                                    notes=(f"{name}: fewer than two of its runs succeeded; no LOO comparison",)))
            continue
        try:
            found.append(weighed_against_checks(compare_variants(spec, name, ok, out), records.values()))
        except Exception as exc:  # noqa: BLE001 - the runs are done: a failed comparison costs a note
            found.append(Comparison(spec=spec, name=name, runs=tuple(Path(t.out).name for t in ok),
                                    notes=(f"{name}: the LOO comparison of its variants failed "
                                           f"({type(exc).__name__}: {exc}); the runs are complete",)))
    return found


WEIGHT_WORTH_NAMING = 0.01  # a run giving at least 1% of the stacked draws


def weighed_against_checks(comparison: Comparison, records) -> Comparison:
    """The comparison with a note for each run that takes stacking weight though its checks failed
    (its page says "do not use"): the stacked estimands are then partly made of its draws."""
    if comparison.table is None:
        return comparison
    verdicts = {r.run: r for r in records}
    notes = []
    for run, weight in zip(comparison.table["model"], comparison.table["weight"]):
        r = verdicts.get(run)
        if r is not None and r.verdict == UNUSABLE and float(weight) >= WEIGHT_WORTH_NAMING:
            why = "; ".join(r.failed_checks or r.reasons)
            notes.append(f"{comparison.name}: the stacking weight {float(weight):.2f} goes to {run}, which failed its "
                         f"checks ({why}): the stacked estimands take that share of their draws from numbers not "
                         f"to be used yet; fix {run} (its report says how) or read the other runs")
    return dataclasses.replace(comparison, notes=comparison.notes + tuple(notes)) if notes else comparison


def compare_variants(spec: str, name: str, tasks: Sequence[RunTask], out: Path) -> Comparison:
    """PSIS-LOO of a spec's runs (their fits from the batch's fit cache) with stacking weights,
    and the stacked estimands; runs not fitted on the same observations are not compared."""

    import warnings

    import arviz as az

    from mrp_formula.commands import compare as cmp_mod
    from mrp_formula.model.cache import CACHE_DIR
    from mrp_formula.steps import plan_and_model, posterior

    runs = tuple(Path(t.out).name for t in tasks)
    left_out = []  # runs whose fit is not comparable with the others' (other data, other cells): compared without them
    try:
        entries = []
        for t, run in zip(tasks, runs):
            plan, model = plan_and_model(t.spec, t.overrides)
            entries.append(cmp_mod._Entry(path=Path(t.spec), label=run, plan=plan, model=model))
        try:
            orders = cmp_mod.check_same_data(entries)
        except MrpError:
            kept, left_out = _comparable(entries)
            if len(kept) < 2 or len(kept) == len(entries):
                raise
            entries = kept
            orders = cmp_mod.check_same_data(entries)
    except MrpError as exc:
        return Comparison(spec=spec, name=name, runs=runs,
                          notes=(f"{name}: its variants are not compared by LOO: {_first(exc)}",))
    runs = tuple(e.label for e in entries)
    loos, fits = {}, {}
    for e in entries:
        fitted = posterior(e.plan, [out / CACHE_DIR], model=e.model, cache=True)
        loos[e.label] = cmp_mod.entry_loo(e, fitted, orders[e.label])
        fits[e.label] = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = az.compare(loos, method=cmp_mod.METHOD, round_to="none")
    unit = "cell" if entries[0].fp.aggregated else "row"
    table = cmp_mod.compare_table(cmp, loos, {e.label: e for e in entries}, fits, unit)
    warns, notes = cmp_mod._messages(table, unit, int(entries[0].fp.rows_in), len(entries[0].fp.data))
    weights = dict(zip(table["model"], table["weight"]))
    stacked, stack_note = stack_estimands([out / r for r in runs], [weights[r] for r in runs],
                                          seed=entries[0].loaded.spec.fit.seed,
                                          ci_prob=entries[0].loaded.spec.report.ci_prob,
                                          ci_kind=entries[0].loaded.spec.report.ci_kind)
    skipped = ([f"left out of the LOO comparison and the stacking, not comparable with {entries[0].label}: "
                f"{'; '.join(left_out)}"] if left_out else [])
    return Comparison(spec=spec, name=name, runs=runs, table=table,
                      notes=tuple(f"{name}: {n}" for n in skipped + warns + notes + ([stack_note] if stack_note else [])),
                      stacked=stacked)


def _comparable(entries: list) -> tuple[list, list[str]]:
    """The largest group of runs fitted on the same observations (the first such group on a tie,
    so the spec's own when it is among the largest), and each other run with why it is not in it."""
    from mrp_formula.commands.compare import check_same_data

    groups: list[list] = []
    for e in entries:
        for g in groups:
            try:
                check_same_data([g[0], e])
            except MrpError:
                continue
            g.append(e)
            break
        else:
            groups.append([e])
    kept = max(groups, key=len)
    left_out = []
    for e in entries:
        if not any(e is k for k in kept):
            try:
                check_same_data([kept[0], e])
            except MrpError as exc:
                left_out.append(f"{e.label} ({_first(exc)})")
    return kept, left_out


def stack_draws(draws: Sequence[np.ndarray], weights: Sequence[float], seed: int) -> np.ndarray:
    """The per-draw mixture: for each draw index s, one run is picked with probability its
    weight and every estimand row takes that run's draw s (so the rows keep their joint draws).
    ``draws``: one (rows, samples) array per run. A function of the seed, the weights and the
    draws only."""
    w = np.clip(np.asarray(weights, dtype=float), 0, None)
    w = w / w.sum()
    stack = np.stack(draws)  # (runs, rows, samples)
    rng = np.random.default_rng([int(seed), STACK_SEED])
    pick = rng.choice(len(w), size=stack.shape[2], p=w)
    return stack[pick, :, np.arange(stack.shape[2])].T


def stack_estimands(folders: Sequence[Path], weights: Sequence[float], *, seed: int, ci_prob: float,
                    ci_kind: str) -> tuple[tuple, str]:
    """Stacked estimand rows from the runs' estimand_draws.parquet (or a note saying why not)."""
    from mrp_formula.poststrat.estimands import interval

    frames = [pd.read_parquet(f / "estimand_draws.parquet") for f in folders]
    labels = [c for c in frames[0].columns if c not in ("chain", "draw", "value")]
    mats, keys0 = [], None
    for fr in frames:
        if [c for c in fr.columns if c not in ("chain", "draw", "value")] != labels:
            return (), "the runs' estimands differ (other rows or groups): not stacked"
        fr = fr.sort_values(labels + ["chain", "draw"], kind="stable", key=lambda s: s.astype(str))
        keys = fr[labels].astype(str).drop_duplicates().reset_index(drop=True)
        if keys0 is None:
            keys0 = keys
        elif not keys.equals(keys0):
            return (), "the runs' estimands differ (other rows or groups): not stacked"
        n = len(fr) // len(keys)
        if len(fr) != n * len(keys):
            return (), "the runs' draws differ in number: not stacked"
        mats.append(fr["value"].to_numpy(dtype=float).reshape(len(keys), n))
    if len({m.shape for m in mats}) != 1:
        return (), "the runs have different numbers of draws (fit.draws or fit.chains): not stacked"
    mixed = stack_draws(mats, weights, seed)
    first = frames[0].sort_values(labels + ["chain", "draw"], kind="stable", key=lambda s: s.astype(str))
    label_rows = first[labels].drop_duplicates(subset=None).reset_index(drop=True)
    label_rows = label_rows.loc[~label_rows.astype(str).duplicated()].reset_index(drop=True)
    scales = {}
    try:
        first_table = pd.read_csv(folders[0] / "estimands.csv")
        for _, r in first_table.iterrows():
            scales[tuple(str(r[c]) for c in labels)] = r.get("scale")
    except (OSError, ValueError, KeyError):
        pass
    rows = []
    for i in range(len(label_rows)):
        x = mixed[i]
        lo, hi = interval(x, ci_prob, ci_kind)
        rec = {k: _plain(v) for k, v in label_rows.iloc[i].items()}
        scale = scales.get(tuple(str(label_rows.iloc[i][c]) for c in labels))
        rec["scale"] = scale if isinstance(scale, str) else None
        rec.update(mean=float(np.mean(x)), sd=float(np.std(x, ddof=1)), lower=lo, upper=hi, ci_prob=ci_prob,
                   ci_kind=ci_kind)
        rows.append(rec)
    return tuple(rows), ""
