"""The fit plan, as pure functions of the spec and the prepared tables: aggregation to binomial
cells, the parameterization of each group term, the mass matrix, the resolved priors. Nothing
here imports Bambi or PyMC (:mod:`mrp_formula.model.sampler` does)."""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.errors import DataError, Problem, SpecError
from mrp_formula.notes import warning
from mrp_formula.spec.formula import FormulaInfo, with_response
from mrp_formula.spec.families import FAMILIES
from mrp_formula.predict.cells import DEFAULT_LINK, design_matrices, design_of
from mrp_formula.spec.priors import PriorSpec
from mrp_formula.spec.tree import LoadedSpec, dotted
from mrp_formula.data.canonical import factor_keys
from mrp_formula.data.tables import Tables
from mrp_formula.data.adjacency import read_adjacency
from mrp_formula.model import structure as st
from mrp_formula.model.structure import StructurePlan
from mrp_formula.spec.levels import natural_key, natural_sort

SUCCESSES, TRIALS = "mrp_successes", "mrp_trials"
log = logging.getLogger("mrp_formula")


@dataclass(frozen=True)
class FitPlan:
    """What will be fitted: the data frame handed to Bambi and the formula it gets."""

    data: pd.DataFrame
    formula: str
    family: str
    aggregated: bool
    rows_in: int
    cells: int
    parameterization: dict[str, str] = field(default_factory=dict)  # group term -> centered|noncentered|partial
    centring: dict[str, float] = field(default_factory=dict)  # partial term -> its centring weight w (0 < w < 1)
    parameterization_reason: dict[str, str] = field(default_factory=dict)
    mass_matrix: str = "diagonal"  # nutpie's: low_rank | diagonal
    mass_matrix_reason: str = ""
    priors: tuple["TermPrior", ...] = ()  # every prior of the model, as handed to Bambi
    prior_scale: str = ""  # what the default priors were scaled by (for the notes)
    design: object = field(default=None, compare=False, repr=False)  # predict.Design of data, when made here
    structures: tuple[StructurePlan, ...] = ()  # structured priors of group intercepts (model.structure)
    structure_notes: tuple[str, ...] = ()
    formulas: tuple[tuple[str, str], ...] = ()  # auxiliary parameter -> its formula's right side (model.formulas)

    def prior_of(self, term: str) -> "TermPrior | None":
        return next((p for p in self.priors if p.term == term), None)


def plan_fit(loaded: LoadedSpec, info: FormulaInfo, tables: Tables) -> FitPlan:
    """Decide on aggregation and the parameterization of each group term."""
    spec = loaded.spec.model
    sample = tables.sample
    family, formula = spec.family, info.text
    aggregated = False
    data = sample
    weights = tables.weights
    if FAMILIES[spec.family].aggregatable and (spec.aggregate != "never" or weights):
        data, aggregated = aggregate_cells(sample, info, spec.family, weights=weights,
                                           force=spec.aggregate == "always" or bool(weights))
        if aggregated:
            family, formula = "binomial", with_response(info, f"p({SUCCESSES}, {TRIALS})")
    fit = loaded.spec.fit
    settings = _settings(spec.parameterization, info)
    needed = any(not isinstance(v, str) or v == "auto" for v in settings.values()) or fit.mass_matrix == "auto"
    info_by_term = information(data, info, family, aggregated) if needed else {}
    param, reason = choose_parameterization(info, spec.parameterization, info_by_term)
    mass, mass_reason = choose_mass_matrix(fit.mass_matrix, fit.sampler, info_by_term)
    dm = made = None
    if not aggregated and data is sample and not weights:  # the fit's design is the rows': made once
        dm = _design_matrices(loaded, data, formula, family)
        made = design_of(dm, family, spec.link)
    priors, scale = resolve_priors(loaded, info, tables, dm=dm)
    for tp in priors:  # a fixed sd leaves nothing to reparameterize
        if tp.role == "group" and not tp.component and not any(isinstance(v, Dist) for _, v in tp.prior.params):
            param[tp.term], reason[tp.term] = "centered", "its prior fixes the sd of its effects"
    structures, structure_notes = plan_structures(loaded, info, tables, priors)
    for sp in structures:
        param[sp.term], reason[sp.term] = "noncentered", f"{sp.kind} structure (always non-centred)"
    by_hand = {t: float(w) for t, w in settings.items() if not isinstance(w, str)}
    centring = partial_centring(spec.family, priors, param, reason, info_by_term, by_hand)
    return FitPlan(data=data, formula=formula, family=family, aggregated=aggregated,
                   rows_in=int(tables.stats.get("sample_rows_used", len(sample))), cells=len(data), parameterization=param,
                   centring=centring,
                   parameterization_reason=reason, mass_matrix=mass, mass_matrix_reason=mass_reason,
                   priors=priors, prior_scale=scale, design=made, structures=structures,
                   structure_notes=structure_notes, formulas=formulas_of(loaded))


def formulas_of(loaded: LoadedSpec) -> tuple[tuple[str, str], ...]:
    """``model.formulas`` as (parameter, right side without '~'), sorted by parameter."""
    return tuple((name, text.strip().removeprefix("~").strip())
                 for name, text in sorted(loaded.spec.model.formulas.items()))


# ----------------------------------------------------------------------------- structured priors


def structure_levels(tables: Tables, var: str) -> list[str]:
    """Every level of ``var``: the sample's and the population's."""
    levels = list(tables.variables[var].levels)
    if var in tables.population.columns:
        seen = set(levels)
        levels += [lv for lv in pd.unique(tables.population[var].astype(str)) if lv not in seen]
    return levels


def plan_structures(loaded: LoadedSpec, info: FormulaInfo, tables: Tables,
                    priors=()) -> tuple[tuple[StructurePlan, ...], tuple[str, ...]]:
    """The structured prior of every ``model.structure`` entry that is not iid (the spec checks
    made sure each names the grouping variable of a ``(1|VAR)`` term): its levels in order and its
    covariance factor; problems with the order or the adjacency table are data errors (exit 4)."""
    spec = loaded.spec.model
    file = str(loaded.path)
    out, notes, problems = [], [], []
    for var, entry in spec.structure.items():
        if entry.kind == "iid":
            continue
        term = f"1|{var}"
        where = {"key": dotted(("model", "structure", var)), "file": file,
                 "line": loaded.line("model", "structure", var)}
        levels = structure_levels(tables, var)
        if len(levels) < st.MIN_LEVELS[entry.kind]:
            problems.append(Problem(f"a {entry.kind} structure needs at least {st.MIN_LEVELS[entry.kind]} levels; "
                                    f"'{var}' has {len(levels)}", hint=f"use {var} = \"iid\"", **where))
            continue
        if entry.kind in st.ORDERED:
            if var in spec.levels:
                listed = list(spec.levels[var])
                missing = [lv for lv in levels if lv not in listed]
                stray = [lv for lv in listed if lv not in levels]
                if missing:
                    problems.append(Problem(
                        f"level(s) {missing[:10]} of '{var}' (in the population) are not in model.levels.{var}, "
                        f"which orders the {entry.kind} walk", key=dotted(("model", "levels", var)), file=file,
                        line=loaded.line("model", "levels", var), hint="list every level, in order"))
                    continue
                if stray:
                    problems.append(Problem(
                        f"level(s) {stray[:10]} of model.levels.{var} occur in neither the sample nor the population",
                        key=dotted(("model", "levels", var)), file=file, line=loaded.line("model", "levels", var),
                        hint="remove them, or check their spelling"))
                    continue
                levels, source = listed, f"model.levels.{var}"
            else:
                levels, source = natural_sort(levels), "natural order of the levels"
                by_numbers = sorted(levels, key=_digits_key)
                text = any(natural_key(lv)[0] for lv in levels)  # numbers alone sort by value already
                if text and by_numbers != levels:  # text whose numbers sort otherwise ('100k-200k' before '5k-10k')
                    shown = ", ".join(levels[:6]) + (", ..." if len(levels) > 6 else "")
                    notes.append(warning("structure.text_order",
                                         f"the {entry.kind} structure of '{var}' puts its levels in text order "
                                         f"({shown}), which their numbers would order otherwise: list them in "
                                         f"order in model.levels.{var}, e.g. {json.dumps(by_numbers)}"))
            n = len(levels)
            trend = 0.0
            if entry.kind == "rw2":
                tp = next((p for p in priors if p.term == term), None)
                hyper = tp.prior.param("sigma") if tp is not None else None
                scale = hyper.param("sigma") if isinstance(hyper, Dist) else hyper
                trend = float(scale) if isinstance(scale, (int, float)) else GROUP_SD
            A = st.covariance_factor(entry.kind, n) if entry.kind != "ar1" else None
            out.append(StructurePlan(term=term, factor=var, kind=entry.kind, levels=tuple(levels), factor_matrix=A,
                                     trend_sd=trend, order_source=source))
            _new_level_note(notes, tables, var, entry.kind)
            continue
        adj = read_adjacency(Path(entry.adjacency), key=dotted(("model", "structure", var, "adjacency")), file=file,
                             line=loaded.line("model", "structure", var, "adjacency") or where["line"])
        adj_where = {"key": dotted(("model", "structure", var, "adjacency")), "file": file,
                     "line": loaded.line("model", "structure", var, "adjacency") or where["line"]}
        if adj.header and all(h in set(levels) for h in adj.header):
            problems.append(Problem(
                f"the first row of the adjacency table {Path(entry.adjacency).name} ({', '.join(adj.header)}) was "
                f"read as its header, but it names levels of '{var}': the table has no header row", **adj_where,
                hint="add a header row first, e.g. `area,neighbour`"))
            continue
        absent = [lv for lv in levels if lv not in adj.levels]
        if absent:
            cased = sorted(lv for lv in adj.levels if lv.lower() in {a.lower() for a in absent})
            problems.append(Problem(
                f"level(s) {absent[:10]} of '{var}' are not in the adjacency table {Path(entry.adjacency).name}"
                + (f" (it writes {cased[:6]}: the case differs)" if cased else ""), **adj_where,
                hint="write the levels as the model's data do" if cased else
                "add a row per pair of neighbours; a level without neighbours (an island) is a row with its "
                "name and an empty second column"))
            continue
        if wrong := [lv for lv in adj.not_islands() if lv in set(levels)]:
            notes.append(warning("structure.island_with_neighbours",
                                 f"structure of '{var}': the adjacency table {Path(entry.adjacency).name} writes "
                                 f"{', '.join(wrong[:8])}{' ...' if len(wrong) > 8 else ''} as an island (a row "
                                 f"with an empty second column, or pairing the level with itself), but other rows "
                                 f"give {'it' if len(wrong) == 1 else 'them'} neighbours: read as not an island. "
                                 f"If it is one, remove the rows that pair it with others"))
        levels = natural_sort(levels)
        index = {lv: i for i, lv in enumerate(levels)}
        edges = st.edge_array(len(levels), [(index[a], index[b]) for a, b in adj.pairs
                                            if a in index and b in index])
        dropped = sorted(adj.levels - set(levels))
        # a level of the table that is a level of the model but for its case is a typo (an error); one
        # merely close to a level (a county's neighbour code) may be an area the model does not have
        typos = {lv: m for lv in dropped for m in levels if m.lower() == lv.lower()}
        for lv, m in typos.items():
            pairs = [f"{a}-{b}" for a, b in adj.pairs if lv in (a, b)]
            problems.append(Problem(
                f"level '{lv}' of the adjacency table {Path(entry.adjacency).name} is not a level of '{var}' but "
                f"'{m}' is: a typo? Its pair(s) {', '.join(pairs[:6]) or '(none)'} would be left out of the graph",
                key=dotted(("model", "structure", var, "adjacency")), file=file,
                line=loaded.line("model", "structure", var, "adjacency") or where["line"],
                hint=f"write '{m}' in the table"))
        if typos:
            continue
        close = {lv: c[0] for lv in dropped if (c := difflib.get_close_matches(lv, levels, n=1, cutoff=0.75))}
        if close:
            shown = ", ".join(f"'{lv}' (like '{c}')" for lv, c in list(close.items())[:6])
            notes.append(warning("structure.adjacency_levels",
                                 f"structure of '{var}': level(s) {shown} of the adjacency table are not levels of "
                                 f"'{var}' but look like ones that are; their pairs are left out of the graph. If "
                                 f"they are typos, correct the table; if they are areas the model does not have, "
                                 f"this is as it should be"))
        if dropped:
            notes.append(f"structure of '{var}': {len(dropped)} level(s) of the adjacency table are in neither the "
                         f"sample nor the population and are left out of the graph "
                         f"({', '.join(dropped[:8])}{' ...' if len(dropped) > 8 else ''})")
        comp, scaling = st.component_scaling(len(levels), edges)
        sizes = np.bincount(comp)
        islands = tuple(lv for lv, c in zip(levels, comp) if sizes[c] == 1)
        if len(sizes) > 1:
            notes.append(f"structure of '{var}': the adjacency graph has {len(sizes)} connected parts "
                         f"({int((sizes > 1).sum())} with neighbours, {len(islands)} island(s)"
                         f"{': ' + ', '.join(islands[:8]) if islands else ''}); each part sums to zero on its own"
                         + (" and an island's effect is independent" if islands else ""))
        _new_level_note(notes, tables, var, entry.kind, islands)
        out.append(StructurePlan(term=term, factor=var, kind=entry.kind, levels=tuple(levels),
                                 factor_matrix=st.covariance_factor(entry.kind, len(levels), edges), edges=edges,
                                 n_components=len(sizes), islands=islands,
                                 scaling=tuple(float(s) for s, k in zip(scaling, sizes) if k > 1),
                                 adjacency=str(entry.adjacency)))
    if problems:
        raise DataError(problems)
    return tuple(out), tuple(notes)


def _digits_key(level) -> tuple:
    """A level's text with its runs of digits compared as numbers ('5k-10k' before '10k-50k')."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", str(level)) if part)


def _new_level_note(notes: list, tables: Tables, var: str, kind: str, islands: tuple[str, ...] = ()) -> None:
    """How a structured term's levels without sample get their effects: from the structure, except
    an island of a spatial graph (no neighbours), whose effect is an independent draw."""
    new = tables.new_levels.get(var, ())
    alone = [lv for lv in new if lv in islands]
    linked = [lv for lv in new if lv not in islands]
    if linked:
        how = ("pulled towards the levels next in order" if kind == "ar1" else "interpolated along the walk"
               if kind in st.ORDERED else "pulled towards their neighbours")
        notes.append(f"structure of '{var}': its {len(linked)} level(s) without sample get their effects from the "
                     f"{kind} prior ({how}), not from independent draws")
    if alone:
        notes.append(f"structure of '{var}': its island(s) without sample ({', '.join(alone[:8])}"
                     f"{' ...' if len(alone) > 8 else ''}) have no neighbours to pull them: their effects are "
                     f"independent N(0, sd) draws, sd the {kind} term's")


def aggregate_cells(sample: pd.DataFrame, info: FormulaInfo, family: str, *, weights: str | None = None,
                    force: bool = False):
    """Collapse rows with identical predictors into binomial cells (exact for the likelihood).

    Frequency weights count a row that many times: they multiply its successes and trials.
    """
    keys = list(info.rhs_vars)
    y = sample[info.response_vars[0]].astype(float)
    if FAMILIES[family].response == "binary":  # one trial a row
        trials = pd.Series(1.0, index=sample.index)
    else:
        trials = sample[info.response_vars[1]].astype(float)
    if weights:
        w = sample[weights].astype(float)
        y, trials = y * w, trials * w
    frame = sample[keys].assign(**{SUCCESSES: y, TRIALS: trials})
    if not keys:
        cells = pd.DataFrame({SUCCESSES: [y.sum()], TRIALS: [trials.sum()]})
    else:
        cells = frame.groupby(keys, observed=True, sort=True)[[SUCCESSES, TRIALS]].sum().reset_index()
    if not force and len(cells) > 0.5 * len(sample):
        return sample, False
    cells[SUCCESSES] = cells[SUCCESSES].round().astype("int64")
    cells[TRIALS] = cells[TRIALS].round().astype("int64")
    for k in keys:  # keep the categorical dtypes (level order) of the sample
        if isinstance(sample[k].dtype, pd.CategoricalDtype):
            cells[k] = pd.Categorical(cells[k], categories=sample[k].cat.categories, ordered=True)
    return cells, True


# median information per level from which a group term is centred (and nutpie adapts a low-rank mass
# matrix). Measured on the MRP primer (2 x 500, seed 2004): centring age, edu, region and poll (median
# information 218-396) with a low-rank mass matrix took 30 leapfrog steps per draw and gave 4.4 effective
# draws of the worst parameter per 1,000 gradient evaluations; all non-centred with a diagonal one (the
# choice at 500), 89 steps and 0.4; centred with a diagonal one, 34 steps and 0.7 (the intercept then
# trades off with the centred effects along a ridge only the low-rank matrix follows).
INFORMATION_CENTRED = 200


def information(data, info, family, aggregated) -> dict[str, float]:
    """Median Fisher information per level of each group term (binary outcomes: n p (1 - p);
    others: rows per level). A level's effect has a posterior sd of about 1/sqrt(information)."""
    out = {}
    for g in info.group_terms:
        keys = factor_keys(data, g.factor_vars)
        if FAMILIES[family].response == "proportion":
            y = data[SUCCESSES] if aggregated else data[info.response_vars[0]]
            n = data[TRIALS] if aggregated else data[info.response_vars[1]]
            pbar = float(y.sum() / max(n.sum(), 1))
            per_level = n.groupby(keys.values).sum() * pbar * (1 - pbar)
        elif FAMILIES[family].response == "binary":
            y = data[info.response_vars[0]].astype(float)
            pbar = float(y.mean())
            per_level = pd.Series(1.0, index=data.index).groupby(keys.values).sum() * pbar * (1 - pbar)
        else:
            per_level = pd.Series(1.0, index=data.index).groupby(keys.values).sum()
        out[g.name] = float(per_level.median()) if len(per_level) else 0.0
    return out


def _settings(setting: str | Mapping[str, str | float], info) -> dict[str, str | float]:
    """``model.parameterization`` per group term: one setting for all, or a table by term whose
    terms not named are ``auto`` (a number there is a centring weight set by hand)."""
    if isinstance(setting, str):
        return {g.name: setting for g in info.group_terms}
    return {g.name: setting.get(g.name, "auto") for g in info.group_terms}


# The centring weight of a group term chosen from the data: w = I / (I + INFORMATION_CENTRED), I its
# median information per level. Papaspiliopoulos, Roberts & Skold (2007, Statistical Science 22: 59-73)
# show that for a normal level effect with data information I and prior sd s the partially non-centred
# form (offset ~ N(0, s^w), effect = s^(1 - w) offset) with w = I s^2 / (1 + I s^2) makes the effect
# and its sd independent a posteriori; s is what the fit is to find, so it is taken here as
# 1 / sqrt(INFORMATION_CENTRED), the sd at which the binary rule above switches (w = 0.5 there). Near
# the ends the partial form is the centred or non-centred one: at w >= CENTRED_FROM the term is
# centred, at w <= NONCENTRED_UNTIL non-centred. Measured on the MRP primer as shipped (4 x 1,000,
# low-rank, seeds 2004 / 7 / 13; docs/benchmarks-mrp.md): the smallest parameter ESS 608 / 595 / 649 ->
# 823 / 997 / 1,077, ESS per 1,000 gradient evaluations 2.14 / 2.25 / 2.37 -> 3.00 / 3.52 / 3.73,
# divergences 10 / 18 / 3 -> 1 / 5 / 1, about as many gradient evaluations.
CENTRED_FROM, NONCENTRED_UNTIL = 0.9, 0.1


def centring_weight(information: float) -> float:
    """w = I / (I + INFORMATION_CENTRED) (see above), to two decimals."""
    return round(information / (information + INFORMATION_CENTRED), 2) if information > 0 else 0.0


def choose_parameterization(info, setting: str | Mapping[str, str | float], info_by_term: dict[str, float]):
    """From the data where ``setting`` is ``auto`` (``info_by_term``, from :func:`information`):
    centred when the data pin down each level's effect well, non-centred when they are thin, and
    partially non-centred between (:func:`centring_weight`); as ``setting`` says elsewhere."""
    choice, reason = {}, {}
    settings = _settings(setting, info)
    for g in info.group_terms:
        if not isinstance(settings[g.name], str):
            choice[g.name] = "partial"
            reason[g.name] = f"centring weight {settings[g.name]:g} set in model.parameterization"
            continue
        if settings[g.name] != "auto":
            choice[g.name], reason[g.name] = settings[g.name], "set in model.parameterization"
            continue
        info_median = info_by_term[g.name]
        w = centring_weight(info_median)
        if NONCENTRED_UNTIL < w < CENTRED_FROM and not g.expr_vars:
            choice[g.name] = "partial"
            reason[g.name] = (f"centring weight {w:.2f} = I / (I + {INFORMATION_CENTRED}), I = {info_median:.0f}, "
                              f"the median information per level")
            continue
        choice[g.name], reason[g.name] = _binary_choice(info_median)
    return choice, reason


def _binary_choice(info_median: float) -> tuple[str, str]:
    """Centred or non-centred, and why, by the median information per level alone."""
    # Below a posterior sd of ~0.05 the likelihood dominates the prior and the centred form mixes better.
    centred = info_median >= INFORMATION_CENTRED
    return ("centered" if centred else "noncentered",
            f"median information per level {info_median:.0f} {'>=' if centred else '<'} {INFORMATION_CENTRED}")


def partial_centring(family: str, priors, param: dict[str, str], reason: dict[str, str],
                     info_by_term: dict[str, float], set_by_hand: Mapping[str, float] | None = None) -> dict[str, float]:
    """The centring weight of each term ``param`` makes partial, where the sampler can build it: a
    group intercept of a one-response family whose prior is Normal(0, sd) with a prior on the sd;
    the weight ``set_by_hand`` (``model.parameterization``), else from the data. Any other term the
    partial choice named goes back to the binary rule (``param`` and ``reason`` are updated in
    place; the spec's checks refuse a weight set by hand for such a term, so only the data's
    choice can)."""
    by_term = {tp.term: tp for tp in priors if tp.role == "group" and not tp.component}
    out = {}
    for term, choice in param.items():
        if choice != "partial":
            continue
        tp = by_term.get(term)
        if (tp is not None and tp.prior.name == "Normal" and not tp.prior.param("mu")
                and isinstance(tp.prior.param("sigma"), Dist) and FAMILIES[family].categories != "categorical"):
            out[term] = (set_by_hand or {}).get(term) or centring_weight(info_by_term[term])
            continue
        param[term], reason[term] = _binary_choice(info_by_term[term])
    return out


def choose_mass_matrix(setting: str, sampler: str, info_by_term: dict[str, float]) -> tuple[str, str]:
    """Low-rank when the data pin down the group effects (those terms are centred, or partially
    non-centred with a centring weight of a half or more): then the intercept and the group effects
    trade off along a narrow ridge that a diagonal mass matrix cannot follow (measured: min ESS 40 -> 2,664 at 1e7 rows; the MRP primer, see
    ``INFORMATION_CENTRED``). Diagonal otherwise: on thin, hierarchical data with every term
    non-centred the low-rank adaptation can leave a chain stuck (measured on the MRP primer: R-hat 1.67)."""
    if sampler != "nutpie":
        return "diagonal", f"the {sampler} sampler adapts a diagonal mass matrix"
    if setting != "auto":
        return setting, "set in fit.mass_matrix"
    if not info_by_term:
        return "diagonal", "no group term"
    most = max(info_by_term.values())
    if most >= INFORMATION_CENTRED:
        return "low_rank", f"a group term has median information per level {most:.0f} >= {INFORMATION_CENTRED}"
    return "diagonal", f"every group term has median information per level < {INFORMATION_CENTRED}"


# ----------------------------------------------------------------------------- priors

PRIOR_STD = 2.5  # Bambi's PriorScaler.STD: a default prior is 2.5 outcome sds wide
GROUP_SD = 1.0  # scale of a default group sd on the logit, probit and log scales
BINARY_LOGIT = ("logit", "probit")
AUXILIARY = {name: f.auxiliary for name, f in FAMILIES.items() if f.auxiliary}  # spec/families.py


def _fmt_value(v) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@dataclass(frozen=True)
class Dist:
    """A distribution as handed to Bambi; a parameter is a number, one number per design column
    (a tuple), or another ``Dist`` (a hyperprior)."""

    name: str
    params: tuple[tuple[str, object], ...]

    def param(self, key: str):
        return dict(self.params).get(key)

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={_fmt_value(v)}' for k, v in self.params)})"

    def to_json(self) -> dict:
        out = {"dist": self.name}
        for k, v in self.params:
            out[k] = v.to_json() if isinstance(v, Dist) else list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class TermPrior:
    """The prior of one term or family parameter, as the fit uses it."""

    term: str  # as Bambi names it: Intercept, a common term, a group term, sigma / alpha / threshold
    role: str  # intercept | common | group | auxiliary
    prior: Dist
    source: str  # "spec" (model.priors) or "default" (computed by resolve_priors)
    basis: str = ""  # how a default was computed
    component: str = ""  # the auxiliary parameter whose formula has this term (model.formulas), else ""

    @property
    def key(self) -> str:
        """Its key in model.priors: the term, or "psi.term" for a term of psi's formula."""
        return f"{self.component}.{self.term}" if self.component else self.term

    def within(self, component: str) -> "TermPrior":
        """This prior as a term of its own component's model (what its predictor reads)."""
        return replace(self, component="") if self.component == component else self

    def to_json(self) -> dict:
        out = {"term": self.term, "role": self.role, "prior": str(self.prior), "source": self.source,
               "basis": self.basis, "distribution": self.prior.to_json()}
        if self.component:
            out["component"] = self.component
        return out


def _from_spec(prior: PriorSpec) -> Dist:
    return Dist(prior.dist, tuple((k, _from_spec(v) if hasattr(v, "dist") else float(v)) for k, v in prior.params))


def _vector(values) -> float | tuple[float, ...]:
    """One number when every column has the same (Bambi broadcasts it), else one per column."""
    values = [float(v) for v in np.atleast_1d(values)]
    return values[0] if all(v == values[0] for v in values) else tuple(values)


def _wmean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w[:, None] * x).sum(0) / w.sum()


def _wsd(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted standard deviation of each column (ddof 0, as numpy's and Bambi's); 1 where a
    column is constant (Bambi refuses such a term itself)."""
    d = x - _wmean(x, w)
    sd = np.sqrt((w[:, None] * d * d).sum(0) / w.sum())
    return np.where(sd > 0, sd, 1.0)


def _columns(data, n: int) -> np.ndarray:
    return np.asarray(data, dtype=float).reshape(n, -1)


def _design_matrices(loaded: LoadedSpec, data: pd.DataFrame, formula: str, family: str):
    """formulae's design of ``data``; a failure is the model's problem (as Bambi's would be)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return design_matrices(data, formula, family)
    except Exception as exc:
        raise SpecError(Problem(f"the formula cannot be evaluated on the sample: {exc}", key="model.formula",
                                file=str(loaded.path), line=loaded.line("model", "formula"),
                                hint="check the formula's terms and transforms against the data")) from None


def resolve_priors(loaded: LoadedSpec, info: FormulaInfo, tables: Tables, *,
                   dm=None) -> tuple[tuple[TermPrior, ...], str]:
    """Every prior of the model: those of the spec as written, the others Bambi's defaults, computed
    from the sample *rows* (each weighted by its count or frequency weight), never from the fitted
    cells. Returns the priors and a sentence saying what the defaults were scaled by.

    Bambi's rules (``bambi.priors.scaler.PriorScaler``, STD = 2.5): for the gaussian family the
    intercept is Normal(mean(y), 2.5 sd(y), widened for the slopes at the mean predictors), a
    slope Normal(0, 2.5 sd(y) / sd(x)) and sigma HalfStudentT(4, sd(y)); for bernoulli and
    binomial with a logit or probit link the intercept is Normal(0, 1.5) and a slope Normal(0, 1)
    per level or Normal(0, 1 / sd(x)); for the other families the gaussian rules with sd(y) = 1
    (the linear predictor is on the log or logit scale). The sd of a group term's effects is
    HalfNormal(2.5 sd(y)) under the gaussian identity link and HalfNormal(1) on the logit, probit
    and log scales, a group slope's divided by sd(x) for a numeric x. This differs from Bambi,
    which widens group sds for the common slopes at the mean predictors (so that they change with
    where a predictor's zero is) and uses HalfNormal(1) when a group prior is given without scale.
    """
    spec = loaded.spec.model
    family = spec.family
    link = spec.link or DEFAULT_LINK[family]
    given = dict(spec.priors)
    rows = tables.sample
    n = len(rows)
    w = (rows[tables.weights].to_numpy(dtype=float) if tables.weights else np.ones(n))
    if n == 0 or not w.sum() > 0:
        raise DataError(Problem("the sample has no rows to fit", key="data.source", file=str(loaded.path),
                                line=loaded.line("data", "source")))
    if dm is None:  # else: formulae's design of exactly these rows and formula, made by the caller
        dm = _design_matrices(loaded, rows, info.text, family)
    gaussian = family == "gaussian"
    fam = FAMILIES[family]
    located = fam.location is not None and link == fam.link  # the record's own centre and scale
    identity = (gaussian or located) and link == "identity"
    y_mean = y_sd = math.nan
    y_rows = _columns(dm.response.design_matrix, n)[:, 0] if (located or fam.priors) else None
    center, loc_basis = 0.0, ""
    if located:
        center, loc_sd, loc_basis = fam.location(y_rows, w)
        if identity:
            y_mean, y_sd = center, loc_sd
    if gaussian:
        y = _columns(dm.response.design_matrix, n)[:, :1]
        y_mean, y_sd = float(_wmean(y, w)[0]), float(np.sqrt(_wmean((y - _wmean(y, w)) ** 2, w))[0])
        if not (np.isfinite(y_sd) and y_sd > 0):
            raise DataError(Problem(f"the outcome '{info.response}' has no spread (sd {y_sd:g}): the gaussian "
                                    f"family cannot be fitted to it", key="model.formula", file=str(loaded.path),
                                    line=loaded.line("model", "formula"),
                                    hint="check the outcome column; a constant outcome needs no model"))
    unit = y_sd if identity else 1.0  # sd of the outcome on the scale of the linear predictor
    logit_binary = FAMILIES[family].binary and link in BINARY_LOGIT
    scale_name = ("2.5 sd(y)" if not located else loc_basis.split(", ", 1)[1]) if identity else "2.5"

    out: list[TermPrior] = []
    common: list[TermPrior] = []
    widen = 0.0  # Bambi's intercept widening: sum of (slope sigma x mean x)^2 over default slopes
    for name, term in dm.common.terms.items():
        if name == "Intercept":
            continue
        if name in given:
            common.append(TermPrior(name, "common", _from_spec(given[name]), "spec"))
            continue
        x = _columns(term.data, n)
        kinds = [c.kind for c in getattr(term, "components", ())] or [term.kind]
        all_categoric = all(k == "categoric" for k in kinds)
        if logit_binary:
            if all_categoric:
                sigma, basis = np.ones(x.shape[1]), "1 per level on the logit scale"
            elif term.kind == "interaction" and x.shape[1] > 1:
                sigma = np.full(x.shape[1], 1.0 / _wsd(x.sum(1, keepdims=True), w)[0])
                basis = "1 / sd(x) on the logit scale"
            else:
                sigma, basis = 1.0 / _wsd(x, w), "1 / sd(x) on the logit scale"
        else:
            sigma = PRIOR_STD * unit / _wsd(x, w)
            basis = f"{scale_name} / sd(x)"
        widen += float(np.sum(sigma ** 2 * _wmean(x, w) ** 2))
        common.append(TermPrior(name, "common", Dist("Normal", (("mu", 0.0), ("sigma", _vector(sigma)))),
                                "default", basis))
    if "Intercept" in dm.common.terms:
        if "Intercept" in given:
            out.append(TermPrior("Intercept", "intercept", _from_spec(given["Intercept"]), "spec"))
        elif logit_binary:
            out.append(TermPrior("Intercept", "intercept", Dist("Normal", (("mu", 0.0), ("sigma", 1.5))), "default",
                                 "Normal(0, 1.5) on the logit scale"))
        else:
            mu = y_mean if identity else center
            sigma = math.sqrt((PRIOR_STD * unit) ** 2 + widen)
            basis = ((loc_basis if located else ("mean(y), " if identity else "") + scale_name)
                     + (", widened for the slopes at the mean predictors" if widen else ""))
            out.append(TermPrior("Intercept", "intercept", Dist("Normal", (("mu", mu), ("sigma", sigma))), "default",
                                 basis))
    out += common
    group_terms = dm.group.terms if dm.group else {}
    for name, term in group_terms.items():
        if name in given:
            out.append(TermPrior(name, "group", _from_spec(given[name]), "spec"))
            continue
        base = PRIOR_STD * unit if identity else GROUP_SD
        if term.kind == "intercept":
            sd, basis = np.array([base]), (scale_name if identity else "1 on the link scale")
        else:
            kinds = [c.kind for c in getattr(term.expr, "components", ())] or [term.kind]
            z = _columns(term.expr.data, n)
            if all(k == "categoric" for k in kinds):
                sd = np.full(z.shape[1], base)
                basis = f"{scale_name} per level" if identity else "1 per level on the link scale"
            else:
                sd = base / _wsd(z, w)
                basis = f"{scale_name} / sd(x)" if identity else "1 / sd(x) on the link scale"
        hyper = Dist("HalfNormal", (("sigma", _vector(sd)),))
        out.append(TermPrior(name, "group", Dist("Normal", (("mu", 0.0), ("sigma", hyper))), "default", basis))
    rules = dict(fam.priors)
    modelled = dict(formulas_of(loaded))
    for name, rhs in modelled.items():
        out += _component_priors(loaded, name, rhs, rows, w, y_rows, given)
    for aux in AUXILIARY.get(family, ()):
        if aux in modelled:
            continue
        if aux in given:
            out.append(TermPrior(aux, "auxiliary", _from_spec(given[aux]), "spec"))
        elif aux in rules:  # the record's rule (spec/families.py), scaled to the outcome where it says so
            dist, params, basis = rules[aux](y_rows, w)
            out.append(TermPrior(aux, "auxiliary", Dist(dist, tuple((k, float(v)) for k, v in params)), "default",
                                 basis))
        elif aux == "sigma":
            out.append(TermPrior("sigma", "auxiliary", Dist("HalfStudentT", (("nu", 4.0), ("sigma", y_sd))),
                                 "default", "sd(y)"))
        elif aux == "alpha":
            out.append(TermPrior("alpha", "auxiliary", Dist("HalfCauchy", (("beta", 1.0),)), "default",
                                 "Bambi's default (does not depend on the data)"))
        elif aux == "threshold":
            k = len(pd.unique(rows[info.response_vars[0]].dropna()))
            mu = tuple(float(v) for v in np.round(np.linspace(-2, 2, num=max(k - 1, 1)), 2))
            out.append(TermPrior("threshold", "auxiliary", Dist("Normal", (("mu", mu), ("sigma", 1.0))), "default",
                                 f"{k - 1} ordered cutpoints spread over -2..2 on the logit scale"))
    unused = [name for name in given if name not in {p.key for p in out}]
    if unused:
        raise SpecError([Problem(f"the model has no term '{name}' to give this prior to", key=dotted(("model", "priors", name)),
                                 file=str(loaded.path), line=loaded.line("model", "priors", name),
                                 hint=f"its terms: {', '.join(p.key for p in out)}") for name in unused])
    weighted = " (each weighted by its count)" if tables.weights else ""
    if identity and not located:
        scale = (f"default priors are scaled to the outcome over the {w.sum():.0f} sample rows{weighted}: "
                 f"mean {y_mean:.4g}, sd {y_sd:.4g}")
    elif located:
        scale = (f"default priors are centred on the outcome over the {w.sum():.0f} sample rows{weighted}: "
                 f"{loc_basis}")
    elif gaussian:
        scale = (f"default priors: sigma is scaled to the outcome's sd ({y_sd:.4g}); the other defaults are on the "
                 f"{link} link's scale")
    else:
        scale = (f"default priors are weakly informative on the {link} scale; slopes of numeric predictors are per "
                 f"sd of the predictor over the {w.sum():.0f} sample rows{weighted}")
    return tuple(out), scale


def _component_priors(loaded: LoadedSpec, name: str, rhs: str, rows: pd.DataFrame, w: np.ndarray,
                      y_rows, given) -> list[TermPrior]:
    """Priors of the terms of an auxiliary parameter's formula (psi, on the logit scale): given as
    ``"psi.term"`` in model.priors, else Normal(logit of the weighted share of non-zero outcomes,
    1.5) for the intercept, Normal(0, 1) per level or 1 / sd(x) for a slope, Normal(0, HalfNormal(1))
    for a group term."""
    from mrp_formula.predict.cells import component

    try:
        made, _ = component(rows, name, rhs)
    except Exception as exc:
        raise SpecError(Problem(f"the formula of {name} cannot be evaluated on the sample: {exc}",
                                key=dotted(("model", "formulas", name)), file=str(loaded.path),
                                line=loaded.line("model", "formulas", name),
                                hint="check its terms against the data")) from None
    n = len(rows)
    share = float(np.clip(np.sum(w * (np.asarray(y_rows, dtype=float) > 0)) / np.sum(w), 0.01, 0.99))
    out = []

    def add(term, role, dist, basis):
        key = f"{name}.{term}"
        if key in given:
            out.append(TermPrior(term, role, _from_spec(given[key]), "spec", component=name))
        else:
            out.append(TermPrior(term, role, dist, "default", basis, component=name))

    common = made.common.terms if made.common is not None else {}
    if "Intercept" in common:
        add("Intercept", "intercept", Dist("Normal", (("mu", math.log(share / (1 - share))), ("sigma", 1.5))),
            f"logit of the share of non-zero outcomes ({share:.3g}), 1.5 on the logit scale")
    for term_name, term in common.items():
        if term_name == "Intercept":
            continue
        x = _columns(term.data, n)
        kinds = [c.kind for c in getattr(term, "components", ())] or [term.kind]
        if all(k == "categoric" for k in kinds):
            sigma, basis = np.ones(x.shape[1]), "1 per level on the logit scale"
        else:
            sigma, basis = 1.0 / _wsd(x, w), "1 / sd(x) on the logit scale"
        add(term_name, "common", Dist("Normal", (("mu", 0.0), ("sigma", _vector(sigma)))), basis)
    for term_name in made.group:
        add(term_name, "group", Dist("Normal", (("mu", 0.0), ("sigma", Dist("HalfNormal", (("sigma", GROUP_SD),))))),
            "1 on the logit scale")
    return out


# ----------------------------------------------------------------------------- building




@dataclass(frozen=True)
class Fit:
    posterior: object  # xarray.DataTree
    seconds: float
    sampler: str



def versions() -> dict[str, str]:
    """Versions of the stack, read from the installed packages' metadata (nothing is imported)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("bambi", "pymc", "pytensor", "arviz", "formulae", "numpy", "pandas", "nutpie"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - nutpie is optional
            pass
    return out
