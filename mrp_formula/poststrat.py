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

from mrp_formula.population import WEIGHT

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


def poststratify(cells: pd.DataFrame, predict: Predict, requests: Iterable[Request], *,
                 n_samples: int, block: int = DEFAULT_BLOCK) -> dict[Request, Reduced]:
    """Cell-weighted means of the predictions per draw, for every request, in one pass."""
    requests = list(dict.fromkeys(requests))
    weights = cells[WEIGHT].to_numpy(dtype=float)
    bys = {r.by for r in requests}
    codes, groups = {}, {}
    for by in bys:
        codes[by], groups[by] = group_codes(cells, by)
    scenarios = list(dict.fromkeys(r.scenario for r in requests))
    sums: dict[Request, np.ndarray] = {}
    chunk = max(1, block // max(n_samples, 1))
    n = len(cells)
    for start in range(0, n, chunk):
        part = cells.iloc[start:start + chunk]
        w = weights[start:start + chunk]
        for scenario in scenarios:
            frame = part.assign(**dict(scenario.settings)) if scenario.settings else part
            pred = predict(frame, scenario.exclude)
            weighted = pred * (w[:, None] if pred.ndim == 3 else w)
            for req in requests:
                if req.scenario != scenario:
                    continue
                c = codes[req.by][start:start + chunk]
                add = _group_sum(weighted, c, len(groups[req.by]))
                sums[req] = add if req not in sums else sums[req] + add
    out = {}
    for req in requests:
        totals = np.bincount(codes[req.by], weights=weights, minlength=len(groups[req.by]))
        vals = sums[req] / (totals[:, None] if sums[req].ndim == 3 else totals)
        out[req] = Reduced(groups=groups[req.by], values=vals, weight=totals)
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
