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
    """Iterative proportional fitting of ``sample_cells`` (columns = margin vars + WEIGHT) to ``margins``."""
    cells = sample_cells.copy()
    w = cells[WEIGHT].to_numpy(dtype=float)
    w = w / w.sum()
    targets = {n: normalise_margin(m) for n, m in margins.items()}
    codes = {n: cells[n].astype(str).to_numpy() for n in margins}
    err = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        for name, target in targets.items():
            for level, share in target.items():
                mask = codes[name] == level
                current = w[mask].sum()
                if current > 0:
                    w[mask] *= share / current
        err = max(abs(w[codes[n] == lv].sum() - s) for n, t in targets.items() for lv, s in t.items())
        if err < tol:
            break
    cells[WEIGHT] = w
    return RakeResult(cells=cells, iterations=it, max_error=float(err), converged=bool(err < tol))
