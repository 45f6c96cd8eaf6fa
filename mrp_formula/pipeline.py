"""The whole job, one way: spec -> tables -> model -> posterior -> poststratification ->
estimands -> report. ``check`` stops before sampling; ``run`` does everything.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mrp_formula import __version__
from mrp_formula import estimands as est_mod
from mrp_formula import classical
from mrp_formula.diagnostics import Diagnostics, Thresholds, fit_diagnostics
from mrp_formula.errors import Problem, SpecError, did_you_mean
from mrp_formula.formula import FormulaInfo, describe
from mrp_formula.poststrat import poststratify
from mrp_formula.report import sha256_file, sha256_text, staged_dir, write_json, write_table
from mrp_formula.spec import LoadedSpec, dotted
from mrp_formula.tables import Tables

BINARY = ("bernoulli", "binomial")


@dataclass(frozen=True)
class Plan:
    """A checked spec with its prepared tables: everything short of sampling."""

    loaded: LoadedSpec
    info: FormulaInfo
    tables: Tables
    fit_plan: object  # model.FitPlan

    @property
    def notes(self) -> tuple[str, ...]:
        fp = self.fit_plan
        extra = []
        if fp.aggregated:
            extra.append(f"fitting {fp.cells} binomial cells instead of {fp.rows_in} rows (same likelihood)")
        for term, choice in fp.parameterization.items():
            extra.append(f"group term {term}: {choice} ({fp.parameterization_reason[term]})")
        if fp.mass_matrix_reason and self.loaded.spec.fit.sampler == "nutpie":
            extra.append(f"mass matrix: {fp.mass_matrix.replace('_', '-')} ({fp.mass_matrix_reason})")
        return self.tables.notes + tuple(extra)


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


def _spec_checks(loaded: LoadedSpec) -> FormulaInfo:
    """Checks that need the formula but not the data: all problems at once."""
    from mrp_formula.priors import POSITIVE, PriorSpec

    spec = loaded.spec
    file = str(loaded.path)
    info = describe(spec.model.formula, file=file, line=loaded.line("model", "formula"))
    problems: list[Problem] = []
    family = spec.model.family
    if family == "binomial" and not info.is_proportion:
        problems.append(Problem("the binomial family needs the response written p(successes, trials)",
                                key="model.formula", file=file, line=loaded.line("model", "formula"),
                                got=repr(info.response), hint=f'e.g. "p(clicks, visits) ~ {info.rhs}"'))
    if info.is_proportion and family != "binomial":
        problems.append(Problem(f"p(successes, trials) is the binomial family's response, not {family}'s",
                                key="model.family", file=file, line=loaded.line("model", "family"),
                                hint='set family = "binomial"'))
    for name, est in spec.estimands.items():
        if est.scale == "odds_ratio" and family not in BINARY:
            problems.append(Problem(f"odds_ratio needs a probability; the {family} family has none",
                                    key=f"estimands.{name}.scale", file=file,
                                    line=loaded.line("estimands", name, "scale"),
                                    hint='use scale = "difference" or "ratio"'))
    needs = {"numpyro": "numpyro", "blackjax": "blackjax", "nutpie": "nutpie"}.get(spec.fit.sampler)
    if needs and importlib.util.find_spec(needs) is None:
        problems.append(Problem(f"the {spec.fit.sampler} sampler needs the '{needs}' package, which is not installed",
                                key="fit.sampler", file=file, line=loaded.line("fit", "sampler"),
                                hint=f"pip install {needs} (jax-based samplers: pip install 'bambi[jax]'), "
                                     f"or use sampler = \"nutpie\" or \"pymc\""))
    valid = set(info.prior_names) | {"sigma", "alpha", "threshold"}
    groups = {g.name for g in info.group_terms}
    for name, prior in spec.model.priors.items():
        where = {"key": dotted(("model", "priors", name)), "file": file,
                 "line": loaded.line("model", "priors", name)}
        if name not in valid:
            problems.append(Problem(f"'{name}' is not a term of the model", hint=did_you_mean(name, valid),
                                    **where))
        elif name in groups:
            sd = prior.param("sigma")
            if prior.dist != "Normal" or sd is None:
                problems.append(Problem("a group term's prior is Normal(0, <scale prior>)", got=str(prior),
                                        hint='e.g. "Normal(0, HalfNormal(1))"', **where))
            elif isinstance(sd, PriorSpec) and sd.dist not in POSITIVE:
                problems.append(Problem(f"the group standard deviation needs a positive distribution, not {sd.dist}",
                                        got=str(prior), hint=f"use one of {', '.join(sorted(POSITIVE))}",
                                        **where))
    if problems:
        raise SpecError(problems)
    return info


def check(path, *, overrides=()) -> Plan:
    """Validate the spec, the files, columns, levels, terms and population coverage."""
    from mrp_formula.fitting import plan_and_model

    return plan_and_model(path, overrides)[0]


def default_out(loaded: LoadedSpec) -> Path:
    if loaded.spec.report.out:
        return Path(loaded.spec.report.out)
    return Path.cwd() / "runs" / loaded.spec.name


def run(path, *, out=None, overrides=(), progress: bool = False, block: int | None = None,
        refit: bool = False, cache: bool = True) -> RunResult:
    """Run the spec end to end and write the run folder.

    The posterior is reused from the cache beside the run folder while the model part of the
    spec and the fitted data are unchanged; ``refit=True`` forces a new fit.
    """
    from mrp_formula.cache import CACHE_DIR
    from mrp_formula.fitting import fit_or_reuse, prepared_plan
    from mrp_formula.predict import predictor as make_predictor

    timings = {}
    t0 = time.perf_counter()
    plan = prepared_plan(path, overrides)
    loaded, info, tables = plan.loaded, plan.info, plan.tables
    timings["prepare"] = time.perf_counter() - t0

    out_dir = Path(out) if out else default_out(loaded)
    fitted_ = fit_or_reuse(plan, None, [out_dir.resolve().parent / CACHE_DIR], refit=refit, cache=cache,
                           progress=progress)
    fitted, key, cached, cache_note = fitted_.fit, fitted_.key, fitted_.reused, fitted_.note
    timings["fit"] = fitted.seconds

    t1 = time.perf_counter()
    predictor = make_predictor(plan.fit_plan, loaded.spec.model.link, fitted.posterior, tables, info,
                               seed=loaded.spec.fit.seed)
    spec = loaded.spec
    pieces = est_mod.plan(spec.estimands, tables.population_vars)
    kwargs = {"block": block} if block else {}
    reduced = poststratify(tables.population, predictor, est_mod.requests(pieces),
                           n_samples=predictor.n_samples, **kwargs)
    group_cols = est_mod.group_columns(spec.estimands)
    ed = est_mod.assemble(pieces, reduced, n_chains=predictor.n_chains, n_draws=predictor.n_draws,
                          group_columns=group_cols, categories=predictor.categories)
    table = est_mod.summarise(ed, spec.estimands, ci_prob=spec.report.ci_prob, ci_kind=spec.report.ci_kind)
    draws = est_mod.long_draws(ed)
    timings["poststratify"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    family = spec.model.family
    table = pd.concat([table, classical.raw_and_weighted(pieces, tables, info, family, predictor.categories,
                                                         group_cols)], axis=1)
    table = _ordered(table, group_cols)
    ppc_table = classical.ppc(tables, info, family, predictor.categories, predictor,
                              predictor.n_samples, spec.report.ci_prob, spec.report.ci_kind,
                              posterior=fitted.posterior, seed=spec.fit.seed)
    cov = classical.coverage(tables, info, family, predictor.categories)
    srm = classical.srm_check(tables, spec.data.allocation) if spec.data.allocation else []
    timings["checks"] = time.perf_counter() - t2

    diag = fit_diagnostics(fitted.posterior, ed.draws, predictor.n_chains, predictor.n_draws)
    thresholds = Thresholds(rhat_max=spec.report.rhat_max, ess_min=spec.report.ess_min,
                            divergences_max=spec.report.divergences_max, target_accept=spec.fit.target_accept)
    warnings_ = tuple(diag.warnings(thresholds)) + tuple(n for n in srm if n.startswith("sample ratio mismatch"))
    cache_notes = (cache_note,) if cache_note else ()
    notes = (plan.notes + cache_notes + tuple(cov.notes())
             + tuple(n for n in srm if not n.startswith("sample ratio mismatch")))
    manifest = _manifest(plan, fitted, diag, timings, notes + warnings_)
    manifest["fit_cache"] = {"key": key, "reused": cached}
    manifest["spec"]["overrides"] = list(overrides)  # spec.toml is the file; these were applied on top
    manifest["coverage"] = cov.to_json()
    manifest["diagnostics"]["failed"] = diag.problems(thresholds)
    manifest["warnings"] = list(warnings_)
    with staged_dir(out_dir) as tmp:
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
    return RunResult(estimands=table, draws=draws, posterior=fitted.posterior, diagnostics=diag,
                     out=out_dir, notes=notes, manifest=manifest, warnings=warnings_,
                     failed=tuple(diag.problems(thresholds)) + tuple(w for w in warnings_ if "mismatch" in w),
                     ppc=ppc_table)


def _plots(folder: Path, table, draws, posterior, ppc_table, spec) -> str:
    """Write the PNGs; a plot that fails costs a note, never the results."""
    try:
        from mrp_formula.plots import write_plots

        ropes = {n: tuple(e.rope) for n, e in spec.estimands.items() if e.rope is not None}
        write_plots(folder, estimands=table, draws=draws, posterior=posterior, ppc=ppc_table,
                    ci_prob=spec.report.ci_prob, ci_kind=spec.report.ci_kind, ropes=ropes)
    except Exception as exc:  # plotting is a report, not a result
        return f"plots were not written ({type(exc).__name__}: {exc}); the tables are complete"
    return ""


SUMMARY = ["mean", "median", "sd", "lower", "upper", "ci_prob", "ci_kind", "p_direction", "p_in_rope",
           "chance_to_win", "expected_loss_first", "expected_loss_second", "raw", "weighted", "ess_bulk", "r_hat"]


def _ordered(table: pd.DataFrame, group_cols: list[str]) -> pd.DataFrame:
    """Columns in a stable order: labels, the summary, decision numbers, raw/weighted, diagnostics."""
    first = ["estimand"] + [c for c in group_cols + ["category"] if c in table] + ["scale"]
    rest = [c for c in SUMMARY if c in table] + [c for c in table if c not in first and c not in SUMMARY]
    return table[first + rest]


def _manifest(plan: Plan, fitted, diag: Diagnostics, timings: dict, notes) -> dict:
    from mrp_formula.model import versions

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
        "tables": plan.tables.stats,
        "new_levels": {k: list(v) for k, v in plan.tables.new_levels.items()},
        "new_level_weight_share": plan.tables.new_level_share,
        "versions": versions(),
        "diagnostics": diag.to_json(),
        "notes": list(notes),
    }
