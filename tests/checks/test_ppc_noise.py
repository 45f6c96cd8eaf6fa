"""The posterior predictive check replicates observed group means with the family's own noise.

Data are simulated from the model itself, in many small groups (1 to 4 units). The check is
first run with a posterior that is the truth itself (every draw the simulating parameters), so
the only spread of a replicated group mean is the observation noise: a group then falls outside
its 95% interval with probability 5% (at most, for discrete outcomes), and the number of groups
flagged is at most Binomial(G, 0.05). The tolerance is that binomial's 99.9% quantile. Checks
with the wrong noise (sigma too small, overdispersed counts judged as poisson) show that the
tolerance can fail. One end-to-end run fits a gaussian model (few draws) and reads ppc.csv.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import expit
from scipy.stats import binom

import mrp_formula
from mrp_formula.checks import ppc as classical
from mrp_formula.steps import plan as prepared_plan

G = 240  # groups
S = 2000  # draws of the point-mass posterior (fewer bend the 95% interval estimate: 400 ETIs miss 5.5%)
CI = 0.95
SIGMA, ALPHA = 1.5, 2.0
MAX_FLAGGED = int(binom.ppf(0.999, G, 1 - CI))


def _data(family: str, seed: int, *, overdispersed: bool = False):
    """Rows of G groups of 1-4 units, outcome simulated from the model; the expected outcome per group."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, size=G)
    groups = np.array([f"g{i:03d}" for i in range(G)])
    effect = rng.normal(0, 0.5, G)
    g = np.repeat(np.arange(G), sizes)
    if family == "gaussian":
        mu = 10.0 + 3 * effect
        y = rng.normal(mu[g], SIGMA)
    elif family == "poisson":
        mu = np.exp(0.7 + effect)
        y = rng.negative_binomial(1.0, 1.0 / (1.0 + mu[g])) if overdispersed else rng.poisson(mu[g])
    elif family == "negativebinomial":
        mu = np.exp(0.7 + effect)
        y = rng.negative_binomial(ALPHA, ALPHA / (ALPHA + mu[g]))
    elif family == "bernoulli":
        mu = expit(-0.3 + 2 * effect)
        y = (rng.random(len(g)) < mu[g]).astype(int)
    else:  # pragma: no cover
        raise AssertionError(family)
    return pd.DataFrame({"g": groups[g], "y": y}), dict(zip(groups, mu))


def _plan(tmp_path, family: str, data: pd.DataFrame, *, weights: str | None = None):
    data.to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"g": sorted(set(data["g"])), "n": 1}).to_csv(tmp_path / "pop.csv", index=False)
    extra = f'weights = "{weights}"' if weights else ""
    (tmp_path / "s.toml").write_text(textwrap.dedent(f"""
        name = "ppc"
        [data]
        source = "d.csv"
        {extra}
        [model]
        formula = "y ~ 1 + (1|g)"
        family = "{family}"
        [population]
        source = "pop.csv"
        weight = "n"
        [estimands.overall]
    """))
    return prepared_plan(tmp_path / "s.toml")


def _point_mass(mu_by_group: dict, scale: float = 1.0):
    """A predict callable whose every draw is the truth (times ``scale``)."""
    def predict(cells, exclude=()):
        mu = cells["g"].astype(str).map(mu_by_group).to_numpy(dtype=float) * scale
        return np.tile(mu, (S, 1))
    return predict


def _posterior(name: str | None, value: float):
    if name is None:
        return None
    return xr.Dataset({name: (("chain", "draw"), np.full((2, S // 2), value))})


def _flagged_groups(table: pd.DataFrame) -> int:
    rows = table[table["variable"] == "g"]
    assert len(rows) == G
    return int((~rows["inside"]).sum())


@pytest.mark.parametrize("ci_kind", ["eti", "hdi"])
@pytest.mark.parametrize("family,noise", [("gaussian", ("sigma", SIGMA)), ("poisson", (None, 0.0)),
                                          ("negativebinomial", ("alpha", ALPHA)), ("bernoulli", (None, 0.0))])
def test_small_groups_are_flagged_at_most_at_the_nominal_rate(tmp_path, family, noise, ci_kind):
    data, mu = _data(family, seed=7)
    plan = _plan(tmp_path, family, data)
    table = classical.ppc(plan.tables, plan.info, family, None, _point_mass(mu), S, CI, ci_kind,
                          posterior=_posterior(*noise), seed=1)
    flagged = _flagged_groups(table)
    assert flagged <= MAX_FLAGGED, (family, flagged, MAX_FLAGGED)
    rows = table[table["variable"] == "g"]
    assert (rows["units"] <= 4).all() and (rows["lower"] <= rows["upper"]).all()
    if family != "bernoulli":  # the replicated means spread around the truth: not a point
        assert (rows["upper"] > rows["lower"]).mean() > 0.9
    # the predicted mean is the truth's (a point-mass posterior), observed is the data's mean
    truth = rows["level"].map(mu).to_numpy()
    np.testing.assert_allclose(rows["predicted"], truth, rtol=1e-12)
    np.testing.assert_allclose(rows["observed"], data.groupby("g")["y"].mean().loc[rows["level"]].to_numpy())


def test_too_little_noise_is_caught(tmp_path):
    """The tolerance is not loose: replicating with a third of the true sigma flags many groups."""
    data, mu = _data("gaussian", seed=32)
    plan = _plan(tmp_path, "gaussian", data)
    table = classical.ppc(plan.tables, plan.info, "gaussian", None, _point_mass(mu), S, CI, "eti",
                          posterior=_posterior("sigma", SIGMA / 3), seed=1)
    assert _flagged_groups(table) > 3 * MAX_FLAGGED  # far beyond the tolerance


def test_overdispersed_counts_are_caught_by_the_poisson_check(tmp_path):
    """Negative binomial counts (variance mu + mu^2) judged with poisson noise: flagged often."""
    data, mu = _data("poisson", seed=33, overdispersed=True)
    plan = _plan(tmp_path, "poisson", data)
    table = classical.ppc(plan.tables, plan.info, "poisson", None, _point_mass(mu), S, CI, "eti", seed=1)
    assert _flagged_groups(table) > MAX_FLAGGED  # the tolerance the model's own data pass


def test_noise_parameter_is_required_and_read_per_draw(tmp_path):
    data, mu = _data("gaussian", seed=34)
    plan = _plan(tmp_path, "gaussian", data)
    with pytest.raises(mrp_formula.errors.FitError, match="sigma"):
        classical.ppc(plan.tables, plan.info, "gaussian", None, _point_mass(mu), S, CI, "eti")
    chains = xr.Dataset({"sigma": (("chain", "draw"), np.arange(S, dtype=float).reshape(2, S // 2))})
    got = classical.noise_draws(xr.DataTree.from_dict({"posterior": chains}), "gaussian", S)
    np.testing.assert_array_equal(got, np.arange(S))  # chains, then draws: the predictor's order
    assert classical.noise_draws(None, "poisson", S) is None
    with pytest.raises(mrp_formula.errors.FitError, match="one per draw"):
        classical.noise_draws(chains, "gaussian", S + 1)


def test_replicated_means_have_the_family_variance():
    """Each family's replicated mean of n units has the mean and variance of n outcomes."""
    rng = np.random.default_rng(5)
    reps = 200_000
    n = 3.0
    mean = np.full(reps, 2.5)
    cases = {
        "gaussian": ({"noise": np.full(reps, SIGMA)}, SIGMA**2 / n),
        "poisson": ({}, 2.5 / n),
        "negativebinomial": ({"noise": np.full(reps, ALPHA), "mean_sq": mean**2}, (2.5 + 2.5**2 / ALPHA) / n),
    }
    for family, (kw, var) in cases.items():
        x = classical.replicate_means(family, mean, n, rng, **kw)
        assert x.mean() == pytest.approx(2.5, abs=4 * np.sqrt(var / reps)), family
        assert x.var() == pytest.approx(var, rel=0.02), family
    # negative binomial units with different means: the sum keeps the exact mean and variance
    m = np.array([0.5, 4.5])  # two units
    sum_var = m.sum() + (m**2).sum() / ALPHA
    x = classical.replicate_means("negativebinomial", np.full(reps, m.mean()), 2.0, rng,
                                  noise=np.full(reps, ALPHA), mean_sq=np.full(reps, (m**2).mean())) * 2
    assert x.mean() == pytest.approx(m.sum(), abs=4 * np.sqrt(sum_var / reps))
    assert x.var() == pytest.approx(sum_var, rel=0.02)
    # categorical: multinomial shares; cumulative adds the mean category value
    p = np.tile([0.2, 0.3, 0.5], (reps, 1))
    shares = classical.replicate_means("categorical", p, 4, rng)
    np.testing.assert_allclose(shares.sum(1), 1.0)
    assert shares[:, 0].var() == pytest.approx(0.2 * 0.8 / 4, rel=0.02)
    cum = classical.replicate_means("cumulative", np.c_[p, p @ [1, 2, 3]], 4, rng, values=np.array([1.0, 2, 3]))
    np.testing.assert_allclose(cum[:, 3], cum[:, :3] @ [1, 2, 3])


def test_frequency_weights_count_as_units(tmp_path):
    """The same bernoulli data as rows or as weighted rows: the same units and intervals."""
    data, mu = _data("bernoulli", seed=35)
    (tmp_path / "rows").mkdir()
    (tmp_path / "w").mkdir()
    rows_plan = _plan(tmp_path / "rows", "bernoulli", data)
    weighted = data.groupby(["g", "y"]).size().rename("w").reset_index()
    w_plan = _plan(tmp_path / "w", "bernoulli", weighted, weights="w")
    a = classical.ppc(rows_plan.tables, rows_plan.info, "bernoulli", None, _point_mass(mu), S, CI, "eti", seed=1)
    b = classical.ppc(w_plan.tables, w_plan.info, "bernoulli", None, _point_mass(mu), S, CI, "eti", seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert a.loc[a["variable"] == "g", "units"].sum() == len(data)


@pytest.mark.slow
def test_a_gaussian_run_flags_small_groups_at_most_at_the_nominal_rate(tmp_path):
    """End to end: fit (few draws), then ppc.csv of the run, with the posterior's own sigma."""
    rng = np.random.default_rng(36)
    n_groups = 80
    sizes = rng.integers(1, 4, size=n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    y = 5.0 + rng.normal(0, 1.0, n_groups)[g] + rng.normal(0, 2.0, len(g))
    pd.DataFrame({"g": [f"g{i:02d}" for i in g], "y": y}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"g": [f"g{i:02d}" for i in range(n_groups)], "n": 1}).to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent("""
        name = "ppc-run"
        [data]
        source = "d.csv"
        [model]
        formula = "y ~ 1 + (1|g)"
        family = "gaussian"
        [model.priors]
        "1|g" = "Normal(0, HalfNormal(2))"
        [fit]
        draws = 150
        tune = 150
        chains = 2
        seed = 3
        [population]
        source = "pop.csv"
        weight = "n"
        [estimands.overall]
        [report]
        plots = false
    """))
    result = mrp_formula.run(tmp_path / "s.toml", out=tmp_path / "run", cache=False)
    table = pd.read_csv(tmp_path / "run" / "ppc.csv")
    rows = table[table["variable"] == "g"]
    assert len(rows) == n_groups and (rows["units"] <= 3).all()
    limit = int(binom.ppf(0.999, n_groups, 1 - CI))
    assert int((~rows["inside"]).sum()) <= limit
    # the intervals are those of replicated means: wider than the spread of the predicted means alone
    sigma = float(result.posterior["posterior"]["sigma"].mean())
    width = (rows["upper"] - rows["lower"]).to_numpy()
    assert (width > 2 * 1.96 * sigma / np.sqrt(rows["units"].to_numpy()) * 0.8).all()
