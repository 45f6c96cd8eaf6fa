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
from mrp_formula.spec.levels import canon, canon_series
from mrp_formula.poststrat.sums import Reduced, Request
from mrp_formula.data.population import WEIGHT, normalise_margin, rake_arrays, rake_many
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
    frame = pd.DataFrame({c: canon_series(s[c]) for c in s.columns if c in tables.variables}, index=s.index)
    return frame, count  # levels as text by value, as everywhere (1, 1.0 and "1" are one level)


def cell_vars(tables: Tables, frame: pd.DataFrame) -> list[str]:
    """The population variables the sample's rows are matched to cells and raked on: every
    categorical one, and a numeric one whose sample values all occur in the population (a 0/1 arm,
    a state-level percentage joined by state). A numeric predictor with other values (a continuous
    x the population gives at a few points) has no levels to match: raking on its text kept only
    the rows that happened to equal a population value."""
    out = []
    for v in tables.population_vars:
        if v not in frame.columns:
            continue
        if tables.variables[v].categorical or set(frame[v]) <= set(canon_series(tables.population[v])):
            out.append(v)
    return out


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


RAKE_TOL, RAKE_MAX_ITER = 1e-10, 1000  # the classical weights' raking: largest margin error, iterations


def rake_weights(frame: pd.DataFrame, count: np.ndarray, population: pd.DataFrame, vars_: list[str],
                 *, tol: float = RAKE_TOL, max_iter: int = RAKE_MAX_ITER) -> np.ndarray:
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
    pops = {v: population.groupby(canon_series(population[v]))[WEIGHT].sum().to_dict() for v in vars_}
    labels = {v: frame[v].astype(str).to_numpy(dtype=object) for v in vars_}
    return _raked(labels, count, pops, tol=tol, max_iter=max_iter)


def _raked(labels: dict[str, np.ndarray], count: np.ndarray, pops: dict[str, dict[str, float]], *,
           tol: float, max_iter: int) -> np.ndarray:
    """:func:`rake_weights` on arrays: each variable's label per row, and its population weight per
    level. The cells are the joint levels of the kept rows in sorted order, as pandas' sorted
    groupby would list them, so the arithmetic (and every bit of the result) is the same."""
    problem = _RakeProblem.of(labels, count, pops)
    if problem is None:
        return np.zeros(len(count))
    raked, _, _ = rake_arrays(problem.seed, problem.parts, tol=tol, max_iter=max_iter)
    return problem.weights(raked)


@dataclass(frozen=True)
class _RakeProblem:
    """The raking of one set of rows: which rows are kept (a positive count, every level in the
    population), the cell of each kept row, the units per cell, and per variable (code of each
    cell's level, population share per code)."""

    n: int
    keep: np.ndarray
    cell_of_row: np.ndarray
    seed: np.ndarray
    parts: list

    @classmethod
    def of(cls, labels: dict[str, np.ndarray], count: np.ndarray,
           pops: dict[str, dict[str, float]]) -> "_RakeProblem | None":
        n = len(count)
        keep = count > 0
        for v, lab in labels.items():
            pop = pops[v]
            keep &= np.fromiter((pop.get(x, 0.0) > 0 for x in lab), dtype=bool, count=n)
        if not keep.any():
            return None
        parts, codes, sizes = [], [], []
        for v, lab in labels.items():
            levels, code = np.unique(lab[keep], return_inverse=True)
            shares = normalise_margin({lv: pops[v][lv] for lv in levels})
            parts.append(np.array(list(shares.values()), dtype=float))
            codes.append(code.ravel())
            sizes.append(len(levels))
        cells, ids = np.unique(np.ravel_multi_index(codes, sizes), return_inverse=True)
        ids = ids.ravel()
        seed = np.bincount(ids, weights=count[keep], minlength=len(cells))
        cell_codes = np.unravel_index(cells, sizes)
        return cls(n=n, keep=keep, cell_of_row=ids, seed=seed,
                   parts=[(c.astype(np.int64), t) for c, t in zip(cell_codes, parts)])

    def weights(self, raked: np.ndarray) -> np.ndarray:
        """Each row's weight from the raked shares of the cells."""
        w = np.zeros(self.n)
        w[self.keep] = raked[self.cell_of_row] / self.seed[self.cell_of_row]
        return w


def _group_values(units: Units, population: pd.DataFrame, req: Request, post_vars: list[str]) -> Reduced:
    """(2, G[, K]) values: raw and raked means per group of ``req.by`` under its settings."""
    from mrp_formula.poststrat.sums import group_codes

    pop_code, groups = group_codes(population, req.by)
    frame, outcome, count = units.frame, units.outcome, units.count
    mask = np.ones(len(frame), bool)
    for var, level in req.scenario.settings:
        if var in frame:
            mask &= (frame[var] == canon(level)).to_numpy()
    rake_vars = [v for v in post_vars if v not in req.by and v not in dict(req.scenario.settings)]
    labels = {v: frame[v].to_numpy(dtype=object) for v in rake_vars}
    in_frame = [c for c in groups.columns if c in frame]
    rows_of = (frame.groupby(in_frame, sort=False).indices if in_frame else {})
    pop_rows = pd.Series(pop_code).groupby(pop_code).indices  # each group's population rows, in order
    k = outcome.shape[1]
    vals = np.full((2, len(groups), k), np.nan)
    raking = []  # (group, its rows, their units, its raking problem)
    for gi in range(len(groups)):
        if in_frame:
            key = tuple(canon(groups.loc[gi, col]) for col in in_frame)
            rows = rows_of.get(key[0] if len(key) == 1 else key, np.zeros(0, dtype=np.int64))
        else:
            rows = np.arange(len(frame))
        rows = np.sort(rows)
        rows = rows[mask[rows]]
        if not len(rows):
            continue
        c = count[rows]
        if c.sum() <= 0:
            continue
        vals[0, gi] = (outcome[rows] * c[:, None]).sum(0) / c.sum()
        pop = population.iloc[pop_rows[gi]] if gi in pop_rows else population.iloc[:0]
        if pop[WEIGHT].sum() <= 0:
            continue  # no population weight: weights 0 (as rake_weights)
        if rake_vars:  # the population weights summed per level as rake_weights sums them (the same bits)
            pops = {v: pop.groupby(canon_series(pop[v]))[WEIGHT].sum().to_dict() for v in rake_vars}
            raking.append((gi, rows, c, _RakeProblem.of({v: lab[rows] for v, lab in labels.items()}, c, pops)))
        else:
            _weighted(vals, gi, outcome[rows], c, np.ones(len(rows)))
    # every group raked at once (each group's weights are those of raking it alone, bit for bit)
    solved = iter(rake_many([(p.seed, p.parts) for *_, p in raking if p is not None], tol=RAKE_TOL,
                            max_iter=RAKE_MAX_ITER))
    for gi, rows, c, problem in raking:
        w = problem.weights(next(solved)) if problem is not None else np.zeros(len(rows))
        _weighted(vals, gi, outcome[rows], c, w)
    if k == 1:
        vals = vals[:, :, 0]
    return Reduced(groups=groups, values=vals, weight=np.ones(len(groups)))


def _weighted(vals: np.ndarray, gi: int, outcome: np.ndarray, c: np.ndarray, w: np.ndarray) -> None:
    """The weighted mean of group ``gi`` into ``vals[1, gi]`` (left NaN when no weight is left)."""
    if (w * c).sum() > 0:
        vals[1, gi] = (outcome * (w * c)[:, None]).sum(0) / (w * c).sum()


def raw_and_weighted(pieces, tables: Tables, info: FormulaInfo, family: str, categories,
                     group_columns: list[str]) -> pd.DataFrame:
    """Columns ``raw`` and ``weighted``, aligned with the rows of the estimand table."""
    units = sample_units(tables, info, family, categories)
    post_vars = cell_vars(tables, units.frame)
    reduced = {req: _group_values(units, tables.population, req, post_vars) for req in est_mod.requests(pieces)}
    with np.errstate(divide="ignore", invalid="ignore"):  # a group without weight: its ratio stays NaN (blank)
        ed = est_mod.assemble(pieces, reduced, n_chains=1, n_draws=2, group_columns=group_columns,
                              categories=categories)
    return pd.DataFrame({"raw": ed.draws[:, 0], "weighted": ed.draws[:, 1]})
