"""Poststratification in bounded memory: predict population cells chunk by chunk and reduce
each chunk to weighted sums per group as it goes. Pure numpy; the predictions come from a
callable, so this module knows nothing of the model.

Every sum is a function of the cells' content alone, bit for bit: the cells are put in one
canonical order (by group, then by their values), and the sums are accumulated unit by unit in
that order, with units of a fixed number of cells that chunks never split. So the row order of
the population table, the chunk size (``block``) and the number of threads change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from mrp_formula.data.population import WEIGHT
from mrp_formula.spec.levels import natural_key

Predict = Callable[[pd.DataFrame, tuple[str, ...]], np.ndarray]  # (cells, exclude) -> (S, n[, K])

# Elements of one (draws x cells) block; 1e7 float64 is 80 MB.
DEFAULT_BLOCK = 10_000_000
# Cells summed at once by the plain route; chunks hold whole units (see the module's docstring).
PLAIN_UNIT = 1024


@dataclass(frozen=True)
class Scenario:
    """Variables set to one level for the whole population, and model terms left out."""

    settings: tuple[tuple[str, str], ...] = ()
    exclude: tuple[str, ...] = ()
    slope: bool = False  # sum the derivative of the expected outcome by the linear predictor instead


@dataclass(frozen=True)
class Request:
    scenario: Scenario
    by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reduced:
    """Weighted mean per draw and group: ``values`` is (S, G[, K]); ``groups`` has the by columns."""

    groups: pd.DataFrame
    values: np.ndarray
    weight: np.ndarray  # (G,) population weight per group


def group_codes(cells: pd.DataFrame, by: tuple[str, ...]) -> tuple[np.ndarray, pd.DataFrame]:
    if not by:
        return np.zeros(len(cells), dtype=np.int64), pd.DataFrame(index=[0])
    keys = cells[list(by)].astype(str)
    groups = keys.drop_duplicates().sort_values(list(by), key=_natural_key).reset_index(drop=True)
    codes = keys.merge(groups.reset_index(), on=list(by), how="left")["index"].to_numpy(dtype=np.int64)
    return codes, groups


def _natural_key(col: pd.Series) -> pd.Series:
    return col.map(natural_key)


def poststratify(cells: pd.DataFrame, predictor, requests: Iterable[Request], *,
                 n_samples: int, block: int = DEFAULT_BLOCK) -> dict[Request, Reduced]:
    """Cell-weighted means of the predictions per draw, for every request, in one pass.

    ``predictor`` is a plain ``predict(cells, exclude)`` callable, or an object with
    ``weighted_sums`` (see :func:`plain_weighted_sums`), ``row_cost(n_scenarios)``, the values it
    holds per cell of a chunk, and ``sum_unit()``, the cells it sums as one unit. A chunk has
    ``block // row_cost`` cells rounded down to whole units (one unit at least).
    """
    requests = list(dict.fromkeys(requests))
    if not requests:
        return {}
    bys = list(dict.fromkeys(r.by for r in requests))
    codes, groups = {}, {}
    for by in bys:
        codes[by], groups[by] = group_codes(cells, by)
    order = canonical_order(cells, [codes[by] for by in bys])
    cells = cells.iloc[order]  # the index is kept: a predictor may know cells by it
    codes = {by: c[order] for by, c in codes.items()}
    weights = cells[WEIGHT].to_numpy(dtype=float)
    scenarios = list(dict.fromkeys(r.scenario for r in requests))
    needs = [sorted({bys.index(r.by) for r in requests if r.scenario == sc}) for sc in scenarios]
    if hasattr(predictor, "weighted_sums"):
        sums_of, row_cost = predictor.weighted_sums, max(1, int(predictor.row_cost(len(scenarios))))
        unit = max(1, int(predictor.sum_unit()))
    else:
        sums_of, row_cost, unit = _plain(predictor), max(n_samples, 1), PLAIN_UNIT
    sums = None  # running totals, carried from chunk to chunk
    chunk = max(1, block // row_cost) // unit * unit or unit
    n = len(cells)
    for start in range(0, n, chunk):
        part = cells.iloc[start:start + chunk]
        grouping = [(codes[by][start:start + chunk], len(groups[by])) for by in bys]
        sums = sums_of(part, weights[start:start + chunk], scenarios, grouping, needs, into=sums)
    out = {}
    for req in requests:
        s, g = scenarios.index(req.scenario), bys.index(req.by)
        totals = np.bincount(codes[req.by], weights=weights, minlength=len(groups[req.by]))
        total = sums[s][g]
        vals = total / (totals[:, None] if total.ndim == 3 else totals)
        out[req] = Reduced(groups=groups[req.by], values=vals, weight=totals)
    return out


def canonical_order(cells: pd.DataFrame, codes: Sequence[np.ndarray] = ()) -> np.ndarray:
    """An order of ``cells`` that is a function of their content, whatever order the rows come
    in: by the group codes (the first grouping first), then by a hash of every column. Rows
    that tie are equal in every column, so their order cannot matter; should two different rows
    share a hash, the rows are ordered by their values instead."""
    n = len(cells)
    if n < 2:
        return np.arange(n)
    h = pd.util.hash_pandas_object(cells, index=False).to_numpy()
    order = np.argsort(h)
    hs = h[order]
    tie = np.flatnonzero(hs[1:] == hs[:-1])
    if len(tie):
        other = pd.util.hash_pandas_object(cells.iloc[np.r_[order[tie], order[tie + 1]]], index=False,
                                           hash_key="mrp-formula-2nd!").to_numpy()
        if (other[:len(tie)] != other[len(tie):]).any():  # a collision: order by the values
            order = np.lexsort([_rank(cells[col]) for col in reversed(list(cells.columns))])
    for c in reversed(list(codes)):  # stable sorts, the least significant key first
        order = order[np.argsort(np.asarray(c)[order], kind="stable")]
    return order


def _rank(values: pd.Series) -> np.ndarray:
    """Codes that order the values: numbers by value, anything else by its text."""
    if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(values):
        values = values.astype(str)
    return pd.factorize(values, sort=True, use_na_sentinel=False)[0]


def _plain(predict: Predict):
    def sums_of(part, weights, scenarios, groupings, needs, into=None):
        return plain_weighted_sums(predict, part, weights, scenarios, groupings, needs, into=into)
    return sums_of


def plain_weighted_sums(predict: Predict, cells: pd.DataFrame, weights: np.ndarray, scenarios, groupings,
                        needs, *, into=None) -> list[dict[int, np.ndarray]]:
    """``out[s][g]``: (S, G[, K]) sums of weight x prediction per group of grouping ``g`` (a pair
    of codes per cell and number of groups) under scenario ``s``, for ``g`` in ``needs[s]``;
    the predictions of a whole chunk at once, summed :data:`PLAIN_UNIT` cells at a time onto
    ``into`` (an earlier chunk's result) when given, so the sums do not depend on the chunks."""
    out = []
    for s, (scenario, need) in enumerate(zip(scenarios, needs)):
        if not need:
            out.append({})
            continue
        frame = cells.assign(**dict(scenario.settings)) if scenario.settings else cells
        pred = predict(frame, scenario.exclude)
        weighted = pred * (weights[:, None] if pred.ndim == 3 else weights)
        sums = {}
        for g in need:
            codes, n_groups = groupings[g]
            total = into[s][g] if into is not None else None
            for a in range(0, len(codes), PLAIN_UNIT):
                part = _group_sum(weighted[:, a:a + PLAIN_UNIT], codes[a:a + PLAIN_UNIT], n_groups)
                total = part if total is None else total + part
            sums[g] = total if total is not None else _group_sum(weighted, codes, n_groups)
        out.append(sums)
    return out


def _group_sum(weighted: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the columns of ``weighted`` (S, m[, K]) by group code -> (S, G[, K])."""
    m = len(codes)
    onehot = sparse.csr_matrix((np.ones(m), (np.arange(m), codes)), shape=(m, n_groups))
    if weighted.ndim == 2:
        return np.asarray((onehot.T @ weighted.T).T)
    s, _, k = weighted.shape
    flat = weighted.transpose(1, 0, 2).reshape(m, s * k)
    return np.asarray(onehot.T @ flat).reshape(n_groups, s, k).transpose(1, 0, 2)
