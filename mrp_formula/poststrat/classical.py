"""What the model changed: raw sample values and classical weighted (raked) estimates for every
estimand row, the population's coverage by the sample, and the sample-ratio-mismatch check.

Pure pandas/numpy. Raw and weighted values reuse the estimand assembly: they are fed to
:func:`estimands.assemble` as two "draws" (raw, weighted), so contrasts and breakdowns are
formed exactly as for the MRP draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.errors import FitError
from mrp_formula.spec.formula import FormulaInfo
from mrp_formula.poststrat.sums import Reduced, Request
from mrp_formula.data.population import WEIGHT, rake
from mrp_formula.data.tables import Tables
from mrp_formula.notes import Note


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
    if family == "binomial":
        count = count * s[info.response_vars[1]].to_numpy(dtype=float)
    frame = s[[c for c in s.columns if c in tables.variables]].astype(object).astype(str)
    return frame, count


def sample_units(tables: Tables, info: FormulaInfo, family: str, categories) -> Units:
    s = tables.sample
    frame, count = _frame_and_count(tables, info, family)
    y = s[info.response_vars[0]]
    if family == "binomial":
        trials = s[info.response_vars[1]].to_numpy(dtype=float)
        outcome = (y.to_numpy(dtype=float) / np.where(trials > 0, trials, 1))[:, None]
    elif family in ("categorical", "cumulative"):
        levels = [c for c in categories if c != "mean"]
        text = y.astype(str).to_numpy()
        outcome = np.stack([(text == lv).astype(float) for lv in levels], axis=1)
        if family == "cumulative":
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


@dataclass(frozen=True)
class Coverage:
    cells_without_sample: int
    cells: int
    weight_without_sample: float  # share of population weight in cells no sample row falls in
    new_level_share: dict
    n_units: float
    effective_n: float  # Kish effective sample size of the raking weights
    design_effect: float

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
        return out


def coverage_lines(cov: Coverage, new_levels: dict) -> list[str]:
    """What ``mrp check`` prints of the coverage: cells and weight without sample, new levels and
    their share of the weight, and the design effect of weighting."""
    out = [f"{cov.cells - cov.cells_without_sample} of {cov.cells} population cells have sample; "
           f"{cov.cells_without_sample} ({cov.weight_without_sample:.1%} of the population weight) have none"
           + (": the model extrapolates there" if cov.cells_without_sample else "")]
    for factor, share in cov.new_level_share.items():
        levels = list(new_levels.get(factor, ()))
        out.append(f"new levels of '{factor}' (no sample; effects drawn from the fitted group distribution): "
                   f"{', '.join(levels[:8])}{' ...' if len(levels) > 8 else ''}, {share:.1%} of the population weight")
    out.append(f"effective sample size {cov.effective_n:.0f} of {cov.n_units:.0f} after weighting to the "
               f"population margins (design effect {cov.design_effect:.2f})")
    return out


def coverage(tables: Tables, info: FormulaInfo, family: str, categories=None) -> Coverage:
    """Population cells and weight the sample does not reach, new levels, and the design effect of
    raking the sample to the population (needs no posterior: ``mrp check`` reports it too)."""
    frame, c = _frame_and_count(tables, info, family)
    post_vars = [v for v in tables.population_vars if v in frame.columns]
    pop = tables.population
    if post_vars:
        seen = set(map(tuple, frame[post_vars].to_numpy()))
        keys = list(map(tuple, pop[post_vars].astype(str).to_numpy()))
        empty = np.array([k not in seen for k in keys])
    else:
        empty = np.zeros(len(pop), bool)
    w = rake_weights(frame, c, pop, post_vars) if post_vars else np.ones(len(frame))
    n = float(c.sum())
    eff = float((w * c).sum() ** 2 / max((w * w * c).sum(), 1e-300))
    return Coverage(cells_without_sample=int(empty.sum()), cells=int(len(pop)),
                    weight_without_sample=float(pop.loc[empty, WEIGHT].sum() / pop[WEIGHT].sum()),
                    new_level_share=dict(tables.new_level_share), n_units=n, effective_n=eff,
                    design_effect=n / eff if eff > 0 else float("inf"))


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
NOISE_PARAMS = {"gaussian": "sigma", "negativebinomial": "alpha"}


def noise_draws(posterior, family: str, n_samples: int) -> np.ndarray | None:
    """Draws (S,) of the family's noise parameter (gaussian sigma, negative binomial alpha), in the
    predictor's order (chains, then draws), from a DataTree, a Dataset or a mapping; None for
    families without one."""
    name = NOISE_PARAMS.get(family)
    if name is None:
        return None
    if posterior is None:
        raise FitError(f"the posterior predictive check of the {family} family needs the draws of '{name}'")
    try:  # a DataTree (or a mapping) with a posterior group, or the group itself
        post = posterior["posterior"]
    except (KeyError, TypeError):
        post = posterior
    post = post.to_dataset() if hasattr(post, "to_dataset") else post
    if name not in post:
        raise FitError(f"the posterior has no '{name}': cannot replicate {family} outcomes")
    da = post[name]
    if hasattr(da, "dims") and {"chain", "draw"} <= set(da.dims):
        da = da.transpose("chain", "draw", ...)
    values = np.asarray(da, dtype=float).reshape(-1)
    if len(values) != n_samples:
        raise FitError(f"'{name}' has {len(values)} values, not one per draw ({n_samples}): the posterior "
                       f"predictive check replicates a single {name} per draw")
    return values


def replicate_means(family: str, mean: np.ndarray, n_units: float, rng: np.random.Generator, *,
                    noise: np.ndarray | None = None, mean_sq: np.ndarray | None = None,
                    values: np.ndarray | None = None) -> np.ndarray:
    """Replicated observed means of a group of ``n_units`` observations (frequency weights and
    binomial trials counted), one per draw, given the predicted mean per draw ``mean``
    ((S,), or (S, K) category probabilities, plus the expected value for cumulative).

    The observation noise of each family is added, so that the interval of the result is where
    the group's observed mean should fall if the model is right:

    * gaussian: mean + sigma z / sqrt(n) (exact: the mean of n normal outcomes with sigma ``noise``);
    * poisson: Poisson(n mean) / n (exact: a sum of independent Poisson outcomes);
    * negativebinomial: Poisson(L) / n, L ~ Gamma with the mean n mean and the variance
      n ``mean_sq`` / alpha of the sum of the gamma rates of the units (``mean_sq``: the mean of
      the squared expected outcomes; alpha: ``noise``); the replicated sum has exactly the mean
      and variance of a sum of negative binomial outcomes, and is that sum when the units share
      one expected outcome;
    * bernoulli, binomial: Binomial(n, mean) / n (the variance of units that share one rate; with
      rates that differ within the group it is a little wider than the exact one, never narrower);
    * categorical, cumulative: Multinomial(n, mean) / n per category (the same), and for cumulative
      the mean of the category ``values`` over the replicated shares.
    """
    n = float(n_units)
    if n <= 0:
        return np.asarray(mean, dtype=float)
    if family == "gaussian":
        return mean + noise * rng.standard_normal(len(mean)) / np.sqrt(n)
    if family == "poisson":
        return rng.poisson(np.maximum(mean, 0.0) * n) / n
    if family == "negativebinomial":
        m1 = np.maximum(mean, 0.0) * n  # E sum
        var = np.maximum(mean_sq, 0.0) * n / noise  # Var of the sum of gamma rates
        with np.errstate(divide="ignore", invalid="ignore"):
            shape = np.where(var > 0, m1 * m1 / var, np.inf)
            scale = np.where(m1 > 0, var / m1, 0.0)
        rate = np.where(np.isfinite(shape) & (m1 > 0), rng.gamma(np.where(np.isfinite(shape), shape, 1.0),
                                                                  np.maximum(scale, 0.0)), m1)
        return rng.poisson(rate) / n
    trials = max(round(n), 1)
    if family in ("bernoulli", "binomial"):
        return rng.binomial(trials, np.clip(mean, 0, 1)) / trials
    if family in ("categorical", "cumulative"):
        k = len(values) if family == "cumulative" else mean.shape[1]
        p = np.clip(mean[:, :k], 0, None)
        p = p / p.sum(axis=1, keepdims=True)
        shares = rng.multinomial(trials, p) / trials
        if family == "cumulative":
            shares = np.concatenate([shares, (shares @ values)[:, None]], axis=1)
        return shares
    raise FitError(f"no observation noise for the {family} family")  # pragma: no cover - spec families


def ppc(tables: Tables, info: FormulaInfo, family: str, categories, predictor, n_samples: int,
        ci_prob: float, ci_kind: str, *, posterior=None, seed: int = 20261124) -> pd.DataFrame:
    """Posterior predictive check by group: observed vs predicted mean outcome per level of each
    categorical model variable, over the sample's own units. The interval is that of a replicated
    observed mean, the family's observation noise included (:func:`replicate_means`), so small
    groups are judged fairly. ``predictor`` is what ``poststratify`` takes (a CellPredictor or a
    predict callable); ``posterior`` holds the draws of the noise parameter (gaussian sigma,
    negative binomial alpha), in the predictor's order of draws."""
    from mrp_formula.poststrat.estimands import interval
    from mrp_formula.poststrat.sums import Scenario, poststratify

    units = sample_units(tables, info, family, categories)
    cells = tables.sample.copy()
    cells[WEIGHT] = units.count
    cells = cells.reset_index(drop=True)
    cats = list(categories) if categories else [""]
    noise = noise_draws(posterior, family, n_samples)
    rows = []
    variables = [v for v, var in tables.variables.items() if var.categorical]
    reqs = [Request(Scenario(), (v,)) for v in variables]
    reduced = poststratify(cells, predictor, reqs, n_samples=n_samples)
    squares = {}
    if family == "negativebinomial" and reqs:  # the mean of the squared expected outcomes per group
        predict = predictor.predict if hasattr(predictor, "predict") else predictor
        squares = poststratify(cells, lambda part, exclude=(): predict(part, exclude) ** 2, reqs,
                               n_samples=n_samples)
    values = _values([c for c in cats if c != "mean"]) if family == "cumulative" else None
    rng = np.random.default_rng([int(seed), 20261124])
    for v, req in zip(variables, reqs):
        red = reduced[req]
        for gi, level in enumerate(red.groups[v]):
            m = (units.frame[v] == str(level)).to_numpy()
            c = units.count[m]
            observed = (units.outcome[m] * c[:, None]).sum(0) / c.sum()
            mean = red.values[:, gi]
            mean_sq = squares[req].values[:, gi] if squares else None
            replicated = replicate_means(family, mean, c.sum(), rng, noise=noise, mean_sq=mean_sq, values=values)
            for k, cat in enumerate(cats):
                draws = replicated[:, k] if replicated.ndim == 2 else replicated
                predicted = mean[:, k] if mean.ndim == 2 else mean
                lo, hi = interval(draws, ci_prob, ci_kind)
                rows.append({"variable": v, "level": str(level), "category": cat or None, "units": float(c.sum()),
                             "observed": float(observed[k]), "predicted": float(np.mean(predicted)),
                             "lower": lo, "upper": hi, "inside": bool(lo <= observed[k] <= hi)})
    out = pd.DataFrame(rows)
    if not categories and len(out):
        out = out.drop(columns=["category"])
    return out
