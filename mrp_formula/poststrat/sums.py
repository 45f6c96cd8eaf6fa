"""Poststratification in bounded memory: predict population cells chunk by chunk and reduce
each chunk to weighted sums per group as it goes. Pure numpy; the predictions come from a
callable, so this module knows nothing of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from scipy import sparse

from mrp_formula.data.population import WEIGHT

Predict = Callable[[pd.DataFrame, tuple[str, ...]], np.ndarray]  # (cells, exclude) -> (S, n[, K])

# Elements of one (draws x cells) block; 1e7 float64 is 80 MB.
DEFAULT_BLOCK = 10_000_000


@dataclass(frozen=True)
class Scenario:
    """Variables set to one level for the whole population, and model terms left out."""

    settings: tuple[tuple[str, str], ...] = ()
    exclude: tuple[str, ...] = ()


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
    num = pd.to_numeric(col, errors="coerce")
    if num.notna().all():
        return num
    return col


def poststratify(cells: pd.DataFrame, predictor, requests: Iterable[Request], *,
                 n_samples: int, block: int = DEFAULT_BLOCK) -> dict[Request, Reduced]:
    """Cell-weighted means of the predictions per draw, for every request, in one pass.

    ``predictor`` is a plain ``predict(cells, exclude)`` callable, or an object with
    ``weighted_sums`` (see :func:`plain_weighted_sums`) and ``row_cost(n_scenarios)``, the
    values it holds per cell of a chunk; a chunk has ``block // row_cost`` cells.
    """
    requests = list(dict.fromkeys(requests))
    if not requests:
        return {}
    weights = cells[WEIGHT].to_numpy(dtype=float)
    bys = list(dict.fromkeys(r.by for r in requests))
    codes, groups = {}, {}
    for by in bys:
        codes[by], groups[by] = group_codes(cells, by)
    scenarios = list(dict.fromkeys(r.scenario for r in requests))
    needs = [sorted({bys.index(r.by) for r in requests if r.scenario == sc}) for sc in scenarios]
    if hasattr(predictor, "weighted_sums"):
        sums_of, row_cost = predictor.weighted_sums, max(1, int(predictor.row_cost(len(scenarios))))
    else:
        sums_of, row_cost = _plain(predictor), max(n_samples, 1)
    sums: list[dict[int, np.ndarray]] = [{} for _ in scenarios]
    chunk = max(1, block // row_cost)
    n = len(cells)
    for start in range(0, n, chunk):
        part = cells.iloc[start:start + chunk]
        grouping = [(codes[by][start:start + chunk], len(groups[by])) for by in bys]
        got = sums_of(part, weights[start:start + chunk], scenarios, grouping, needs)
        for s, need in enumerate(needs):
            for g in need:
                sums[s][g] = got[s][g] if g not in sums[s] else sums[s][g] + got[s][g]
    out = {}
    for req in requests:
        s, g = scenarios.index(req.scenario), bys.index(req.by)
        totals = np.bincount(codes[req.by], weights=weights, minlength=len(groups[req.by]))
        total = sums[s][g]
        vals = total / (totals[:, None] if total.ndim == 3 else totals)
        out[req] = Reduced(groups=groups[req.by], values=vals, weight=totals)
    return out


def _plain(predict: Predict):
    def sums_of(part, weights, scenarios, groupings, needs):
        return plain_weighted_sums(predict, part, weights, scenarios, groupings, needs)
    return sums_of


def plain_weighted_sums(predict: Predict, cells: pd.DataFrame, weights: np.ndarray, scenarios, groupings,
                        needs) -> list[dict[int, np.ndarray]]:
    """``out[s][g]``: (S, G[, K]) sums of weight x prediction per group of grouping ``g`` (a pair
    of codes per cell and number of groups) under scenario ``s``, for ``g`` in ``needs[s]``;
    the predictions of a whole chunk at once."""
    out = []
    for scenario, need in zip(scenarios, needs):
        if not need:
            out.append({})
            continue
        frame = cells.assign(**dict(scenario.settings)) if scenario.settings else cells
        pred = predict(frame, scenario.exclude)
        weighted = pred * (weights[:, None] if pred.ndim == 3 else weights)
        out.append({g: _group_sum(weighted, *groupings[g]) for g in need})
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
