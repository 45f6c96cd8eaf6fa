"""What the model changed: raw sample values and classical weighted (raked) estimates for every
estimand row (the coverage and sample-ratio checks are in :mod:`mrp_formula.checks`).

Pure pandas/numpy. Raw and weighted values reuse the estimand assembly: they are fed to
:func:`estimands.assemble` as two "draws" (raw, weighted), so contrasts and breakdowns are
formed exactly as for the MRP draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrp_formula.spec.families import FAMILIES
from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.spec.formula import FormulaInfo
from mrp_formula.poststrat.sums import Reduced, Request
from mrp_formula.data.population import WEIGHT, rake
from mrp_formula.data.tables import Tables


@dataclass(frozen=True)
class Units:
    """The sample as units: an outcome matrix (n, K), a unit count per row, and the predictors."""

    frame: pd.DataFrame
    outcome: np.ndarray
    count: np.ndarray


def _frame_and_count(tables: Tables, info: FormulaInfo, family: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The model variables of the sample's rows as text, and the units each row stands for."""
    s = tables.sample
    count = s[tables.weights].to_numpy(dtype=float) if tables.weights else np.ones(len(s))
    if FAMILIES[family].response == "proportion":  # a row stands for its trials
        count = count * s[info.response_vars[1]].to_numpy(dtype=float)
    frame = s[[c for c in s.columns if c in tables.variables]].astype(object).astype(str)
    return frame, count


def sample_units(tables: Tables, info: FormulaInfo, family: str, categories) -> Units:
    s = tables.sample
    frame, count = _frame_and_count(tables, info, family)
    y = s[info.response_vars[0]]
    if FAMILIES[family].response == "proportion":
        trials = s[info.response_vars[1]].to_numpy(dtype=float)
        outcome = (y.to_numpy(dtype=float) / np.where(trials > 0, trials, 1))[:, None]
    elif FAMILIES[family].has_categories:
        levels = [c for c in categories if c != "mean"]
        text = y.astype(str).to_numpy()
        outcome = np.stack([(text == lv).astype(float) for lv in levels], axis=1)
        if FAMILIES[family].categories == "ordinal":
            values = _values(levels)
            outcome = np.concatenate([outcome, (outcome @ values)[:, None]], axis=1)
    else:
        outcome = y.to_numpy(dtype=float)[:, None]
    return Units(frame=frame, outcome=outcome, count=count)


def _values(levels):
    try:
        return np.array([float(x) for x in levels])
    except ValueError:
        return np.arange(1, len(levels) + 1, dtype=float)


def rake_weights(frame: pd.DataFrame, count: np.ndarray, population: pd.DataFrame, vars_: list[str],
                 *, tol: float = 1e-10, max_iter: int = 1000) -> np.ndarray:
    """Weights per row so that the weighted units match the population margins of ``vars_``:
    the rows' joint of ``vars_`` (weighted by ``count``) raked by :func:`population.rake`.

    Rows whose level is absent from the population get weight 0; population levels absent from
    the rows cannot be reached and their share is spread over the rest (renormalised).
    """
    count = np.asarray(count, dtype=float)
    if not len(frame) or population[WEIGHT].sum() <= 0:
        return np.zeros(len(frame))
    if not vars_:
        return np.ones(len(frame))
    labels = frame[list(vars_)].astype(str)
    keep = np.ones(len(frame), bool)
    pops = {v: population.groupby(population[v].astype(str))[WEIGHT].sum() for v in vars_}
    for v in vars_:
        keep &= labels[v].map(pops[v]).fillna(0.0).to_numpy() > 0
    keep &= count > 0
    if not keep.any():
        return np.zeros(len(frame))
    kept = labels.loc[keep]
    margins = {v: pops[v].reindex(sorted(set(kept[v]))).to_dict() for v in vars_}
    grouped = kept.groupby(list(vars_), sort=True)
    ids = grouped.ngroup().to_numpy()
    cells = grouped.size().reset_index()[list(vars_)]
    seed = np.bincount(ids, weights=count[keep], minlength=len(cells))
    cells[WEIGHT] = seed
    raked = rake(cells, margins, tol=tol, max_iter=max_iter).cells[WEIGHT].to_numpy()
    w = np.zeros(len(frame))
    w[keep] = raked[ids] / seed[ids]
    return w


def _group_values(units: Units, population: pd.DataFrame, req: Request, post_vars: list[str]) -> Reduced:
    """(2, G[, K]) values: raw and raked means per group of ``req.by`` under its settings."""
    from mrp_formula.poststrat.sums import group_codes

    pop_groups = population if not req.by else population
    _, groups = group_codes(pop_groups, req.by)
    frame, outcome, count = units.frame, units.outcome, units.count
    mask = np.ones(len(frame), bool)
    for var, level in req.scenario.settings:
        if var in frame:
            mask &= (frame[var] == str(level)).to_numpy()
    k = outcome.shape[1]
    vals = np.full((2, len(groups), k), np.nan)
    for gi in range(len(groups)):
        m = mask.copy()
        pmask = np.ones(len(population), bool)
        for col in groups.columns:
            level = str(groups.loc[gi, col])
            if col in frame:
                m &= (frame[col] == level).to_numpy()
            pmask &= (population[col].astype(str) == level).to_numpy()
        if not m.any():
            continue
        c = count[m]
        if c.sum() <= 0:
            continue
        vals[0, gi] = (outcome[m] * c[:, None]).sum(0) / c.sum()
        rake_vars = [v for v in post_vars if v not in req.by and v not in dict(req.scenario.settings)]
        w = rake_weights(frame.loc[m].reset_index(drop=True), c, population.loc[pmask], rake_vars)
        if (w * c).sum() > 0:
            vals[1, gi] = (outcome[m] * (w * c)[:, None]).sum(0) / (w * c).sum()
    if k == 1:
        vals = vals[:, :, 0]
    return Reduced(groups=groups, values=vals, weight=np.ones(len(groups)))


def raw_and_weighted(pieces, tables: Tables, info: FormulaInfo, family: str, categories,
                     group_columns: list[str]) -> pd.DataFrame:
    """Columns ``raw`` and ``weighted``, aligned with the rows of the estimand table."""
    units = sample_units(tables, info, family, categories)
    post_vars = [v for v in tables.population_vars if v in units.frame.columns]
    reduced = {req: _group_values(units, tables.population, req, post_vars) for req in est_mod.requests(pieces)}
    ed = est_mod.assemble(pieces, reduced, n_chains=1, n_draws=2, group_columns=group_columns,
                          categories=categories)
    return pd.DataFrame({"raw": ed.draws[:, 0], "weighted": ed.draws[:, 1]})
