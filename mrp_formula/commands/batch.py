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
exit code; the others finish. A rerun skips a run whose key (the merged spec with its overrides,
the input files' hashes, the package version) matches the last successful run's and whose folder
is still there. Each run folder, and each of the batch's files, is written in one rename: a batch
that fails leaves earlier results as they were. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from mrp_formula.output.files import sha256_file
from mrp_formula.spec.tree import LoadedSpec, load_spec, variant_overrides
from mrp_formula.system import write_text_atomic

BASE = "base"
STACKED = "stacked"
LEAD = ["spec", "variant", "run", "status", "exit_code", "error"]
SHOWN = ["scale", "mean", "sd", "lower", "upper", "ci_prob", "ci_kind", "r_hat", "ess_bulk"]
TAIL = ["verdict", "failed_checks", "elpd_loo", "stacking_weight"]
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


@dataclass(frozen=True)
class RunRecord:
    """What comes back from one run: small and typed (no posterior, no model)."""

    index: int
    spec: str
    variant: str
    run: str
    status: str  # ok, failed, current (skipped: results up to date)
    exit_code: int
    error: str = ""
    verdict: str = ""  # the diagnostics: "pass" or "fail" (then failed_checks says which)
    failed_checks: tuple[str, ...] = ()
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
                worker=_worker_name())
    path = Path(task.spec)
    try:
        res = run(path, out=Path(task.out), overrides=task.overrides, refit=task.refit, spec_text=task.spec_text)
    except MrpError as exc:
        return RunRecord(**base, status="failed", exit_code=exc.exit_code, error=_first(exc),
                         seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - isolated: one run's crash is its row, not the batch's
        return RunRecord(**base, status="failed", exit_code=EXIT_INTERNAL,
                         error=f"internal error: {type(exc).__name__}: {exc}".splitlines()[0],
                         seconds=time.perf_counter() - t0)
    failed = tuple(res.failed)
    verdict = "pass" if not failed else "fail"
    strict_failed = task.strict and bool(failed)
    rows, groups = estimand_rows(res.estimands)
    return RunRecord(**base, status="failed" if strict_failed else "ok",
                     exit_code=EXIT_DIAGNOSTICS if strict_failed else 0,
                     error=("diagnostics failed under --strict: " + "; ".join(failed)) if strict_failed else "",
                     verdict=verdict, failed_checks=failed, rows=rows, group_columns=groups, seconds=time.perf_counter() - t0,
                     fit="cached" if res.manifest.get("fit_cache", {}).get("reused") else "sampled")


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
    """What a run's results depend on: the merged spec with its overrides, the inputs' content,
    the package version (the fit cache then decides whether to sample)."""
    spec = loaded.spec
    files = [loaded.resolve(spec.data.source)]
    if spec.population.source:
        files.append(loaded.resolve(spec.population.source))
    files += [loaded.resolve(j.source) for j in spec.join]
    raw = {k: v for k, v in loaded.raw.items() if k != "variants"}  # a variant's edit is not the base's
    parts = {"raw": raw, "overrides": list(overrides), "version": __version__,
             "inputs": [sha256_file(f) if f.is_file() else None for f in files]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def plan_runs(files: Sequence[Path], out: Path, overrides: Sequence[str], *, strict: bool, refit: bool):
    """Every run of the batch: (tasks to run, records of specs that failed to load)."""
    tasks: list[RunTask] = []
    failed: list[RunRecord] = []
    keys: dict[int, str] = {}
    names: dict[str, Path] = {}
    for f in files:
        try:
            loaded = load_spec(f, tuple(overrides))
        except MrpError as exc:
            failed.append(RunRecord(index=-1, spec=str(f), variant=BASE, run=f.stem, status="failed",
                                    exit_code=exc.exit_code, error=_first(exc)))
            continue
        name = loaded.spec.name
        if name in names:
            failed.append(RunRecord(index=-1, spec=str(f), variant=BASE, run=name, status="failed", exit_code=2,
                                    error=f"{f}: name '{name}' is also the name of {names[name]}: each spec of a "
                                          f"batch names its own run folder; rename one"))
            continue
        names[name] = f
        variants = [(BASE, ())] + [(v, variant_overrides(loaded, v)) for v in loaded.spec.variants]
        for variant, sets in variants:
            run = name if variant == BASE else f"{name}.{variant}"
            all_sets = tuple(sets) + tuple(overrides)
            try:
                key = run_key(loaded if variant == BASE else load_spec(f, all_sets), all_sets)
            except MrpError as exc:
                failed.append(RunRecord(index=-1, spec=str(f), variant=variant, run=run, status="failed",
                                        exit_code=exc.exit_code, error=_first(exc)))
                continue
            task = RunTask(index=len(tasks), spec=str(f), spec_text=loaded.text, variant=variant, overrides=all_sets,
                           out=str(out / run), strict=strict, refit=refit)
            keys[task.index] = key
            tasks.append(task)
    return tasks, failed, keys


def current_record(task: RunTask, key: str, previous: dict) -> RunRecord | None:
    """The last successful run's record when its key matches and its folder is complete."""
    prev = previous.get(Path(task.out).name)
    folder = Path(task.out)
    if not prev or prev.get("key") != key or prev.get("status") not in ("ok", "current"):
        return None
    if not ((folder / "estimands.csv").is_file() and (folder / "manifest.json").is_file()):
        return None
    try:
        table = pd.read_csv(folder / "estimands.csv")
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    failed = tuple(manifest.get("diagnostics", {}).get("failed") or ())
    if task.strict and failed:
        return None  # run it again to report the failure under --strict
    rows, groups = estimand_rows(table)
    return RunRecord(index=task.index, spec=task.spec, variant=task.variant, run=folder.name, status="current",
                     exit_code=0, verdict="pass" if not failed else "fail", failed_checks=failed, rows=rows,
                     group_columns=groups, fit="cached", key=key)


def batch(specs: Sequence, *, out, overrides: Sequence[str] = (), workers: int | None = None,
          scheduler: str | None = None, strict: bool = False, refit: bool = False, compare: bool = True,
          on_event: Callable[[str, RunRecord | None, dict], None] | None = None,
          on_ready: Callable[[Scheduler], None] | None = None) -> BatchResult:
    """Run every spec and variant on Dask workers; write batch.csv, batch.json and index.html.

    ``on_event(kind, record, counts)`` is called when the batch starts, as runs finish, and for
    runs skipped as current (``counts``: total, done, running, failed, current);
    ``on_ready(scheduler)`` once the cluster is up (its dashboard, its workers)."""

    t0 = time.perf_counter()
    out = Path(out).resolve()
    _check_batch_out(out)
    files = spec_files(specs)
    tasks, load_failed, keys = plan_runs(files, out, overrides, strict=strict, refit=refit)
    previous = _previous(out)
    records: dict[int, RunRecord] = {}
    todo: list[RunTask] = []
    for t in tasks:
        rec = None if refit else current_record(t, keys[t.index], previous)
        if rec is not None:
            records[t.index] = rec
        else:
            todo.append(t)
    counts = {"total": len(tasks) + len(load_failed), "done": 0, "running": 0, "queued": 0,
              "failed": len(load_failed),
              "current": len(records)}
    if on_event:
        on_event("start", None, dict(counts))
        for rec in load_failed:
            on_event("failed", rec, dict(counts))
        for rec in records.values():
            on_event("current", rec, dict(counts))
    dashboard = None
    out.mkdir(parents=True, exist_ok=True)
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
                rec = e.result if e.kind == "done" else _crashed(t, e.error)
                counts["failed" if rec.status == "failed" else "done"] += 1
                if on_event:
                    on_event(rec.status, rec, dict(counts))

            results = sched.run(run_task, todo, on_event=event)
        for t, res in zip(todo, results):
            if isinstance(res, BaseException):  # the worker kept dying, or the task crashed outside run()
                res = _crashed(t, f"{type(res).__name__}: {res}".splitlines()[0])
            records[t.index] = dataclasses.replace(res, key=keys[t.index] if res.status == "ok" else "")
    ordered = [records[t.index] for t in tasks] + load_failed
    comparisons = tuple(_compare_all(tasks, records, out)) if compare else ()
    table = batch_table(ordered, comparisons)
    code = max((r.exit_code for r in ordered), default=0)
    seconds = time.perf_counter() - t0
    manifest = {
        "mrp_formula": __version__, "out": str(out), "specs": [str(f) for f in files],
        "overrides": list(overrides), "strict": strict, "exit_code": code, "seconds": round(seconds, 2),
        "scheduler": scheduler or "local", "workers": workers,
        "runs": {r.run: {"spec": r.spec, "variant": r.variant, "status": r.status, "exit_code": r.exit_code,
                         "error": r.error, "key": r.key, "seconds": round(r.seconds, 2), "fit": r.fit,
                         "worker": r.worker} for r in ordered},
        "comparisons": [{"spec": c.spec, "runs": list(c.runs), "notes": list(c.notes)} for c in comparisons],
    }
    notes = tuple(n for c in comparisons for n in c.notes)
    for c in comparisons:
        if c.table is not None:
            _write_csv(c.table, out / f"{c.name}.compare.csv")
    _write_csv(table, out / "batch.csv")
    write_text_atomic(out / "batch.json", json.dumps(manifest, indent=2, default=str) + "\n")
    from mrp_formula.output.report.batch import write_index

    write_index(out, ordered, comparisons, manifest)
    return BatchResult(table=table, records=tuple(ordered), comparisons=comparisons, out=out, exit_code=code,
                       notes=notes, seconds=seconds, dashboard=dashboard, manifest=manifest)


def _crashed(t: RunTask, error: str | None) -> RunRecord:
    return RunRecord(index=t.index, spec=t.spec, variant=t.variant, run=Path(t.out).name, status="failed",
                     exit_code=EXIT_INTERNAL, error=f"the task failed on the workers: {error}")


def _check_batch_out(out: Path) -> None:
    """OUT is new, empty, or an earlier batch's (it has batch.json); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise UsageError(Problem("is a file, not a folder for the batch's runs", key="--out", file=str(out)))
    if out.is_dir() and any(out.iterdir()) and not (out / "batch.json").is_file():
        raise UsageError(Problem("the folder holds files that no batch wrote", key="--out", file=str(out),
                                 hint="give a new or empty folder (a batch's own folder is reused: its current "
                                      "runs are skipped)"))


def _previous(out: Path) -> dict:
    try:
        return json.loads((out / "batch.json").read_text()).get("runs", {})
    except (OSError, ValueError, AttributeError):
        return {}


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
        tail = {"verdict": r.verdict, "failed_checks": "; ".join(r.failed_checks), "elpd_loo": elpd,
                "stacking_weight": weight}
        if not r.rows:
            rows.append({**lead, **tail})
        for est in r.rows:
            rows.append({**lead, **est, **tail})
    for c in comparisons:
        for est in c.stacked:
            rows.append({"spec": c.spec, "variant": STACKED, "run": f"{c.name}.{STACKED}", "status": STACKED,
                         "exit_code": 0, "error": "", **est, "verdict": "", "failed_checks": "", "elpd_loo": None,
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
        ok = [t for t in ts if records[t.index].status in ("ok", "current")]
        if len(ts) < 2:
            continue
        name = Path(ts[0].out).name
        if len(ok) < 2:
            found.append(Comparison(spec=spec, name=name, runs=tuple(Path(t.out).name for t in ok),
                                    notes=(f"{name}: fewer than two of its runs succeeded; no LOO comparison",)))
            continue
        try:
            found.append(compare_variants(spec, name, ok, out))
        except Exception as exc:  # noqa: BLE001 - the runs are done: a failed comparison costs a note
            found.append(Comparison(spec=spec, name=name, runs=tuple(Path(t.out).name for t in ok),
                                    notes=(f"{name}: the LOO comparison of its variants failed "
                                           f"({type(exc).__name__}: {exc}); the runs are complete",)))
    return found


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
