"""Population tables from margins: by independence, or by raking the sample's joint.

Pure functions over pandas; no model here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

WEIGHT = "__weight"


@dataclass(frozen=True)
class RakeResult:
    cells: pd.DataFrame
    iterations: int
    max_error: float
    converged: bool


def normalise_margin(levels: dict[str, float]) -> dict[str, float]:
    total = float(sum(levels.values()))
    return {k: v / total for k, v in levels.items()}


def independent_joint(margins: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Every combination of margin levels, weighted by the product of the shares."""
    names = list(margins)
    shares = [normalise_margin(margins[n]) for n in names]
    rows = []
    for combo in itertools.product(*[list(s.items()) for s in shares]):
        rows.append([lv for lv, _ in combo] + [float(np.prod([w for _, w in combo]))])
    return pd.DataFrame(rows, columns=names + [WEIGHT])


def rake(sample_cells: pd.DataFrame, margins: dict[str, dict[str, float]], *, tol: float = 1e-10,
         max_iter: int = 1000) -> RakeResult:
    """Iterative proportional fitting of ``sample_cells`` (columns = margin vars + WEIGHT) to ``margins``.

    The result keeps the seed's associations (its odds ratios) and matches every margin to ``tol``
    (largest absolute error of a share) when it converges. Every level of a seed column must be
    listed in its margin (a ValueError otherwise: an unlisted level could not be weighted); a margin
    level without seed weight cannot be reached, and the result does not converge.
    """
    cells = sample_cells.copy()
    parts = []  # (code per cell, target share per code)
    for name, margin in margins.items():
        target = normalise_margin(margin)
        index = {level: i for i, level in enumerate(target)}
        labels = cells[name].astype(str)
        codes = labels.map(index)
        if codes.isna().any():
            unlisted = sorted(set(labels[codes.isna()]))
            raise ValueError(f"level(s) {unlisted} of {name!r} are not in its margin")
        parts.append((codes.to_numpy(dtype=np.int64), np.array(list(target.values()), dtype=float)))
    w, it, err = rake_arrays(cells[WEIGHT].to_numpy(dtype=float), parts, tol=tol, max_iter=max_iter)
    cells[WEIGHT] = w
    return RakeResult(cells=cells, iterations=it, max_error=float(err), converged=bool(err < tol))


def rake_arrays(seed: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]], *, tol: float = 1e-10,
                max_iter: int = 1000) -> tuple[np.ndarray, int, float]:
    """The arithmetic of :func:`rake` on arrays: ``seed`` weights per cell and, per margin, (code
    of each cell's level, target share per code) -> (shares per cell, iterations, largest error)."""
    w = seed / seed.sum()
    err = np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        for codes, target in parts:
            current = np.bincount(codes, weights=w, minlength=len(target))
            ratio = np.divide(target, current, out=np.ones_like(target), where=current > 0)
            w = w * ratio[codes]
        err = max((float(np.abs(np.bincount(codes, weights=w, minlength=len(target)) - target).max())
                   for codes, target in parts), default=0.0)
        if err < tol:
            break
    return w, it, float(err)


def rake_many(problems: list[tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]], *, tol: float = 1e-10,
              max_iter: int = 1000) -> list[np.ndarray]:
    """:func:`rake_arrays` of many independent problems, (seed, parts) each, in one loop over
    their concatenation: the shares per cell of each, bit for bit what :func:`rake_arrays` gives
    it alone. Each margin's bins are the problems' bins one after the other, so a bin sums the
    same cells in the same order; a problem whose largest error fell below ``tol`` stops changing
    (its ratios are 1). Problems with different numbers of margins are raked one by one."""
    k = len(problems[0][1]) if problems else 0
    if len(problems) < 2 or k == 0 or any(len(parts) != k for _, parts in problems):
        return [rake_arrays(seed, parts, tol=tol, max_iter=max_iter)[0] for seed, parts in problems]
    w = np.concatenate([seed / seed.sum() for seed, _ in problems])
    margins = []  # per margin: each cell's bin, the target per bin, the problem of each bin, its first bin
    for j in range(k):
        n_bins = np.array([len(parts[j][1]) for _, parts in problems])
        first = np.concatenate([[0], np.cumsum(n_bins)[:-1]])
        codes = np.concatenate([parts[j][0] + f for (_, parts), f in zip(problems, first)])
        target = np.concatenate([parts[j][1] for _, parts in problems])
        margins.append((codes, target, np.repeat(np.arange(len(problems)), n_bins), first))
    active = np.ones(len(problems), dtype=bool)
    for _ in range(max_iter):
        for codes, target, owner, _first in margins:
            current = np.bincount(codes, weights=w, minlength=len(target))
            ratio = np.divide(target, current, out=np.ones_like(target), where=current > 0)
            ratio[~active[owner]] = 1.0
            w = w * ratio[codes]
        err = np.zeros(len(problems))
        for codes, target, _owner, first in margins:
            gap = np.abs(np.bincount(codes, weights=w, minlength=len(target)) - target)
            err = np.maximum(err, np.maximum.reduceat(gap, first))
        active &= ~(err < tol)
        if not active.any():
            break
    return np.split(w, np.cumsum([len(seed) for seed, _ in problems])[:-1])
