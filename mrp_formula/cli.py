"""The command line: a thin layer that parses options, calls the pipeline, prints and exits.

Human output, logs and progress go to stderr; ``--json`` writes one JSON document to stdout.
Exit codes: 0 ok, 1 internal error, 2 usage, 3 invalid spec, 4 data or population problem,
5 diagnostics failed under --strict, 6 the output could not be written, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mrp_formula.notes import interval_name, is_warning, share_of_draws
from mrp_formula.errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, MrpError, Problem,
                                 SpecError)
from mrp_formula.errors import UsageError as MrpUsageError
from mrp_formula.progress import SILENT, Reporter

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Multilevel regression and poststratification from a TOML spec.")
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)

SpecArg = Annotated[Path, typer.Argument(help="The spec file (TOML).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override keys: --set fit.draws=200 "
                                                                    "fit.chains=2 (one --set takes every "
                                                                    "KEY=VALUE after it).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


class OutFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOpt = Annotated[Optional[OutFormat], typer.Option(
    "--format", case_sensitive=False,
    help="Write the estimand table to stdout as table, csv (estimands.csv's columns) or json (its rows as "
         "records); notes and progress stay on stderr. Without it the table goes to stderr with the notes.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print no progress: neither the phase lines "
                                                               "nor the sampler's display (stderr).")]
IntoOpt = Annotated[bool, typer.Option("--into-existing",
                                       help="Write into an existing folder that holds files mrp-formula did not "
                                            "write: the run's files are added, nothing there is removed or "
                                            "replaced (without it such a folder is refused).")]

WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes of a local Dask "
                                                                         "cluster (default: one per core).")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="An existing Dask scheduler, "
                                                                        "tcp://HOST:PORT (spec and data paths must "
                                                                        "be reachable from its workers).")]


def _setup_logging(verbose: bool) -> None:
    os.environ.setdefault("PYTENSOR_FLAGS", "")
    for name in ("pymc", "bambi", "pytensor", "arviz"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.setLevel(logging.INFO if verbose else logging.ERROR)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if verbose else logging.WARNING, force=True)


def _fail(exc: BaseException, as_json: bool) -> None:
    if isinstance(exc, MrpError):
        code = exc.exit_code
        problems = exc.problems
    else:
        code = EXIT_INTERNAL
        from mrp_formula.errors import Problem

        problems = (Problem(f"internal error: {type(exc).__name__}: {exc}",
                            hint="please report this with the spec that caused it"),)
    if as_json:
        sys.stdout.write(json.dumps({"ok": False, "exit_code": code,
                                     "errors": [p.to_json() for p in problems]}, indent=2) + "\n")
    else:
        n = len(problems)
        err.print(f"[bold red]error[/]: {n} problem{'s' if n != 1 else ''} found", highlight=False)
        for p in problems:
            err.print(p.render(), markup=False, highlight=False)
    raise typer.Exit(code)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(df, title: str, console: Console | None = None) -> None:
    import pandas as pd

    from mrp_formula.output.report.page import ALIKE, fmt_alike

    hidden = ("ci_prob", "ci_kind", "scale", "median", "sd", "r_hat", "ess_bulk", "chance_to_win",
              "expected_loss_first", "expected_loss_second", "expected_loss_unit",
              "first", "second")  # a contrast's variable already reads "b vs a"
    cols = [c for c in df.columns if c not in hidden]
    cols = [c for c in cols if not df[c].isna().all()]
    alike = [c for c in cols if c in ALIKE]  # an estimate and its interval with the same decimals
    shown = pd.DataFrame({c: df[c].map(_fmt) for c in cols}, index=df.index)
    for i, row in df.iterrows():
        shown.loc[i, alike] = fmt_alike([row[c] for c in alike])
    table = Table(title=title, show_lines=False)
    for c in cols:
        # values stay whole on one line (labels up to 60 characters); the headers wrap first
        longest = max([1] + [len(v) for v in shown[c]])
        if df[c].dtype.kind in "fi":
            table.add_column(c, justify="right", min_width=longest, overflow="fold")
        else:
            table.add_column(c, justify="left", no_wrap=True, min_width=min(longest, 60), overflow="fold")
    for _, row in shown.iterrows():
        table.add_row(*[escape(row[c]) for c in cols])
    (console or err).print(table)


def write_estimands(result, format_: str, title: str) -> None:
    """The estimand table on stdout for a pipe: csv is estimands.csv itself (the same columns and
    numbers), json its rows as records, table the terminal table."""
    if format_ == "csv":
        sys.stdout.write((Path(result.out) / "estimands.csv").read_text())
    elif format_ == "json":
        from mrp_formula.output.files import table_records

        sys.stdout.write(json.dumps(table_records(result.estimands), indent=2) + "\n")
    else:
        print_table(result.estimands, title, Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160))


def decision_lines(df, subpopulations=()) -> list[str]:
    """One line per contrast row: chance to win and the expected loss of each choice; for a
    contrast of two parts of the population (an estimand in ``subpopulations``), which is higher."""
    out = []
    if "chance_to_win" not in df:
        return out
    for _, row in df[df["chance_to_win"].notna()].iterrows():
        label_cols = [c for c in df.columns[: df.columns.get_loc("scale")] if c != "estimand"]
        first, second = row.get("first"), row.get("second")
        if not isinstance(first, str) or not isinstance(second, str):
            continue
        groups = ", ".join(f"{c}={row[c]}" for c in label_cols
                           if isinstance(row[c], str) and row[c] and row[c] != f"{first} vs {second}")
        unit = row.get("expected_loss_unit")
        unit = unit if isinstance(unit, str) and unit else "outcome units"
        ratio = f", not {row['scale'].replace('_', ' ')} units" if row.get("scale") in ("ratio", "odds_ratio") else ""
        if row["estimand"] in subpopulations:
            out.append(f"{row['estimand']}{' [' + groups + ']' if groups else ''}: chance that the average is higher "
                       f"for {first} than for {second} {share_of_draws(row['chance_to_win'])}")
            continue
        out.append(f"{row['estimand']}{' [' + groups + ']' if groups else ''}: chance that {first} beats "
                   f"{second} {share_of_draws(row['chance_to_win'])}; expected loss if you choose {first}: "
                   f"{row['expected_loss_first']:.3g}, if you choose {second}: {row['expected_loss_second']:.3g} "
                   f"(in {unit}{ratio})")
    return out


class PhaseLines(Reporter):
    """Without a terminal: one line per phase on stderr, with the seconds since the start."""

    def __init__(self, console: Console | None = None):
        self.console = console or err
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def phase(self, name: str) -> None:
        self.console.print(f"[{time.perf_counter() - self.t0:6.1f} s] {name}", markup=False, highlight=False)


class LiveProgress(PhaseLines):
    """On a terminal: the phase lines, and while sampling a rich display of every chain (draws,
    warmup or sampling, divergences so far, time left)."""

    def __init__(self, console: Console | None = None):
        super().__init__(console)
        self.bars = None
        self.tasks: list = []

    def chains(self, states) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self.bars is None:
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stage]}"), TextColumn("{task.fields[div]}"),
                                 TimeRemainingColumn(), console=self.console, transient=False)
            self.tasks = [self.bars.add_task(f"chain {s.chain + 1}", total=s.total, stage="", div="")
                          for s in states]
            self.bars.start()
        for task, s in zip(self.tasks, states):
            stage = "waiting" if not s.started else ("warmup" if s.tuning else "sampling")
            div = f"{s.divergences} divergence{'s' if s.divergences != 1 else ''}" if s.divergences else ""
            self.bars.update(task, completed=s.finished, total=s.total, stage=stage, div=div)

    def phase(self, name: str) -> None:
        self.done()
        super().phase(name)

    def done(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None


def reporter_for(quiet: bool, bars: bool = True) -> Reporter:
    """What a long command shows on stderr: nothing with --quiet, the live display on a terminal
    (unless --no-progress), else a line per phase."""
    if quiet:
        return SILENT
    return LiveProgress() if bars and sys.stderr.isatty() else PhaseLines()


def _call(fn, as_json: bool, *args, **kwargs):
    """Run a command's work: an interrupt leaves earlier results and exits 130; every failure
    becomes a message and its exit code, never a traceback."""
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt as exc:
        code, message = _interrupted(exc)
        err.print(message)
        _SAID.set()
        if as_json:  # --json promises a JSON object on stdout whatever happens
            sys.stdout.write(json.dumps({"ok": False, "exit_code": code,
                                         "errors": [Problem(message).to_json()]}, indent=2) + "\n")
        raise typer.Exit(code) from None
    except (MrpError, Exception) as exc:  # noqa: BLE001 - the last line of defence
        _fail(exc, as_json)


_SAID = threading.Event()  # a command said it was interrupted (typer turns one it did not see into a quiet 130)


def _interrupted(exc: KeyboardInterrupt) -> tuple[int, str]:
    """Ctrl-C (130) or SIGTERM (143), and what to say."""
    from mrp_formula.errors import Terminated
    from mrp_formula.system import terminated

    if isinstance(exc, Terminated) or terminated():
        return EXIT_TERMINATED, "terminated (SIGTERM): earlier results are untouched"
    return EXIT_INTERRUPTED, "interrupted: earlier results are untouched"


@app.command()
def check(spec: SpecArg, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a spec short of sampling: keys, files, columns, levels, terms, population coverage."""
    _setup_logging(False)
    from mrp_formula.checks import coverage as coverage_mod
    from mrp_formula.commands.check import check as do_check
    from mrp_formula.steps import out_notes

    try:
        plan = do_check(spec, overrides=tuple(set_ or ()))
    except (MrpError, Exception) as exc:  # every failure becomes a message
        _fail(exc, as_json)
    fp = plan.fit_plan
    notes = plan.notes + out_notes(plan.loaded)
    summary = {"ok": True, "spec": str(spec), "formula": plan.info.text, "family": plan.loaded.spec.model.family,
               "sample_rows": plan.tables.stats.get("sample_rows_used"), "cells_fitted": fp.cells,
               "aggregated": fp.aggregated, "population_cells": len(plan.tables.population),
               "estimands": list(plan.loaded.spec.estimands), "notes": [n for n in notes if not is_warning(n)],
               "warnings": [n for n in notes if is_warning(n)],
               "new_levels": {k: list(v) for k, v in plan.tables.new_levels.items()},
               "coverage": plan.coverage.to_json() if plan.coverage is not None else None,
               "priors": [p.to_json() for p in fp.priors], "prior_scale": fp.prior_scale,
               "structure": [sp.to_json() for sp in fp.structures]}  # their own priors, as in manifest.json
    coverage_notes = ([] if plan.coverage is None else
                      coverage_mod.coverage_lines(plan.coverage, plan.tables.new_levels,
                                                  {sp.factor: sp.kind for sp in fp.structures}))
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    err.print(f"[green]ok[/]: {spec} is valid", highlight=False)
    err.print(f"  model: {' '.join(plan.info.text.split())}  ({summary['family']})", markup=False, highlight=False)
    err.print(f"  sample: {summary['sample_rows']} rows -> {fp.cells} fitted rows/cells; "
              f"population: {summary['population_cells']} cells", highlight=False)
    for line in prior_lines(fp.priors, fp.structures):
        err.print(line, markup=False, highlight=False)
    for note in notes:
        if is_warning(note):
            err.print(f"  [yellow]warning[/]: {escape(note)}", highlight=False)
        else:
            err.print(f"  note: {note}", markup=False, highlight=False)
    for note in coverage_notes:
        err.print(f"  coverage: {note}", markup=False, highlight=False)


def prior_lines(priors, structures=()) -> list[str]:
    """The priors of the fit, one term a line: term, distribution, spec or default (and how); then
    the structured terms' own parameters (an AR(1)'s or BYM2's rho, an RW2's trend)."""
    rows = [(p.key, str(p.prior), f"default: {p.basis}" if p.source == "default" and p.basis else p.source)
            for p in priors]
    rows += [(name, prior, f"structure (model.structure.{sp.factor})")
             for sp in structures for name, prior in sp.extra_priors().items()]
    if not rows:
        return []
    out = ["  priors (spec: from model.priors; default: computed from the sample rows):"]
    width = max(len(k) for k, _, _ in rows)
    dwidth = max(len(d) for _, d, _ in rows)
    for key, dist, how in rows:
        out.append(f"    {key:<{width}}  {dist:<{dwidth}}  {how}")
    return out


@app.command()
def run(spec: SpecArg, out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<name>).")] = None,
        set_: SetOpt = None, as_json: JsonOpt = False,
        strict: Annotated[bool, typer.Option(help="Exit 5 when a convergence check fails.")] = False,
        progress: Annotated[bool, typer.Option(help="Show the sampler's progress bar (stderr).")] = True,
        verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log the libraries' messages.")] = False,
        refit: Annotated[bool, typer.Option(help="Sample again even when a cached fit matches.")] = False,
        into_existing: IntoOpt = False,
        format_: FormatOpt = None,
        quiet: QuietOpt = False,
        ) -> None:
    """Fit, poststratify and report: writes the run folder and prints the estimand table."""
    _setup_logging(verbose)
    from mrp_formula.errors import DiagnosticsError
    from mrp_formula.commands.run import run as do_run

    format_ = format_.value if format_ is not None else None
    if as_json and format_ not in (None, "json"):
        _fail(MrpUsageError(Problem(f"--json and --format {format_} both choose what stdout holds",
                                    key="--format", hint="pass one of them (--json: the whole result; "
                                                         "--format json: the estimand rows)")), as_json)
    reporter = reporter_for(quiet, bars=progress and not as_json)
    try:
        result = _call(do_run, as_json, spec, out=out, overrides=tuple(set_ or ()), progress=progress and not as_json,
                       refit=refit, into_existing=into_existing, reporter=reporter)
    finally:
        reporter.done()
    warnings_ = result.warnings
    strict_failed = bool(strict and result.failed)
    if as_json:
        from mrp_formula.output.files import table_records

        sys.stdout.write(json.dumps({"ok": not strict_failed, "out": str(result.out),
                                     **({"exit_code": 5, "failed": list(result.failed)} if strict_failed else {}),
                                     "estimands": table_records(result.estimands),
                                     "diagnostics": result.diagnostics.to_json(),
                                     "warnings": list(result.warnings),
                                     "notes": list(result.notes)}, indent=2) + "\n")
    else:
        for note in result.notes:
            if note.startswith("warning: "):
                err.print(f"[yellow]warning[/]: {escape(note.removeprefix('warning: '))}", highlight=False)
            else:
                err.print(f"note: {note}", markup=False, highlight=False)
        for w in warnings_:
            err.print(f"[yellow]warning[/]: {w}", highlight=False)
        ci = result.estimands.iloc[0]
        title = f"{result.manifest['name']}: posterior of the estimands ({interval_name(ci['ci_prob'], ci['ci_kind'])})"
        if format_ is None:
            print_table(result.estimands, title)
        else:
            write_estimands(result, format_, title)
        for line in decision_lines(result.estimands, result.subpopulations):
            err.print(line, markup=False, highlight=False)
        err.print(f"results in {result.out}", highlight=False)
    if strict_failed:
        if as_json:  # one JSON document: the result above says what failed
            raise typer.Exit(DiagnosticsError.exit_code)
        _fail(DiagnosticsError([Problem(f, key="diagnostics") for f in result.failed]), as_json)


@app.command("schema")
def schema_(output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write it to FILE, not stdout.")] = None,
            ) -> None:
    """Print the JSON Schema of a spec, for TOML editors (Taplo, Even Better TOML)."""
    from mrp_formula.spec.schema import schema_text, write_text_atomic

    text = schema_text()
    if output is None:
        sys.stdout.write(text)
        return
    try:
        write_text_atomic(output, text)
    except OSError as exc:
        err.print(f"error: cannot write {output}: {exc.strerror or exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    err.print(f"wrote {output}", markup=False, highlight=False)


class TemplateName(str, Enum):
    ab = "ab"
    survey = "survey"
    margins = "margins"
    continuous = "continuous"


@app.command("init")
def init_(file: Annotated[Path, typer.Argument(help="The spec file to write, e.g. ab.mrp.toml.")],
          force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
          template: Annotated[TemplateName, typer.Option(
              "--template", "-t", help="ab: an A/B test on a 0/1 outcome; survey: a survey and a population cell "
                                       "table; margins: the survey with population margins only; continuous: an "
                                       "A/B test on a continuous metric.")] = TemplateName.ab,
          ) -> None:
    """Write a commented starter spec (its first line points editors at the JSON Schema) and the
    simulated example data it reads, beside it: `mrp check FILE` passes as written."""
    from mrp_formula.commands.init import init as do_init

    if file.exists() and not force:
        err.print(f"error: {file} already exists; pass --force to overwrite it", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        written = do_init(file, template.value)
    except OSError as exc:
        err.print(f"error: cannot write {file}: {exc.strerror or exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    for p in written.data:
        err.print(f"wrote {p} (simulated example data; replace it with yours)", markup=False, highlight=False)
    for p in written.kept:
        err.print(f"kept {p} (it exists; the spec reads it)", markup=False, highlight=False)
    err.print(f"wrote {file} ({template.value} template); edit it, then `mrp check {file}`", markup=False,
              highlight=False)


@app.command("recover")
def recover_(spec: SpecArg,
             replicates: Annotated[int, typer.Option("--replicates", "-k", min=2, help="Simulated data sets.")] = 20,
             out: Annotated[Optional[Path], typer.Option(help="Output folder (default runs/<name>/recovery).")] = None,
             set_: SetOpt = None,
             workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes of a local "
                                                                                  "Dask cluster (default min(2, "
                                                                                  "CPUs); 1: in this process).")] = None,
             scheduler: SchedulerOpt = None,
             jobs: Annotated[Optional[int], typer.Option(min=1, hidden=True, help="Former name of --workers.")] = None,
             truth: Annotated[Optional[str], typer.Option(
                 help="Where the true parameters come from: 'prior' (default; simulation-based calibration, "
                      "tested) or 'posterior' of a first fit (a descriptive recovery check, no verdict).")] = None,
             source: Annotated[Optional[str], typer.Option(hidden=True, help="Former name of --truth.")] = None,
             as_json: JsonOpt = False,
             strict: Annotated[bool, typer.Option(help="Exit 5 when coverage or ranks are off.")] = False,
             verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log the libraries' messages.")] = False,
             into_existing: IntoOpt = False,
             ) -> None:
    """Simulate data from known parameters, refit, and check that the intervals cover the truth.

    With --truth prior (the default) this is simulation-based calibration: coverage and rank
    uniformity are tested (5% family-wise, Bonferroni) and a run that passes is calibrated. With
    --truth posterior it is a recovery check around the fitted posterior, reported without a verdict.
    """
    _setup_logging(verbose)
    from mrp_formula.errors import DiagnosticsError, UsageError
    from mrp_formula.commands.recover import recover as do_recover

    def tick(done, total, replicate, seconds, error):
        if error:
            err.print(f"[yellow]replicate {replicate} failed[/] ({done}/{total}): {error}", highlight=False)
        else:
            err.print(f"replicate {replicate} done ({done}/{total}, {seconds:.1f} s)", highlight=False)

    if workers is not None and jobs is not None and workers != jobs:
        _fail(UsageError(Problem("--jobs is the former name of --workers; give only --workers",
                                 key="--jobs")), as_json)
    result = _call(do_recover, as_json, spec, replicates=replicates, out=out, overrides=tuple(set_ or ()),
                   jobs=workers if workers is not None else jobs, scheduler=scheduler,
                   truth=truth, source=source, on_replicate=tick, into_existing=into_existing)
    off = bool(result.coverage_off or result.ranks_off)
    failed_strict = strict and (off or bool(result.failed))
    tested = result.truth == "prior"
    if as_json:
        from mrp_formula.errors import EXIT_DIAGNOSTICS
        from mrp_formula.output.files import table_records

        doc = {"ok": not failed_strict, "out": str(result.out), "truth": result.truth, "kind": result.kind,
               "calibrated": result.calibrated,
               "coverage_ok": (not result.coverage_off) if tested else None,
               "coverage_off": list(result.coverage_off), "ranks_off": list(result.ranks_off),
               "failed": list(result.failed), "seconds": round(result.seconds, 1),
               "recovery": table_records(result.summary), "notes": list(result.notes)}
        if failed_strict:
            doc["exit_code"] = EXIT_DIAGNOSTICS
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        if failed_strict:
            raise typer.Exit(EXIT_DIAGNOSTICS)
        return
    for note in result.notes:
        if getattr(note, "level", "info") == "warning":
            err.print(f"[yellow]warning[/]: {escape(note)}", highlight=False)
        else:
            err.print(f"note: {note}", markup=False, highlight=False)
    s = result.summary
    ci = s.iloc[0]
    if tested:
        shown = s[["label", "replicates", "covered", "coverage", "band_lower", "band_upper", "mean_error",
                   "mean_abs_error", "rank_p"]].assign(status=["ok" if c and r else ("OFF" if not c else "ranks")
                                                                for c, r in zip(s["coverage_ok"], s["ranks_ok"])])
        title = (f"calibration (SBC, prior truths): coverage of the {interval_name(ci['ci_prob'], ci['ci_kind'])} "
                 f"intervals over {int(s['replicates'].max())} replicates")
    else:
        shown = s[["label", "replicates", "covered", "coverage", "mean_error", "mean_error_sd", "mean_abs_error",
                   "rank_p"]]
        title = (f"recovery check (posterior truths, descriptive, not a calibration test): coverage of the "
                 f"{interval_name(ci['ci_prob'], ci['ci_kind'])} intervals over "
                 f"{int(s['replicates'].max())} replicates")
    print_table(shown, title)
    if not tested:
        verdict = "[yellow]recovery check only[/] (use --truth prior to test calibration)"
    elif result.calibrated:
        verdict = "[green]calibrated[/]"
    elif result.calibrated is None:  # passed, but with too few replicates to have been able to fail
        verdict = "[yellow]no verdict[/] (too few replicates: see the warning above)"
    else:
        verdict = "[bold red]NOT calibrated[/]"
    err.print(f"{verdict}; results in {result.out} ({result.seconds:.0f} s)", highlight=False)
    if failed_strict:
        _fail(DiagnosticsError("recovery checks failed (see the warnings above)"), as_json)


@app.command("batch")
def batch_(specs: Annotated[list[Path], typer.Argument(help="Spec files, or folders of them (*.toml).")],
           out: Annotated[Path, typer.Option("--out", help="The batch's folder: one run folder per spec and "
                                                           "variant, batch.csv, index.html.")],
           set_: SetOpt = None, workers: WorkersOpt = None, scheduler: SchedulerOpt = None,
           strict: Annotated[bool, typer.Option(help="A run whose diagnostics fail counts as failed "
                                                     "(exit code 5).")] = False,
           refit: Annotated[bool, typer.Option(help="Run every spec again, even when its results are "
                                                    "current, and sample again.")] = False,
           as_json: JsonOpt = False,
           verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log the libraries' messages.")] = False,
           ) -> None:
    """Run many specs, and every variant (a \\[variants.NAME] table) of each, on Dask workers: one run folder each,
    OUT/batch.csv side by side, OUT/index.html linking the reports. Exit 0 when every run
    succeeded, else the worst run's exit code."""
    _setup_logging(verbose)
    from mrp_formula.commands.batch import batch as do_batch

    def ready(sched) -> None:
        if not as_json:
            dash = sched.dashboard
            err.print(f"batch on {sched.describe()}; dashboard: {dash or 'none (pip install bokeh for one)'}",
                      markup=False, highlight=False)

    def event(kind, rec, c) -> None:
        if as_json:
            return
        state = (f"[{c['done'] + c['current']}/{c['total']} done, {c['running']} running, {c['queued']} queued, "
                 f"{c['failed']} failed]")
        if kind == "start":
            err.print(f"batch: {c['total']} run(s)", markup=False, highlight=False)
        elif kind == "current":
            err.print(f"{state} {rec.run}: current, not rerun{_batch_verdict(rec)}", markup=False, highlight=False)
        elif kind == "failed":
            err.print(f"[red]{escape(state)} {escape(rec.run)}: failed (exit {rec.exit_code})[/]: "
                      f"{escape(rec.error)}", highlight=False)
        else:
            err.print(f"{state} {rec.run}: {rec.fit or 'done'} ({rec.seconds:.1f} s){_batch_verdict(rec)}",
                      markup=False, highlight=False)

    result = _call(do_batch, as_json, specs, out=out, overrides=tuple(set_ or ()), workers=workers,
                   scheduler=scheduler, strict=strict, refit=refit, on_event=event, on_ready=ready)
    if as_json:
        from mrp_formula.output.files import table_records

        sys.stdout.write(json.dumps({"ok": result.exit_code == 0, "exit_code": result.exit_code,
                                     "out": str(result.out), "batch": table_records(result.table),
                                     "notes": list(result.notes)}, indent=2) + "\n")
    else:
        for note in result.notes:
            err.print(f"note: {note}", markup=False, highlight=False)
        print_table(batch_shown(result.table), f"batch: {len(result.records)} run(s), exit code {result.exit_code}")
        err.print(f"results in {result.out} (batch.csv, index.html; {result.seconds:.0f} s)", markup=False,
                  highlight=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _batch_verdict(rec) -> str:
    """A finished run's verdict when it is not ok, with its reasons (its warnings, short)."""
    if not rec.verdict or rec.verdict == "ok":
        return ""
    return f"; {rec.verdict}: {'; '.join(rec.reasons or rec.failed_checks or rec.warnings)}"


BATCH_HIDDEN = ["spec", "variant", "ci_prob", "ci_kind", "r_hat", "ess_bulk", "scale", "sd", "failed_checks",
                "warnings"]  # in batch.csv; the warnings are in the progress lines above


def batch_shown(table):
    """The closing table of `mrp batch`: run, estimand and labels, mean and interval first (the
    numbers are what the table is for), then status and verdict; columns empty in every row dropped
    (error, exit_code when every run is fine); a long error cut (whole above and in batch.csv)."""
    import pandas as pd

    shown = table.drop(columns=BATCH_HIDDEN, errors="ignore")
    shown["error"] = shown["error"].map(lambda e: e if not isinstance(e, str) or len(e) <= 48 else e[:47] + "…")
    empty = [c for c in shown.columns if shown[c].map(lambda v: v is None or v == "" or (
        isinstance(v, float) and v != v)).all() or (c == "exit_code" and (shown[c] == 0).all())]
    shown = shown.drop(columns=empty)
    first = [c for c in ["run", "estimand"] if c in shown]
    labels = [c for c in shown.columns[shown.columns.get_loc("estimand") + 1:shown.columns.get_loc("mean")]] \
        if "estimand" in shown and "mean" in shown else []
    numbers = [c for c in ("mean", "lower", "upper") if c in shown]
    lead = first + labels + numbers
    return pd.DataFrame(shown[lead + [c for c in shown.columns if c not in lead]])


@app.command("prior")
def prior_(spec: SpecArg,
           draws: Annotated[int, typer.Option(min=2, help="Prior draws.")] = 1000,
           out: Annotated[Optional[Path], typer.Option(help="Output folder (default runs/<name>/prior).")] = None,
           set_: SetOpt = None, as_json: JsonOpt = False,
           verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log the libraries' messages.")] = False,
           into_existing: IntoOpt = False,
           ) -> None:
    """The estimands the priors imply, before the data: the prior predictive distribution."""
    _setup_logging(verbose)
    from mrp_formula.commands.prior import prior as do_prior

    result = _call(do_prior, as_json, spec, draws=draws, out=out, overrides=tuple(set_ or ()),
                   into_existing=into_existing)
    if as_json:
        from mrp_formula.output.files import table_records

        sys.stdout.write(json.dumps({"ok": True, "out": str(result.out), "draws": draws,
                                     "estimands": table_records(result.estimands),
                                     "notes": list(result.notes)}, indent=2) + "\n")
        return
    for note in result.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    ci = result.estimands.iloc[0]
    print_table(result.estimands, f"prior predictive distribution of the estimands ({draws} draws, "
                                  f"{interval_name(ci['ci_prob'], ci['ci_kind'])})")
    err.print(f"results in {result.out}", highlight=False)


@app.command("compare")
def compare_(specs: Annotated[list[Path], typer.Argument(help="Two or more spec files fitted on the same data.")],
             out: Annotated[Optional[Path], typer.Option(help="Output folder (default runs/compare).")] = None,
             set_: SetOpt = None, as_json: JsonOpt = False,
             progress: Annotated[bool, typer.Option(help="Show the sampler's progress bar (stderr).")] = True,
             refit: Annotated[bool, typer.Option(help="Sample again even when a cached fit matches.")] = False,
             verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log the libraries' messages.")] = False,
             into_existing: IntoOpt = False,
             ) -> None:
    """Compare specs fitted on the same data by PSIS-LOO: elpd, differences, stacking weights."""
    _setup_logging(verbose)
    from rich.markup import escape

    from mrp_formula.commands.compare import compare as do_compare

    def tick(done, total, label, reused, seconds):
        err.print(f"{label}: {'cached fit' if reused else 'fitted'}, LOO done ({done}/{total}, {seconds:.1f} s)",
                  markup=False, highlight=False)

    result = _call(do_compare, as_json, specs, out=out, overrides=tuple(set_ or ()), refit=refit,
                            progress=progress and not as_json, on_spec=tick, into_existing=into_existing)
    if as_json:
        from mrp_formula.output.files import table_records

        sys.stdout.write(json.dumps({"ok": True, "out": str(result.out), "loo_unit": result.unit,
                                     "n_obs": result.n_obs, "n_loo": result.n_loo,
                                     "compare": table_records(result.table), "warnings": list(result.warnings),
                                     "notes": list(result.notes)}, indent=2) + "\n")
        return
    for note in result.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    for w in result.warnings:
        err.print(f"[yellow]warning[/]: {escape(w)}", highlight=False)
    t = result.table
    shown = t[["model", "elpd_loo", "se", "p_loo", "elpd_diff", "diff_se", "weight", "pareto_k_max", "n_high_k",
               "fit"]]  # print_table escapes every cell
    print_table(shown, f"PSIS-LOO over {result.n_loo} {result.unit}s ({result.n_obs} observations), best first; "
                       f"elpd_diff and diff_se against the best, stacking weights")
    err.print(f"results in {result.out}", highlight=False)


@app.command("watch")
def watch_(spec: SpecArg,
           out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<name>).")] = None,
           set_: SetOpt = None, quiet: QuietOpt = False,
           verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log the libraries' messages.")] = False,
           ) -> None:
    """Run a spec, then rerun it whenever it or its data/population files change: the fit is reused
    when only the population, estimands or report changed; each rerun prints what moved since the
    previous one (as `mrp diff`) and rewrites the run folder and its report.html in place. Ctrl-C stops."""
    _setup_logging(verbose)
    from mrp_formula.commands.diff import renderables
    from mrp_formula.commands.watch import file_changes, watch, watched_files

    overrides = tuple(set_ or ())
    if not spec.is_file():  # a spec broken while editing is watched on; a file that is not there is a typo
        _fail(SpecError(Problem("spec file not found", file=str(spec),
                                hint="check the path; `mrp init NAME.toml` writes a starter spec")), False)

    def said(r) -> None:
        what = "first run" if not r.changed else "changed: " + ", ".join(p.name for p in r.changed)
        err.rule(f"run {r.number}: {what}", style="dim")
        if r.error is not None:
            problems = r.error.problems
            err.print(f"[bold red]error[/]: {len(problems)} problem{'s' if len(problems) != 1 else ''} found; "
                      f"still watching", highlight=False)
            for p in problems:
                err.print(p.render(), markup=False, highlight=False)
            return
        res = r.result
        for w in res.warnings:
            err.print(f"[yellow]warning[/]: {escape(w)}", highlight=False)
        if r.diff is not None:
            for item in renderables(r.diff):
                err.print(item)
        else:
            ci = res.estimands.iloc[0]
            print_table(res.estimands, f"{res.manifest['name']}: posterior of the estimands "
                                       f"({interval_name(ci['ci_prob'], ci['ci_kind'])})")
            if r.diff_error:
                err.print(f"no comparison with the previous run: {r.diff_error}", markup=False, highlight=False)
        fit = ("fitted" if not r.reused_fit else "fit from the cache" if r.number == 1 else
               "fit reused (the data and the model part of the spec did not change)")
        err.print(f"{fit}; report: {res.out / 'report.html'}", markup=False, highlight=False)
        err.print("watching " + ", ".join(p.name for p in watched_files(spec, overrides)) + " (Ctrl-C stops)",
                  markup=False, highlight=False)

    reporter = reporter_for(quiet)
    try:
        watch(spec, file_changes(spec, overrides), out=out, overrides=overrides, on_rerun=said, reporter=reporter)
    except KeyboardInterrupt:
        reporter.done()
        err.print("stopped watching", highlight=False)
        raise typer.Exit(0) from None


RunDirArg = Annotated[Path, typer.Argument(help="A run folder written by `mrp run` (runs/<name> by default).")]


@app.command("report")
def report_(run_dir: RunDirArg,
            out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Write the page here instead of "
                                                                              "RUN_DIR/report.html.")] = None,
            as_json: JsonOpt = False) -> None:
    """(Re)write report.html of a run folder: one self-contained page to open offline or send on."""
    from mrp_formula.output.report import write_report

    path = _call(write_report, as_json, run_dir, out)
    if as_json:
        sys.stdout.write(json.dumps({"ok": True, "report": str(path)}, indent=2) + "\n")
        return
    err.print(f"wrote {path}", markup=False, highlight=False)


@app.command("diff")
def diff_(run_a: RunDirArg, run_b: RunDirArg,
          html: Annotated[Optional[Path], typer.Option("--html", help="Also write the comparison as a "
                                                                      "self-contained page to this file.")] = None,
          show_all: Annotated[bool, typer.Option("--all", help="Show every estimand row, not only the ones that "
                                                              "moved and the largest moves.")] = False,
          as_json: JsonOpt = False) -> None:
    """What changed between two runs: the spec, the inputs, and how far each estimand moved (in posterior sd)."""
    from mrp_formula.commands.diff import diff_runs, renderables, write_html

    d = _call(diff_runs, as_json, run_a, run_b)
    written = _call(write_html, as_json, d, html) if html is not None else None
    if as_json:
        sys.stdout.write(json.dumps({"ok": True, **d.to_json(), **({"html": str(written)} if written else {})},
                                    indent=2) + "\n")
        return
    for r in renderables(d, show_all):
        err.print(r)
    if written:
        err.print(f"wrote {written}", markup=False, highlight=False)


def _usage_problem(exc: typer.TyperException) -> Problem:
    """A usage error of the command line (a bad option value, a missing argument) as a Problem."""
    param = getattr(exc, "param", None)
    key = (param.opts[0] if getattr(param, "opts", None) else getattr(param, "name", "")) if param else ""
    ctx = getattr(exc, "ctx", None)
    return Problem(exc.format_message(), key=key or "",
                   hint=f"see `{ctx.command_path} --help`" if ctx is not None else "see `mrp --help`")


def expand_set(args: list[str]) -> list[str]:
    """``--set a=1 b=2`` as ``--set a=1 --set b=2``: one --set takes every KEY=VALUE word after it
    (a word with '=' that is not an option); the spec file and options end the list."""
    out: list[str] = []
    state = ""  # "value": the next word is --set's own value; "more": further KEY=VALUE words join it
    for i, a in enumerate(args):
        if a == "--":
            return out + args[i:]
        if a == "--set":
            state = "value"
        elif state == "value":
            state = "more"
        elif state == "more" and not a.startswith("-") and "=" in a:
            out.append("--set")
        else:
            state = ""
        out.append(a)
    return out


# The cyclic garbage collector's thresholds in an `mrp` process that ends with its command (not `watch`,
# which reruns for hours, nor `batch`, whose runs are other processes): such a process imports and builds
# much (pandas, PyTensor, numba, matplotlib in its forked children), and with the usual first threshold
# (700 allocations) the collector walks the growing heap hundreds of times: 0.5 s of the A/B refit's main
# process alone (504 collections), more in its children. A first threshold of 100,000: 41 collections in
# all; the A/B refit in fresh processes 7.2-8.9 s against 7.5-9.6 s (five interleaved runs each, through
# `main([...])`; median 7.7 against 8.7), the shipped primer 58.5 s against 65.5 s at the same peak memory (500 against 504
# MB; with the older generations also collected rarely, (100,000, 50, 100), it rose to 611 MB).
COLLECT_RARELY = (100_000, 10, 10)


def _unwrapped_help() -> None:
    """Each command's help from its docstring with the paragraphs' line breaks removed, so that the
    terminal wraps them at its own width (not mid-sentence where the source was wrapped)."""
    import inspect

    for cmd in app.registered_commands:
        doc = inspect.getdoc(cmd.callback) or ""
        paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
        cmd.help = "\n\n".join(paragraphs)
        cmd.short_help = paragraphs[0] if paragraphs else None


_unwrapped_help()


def main(argv: list[str] | None = None) -> None:
    """The `mrp` entry point: as typer's own, but ``--set a=1 b=2`` takes both, and a usage error
    is a JSON error object on stdout when --json was asked for (the same shape as every other
    --json error), with exit code 2."""
    args = expand_set(list(sys.argv[1:] if argv is None else argv))
    _SAID.clear()
    if argv is None and hasattr(signal, "SIGPIPE"):  # `mrp check s.toml | head -1`: end quietly, as Unix tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if argv is None:  # `timeout`, systemd, Slurm: SIGTERM cleans up as Ctrl-C does
        from mrp_formula.system import terminate_as_interrupt

        terminate_as_interrupt()
    if argv is None and args[:1] not in (["watch"], ["batch"]):  # a process that ends when the command does
        gc.set_threshold(*COLLECT_RARELY)
    try:
        code = app(args=args, prog_name="mrp", standalone_mode=False)
    except typer.TyperException as exc:  # typer's own click: UsageError, BadParameter, NoArgsIsHelpError
        if "--json" in args and type(exc).__name__ != "NoArgsIsHelpError":
            sys.stdout.write(json.dumps({"ok": False, "exit_code": exc.exit_code,
                                         "errors": [_usage_problem(exc).to_json()]}, indent=2) + "\n")
        else:
            from typer import rich_utils

            rich_utils.rich_format_error(exc)
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # click's word for an interrupt outside a command's work
        err.print("aborted")
        cause = exc.__cause__
        sys.exit(_interrupted(cause)[0] if isinstance(cause, KeyboardInterrupt) else EXIT_INTERRUPTED)
    except KeyboardInterrupt as exc:  # outside a command's work (while importing it)
        code, message = _interrupted(exc)
        err.print(message)
        sys.exit(code)
    except SystemExit:
        raise
    except Exception as exc:  # pragma: no cover - last resort: never a traceback
        err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False)
        sys.exit(EXIT_INTERNAL)
    code = code if isinstance(code, int) else 0
    if code == EXIT_INTERRUPTED and not _SAID.is_set():  # interrupted while the command was imported
        code, message = _interrupted(KeyboardInterrupt())
        err.print(message)
    if argv is None:
        _leave(code)
    sys.exit(code)


def _leave(code: int) -> None:
    """End the `mrp` process with ``code``, without the interpreter's teardown when that is safe.

    After a fit, the teardown frees every object of the PyMC model and of the libraries, module by
    module: 0.5-1 s of an edit-and-rerun loop spent after the results are written. When this is
    the only thread, the exit handlers are run (logging's flush, temporary files, coverage), the
    streams are flushed, and the process ends at once; otherwise it exits the usual way."""
    if threading.active_count() == 1:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more can be said
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
