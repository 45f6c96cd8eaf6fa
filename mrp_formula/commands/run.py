"""`mrp run`: the whole job, spec -> run folder, as a script over the steps."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mrp_formula.notes import Note, is_warning
from mrp_formula.checks.diagnostics import Diagnostics, Thresholds, fit_diagnostics
from mrp_formula.checks.efficiency import efficiency
from mrp_formula.output.files import sha256_file, staged_dir, write_json, write_table
from mrp_formula.output.manifest import manifest, run_sections
from mrp_formula.checks import coverage as coverage_mod
from mrp_formula.checks import ppc as ppc_mod
from mrp_formula.poststrat import classical as classical
from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.poststrat import calibrate as calibrate_mod
from mrp_formula.output.files import check_out, tidy
from mrp_formula.steps import default_out, estimate, out_origin, posterior, store_fit
from mrp_formula.steps import plan as plan_of
from mrp_formula.model.cache import CACHE_DIR, FitCache
from mrp_formula.progress import SILENT, Reporter
from mrp_formula.spec.tree import load_spec
from mrp_formula.system import Ahead, ahead, beside, room_for, without_dask


@dataclass(frozen=True)
class RunResult:
    estimands: pd.DataFrame
    draws: pd.DataFrame
    posterior: object  # xarray.DataTree
    diagnostics: Diagnostics
    out: Path
    notes: tuple[str, ...]
    manifest: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # diagnostics and checks that failed or deserve attention
    failed: tuple[str, ...] = ()  # the checks that fail a --strict run
    ppc: pd.DataFrame | None = None
    subpopulations: tuple[str, ...] = ()  # contrasts of a population variable: two parts of the population

    def _repr_html_(self) -> str:
        """In a notebook: the report's summary (verdict, headline estimates, decision numbers in words)."""
        from mrp_formula.output.report import RunView, summary

        return summary(RunView.from_folder(self.out))


# what the page and the PNGs import (matplotlib alone takes a second; scipy.special for the checks'
# probabilities; pyarrow's parquet reader for the page's view of the staged folder): a child forked when
# the run starts imports them on another core while the run reads, fits and summarises, then draws them
OUTPUT_MODULES = ("mrp_formula.output.plots", "mrp_formula.output.report", "jinja2", "scipy.special", "PIL.Image",
                  "PIL.PngImagePlugin", "matplotlib.backends.backend_svg", "pyarrow.parquet", "pyarrow.dataset")


def run(path, *, out=None, overrides=(), progress: bool = False, block: int | None = None,
        refit: bool = False, cache: bool = True, into_existing: bool = False,
        reporter: Reporter = SILENT, data=None, population=None, spec_text: str | None = None) -> RunResult:
    """Run the spec end to end and write the run folder.

    The posterior is reused from the cache beside the run folder while the model part of the
    spec and the fitted data are unchanged; ``refit=True`` forces a new fit. An existing folder
    that mrp-formula did not write is refused before anything is fitted, unless
    ``into_existing`` (then the run's files are added to it and nothing there is replaced).
    ``reporter`` hears each phase as it begins and the sampler's progress. ``data`` and
    ``population`` are DataFrames that take the place of the spec's files (which it may then omit).
    ``spec_text``: the spec's text, used instead of reading ``path`` (a batch task carries it).
    """

    with without_dask(), ahead(OUTPUT_MODULES) as helper:  # system.without_dask: no array here is dask's
        return _run(path, helper, out=out, overrides=overrides, progress=progress, block=block, refit=refit,
                    cache=cache, into_existing=into_existing, reporter=reporter, data=data, population=population,
                    spec_text=spec_text)


def _run(path, helper: Ahead, *, out=None, overrides=(), progress: bool = False, block: int | None = None,
         refit: bool = False, cache: bool = True, into_existing: bool = False,
         reporter: Reporter = SILENT, data=None, population=None, spec_text: str | None = None) -> RunResult:
    timings = {}
    t0 = time.perf_counter()
    reporter.phase("checking spec")
    loaded = load_spec(path, tuple(overrides), frames={"data": data, "population": population}, text=spec_text)
    reporter.phase("reading data")
    plan = plan_of(path, overrides, loaded=loaded)
    loaded, info, tables = plan.loaded, plan.info, plan.tables
    timings["prepare"] = time.perf_counter() - t0

    out_dir = Path(out) if out else default_out(loaded)
    origin = out_origin(loaded, out)
    restored = tuple(Note("run.leftover", n) for n in tidy(out_dir))  # what runs killed while writing it left
    writes = names_written(loaded.spec)
    check_out(out_dir, into_existing=into_existing, origin=origin, writes=writes)
    cache_root = out_dir.resolve().parent / CACHE_DIR
    if cache:
        FitCache(cache_root).sweep()
    t_posterior = time.perf_counter()
    fitted_ = posterior(plan, [cache_root], refit=refit, cache=cache, progress=progress,
                        reporter=reporter, store=False)
    fitted, key, cached, cache_note = fitted_.fit, fitted_.key, fitted_.reused, fitted_.note
    timings["fit"] = fitted.seconds
    timings["posterior"] = time.perf_counter() - t_posterior
    stored = False  # the fit, in the fit cache
    try:
        layout = _layout(fitted.posterior)

        t1 = time.perf_counter()
        reporter.phase("poststratifying")
        est = estimate(plan, fitted.posterior, block=block)
        spec = loaded.spec
        predictor, pieces, ed, table, group_cols = est.predictor, est.pieces, est.draws, est.table, est.group_columns
        draws = est_mod.long_draws(ed)
        timings["poststratify"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        family = spec.model.family

        def classical_estimates() -> pd.DataFrame:
            return classical.raw_and_weighted(pieces, tables, info, family, predictor.categories, group_cols)

        # the classical estimates (raking every group: about 1 s on the primer) are computed in a
        # forked child while this process runs the posterior predictive check; should the child fail,
        # they are computed here again, so that its error is raised as it would have been
        classical_job = beside(classical_estimates)
        try:
            ppc_table = ppc_mod.ppc(tables, info, family, predictor.categories, predictor,
                                    predictor.n_samples, spec.report.ci_prob, spec.report.ci_kind,
                                    posterior=fitted.posterior, seed=spec.fit.seed)
            cov = coverage_mod.coverage(tables, info, family, predictor.categories)
            srm = coverage_mod.srm_check(tables, spec.data.allocation) if spec.data.allocation else []
            raw_weighted, error, _ = classical_job.result()
        finally:
            classical_job.cancel()
        table = _ordered(pd.concat([table, classical_estimates() if error else raw_weighted], axis=1), group_cols)
        timings["checks"] = time.perf_counter() - t2

        diag = fit_diagnostics(fitted.posterior, ed.draws, predictor.n_chains, predictor.n_draws)
        thresholds = Thresholds(rhat_max=spec.report.rhat_max, ess_min=spec.report.ess_min,
                                divergences_max=spec.report.divergences_max, target_accept=spec.fit.target_accept,
                                switchable=_switchable(plan.fit_plan))
        warned = tuple(n for n in plan.notes if is_warning(n))
        warnings_ = tuple(diag.warnings(thresholds)) + tuple(n for n in srm if n.level == "warning") + warned
        cache_notes = (cache_note,) if cache_note else ()
        calibration = est.calibration
        cal_table = cal_notes = None
        if calibration is not None:
            cal_table = calibrate_mod.summary(calibration, ci_prob=spec.report.ci_prob, ci_kind=spec.report.ci_kind)
            cal_notes = (calibrate_mod.calibration_notes(calibration, cal_table)
                         + calibrate_mod.fixed_estimands(table, group_cols))
            warnings_ = warnings_ + tuple(n for n in cal_notes if n.level == "warning")
        notes = (restored + tuple(n for n in plan.notes if n not in warned) + cache_notes + tuple(cov.notes())
                 + tuple(n for n in srm if n.level != "warning")
                 + tuple(n for n in cal_notes or () if n.level != "warning"))
        failed = diag.problems(thresholds)

        def manifest_of(notes_) -> dict:
            sections = {**run_sections(loaded, tables, plan.fit_plan, plan.inputs),
                        "diagnostics": {**diag.to_json(), "failed": failed},
                        "fit_cache": {"key": key, "reused": cached},
                        "efficiency": efficiency(fitted.posterior, diag.min_ess_bulk, diag.estimand_min_ess),
                        "coverage": cov.to_json()}
            if calibration is not None:
                cal = spec.calibrate
                sections["calibrate"] = {"by": cal.by, "source": str(loaded.resolve(cal.source)), "column": cal.column,
                                         "link": calibration.link, "levels": len(calibration.levels),
                                         "passes": calibration.steps, "max_error": calibration.max_error}
            return manifest(loaded, sections, overrides=overrides, notes=notes_ + warnings_, warnings=warnings_,
                            timings=timings)

        reporter.phase("writing")
        with staged_dir(out_dir, into_existing=into_existing, origin=origin, writes=writes) as tmp:
            t3 = time.perf_counter()
            write_table(table, tmp / "estimands.csv")
            write_table(draws, tmp / "estimand_draws.parquet")
            write_table(ppc_table, tmp / "ppc.csv")
            if calibration is not None:
                write_table(cal_table, tmp / "calibration.csv")
                write_table(calibrate_mod.long_shifts(calibration, predictor.n_chains, predictor.n_draws),
                            tmp / "calibration_draws.parquet")
            (tmp / "spec.toml").write_text(loaded.text + "".join(f"\n# applied with --set: {o}" for o in overrides))
            timings["write"] = time.perf_counter() - t3
            manifest_ = manifest_of(notes)
            write_json(manifest_, tmp / "manifest.json")
            ropes = {n: tuple(e.rope) for n, e in spec.estimands.items() if e.rope is not None}
            figures = (table, draws, ppc_table, spec.report.ci_prob, spec.report.ci_kind, ropes,
                       ordered_levels(plan.fit_plan.structures)) if spec.report.plots else None
            # the page and the PNGs are drawn by the child forked when the run began (it has imported
            # matplotlib meanwhile), while this process stores the fit and writes posterior.nc
            drawing = helper.beside(_outputs, tmp, fitted.posterior, figures, out_dir)
            try:
                t4 = time.perf_counter()
                stored = True
                unstored = store_fit(fitted_)
                cached_nc = FitCache(cache_root).entry(key) / "posterior.nc" if cache and not unstored else None
                _write_posterior(fitted.posterior, tmp / "posterior.nc", cached_nc, layout)
                timings["write"] += time.perf_counter() - t4
                drawn, error, _ = drawing.result()
            finally:
                drawing.cancel()
            if error:  # the child failed as a whole: draw here, so that the page's own errors show
                drawn = _outputs(tmp, fitted.posterior, figures, out_dir)
            report_note, report_seconds, plot_note, plot_seconds = drawn
            if unstored:  # the cache is speed: the results are complete without it
                notes = notes + (Note("cache.not_stored", unstored),)
            if plot_note:
                notes = notes + (plot_note,)
            if figures is not None:
                timings["plots"] = plot_seconds
            timings["report"] = report_seconds  # in manifest.json, not on the page written before
            timings["total"] = time.perf_counter() - t0
            if report_note:  # the page failed: say so in the results, which are complete
                notes = notes + (report_note,)
            manifest_ = manifest_of(notes)
            write_json(manifest_, tmp / "manifest.json")
        return RunResult(estimands=table, draws=draws, posterior=fitted.posterior, diagnostics=diag,
                         out=out_dir, notes=notes, manifest=manifest_, warnings=warnings_,
                         failed=tuple(failed) + tuple(n for n in srm if n.code == "srm.mismatch"),
                         ppc=ppc_table,
                         subpopulations=tuple(n for n, e in spec.estimands.items()
                                              if e.contrast and len(e.contrast) == 1
                                              and next(iter(e.contrast)) in tables.population_vars))
    except BaseException:  # an error or an interrupt after the fit: the fit is kept for the next run all the same
        if not stored:
            try:
                store_fit(fitted_)
            except BaseException:  # noqa: BLE001 - the run's own error (or interrupt) is the one to report
                pass
        raise


def _switchable(fp) -> bool | None:
    """Whether the model has a group term whose parameterization the spec can switch (None: it has
    no group term)."""
    structured = {sp.term for sp in fp.structures}
    return any(t not in structured for t in fp.parameterization) if fp.parameterization else None


# the steps of timings_seconds, in order (docs/outputs.md says what each covers)
TIMINGS = ("prepare", "fit", "posterior", "poststratify", "checks", "write", "plots", "report", "total")


def _layout(posterior) -> tuple:
    """What the posterior holds, short of its values: groups, variables, shapes, types, attributes."""
    return tuple((node.path, tuple((str(n), v.dims, v.shape, str(v.dtype), repr(v.attrs))
                                   for n, v in node.dataset.variables.items()), repr(node.attrs))
                 for node in posterior.subtree)


def _write_posterior(posterior, path: Path, cached: Path | None, layout: tuple) -> None:
    """Write ``posterior.nc``: a copy of the fit cache's file when it holds this posterior as it
    was read or stored (the cache wrote those bytes with the same ``to_netcdf``, so they are the
    file this would write; its checksum is checked against the cache's record), else ``to_netcdf``."""
    if cached is not None and cached.is_file() and _layout(posterior) == layout:
        try:
            meta = json.loads((cached.parent / "meta.json").read_text())
            shutil.copyfile(cached, path)
            if sha256_file(path) == meta.get("sha256"):
                return
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)
    room_for(path, sum(node.dataset.nbytes for node in posterior.subtree))  # h5py may crash on a full disk
    posterior.to_netcdf(path)


def names_written(spec) -> tuple[str, ...]:
    """The top-level names a run of ``spec`` writes in its folder (checked for clashes before the fit)."""
    names = ["estimands.csv", "estimand_draws.parquet", "ppc.csv", "posterior.nc", "spec.toml", "manifest.json",
             "report.html"]
    if spec.calibrate is not None:
        names += ["calibration.csv", "calibration_draws.parquet"]
    if spec.report.plots:
        names.append("plots")
    return tuple(names)


def ordered_levels(structures) -> dict[str, list[str]]:
    """The levels in order of every variable with an ordered structure (rw1, rw2, ar1)."""
    return {sp.factor: list(sp.levels) for sp in structures if sp.kind in ("rw1", "rw2", "ar1")}


def _outputs(folder: Path, posterior, figures: tuple | None, home: Path) -> tuple[str, float, str, float]:
    """The page (``report.html``) and, with ``figures`` (see :func:`_plots`), the PNGs of a staged
    run folder (which becomes ``home``), the PNGs in a forked child while the page is written: on
    two cores the longer of the two instead of their sum. ``(report note, report seconds, plot
    note, plot seconds)``; a note is '' unless something was not written."""
    plots = beside(lambda: _plots(folder, posterior, *figures)) if figures is not None else None
    try:
        start = time.perf_counter()
        report_note = _report(folder, posterior, parallel=plots is None, home=home)
        report_seconds = time.perf_counter() - start
        plot_note, error, plot_seconds = plots.result() if plots is not None else ("", "", 0.0)
    finally:
        if plots is not None:
            plots.cancel()
    plot_note = plot_note or (f"plots were not written ({error}); the tables are complete" if error else "")
    return report_note, report_seconds, plot_note, plot_seconds


def _plots(folder: Path, posterior, table, draws, ppc_table, ci_prob: float, ci_kind: str, ropes: dict,
           ordered: dict) -> str:
    """Write the PNGs; a plot that fails costs a note, never the results."""
    try:
        from mrp_formula.output.plots import write_plots

        write_plots(folder, estimands=table, draws=draws, posterior=posterior, ppc=ppc_table,
                    ci_prob=ci_prob, ci_kind=ci_kind, ropes=ropes, ordered=ordered)
    except Exception as exc:  # plotting is a report, not a result
        return f"plots were not written ({type(exc).__name__}: {exc}); the tables are complete"
    return ""


def _report(folder: Path, posterior, *, parallel: bool, home: Path) -> str:
    """Write report.html from the files just staged (and the posterior they hold, in memory); a
    failure costs a note, never the results. ``parallel``: no PNGs are being drawn beside it, so
    the page draws part of its figures in a second process."""
    try:
        from mrp_formula.output.report import report_note
    except Exception as exc:  # e.g. jinja2 missing from a broken install
        return f"report.html was not written ({type(exc).__name__}: {exc}); the tables are complete"
    return report_note(folder, posterior, parallel=parallel, home=home)


SUMMARY = ["mean", "median", "sd", "lower", "upper", "ci_prob", "ci_kind", "p_above_null", "p_in_rope",
           "chance_to_win", "expected_loss_first", "expected_loss_second", "expected_loss_unit", "raw", "weighted",
           "ess_bulk", "r_hat"]


def _ordered(table: pd.DataFrame, group_cols: list[str]) -> pd.DataFrame:
    """Columns in a stable order: labels, the summary, decision numbers, raw/weighted, diagnostics."""
    first = ["estimand"] + [c for c in group_cols + ["category"] if c in table] + ["scale"]
    rest = [c for c in SUMMARY if c in table] + [c for c in table if c not in first and c not in SUMMARY]
    return table[first + rest]
