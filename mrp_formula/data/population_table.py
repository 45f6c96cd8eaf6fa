"""The population cells: read (or built from margins), checked against the model and the
estimands, summed into unique cells; the population's new levels of each group factor."""

from __future__ import annotations

from pathlib import Path

import json
import re

import difflib

import numpy as np
import pandas as pd

from mrp_formula.data.canonical import FREQ, canonical_order, factor_keys
from mrp_formula.data.columns import join_table, recode_columns, rename_columns
from mrp_formula.data.population import WEIGHT, independent_joint, rake
from mrp_formula.data.read import population_name, read_source
from mrp_formula.data.weights import check_population_weights
from mrp_formula.errors import MrpError, ProblemList, SpecError, closest, did_you_mean
from mrp_formula.spec.tree import dotted, recode_example, toml_key
from mrp_formula.notes import Note, warning
from mrp_formula.spec.levels import canon, canon_series
from mrp_formula.spec.levels import natural_sort as _natural_sort


def population_cells(loaded, info, sample, variables, problems, join_cache, weights=None, held=None):
    spec = loaded.spec
    pop_spec = spec.population
    notes, stats = [], {}
    contrast_vars = {v for e in spec.estimands.values() for v in (e.contrast or {})}
    by_vars = {v for e in spec.estimands.values() for v in e.by}
    if pop_spec.margins is not None:
        for var, levels in pop_spec.margins.items():
            key = f"population.margins.{var}"
            line = loaded.line("population", "margins", var)
            values = np.array(list(levels.values()), dtype=float)
            if (values < 0).any() or not np.isfinite(values).all():
                problems.add("shares and counts must be non-negative numbers", key=key, line=line,
                             got=str(levels))
            elif values.sum() <= 0:
                problems.add("the weights sum to zero", key=key, line=line)
            elif (values <= 1).all() and abs(values.sum() - 1) > 1e-6:
                problems.add(f"shares must sum to 1 (they sum to {values.sum():.6g})", key=key, line=line,
                             hint="fix the shares, or give counts")
            if var not in variables and var not in by_vars:
                problems.add(f"'{var}' is neither a model predictor nor a `by` variable", key=key, line=line,
                             hint=did_you_mean(var, list(variables)))
        if problems:
            return pd.DataFrame(), notes, stats
        margins = {v: {canon(k): w for k, w in lv.items()} for v, lv in pop_spec.margins.items()}
        if pop_spec.joint == "rake":
            miss = [(v, lv) for v, m in margins.items() for lv in m if v in sample and lv not in set(sample[v].astype(str))]
            for v, lv in miss:
                unused = set(sample[v].astype(str)) - set(margins[v])  # sample levels the margins lack
                like = _closest(lv, unused) if unused else "..."
                problems.add(f"level '{lv}' of '{v}' has no sample rows, so raking cannot reach it",
                             key=f"population.margins.{v}", line=loaded.line("population", "margins", v),
                             hint=f"did you mean '{like}'? write the sample's level in the margins" if like != "..."
                             else 'use joint = "independent", which does not need sample rows at every level')
            absent = [v for v in margins if v not in sample.columns]
            for v in absent:
                problems.add(f"raking needs '{v}' in the sample", key=f"population.margins.{v}",
                             line=loaded.line("population", "margins", v), hint='use joint = "independent"')
            for v, m in margins.items():
                if v not in sample.columns:
                    continue
                unlisted = _natural_sort(set(sample[v].astype(str)) - set(m))
                if unlisted:
                    shown = ", ".join(f"'{lv}'" for lv in unlisted[:10]) + (" ..." if len(unlisted) > 10 else "")
                    problems.add(f"sample level(s) {shown} of '{v}' are not in the margins, so raking cannot "
                                 f"weight them", key=f"population.margins.{v}",
                                 line=loaded.line("population", "margins", v),
                                 hint=f"recode them onto listed levels ("
                                      f"{recode_example('data', v, {unlisted[0]: _closest(unlisted[0], m)})}), "
                                      f"write the sample's levels in the margins, or add them to the margins with their "
                                      f"population share")
            if problems:
                return pd.DataFrame(), notes, stats
            count = sample[weights].astype(float) if weights else pd.Series(1.0, index=sample.index)
            seed_cells = sample.assign(**{WEIGHT: count}).groupby(list(margins), observed=True)[WEIGHT].sum()
            seed_cells = seed_cells.reset_index()
            for v in margins:
                seed_cells[v] = seed_cells[v].astype(str)
            result = rake(seed_cells, margins)
            stats.update(rake_iterations=result.iterations, rake_max_error=result.max_error)
            notes.append(Note("population.raked", f"raked the sample's joint of {', '.join(margins)} to the margins in "
                         f"{result.iterations} iterations (max error {result.max_error:.1e})"))
            if not result.converged:
                problems.add(f"raking did not converge (max error {result.max_error:.2e})",
                             key="population.joint", line=loaded.line("population", "joint"))
            cells = result.cells
        else:
            cells = independent_joint(margins)
        stats["population_rows"] = int(len(cells))
    else:
        raw = read_source(loaded, "population")
        stats["population_rows"] = int(len(raw))
        cells = rename_columns(raw, pop_spec.rename, "population", loaded, problems, notes)
        cells = join_table(cells, "population", loaded, problems, join_cache)
        cells = recode_columns(cells, pop_spec.recode, "population", loaded, problems)
        if pop_spec.weight is not None:
            if pop_spec.weight not in cells.columns:
                _weight_column_missing(loaded, cells.columns, problems)
                w = pd.Series(1.0, index=cells.index)
            else:
                if pop_spec.missing == "drop":  # a row without a weight is a row with a missing value
                    empty = cells[pop_spec.weight].isna()
                    if empty.any():
                        notes.append(Note("population.missing_dropped",
                                          f"dropped {int(empty.sum())} population rows without a weight in "
                                          f"'{pop_spec.weight}' (missing = \"drop\")"))
                        cells = cells.loc[~empty]
                # bad weights (held: the levels are checked all the same) count as 0 meanwhile
                w = check_population_weights(cells[pop_spec.weight], pop_spec.weight, loaded,
                                             problems if held is None else held)
            cells = cells.assign(**{WEIGHT: w})
        else:
            cells = cells.assign(**{WEIGHT: 1.0})
    stats["population_columns"] = [c for c in cells.columns if c != WEIGHT]

    keep = [v for v in list(variables) + sorted(by_vars | contrast_vars) if v in cells.columns]
    keep = list(dict.fromkeys(keep))
    cells = cells[keep + [WEIGHT]].copy()
    # columns of a join whose keys did not all match: their gaps are that problem's, not `missing`'s
    failed = {c for i, j in enumerate(spec.join) if any(p.key.startswith(f"join[{i}]") for p in problems.items)
              for c in j.columns}
    na = cells[[c for c in keep if c not in failed]].isna().any(axis=1)
    if na.any():
        if pop_spec.missing == "drop":
            notes.append(Note("population.missing_dropped", f"dropped {int(na.sum())} population rows with missing values"))
            cells = cells.loc[~na]
        else:
            detail = ", ".join(f"{c}: {int(n)}" for c, n in cells[keep].isna().sum().items() if n)
            problems.add(f"missing values in population column(s) ({detail})", key="population.missing",
                         line=loaded.line("population", "missing") or loaded.line("population"),
                         hint='set `missing = "drop"` in [population]')
    if problems:
        return pd.DataFrame(), notes, stats
    for var in keep:
        v = variables.get(var)
        if v is None or v.categorical:
            cells[var] = canon_series(cells[var])
        else:
            cells[var] = pd.to_numeric(cells[var], errors="coerce")
            if cells[var].isna().any():
                problems.add(f"population column '{var}' must be numeric, as in the sample", key="population",
                             line=loaded.line("population"))
    if problems:
        return pd.DataFrame(), notes, stats
    cells = canonical_order(cells)  # sums in a fixed order: the cells do not depend on the table's row order
    cells = cells.groupby(keep, observed=True, sort=True)[WEIGHT].sum().reset_index() if keep else \
        pd.DataFrame({WEIGHT: [cells[WEIGHT].sum()]})
    cells = cells.loc[cells[WEIGHT] > 0].reset_index(drop=True)
    stats["population_cells"] = int(len(cells))
    return cells, notes, stats


def check_estimands(loaded, info, variables, population, problems, data_problems, pop_columns, absent=frozenset()):
    """Estimands against the population: spec mistakes go to ``problems`` (exit 3), tables that
    lack a column to ``data_problems`` (exit 4). What names a predictor in ``absent`` (the formula's,
    missing from the sample: ``tables._without``) is not checked."""
    spec = loaded.spec
    analyst_set = {v for e in spec.estimands.values() for v in list(e.at) + list(e.contrast or {})}
    pop_vars = set(population.columns) - {WEIGHT}
    source = "population.margins" if spec.population.margins is not None else loaded.source_label("population")
    where_pop = loaded.line(*source.split(" ")[0].split("."))
    lacking: dict[str, list[str]] = {}
    for name, est in spec.estimands.items():
        base = ("estimands", name)
        for var in est.by:
            if var in pop_vars:
                continue
            key, line = f"estimands.{name}.by", loaded.line(*base, "by")
            if var in variables:
                if var in analyst_set:
                    problems.add(f"'{var}' is not a population variable: the estimands set it", key=key,
                                 line=line, hint=f"to report each level use at = {{ {var} = [...] }}")
                continue  # a model variable the population lacks: reported once, below
            _by_missing(loaded, name, var, [c for c in pop_columns if c not in (spec.population.weight, WEIGHT)],
                        problems, data_problems)
        set_vars = dict(est.at)
        if est.contrast:
            set_vars.update(est.contrast)
        for var, levels in set_vars.items():
            if var in absent:
                continue
            where = "contrast" if est.contrast and var in est.contrast else "at"
            key = f"estimands.{name}.{where}.{var}"
            if var not in variables:
                problems.add(f"'{var}' is not a predictor in the formula", key=key, line=loaded.line(*base, where),
                             hint=did_you_mean(var, variables))
                continue
            v = variables[var]
            if not v.categorical:
                continue
            for lv in levels:
                if lv not in v.levels:
                    problems.add(f"level '{lv}' of '{var}' does not occur in the sample", key=key,
                                 line=loaded.line(*base, where), hint=did_you_mean(lv, v.levels))
        for var in info.vars_used(est.exclude):
            if var not in pop_vars and var not in set_vars:
                lacking.setdefault(var, []).append(name)
        for term in est.exclude:
            if term not in info.prior_names and not set(re.split(r"\W+", term)) & absent:
                problems.add(f"'{term}' is not a term of the model", key=f"estimands.{name}.exclude",
                             line=loaded.line(*base, "exclude"), hint=did_you_mean(term, info.prior_names))
    table = ("the population margins" if spec.population.margins is not None else
             population_name(loaded) + (f" {Path(spec.population.source).name}" if spec.population.source
                                        and loaded.frame("population") is None else ""))
    for var, names in lacking.items():
        if not names:
            continue
        if len(names) == len(spec.estimands):  # no estimand sets it: the table lacks it
            data_problems.add(f"the model uses '{var}', which the population lacks ({table} has no column "
                              f"'{var}')", key=source, line=where_pop,
                              hint=f"add a '{var}' column to the population (or a rename), or set it in every "
                                   f"estimand: at = {{ {var} = [...] }}")
        else:  # one problem of the table, naming the estimands that would need it (not one per estimand)
            shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
            data_problems.add(f"the model uses '{var}', which the population lacks ({table} has no column "
                              f"'{var}'), and estimand(s) {shown} do not set it", key=source, line=where_pop,
                              hint=f"add a '{var}' column to the population (or a rename), or set it in those "
                                   f"estimands: at = {{ {var} = [...] }}")
    # common categorical predictors cannot take levels the model never saw
    for var, unknown in unknown_common_levels(info, variables, population).items():
        levels = variables[var].levels
        key = f"population.margins.{var}" if spec.population.margins is not None else "population"
        close, like = did_you_mean(unknown[0], levels), _closest(unknown[0], levels)
        example = ("" if like == "..." else f" ({recode_example('population', var, {unknown[0]: like})})"
                   if spec.population.margins is None else f" (write '{like}' in {key})")
        data_problems.add(f"population level(s) {unknown[:8]} of '{var}' are not in the sample, and '{var}' "
                          f"is a common (non-group) predictor", key=key, line=loaded.line(*key.split(".")),
                          hint=(close + "; " if close.startswith("did you mean") else "")
                          + f"recode them onto sample levels{example}, or model '{var}' as a group term (1|{var})")


def _closest(level: str, levels) -> str:
    """The level ``level`` most likely meant, else "..." (for a recode example)."""
    found = closest(level, levels)
    return "..." if found is None else found


def population_probe(loaded, info, known) -> tuple[list, list]:
    """What the population table shows without the sample: its file, its weight column and values
    and the estimands' `by` variables, for a :func:`~mrp_formula.data.tables.prepare` that stops at the
    sample or the population, so that their problems come with the sample's (all at once).
    (spec problems, data problems), without those in ``known``."""
    spec = loaded.spec
    if spec.population.margins is not None:
        return [], []
    seen = {(p.key, p.message) for p in known}
    fresh = lambda items: [p for p in items if (p.key, p.message) not in seen]  # noqa: E731
    spec_problems, data_problems = ProblemList(file=str(loaded.path)), ProblemList(file=str(loaded.path))
    try:
        raw = read_source(loaded, "population")
    except MrpError as exc:  # a table that cannot be read (its file, its query): said as it is
        (spec_problems if isinstance(exc, SpecError) else data_problems).extend(exc.problems)
        return fresh(spec_problems.items), fresh(data_problems.items)
    cells = rename_columns(raw, spec.population.rename, "population", loaded, data_problems, [])
    joined = set()  # the columns of a join that failed: missing as its consequence, not said again
    try:
        cells = join_table(cells, "population", loaded, data_problems, {})
    except MrpError as exc:  # a join file that cannot be read: the table's own columns still checked
        data_problems.extend(exc.problems)
        joined = {c for j in spec.join for c in j.columns}
    weight = spec.population.weight
    if weight is not None and weight not in cells.columns:
        _weight_column_missing(loaded, cells.columns, data_problems)
    elif weight is not None:  # its values: missing (unless dropped), not numbers, negative
        col = cells[weight]
        check_population_weights(col.dropna() if spec.population.missing == "drop" else col, weight, loaded,
                                 data_problems)
    columns = [c for c in cells.columns if c != weight]
    for name, est in spec.estimands.items():
        for var in est.by:
            if var not in columns and var not in info.rhs_vars and var not in joined:  # model variables: the full check's
                _by_missing(loaded, name, var, columns, spec_problems, data_problems)
    return fresh(spec_problems.items), fresh(data_problems.items)


def _weight_column_missing(loaded, columns, problems) -> None:
    weight = loaded.spec.population.weight
    problems.add(f"weight column '{weight}' is not in {population_name(loaded)}", key="population.weight",
                 line=loaded.line("population", "weight"), hint=did_you_mean(weight, columns))


def _by_missing(loaded, name: str, var: str, columns, problems, data_problems) -> None:
    """A `by` variable the population table lacks: a typo of one of its columns (a spec mistake),
    else a column to add (the table's)."""
    key, line = f"estimands.{name}.by", loaded.line("estimands", name, "by")
    close = did_you_mean(var, columns)
    if close.startswith("did you mean"):
        problems.add(f"'{var}' is not a population variable", key=key, line=line, hint=close)
    else:
        data_problems.add(f"{population_name(loaded)} has no column '{var}'", key=key, line=line,
                          hint=f"add it to the population table, or remove it from `by`; {close}")


def unknown_common_levels(info, variables, population) -> dict[str, list[str]]:
    """Population levels of each categorical common predictor that the sample lacks (the model
    has no coefficient for them: an error, which also covers a group factor the predictor is part of)."""
    group_only = set(info.factor_vars) - set(info.common_vars)
    out = {}
    for var, v in variables.items():
        if v.categorical and var in population.columns and var not in group_only:
            unknown = sorted(set(population[var]) - set(v.levels))
            if unknown:
                out[var] = unknown
    return out


def check_declared_new(loaded, info, problems) -> None:
    """``population.declared_new`` names group factors of the formula (a spec error otherwise)."""
    factors = list(dict.fromkeys(g.factor for g in info.group_terms))
    for factor in loaded.spec.population.declared_new:
        if factor not in factors:
            problems.add(f"'{factor}' is not a group factor of the formula", key=f"population.declared_new.{factor}",
                         line=loaded.line("population", "declared_new", factor) or
                         loaded.line("population", "declared_new"),
                         hint=did_you_mean(factor, factors) if factors else "the formula has no group term (1|g)")


def new_level_source(spec, factor: str) -> str:
    return new_level_origin(getattr(spec.model.structure.get(factor), "kind", "iid"), factor)


def new_level_origin(kind: str, factor: str) -> str:
    """Where the effects of a group factor's levels without sample come from, by its structure."""
    if kind == "iid":
        return "their effects are drawn from the fitted group distribution"
    return f"their effects come from the {kind} structure of model.structure.{factor}"


UNUSED_SHARE = 0.05  # sample levels the population lacks, from this share of the sample on: a warning
UNUSED_ALONE_SHARE = 0.2  # the same when the population has no level the sample lacks (it may be a subset)


def _warn_unused_sample_levels(g, unused: set, sample, loaded, where: dict, notes: list,
                               new: tuple = (), new_share: float = 0.0) -> None:
    """A warning when sample levels of a group factor that hold a notable share of the sample
    (``UNUSED_SHARE``) never occur in the population while the population has levels the sample
    lacks: a typo in the population table (``55+`` written ``65+``) that no "did you mean" caught
    gives exactly that. A population that is a subset of the sample's warns only from
    ``UNUSED_ALONE_SHARE`` of the sample (a population table that lost a fifth of the people the
    survey asked reads as complete otherwise). Not for an ordered structure (rw1, rw2, ar1), whose
    population is often a later time; once a factor."""
    structure = loaded.spec.model.structure.get(g.factor) if len(g.factor_vars) == 1 else None
    if (not unused or getattr(structure, "kind", "iid") in ("rw1", "rw2", "ar1")
            or any(getattr(n, "code", "") == "population.unused_sample_levels" and f"of '{g.factor}'" in n
                   for n in notes)):
        return
    keys = factor_keys(sample, g.factor_vars)
    count = sample[FREQ] if FREQ in sample.columns else pd.Series(1.0, index=sample.index)
    share = float(count[keys.isin(unused).to_numpy()].sum() / count.sum())
    if share < (UNUSED_SHARE if new else UNUSED_ALONE_SHARE):
        return
    levels = _natural_sort(unused)
    shown = ", ".join(f"'{lv}'" for lv in levels[:8]) + (" ..." if len(levels) > 8 else "")
    table = where['key'] if where['key'] != 'population' else population_name(loaded)
    if not new:
        notes.append(warning("population.unused_sample_levels",
                             f"sample level(s) {shown} of '{g.factor}' ({share:.0%} of the sample) are not in "
                             f"{table}: they inform the fit, but the estimates are of a population without "
                             f"them. If the population table should have them, it is incomplete"))
        return
    notes.append(warning("population.unused_sample_levels",
                         f"sample level(s) {shown} of '{g.factor}' ({share:.0%} of the sample) are not in "
                         f"{table}: they "
                         f"inform the fit, but no population cell is predicted "
                         f"at them, while the population's level(s) {_shown(new)} ({new_share:.0%} of its weight) "
                         f"have no sample. If the population names them otherwise, recode one onto the other "
                         f"({_recode_of(g, new, levels)})"))


def _shown(levels) -> str:
    return ", ".join(f"'{lv}'" for lv in list(levels)[:8]) + (" ..." if len(levels) > 8 else "")


def _recode_of(g, new, unused) -> str:
    """``population.recode.age = { "65+" = "55+" }`` when one level is on each side, else the key."""
    if len(g.factor_vars) != 1:
        return "population.recode"
    if len(new) == 1 and len(unused) == 1:
        return recode_example("population", g.factor, {new[0]: unused[0]})
    return dotted(("population", "recode", g.factor))


def find_new_levels(info, sample, population, loaded, problems, notes, reported=frozenset()):
    """Population levels of each group factor that the sample lacks, and their weight share.

    A new level that looks like a typo of a sample level the population lacks (``R3`` vs ``R03``,
    ``South`` vs ``south``) is an error unless ``population.declared_new`` lists it: its weight
    would otherwise silently get a drawn effect instead of the sample level's. A factor made of a
    variable in ``reported`` (a common predictor whose unknown levels are an error already) is not
    checked for typos again."""
    pop_spec = loaded.spec.population
    declared = {f: {canon(lv) for lv in levels} for f, levels in pop_spec.declared_new.items()}
    new, shares = {}, {}
    total = population[WEIGHT].sum()
    for g in info.group_terms:
        if g.factor in new or not all(v in population.columns for v in g.factor_vars):
            continue
        pop_keys = factor_keys(population, g.factor_vars)
        seen = set(factor_keys(sample, g.factor_vars))
        single = len(g.factor_vars) == 1
        if pop_spec.margins is not None and single and g.factor in pop_spec.margins:
            where = {"key": f"population.margins.{g.factor}", "line": loaded.line("population", "margins", g.factor)}
        else:
            where = {"key": "population", "line": loaded.line("population")}
        mine = declared.get(g.factor, set())
        decl_where = {"key": f"population.declared_new.{g.factor}",
                      "line": loaded.line("population", "declared_new", g.factor)
                      or loaded.line("population", "declared_new")}
        for lv in sorted(mine & seen):
            problems.add(f"level '{lv}' of '{g.factor}' is declared new but occurs in the sample", **decl_where,
                         hint="remove it from declared_new")
        for lv in sorted(mine - seen - set(pop_keys)):
            problems.add(f"level '{lv}' of '{g.factor}' is declared new but is not in the population", **decl_where,
                         hint=did_you_mean(lv, sorted(set(pop_keys) - seen)) or "remove it from declared_new")
        mask = ~pop_keys.isin(seen)
        # the population's levels the sample lacks are a typo's other half, if any
        _warn_unused_sample_levels(g, seen - set(pop_keys), sample, loaded, where, notes,
                                   tuple(_natural_sort(set(pop_keys[mask]))),
                                   float(population.loc[mask, WEIGHT].sum() / total) if total > 0 else 0.0)
        if mask.any():
            levels = tuple(_natural_sort(set(pop_keys[mask])))
            new[g.factor] = levels
            shares[g.factor] = float(population.loc[mask, WEIGHT].sum() / total) if total > 0 else 0.0
            unweighted = sorted(seen - set(pop_keys))  # sample levels the population never names
            for lv in levels:
                if lv in mine or set(g.factor_vars) & set(reported):
                    continue
                close = [s for s in unweighted if s.lower() == lv.lower()] or \
                    difflib.get_close_matches(lv, unweighted, n=1, cutoff=0.75)
                if close:
                    share = (float(population.loc[(pop_keys == lv).to_numpy(), WEIGHT].sum() / total)
                             if total > 0 else 0.0)
                    recode = recode_example("population", g.factor, {lv: close[0]}) if single else "population.recode"
                    problems.add(f"population level '{lv}' of '{g.factor}' ({share:.1%} of the population weight) "
                                 f"is not in the sample, and sample level '{close[0]}' is not in the population: "
                                 f"a typo?", **where,
                                 hint=f"recode one onto the other ({recode}), or, if '{lv}' really has no sample, "
                                      f"declare it new: population.declared_new = {{ {toml_key(g.factor)} = "
                                      f"[{json.dumps(lv)}] }}")
            undeclared = [lv for lv in levels if lv not in mine]
            if pop_spec.new_levels == "error" and undeclared:
                problems.add(f"population levels of '{g.factor}' absent from the sample: "
                             f"{', '.join(undeclared[:10])}", key="population.new_levels",
                             line=loaded.line("population", "new_levels"),
                             hint='set new_levels = "sample" to draw their effects from the fitted distribution, '
                                  'or list them in population.declared_new')
    return new, shares
