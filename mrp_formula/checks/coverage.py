"""Population coverage by the sample (cells and weight without sample, new levels, the design
effect of weighting the sample to the population) and the sample-ratio-mismatch check of an A/B
allocation. Neither needs a posterior: `mrp check` reports them too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrp_formula.data.population import WEIGHT
from mrp_formula.data.population_table import new_level_origin
from mrp_formula.data.tables import Tables
from mrp_formula.notes import Note
from mrp_formula.spec.levels import canon_series
from mrp_formula.poststrat.classical import _frame_and_count, cell_vars, rake_weights
from mrp_formula.spec.formula import FormulaInfo


@dataclass(frozen=True)
class Coverage:
    cells_without_sample: int
    cells: int
    weight_without_sample: float  # share of population weight in cells no sample row falls in
    new_level_share: dict
    n_units: float
    effective_n: float  # Kish effective sample size of the raking weights
    design_effect: float
    numeric: tuple[str, ...] = ()  # numeric predictors whose sample values the population lacks: left out of cells and raking

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def notes(self) -> list[str]:
        out = []
        if self.cells_without_sample:
            out.append(f"{self.cells_without_sample} of {self.cells} population cells "
                       f"({self.weight_without_sample:.1%} of the weight) have no sample: the model "
                       f"extrapolates there")
        out.append(f"weighting the sample to the population margins gives an effective sample size of "
                   f"{self.effective_n:.0f} of {self.n_units:.0f} (design effect {self.design_effect:.2f})")
        if self.numeric:
            out.append(_numeric_line(self.numeric))
        return out


def coverage_lines(cov: Coverage, new_levels: dict, kinds: dict | None = None) -> list[str]:
    """What ``mrp check`` prints of the coverage: cells and weight without sample, new levels and
    their share of the weight, and the design effect of weighting. ``kinds``: the structure of each
    structured group factor (rw1, ar1, icar, ...); the others are iid."""
    out = [f"{cov.cells - cov.cells_without_sample} of {cov.cells} population cells have sample; "
           f"{cov.cells_without_sample} ({cov.weight_without_sample:.1%} of the population weight) have none"
           + (": the model extrapolates there" if cov.cells_without_sample else "")]
    for factor, share in cov.new_level_share.items():
        levels = list(new_levels.get(factor, ()))
        origin = new_level_origin((kinds or {}).get(factor, "iid"), factor)
        out.append(f"new levels of '{factor}' (no sample; {origin}): "
                   f"{', '.join(levels[:8])}{' ...' if len(levels) > 8 else ''}, {share:.1%} of the population weight")
    out.append(f"effective sample size {cov.effective_n:.0f} of {cov.n_units:.0f} after weighting to the "
               f"population margins (design effect {cov.design_effect:.2f})")
    if cov.numeric:
        out.append(_numeric_line(cov.numeric))
    return out


def _numeric_line(numeric: tuple[str, ...]) -> str:
    names = ", ".join(f"'{v}'" for v in numeric)
    return (f"numeric predictor(s) {names}: their sample values are not the population's, so cells with and "
            f"without sample, the weighting and the classical 'weighted' estimates leave them out (the model "
            f"takes them as numbers)")


def coverage(tables: Tables, info: FormulaInfo, family: str, categories=None) -> Coverage:
    """Population cells and weight the sample does not reach, new levels, and the design effect of
    raking the sample to the population (needs no posterior: ``mrp check`` reports it too)."""
    frame, c = _frame_and_count(tables, info, family)
    post_vars = cell_vars(tables, frame)
    pop = tables.population
    if post_vars:
        seen = set(map(tuple, frame[post_vars].to_numpy()))
        keys = list(zip(*(canon_series(pop[v]) for v in post_vars)))
        empty = np.array([k not in seen for k in keys])
    else:
        empty = np.zeros(len(pop), bool)
    w = rake_weights(frame, c, pop, post_vars) if post_vars else np.ones(len(frame))
    n = float(c.sum())
    eff = float((w * c).sum() ** 2 / max((w * w * c).sum(), 1e-300))
    return Coverage(cells_without_sample=int(empty.sum()), cells=int(len(pop)),
                    weight_without_sample=float(pop.loc[empty, WEIGHT].sum() / pop[WEIGHT].sum()),
                    new_level_share=dict(tables.new_level_share), n_units=n, effective_n=eff,
                    design_effect=n / eff if eff > 0 else float("inf"),
                    numeric=_numeric_left_out(tables, post_vars))


def _numeric_left_out(tables: Tables, matched: list[str]) -> tuple[str, ...]:
    """The population's numeric predictors left out of the cells (their sample values are not the
    population's) that the matched variables do not determine either."""
    pop = tables.population
    left = [v for v in tables.population_vars if v in tables.variables and v not in matched]
    if not matched:
        return tuple(left)
    return tuple(v for v in left if pop.groupby(matched, observed=True)[v].nunique().max() > 1)


def srm_check(tables: Tables, allocation: dict[str, dict[str, float]]) -> list[Note]:
    """Sample ratio mismatch: observed arm counts against the planned allocation (chi-square)."""
    from scipy.stats import chisquare

    notes = []
    s = tables.sample
    count = s[tables.weights].to_numpy(dtype=float) if tables.weights else np.ones(len(s))
    for var, plan in allocation.items():
        observed = pd.Series(count).groupby(s[var].astype(str).to_numpy()).sum()
        levels = list(plan)
        obs = np.array([observed.get(lv, 0.0) for lv in levels])
        share = np.array([plan[lv] for lv in levels], dtype=float)
        expected = share / share.sum() * obs.sum()
        p = float(chisquare(obs, expected).pvalue)
        detail = ", ".join(f"{lv}: {int(o)} (planned {e:.0f})" for lv, o, e in zip(levels, obs, expected))
        if p < 0.001:
            notes.append(Note("srm.mismatch", f"sample ratio mismatch in '{var}' (chi-square p = {p:.2g}; {detail}): "
                              f"the assignment or the logging is broken; do not trust the comparison until it "
                              f"is explained", "warning"))
        else:
            notes.append(Note("srm.ok", f"sample ratio of '{var}' matches the planned allocation (p = {p:.2g}; "
                              f"{detail})"))
    return notes


# Parameters of each family's observation noise besides the mean (Bambi's names).
