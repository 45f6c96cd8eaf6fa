"""Spec -> tables: the sample and the population cells, read, renamed, recoded, joined,
checked against the formula and the estimands, and frozen.

Every problem found is collected and raised at once as a :class:`DataError`
(or :class:`SpecError` when the spec names something that cannot exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from mrp_formula.data.canonical import FREQ, canonical_order, count_identical
from mrp_formula.data.columns import drop_missing, join_table, recode_columns, rename_columns
from mrp_formula.data.outcome import check_outcome
from mrp_formula.data.population import WEIGHT
from mrp_formula.data.population_table import (check_declared_new, check_estimands, find_new_levels, new_level_source,
                                               population_cells, population_probe, unknown_common_levels)
from mrp_formula.data.read import read_collapsed, check_query, read_source, sample_name
from mrp_formula.data.weights import check_frequency_weights, frequency_weights
from mrp_formula.errors import DataError, MrpError, ProblemList, SpecError, did_you_mean
from mrp_formula.notes import Note
from mrp_formula.spec.families import FAMILIES
from mrp_formula.spec.formula import FormulaInfo
from mrp_formula.spec.levels import canon_series
from mrp_formula.spec.levels import natural_sort as _natural_sort
from mrp_formula.spec.tree import LoadedSpec


@dataclass(frozen=True)
class Variable:
    name: str
    categorical: bool
    levels: tuple[str, ...] = ()  # sample levels in model order (categorical only)


@dataclass(frozen=True)
class Tables:
    """The prepared inputs of the model and of poststratification."""

    sample: pd.DataFrame  # one row per observation (or cell), model columns only
    population: pd.DataFrame  # unique cells of the population variables, weight column WEIGHT
    variables: dict[str, Variable]
    population_vars: tuple[str, ...]
    new_levels: dict[str, tuple[str, ...]]  # group factor -> population levels absent from the sample
    new_level_share: dict[str, float]  # group factor -> share of population weight on new levels
    notes: tuple[Note, ...] = ()
    stats: dict = field(default_factory=dict)
    weights: str | None = None  # column of frequency weights in `sample`, if any


def _without(absent: list[str], loaded: LoadedSpec, info: FormulaInfo) -> list:
    """The problems the rest of the checks (the sample's values, the population, the estimands)
    find in a model without the terms of the predictors the sample lacks, so that those do not hide
    the others: only problems that do not name a variable those terms held (a missing predictor,
    or one met only in a term with it: what is said of them would follow from the reduction)."""
    gone = set(absent)
    terms = dict(info.common_term_vars)
    reduced = replace(info, common_terms=tuple(t for t in info.common_terms if not set(terms.get(t, ())) & gone),
                      common_vars=tuple(v for v in info.common_vars
                                        if v not in gone and (not terms or any(v in vs and not set(vs) & gone
                                                                               for vs in terms.values()))),
                      common_term_vars=tuple((t, vs) for t, vs in info.common_term_vars if not set(vs) & gone),
                      group_terms=tuple(g for g in info.group_terms if not set(g.expr_vars + g.factor_vars) & gone))
    lost = frozenset(set(info.rhs_vars) - set(reduced.rhs_vars))
    try:
        prepare(loaded, reduced, _absent=lost)
    except MrpError as exc:
        return [p for p in exc.problems if not any(_names(p, v) for v in lost)]
    return []


def _names(problem, var: str) -> bool:
    """Whether ``problem`` is about ``var``: it quotes it, or its key is a table entry of it
    (``model.levels.VAR``, ``population.margins.VAR``; not ``population.source``)."""
    parts = problem.key.split(".")
    return f"'{var}'" in problem.message or (len(parts) >= 3 and parts[-1] == var)


def _raise_with_population(problems: ProblemList, loaded: LoadedSpec, info: FormulaInfo,
                           held: ProblemList | None = None) -> None:
    """Raise the sample's (or the population's) problems with what the population table alone shows
    (its file, weight column and values, the estimands' `by`): a spec mistake among them makes it the
    spec's error. ``held``: problems found earlier that did not stop the checks (missing values),
    raised with the rest."""
    if not problems:
        return
    known = problems.items + (held.items if held else [])
    spec_problems, data_problems = population_probe(loaded, info, known)
    raise (SpecError if spec_problems else DataError)(known + spec_problems + data_problems)


def prepare(loaded: LoadedSpec, info: FormulaInfo, *, _absent: frozenset = frozenset()) -> Tables:
    """Read and check the sample and the population; raise with every problem found. (``_absent``:
    the predictors of the formula that :func:`_without` left out, which the checks of the spec's
    own keys skip.)"""
    spec = loaded.spec
    file = str(loaded.path)
    problems = ProblemList(file=file)
    notes: list[Note] = []
    join_cache: dict = {}

    # --- the spec's SQL: one read-only SELECT each, checked before anything is read
    for section in ("data", "population"):
        query = getattr(spec, section).query
        if query is not None:
            try:
                check_query(query, key=f"{section}.query", file=file, line=loaded.line(section, "query"))
            except SpecError as exc:
                problems.extend(exc.problems)
    problems.raise_if_any(SpecError)

    # --- sample
    weights = spec.data.weights
    collapsed = read_collapsed(loaded, info)  # identical rows counted by DuckDB, when the model allows it
    if collapsed is not None:
        raw, present = collapsed
        replaced = [d for src, d in spec.data.rename.items() if d in present and src in present]
        if replaced:
            notes.append(Note("data.rename", f"data.rename replaces existing column(s) {', '.join(map(repr, replaced))}"))
        weights = FREQ
        rows_in = int(raw[FREQ].sum())
        notes.append(Note("data.collapsed", f"read {rows_in} sample rows as {len(raw)} distinct rows (DuckDB)"))
    else:
        try:
            raw = read_source(loaded, "data")
        except DataError as exc:  # no sample to check: the population's problems come with it
            problems.extend(exc.problems)
            _raise_with_population(problems, loaded, info)
        rows_in = len(raw)
    sample = rename_columns(raw, spec.data.rename, "data", loaded, problems, notes)
    sample = join_table(sample, "sample", loaded, problems, join_cache)
    sample = recode_columns(sample, spec.data.recode, "data", loaded, problems)

    needed = list(dict.fromkeys(list(info.response_vars) + list(info.rhs_vars)))
    if weights == FREQ:
        needed.append(FREQ)
    elif weights:
        sample = frequency_weights(sample, spec.data.weights, loaded, problems)
        needed.append(spec.data.weights)
    absent = []
    for var in needed:
        if var in sample.columns or var == weights:
            continue
        absent.append(var)
        role = "response" if var in info.response_vars else "predictor"
        problems.add(f"{role} '{var}' is not a column of {sample_name(loaded)}", key="model.formula",
                     line=loaded.line("model", "formula"),
                     hint=did_you_mean(var, [c for c in sample.columns if c != FREQ]))  # not our row count
    if absent and not problems.items[:-len(absent)] and not set(absent) & set(info.response_vars):
        problems.extend(_without(absent, loaded, info))
    _raise_with_population(problems, loaded, info)
    sample = sample[needed].copy()

    # missing values with missing = "error": a problem, and the rows left out so that the checks go on
    # (a misspelt population level is then said with it, not after it is mended)
    held = ProblemList(file=file)
    sample, count, dropped = drop_missing(sample, weights, rows_in, loaded, held, notes)
    if len(sample) == 0:
        problems.add("no sample rows left", key=loaded.source_label("data"), line=loaded.line("data", "source"))
    _raise_with_population(problems, loaded, info, held)

    check_outcome(sample, info, spec.model.family, loaded, problems, notes)
    if spec.data.weights and spec.data.weights_kind != "frequency":
        check_frequency_weights(sample, spec.data.weights, info, spec.model.family, loaded, problems)
        if problems:
            raise DataError(held.items + problems.items)
    if weights and not FAMILIES[spec.model.family].aggregatable:
        # Frequency weights for families fitted row by row: each row repeated that many times
        # (exact; binary families sum them into cells instead).
        w = sample[weights].to_numpy(dtype=np.int64)
        sample = sample.loc[sample.index.repeat(w)].drop(columns=[weights]).reset_index(drop=True)
        count = np.ones(len(sample))
        notes.append(Note("data.frequency_weights", f"frequency weights in '{weights}': {len(sample)} weighted rows fitted"))
        weights = None

    # variable roles
    variables: dict[str, Variable] = {}
    for var in info.rhs_vars:
        categorical = (var in info.factor_vars or var in spec.model.levels
                       or not pd.api.types.is_numeric_dtype(sample[var])
                       or pd.api.types.is_bool_dtype(sample[var]))
        if categorical:
            sample[var] = canon_series(sample[var])
            present = set(sample[var])
            if var in spec.model.levels:
                order = list(spec.model.levels[var])
                absent = sorted(present - set(order))
                if absent:
                    problems.add(f"levels {absent} of '{var}' occur in the sample but are not listed",
                                 key=f"model.levels.{var}", line=loaded.line("model", "levels", var),
                                 hint="list every level; the first is the reference")
                unused = [lv for lv in order if lv not in present]
                structured = getattr(spec.model.structure.get(var), "kind", "iid") != "iid"
                if unused and not structured:  # a structured group's order also places population levels
                    problems.add(f"level(s) {unused} of '{var}' do not occur in the sample",
                                 key=f"model.levels.{var}", line=loaded.line("model", "levels", var),
                                 hint=did_you_mean(unused[0], present))
                order = [lv for lv in order if lv in present]
            else:
                order = _natural_sort(present)
            variables[var] = Variable(var, True, tuple(order))
        else:
            variables[var] = Variable(var, False)
    if FAMILIES[spec.model.family].has_categories:
        resp = info.response_vars[0]
        sample[resp] = canon_series(sample[resp])
        present = set(sample[resp])
        order = list(spec.model.levels.get(resp, _natural_sort(present)))
        absent = sorted(present - set(order))
        if absent:
            problems.add(f"response levels {absent} occur in the sample but are not listed",
                         key=f"model.levels.{resp}", line=loaded.line("model", "levels", resp),
                         hint="list every category, in order")
        elif len(present) < 2:
            problems.add(f"the {spec.model.family} response '{resp}' needs at least two categories",
                         key="model.formula", line=loaded.line("model", "formula"))
        else:
            sample[resp] = pd.Categorical(sample[resp], categories=[lv for lv in order if lv in present],
                                          ordered=True)
    for var in spec.model.levels:
        if var not in info.rhs_vars and var not in info.response_vars and var not in _absent:
            problems.add(f"'{var}' is not a predictor in the formula", key=f"model.levels.{var}",
                         line=loaded.line("model", "levels", var), hint=did_you_mean(var, info.rhs_vars))
    if problems:
        raise DataError(held.items + problems.items)
    for var, v in variables.items():
        if v.categorical:
            sample[var] = pd.Categorical(sample[var], categories=list(v.levels), ordered=True)
    # One canonical form whatever the file's layout: binary outcomes as distinct rows with their count
    # (however the rows were read, repeated or weighted), every sample in a fixed row order.
    if FAMILIES[spec.model.family].aggregatable and (weights or spec.model.aggregate != "never"):
        sample, weights = count_identical(sample, weights), FREQ
    sample = canonical_order(sample)

    # --- population
    population, pop_notes, pop_stats = population_cells(loaded, info, sample, variables, problems, join_cache,
                                                        weights, held=held)
    notes += pop_notes
    _raise_with_population(problems, loaded, info, held)

    data_problems = ProblemList(file=file)
    check_estimands(loaded, info, variables, population, problems, data_problems,
                     pop_stats.get("population_columns", []), _absent)
    check_declared_new(loaded, info, problems)
    # the group factors' levels too, so that a common predictor's unknown level does not hide a
    # group level's typo (all problems at once)
    new_levels, shares = find_new_levels(info, sample, population, loaded, data_problems, notes,
                                         reported=frozenset(unknown_common_levels(info, variables, population)))
    if data_problems:  # with a mistake of the spec (its estimands, declared_new) among them: the spec's error
        raise (SpecError if problems else DataError)(held.items + problems.items + data_problems.items)
    if problems:
        raise SpecError(held.items + problems.items)
    held.raise_if_any(DataError)
    for factor, levels in new_levels.items():
        notes.append(Note("population.new_levels", f"{len(levels)} population level(s) of '{factor}' have no sample "
                     f"({', '.join(levels[:8])}{' ...' if len(levels) > 8 else ''}; "
                     f"{shares[factor]:.1%} of the population weight): " + new_level_source(spec, factor),
                     "warning"))
    stats = {"sample_rows_in": rows_in, "sample_rows_used": int(count.sum()), "dropped_missing": dropped}
    stats.update(pop_stats)
    return Tables(sample=sample, population=population, variables=variables,
                  population_vars=tuple(c for c in population.columns if c != WEIGHT),
                  new_levels=new_levels, new_level_share=shares, notes=tuple(notes), stats=stats,
                  weights=weights)
