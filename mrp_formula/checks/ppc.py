"""The posterior predictive check by group: observed vs replicated group means, the family's
observation noise included, so that small groups are not flagged for noise alone."""

from __future__ import annotations


import numpy as np
import pandas as pd

from mrp_formula.spec.families import FAMILIES
from mrp_formula.data.population import WEIGHT
from mrp_formula.data.tables import Tables
from mrp_formula.errors import FitError
from mrp_formula.poststrat.classical import _values, sample_units
from mrp_formula.poststrat.sums import Request
from mrp_formula.spec.formula import FormulaInfo


# the auxiliary parameter that is observation noise (not the thresholds of ordered categories)
NOISE_PARAMS = {"gaussian": "sigma", "negativebinomial": "alpha"}  # replicate_means draws these families' noise; others use the record's variance


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
                    values: np.ndarray | None = None, variance: np.ndarray | None = None) -> np.ndarray:
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
      the mean of the category ``values`` over the replicated shares;
    * the families whose record gives a variance (gamma, lognormal, t, beta, hurdle and
      zero-inflated families...): mean + sqrt(``variance`` / n) z, with ``variance`` the mean over
      the group's units of the variance of one outcome (the exact variance of the group's mean,
      with a normal shape: a little narrow in the skewed tail of small groups).
    """
    n = float(n_units)
    if n <= 0:
        return np.asarray(mean, dtype=float)
    if FAMILIES[family].variance is not None:
        return mean + np.sqrt(np.maximum(variance, 0.0) / n) * rng.standard_normal(len(mean))
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
    if FAMILIES[family].binary:
        return rng.binomial(trials, np.clip(mean, 0, 1)) / trials
    if FAMILIES[family].has_categories:
        ordinal = FAMILIES[family].categories == "ordinal"  # a last column: the mean category value
        k = len(values) if ordinal else mean.shape[1]
        p = np.clip(mean[:, :k], 0, None)
        p = p / p.sum(axis=1, keepdims=True)
        shares = rng.multinomial(trials, p) / trials
        if ordinal:
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
    variances = {}
    if FAMILIES[family].variance is not None and reqs:  # the mean variance of one outcome per group
        variances = poststratify(cells, predictor.variance, reqs, n_samples=n_samples)
    values = _values([c for c in cats if c != "mean"]) if FAMILIES[family].categories == "ordinal" else None
    rng = np.random.default_rng([int(seed), 20261124])
    for v, req in zip(variables, reqs):
        red = reduced[req]
        for gi, level in enumerate(red.groups[v]):
            m = (units.frame[v] == str(level)).to_numpy()
            c = units.count[m]
            observed = (units.outcome[m] * c[:, None]).sum(0) / c.sum()
            mean = red.values[:, gi]
            mean_sq = squares[req].values[:, gi] if squares else None
            var = variances[req].values[:, gi] if variances else None
            replicated = replicate_means(family, mean, c.sum(), rng, noise=noise, mean_sq=mean_sq, values=values,
                                         variance=var)
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
