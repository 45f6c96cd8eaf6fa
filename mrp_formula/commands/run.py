"""`mrp run`: the whole job, spec -> run folder, as a script over the steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mrp_formula import __version__
from mrp_formula.checks.diagnostics import Diagnostics, Thresholds, fit_diagnostics
from mrp_formula.checks.efficiency import efficiency
from mrp_formula.output.files import sha256_file, sha256_text, staged_dir, write_json, write_table
from mrp_formula.checks import coverage as coverage_mod
from mrp_formula.checks import ppc as ppc_mod
from mrp_formula.poststrat import classical as classical
from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.output.files import check_out
from mrp_formula.steps import Plan, default_out, estimate, out_origin, posterior
from mrp_formula.steps import plan as plan_of
from mrp_formula.model.cache import CACHE_DIR
from mrp_formula.model.plan import versions


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


def run(path, *, out=None, overrides=(), progress: bool = False, block: int | None = None,
        refit: bool = False, cache: bool = True, into_existing: bool = False) -> RunResult:
    """Run the spec end to end and write the run folder.

    The posterior is reused from the cache beside the run folder while the model part of the
    spec and the fitted data are unchanged; ``refit=True`` forces a new fit. An existing folder
    that mrp-formula did not write is refused before anything is fitted, unless
    ``into_existing`` (then the run's files are added to it and nothing there is replaced).
    """

    timings = {}
    t0 = time.perf_counter()
    plan = plan_of(path, overrides)
    loaded, info, tables = plan.loaded, plan.info, plan.tables
    timings["prepare"] = time.perf_counter() - t0

    out_dir = Path(out) if out else default_out(loaded)
    origin = out_origin(loaded, out)
    check_out(out_dir, into_existing=into_existing, origin=origin)
    fitted_ = posterior(plan, [out_dir.resolve().parent / CACHE_DIR], refit=refit, cache=cache, progress=progress)
    fitted, key, cached, cache_note = fitted_.fit, fitted_.key, fitted_.reused, fitted_.note
    timings["fit"] = fitted.seconds

    t1 = time.perf_counter()
    est = estimate(plan, fitted.posterior, block=block)
    spec = loaded.spec
    predictor, pieces, ed, table, group_cols = est.predictor, est.pieces, est.draws, est.table, est.group_columns
    draws = est_mod.long_draws(ed)
    timings["poststratify"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    family = spec.model.family
    table = pd.concat([table, classical.raw_and_weighted(pieces, tables, info, family, predictor.categories,
                                                         group_cols)], axis=1)
    table = _ordered(table, group_cols)
    ppc_table = ppc_mod.ppc(tables, info, family, predictor.categories, predictor,
                              predictor.n_samples, spec.report.ci_prob, spec.report.ci_kind,
                              posterior=fitted.posterior, seed=spec.fit.seed)
    cov = coverage_mod.coverage(tables, info, family, predictor.categories)
    srm = coverage_mod.srm_check(tables, spec.data.allocation) if spec.data.allocation else []
    timings["checks"] = time.perf_counter() - t2

    diag = fit_diagnostics(fitted.posterior, ed.draws, predictor.n_chains, predictor.n_draws)
    thresholds = Thresholds(rhat_max=spec.report.rhat_max, ess_min=spec.report.ess_min,
                            divergences_max=spec.report.divergences_max, target_accept=spec.fit.target_accept)
    warnings_ = tuple(diag.warnings(thresholds)) + tuple(n for n in srm if n.level == "warning")
    cache_notes = (cache_note,) if cache_note else ()
    notes = (plan.notes + cache_notes + tuple(cov.notes())
             + tuple(n for n in srm if n.level != "warning"))
    manifest = _manifest(plan, fitted, diag, timings, notes + warnings_)
    manifest["fit_cache"] = {"key": key, "reused": cached}
    manifest["efficiency"] = efficiency(fitted.posterior, diag.min_ess_bulk, diag.estimand_min_ess)
    manifest["spec"]["overrides"] = list(overrides)  # spec.toml is the file; these were applied on top
    manifest["coverage"] = cov.to_json()
    manifest["diagnostics"]["failed"] = diag.problems(thresholds)
    manifest["warnings"] = list(warnings_)
    with staged_dir(out_dir, into_existing=into_existing, origin=origin) as tmp:
        write_table(table, tmp / "estimands.csv")
        write_table(draws, tmp / "estimand_draws.parquet")
        write_table(ppc_table, tmp / "ppc.csv")
        if spec.report.plots:
            plot_note = _plots(tmp, table, draws, fitted.posterior, ppc_table, spec)
            if plot_note:
                notes = notes + (plot_note,)
                manifest["notes"].append(plot_note)
        fitted.posterior.to_netcdf(tmp / "posterior.nc")
        (tmp / "spec.toml").write_text(loaded.text + "".join(f"\n# applied with --set: {o}" for o in overrides))
        timings["total"] = time.perf_counter() - t0
        manifest["timings_seconds"] = timings
        write_json(manifest, tmp / "manifest.json")
        report_note = _report(tmp)
        if report_note:  # the page failed: say so in the results, which are complete
            notes = notes + (report_note,)
            manifest["notes"].append(report_note)
            write_json(manifest, tmp / "manifest.json")
    return RunResult(estimands=table, draws=draws, posterior=fitted.posterior, diagnostics=diag,
                     out=out_dir, notes=notes, manifest=manifest, warnings=warnings_,
                     failed=tuple(diag.problems(thresholds)) + tuple(n for n in srm if n.code == "srm.mismatch"),
                     ppc=ppc_table)


def _plots(folder: Path, table, draws, posterior, ppc_table, spec) -> str:
    """Write the PNGs; a plot that fails costs a note, never the results."""
    try:
        from mrp_formula.output.plots import write_plots

        ropes = {n: tuple(e.rope) for n, e in spec.estimands.items() if e.rope is not None}
        write_plots(folder, estimands=table, draws=draws, posterior=posterior, ppc=ppc_table,
                    ci_prob=spec.report.ci_prob, ci_kind=spec.report.ci_kind, ropes=ropes)
    except Exception as exc:  # plotting is a report, not a result
        return f"plots were not written ({type(exc).__name__}: {exc}); the tables are complete"
    return ""


def _report(folder: Path) -> str:
    """Write report.html from the files just staged; a failure costs a note, never the results."""
    try:
        from mrp_formula.output.report import report_note
    except Exception as exc:  # e.g. jinja2 missing from a broken install
        return f"report.html was not written ({type(exc).__name__}: {exc}); the tables are complete"
    return report_note(folder)


SUMMARY = ["mean", "median", "sd", "lower", "upper", "ci_prob", "ci_kind", "p_above_null", "p_in_rope",
           "chance_to_win", "expected_loss_first", "expected_loss_second", "expected_loss_unit", "raw", "weighted",
           "ess_bulk", "r_hat"]


def _ordered(table: pd.DataFrame, group_cols: list[str]) -> pd.DataFrame:
    """Columns in a stable order: labels, the summary, decision numbers, raw/weighted, diagnostics."""
    first = ["estimand"] + [c for c in group_cols + ["category"] if c in table] + ["scale"]
    rest = [c for c in SUMMARY if c in table] + [c for c in table if c not in first and c not in SUMMARY]
    return table[first + rest]


def _manifest(plan: Plan, fitted, diag: Diagnostics, timings: dict, notes) -> dict:

    loaded = plan.loaded
    spec = loaded.spec
    files = {"data": loaded.resolve(spec.data.source)}
    if spec.population.source:
        files["population"] = loaded.resolve(spec.population.source)
    for i, j in enumerate(spec.join):
        files[f"join[{i}]"] = loaded.resolve(j.source)
    fp = plan.fit_plan
    return {
        "mrp_formula": __version__,
        "name": spec.name,
        "spec": {"path": str(loaded.path), "sha256": sha256_text(loaded.text)},
        "inputs": {k: {"path": str(p), "sha256": sha256_file(p)} for k, p in files.items() if p.exists()},
        "seed": spec.fit.seed,
        "sampler": {"name": spec.fit.sampler, "draws": spec.fit.draws, "tune": spec.fit.tune,
                    "chains": spec.fit.chains, "target_accept": spec.fit.target_accept,
                    "mass_matrix": fp.mass_matrix, "mass_matrix_reason": fp.mass_matrix_reason},
        "model": {"formula": spec.model.formula, "fitted_formula": fp.formula, "family": fp.family,
                  "aggregated": fp.aggregated, "rows_in": fp.rows_in, "cells_fitted": fp.cells,
                  "parameterization": fp.parameterization},
        "priors": [p.to_json() for p in fp.priors],
        "prior_scale": fp.prior_scale,
        "tables": plan.tables.stats,
        "new_levels": {k: list(v) for k, v in plan.tables.new_levels.items()},
        "new_level_weight_share": plan.tables.new_level_share,
        "versions": versions(),
        "diagnostics": diag.to_json(),
        "notes": list(notes),
    }
