"""The sampler (mrp_formula/model/sampler.py): nutpie is called straight from the built PyMC model,
skipping ``pm.sample``'s step-method assignment, and must draw what Bambi's own ``fit`` draws."""

from __future__ import annotations

import numpy as np
import pytest

from mrp_formula import steps
from mrp_formula.model import nuts, sampler


def _through_bambi(plan, low_rank: bool):
    import pytensor

    f = plan.loaded.spec.fit
    options = {"adaptation": "low_rank"} if low_rank else None
    model = steps.build(plan)
    with pytensor.config.change_flags(numba__fastmath=False):
        return model.fit(inference_method="nutpie", draws=f.draws, tune=f.tune, chains=f.chains,
                         cores=nuts.cores(f.chains), random_seed=f.seed, target_accept=f.target_accept,
                         discard_tuned_samples=False, progressbar=False, nuts=options)


@pytest.mark.slow  # compiles and samples twice
@pytest.mark.parametrize("mass_matrix", ["diagonal", "low_rank"])
def test_direct_nutpie_draws_what_bambis_fit_draws(ab_dir, mass_matrix):
    plan = steps.plan(ab_dir / "ab.toml", ("fit.draws=60", "fit.tune=60", "fit.chains=2", "fit.seed=17"))
    ours = sampler.fit(steps.build(plan), plan.loaded, mass_matrix=mass_matrix).posterior
    theirs = _through_bambi(plan, mass_matrix == "low_rank")
    assert sorted(ours["posterior"].data_vars) == sorted(theirs["posterior"].data_vars)
    for name in theirs["posterior"].data_vars:
        np.testing.assert_array_equal(ours["posterior"][name].values, theirs["posterior"][name].values)
        assert ours["posterior"][name].dims == theirs["posterior"][name].dims
    for stat in ("diverging", "n_steps", "step_size"):
        np.testing.assert_array_equal(ours["sample_stats"][stat].values, theirs["sample_stats"][stat].values)
    # the tuning draws were counted, then dropped
    assert ours["sample_stats"].attrs["mrp_gradients_tuning"] == int(theirs["warmup_sample_stats"]["n_steps"].sum())
    assert not [g for g in ours.children if g.startswith("warmup_")]


@pytest.mark.slow
def test_progress_reaches_the_callback_as_chain_states(ab_dir):
    from mrp_formula.progress import ChainState

    plan = steps.plan(ab_dir / "ab.toml", ("fit.draws=30", "fit.tune=30", "fit.chains=2"))
    seen = []
    sampler.fit(steps.build(plan), plan.loaded, on_progress=seen.append)
    assert seen and all(isinstance(c, ChainState) for snap in seen for c in snap)
    assert {c.chain for c in seen[-1]} == {0, 1}
    assert all(c.finished == c.total == 60 for c in seen[-1])


# --------------------------------------------------------------------------- slopes in units of their prior

def test_prior_scaling_is_a_change_of_variables_only():
    """The sampler moves v = (x - mu) / sigma: the log density of x is the same, up to the
    constant log-Jacobian, and the value the model sees is x."""
    import pymc as pm

    mu, sigma = np.array([1.0, -2.0]), np.array([0.05, 3.0])
    x = np.array([1.1, 0.5])

    def model(transform):
        with pm.Model() as m:
            b = pm.Normal("b", mu=mu, sigma=sigma, **({"transform": transform} if transform else {}))
            pm.Normal("y", mu=b.sum(), sigma=1.0, observed=[0.3])
        return m

    scaled, plain = model(sampler.prior_scaled()), model(None)
    (value,) = scaled.value_vars
    assert value.name == "b_prior_scaled__"
    lp_scaled = scaled.compile_logp()({value.name: (x - mu) / sigma})
    lp_plain = plain.compile_logp()({"b": x})
    np.testing.assert_allclose(lp_scaled - lp_plain, np.log(sigma).sum(), rtol=1e-12)
    assert scaled.initial_point()[value.name].tolist() == [0.0, 0.0]  # the prior's centre


@pytest.mark.parametrize("prior, scaled", [
    (sampler.Dist("Normal", (("mu", 0.0), ("sigma", 0.01))), True),
    (sampler.Dist("Normal", (("mu", 0.0), ("sigma", (1.0, 0.2)))), True),
    (sampler.Dist("Normal", (("mu", 2.0), ("sigma", 1.0))), True),
    (sampler.Dist("Normal", (("mu", 0.0), ("sigma", 1.0))), False),  # already in its prior's units
    (sampler.Dist("StudentT", (("nu", 3.0), ("mu", 0.0), ("sigma", 0.01))), False),
    (sampler.Dist("Normal", (("mu", 0.0), ("sigma", sampler.Dist("HalfNormal", (("sigma", 1.0),))))), False),
])
def test_which_priors_are_scaled(prior, scaled):
    assert sampler._normal_with_fixed_scale(prior) is scaled


LARGE_SCALE_SPEC = """
name = "income"
[data]
source = "survey.csv"
[model]
formula = "y ~ income + (1|region)"
family = "bernoulli"
[fit]
draws = 300
tune = 300
chains = 2
seed = 3
[population.margins]
region = { a = 0.2, b = 0.2, c = 0.2, d = 0.2, e = 0.2 }
income = { 40000 = 0.5, 60000 = 0.5 }
[estimands.rate]
"""


@pytest.mark.slow
def test_a_slope_of_a_predictor_on_a_large_scale_is_recovered(write, tmp_path):
    """Income in dollars: the slope's prior sd is 1 / sd(x), about 7e-5. Jittered by U(-1, 1) on
    its own scale, a chain would start 15,000 prior sds out; in the prior's units it starts
    within one, and the slope is recovered."""
    import pandas as pd

    rng = np.random.default_rng(3)
    n, per_sd = 3000, 0.8
    income = rng.normal(50_000, 15_000, n).round()
    region = rng.choice(list("abcde"), n)
    effect = dict(zip("abcde", (-0.4, -0.1, 0.0, 0.2, 0.3)))
    eta = -0.5 + per_sd * (income - 50_000) / 15_000 + np.array([effect[r] for r in region])
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    pd.DataFrame({"y": y, "income": income, "region": region}).to_csv(tmp_path / "survey.csv", index=False)
    plan = steps.plan(write("income.toml", LARGE_SCALE_SPEC), ())
    post = sampler.fit(steps.build(plan), plan.loaded, mass_matrix="diagonal").posterior["posterior"]
    slope = post["income"].values.ravel()
    truth = per_sd / 15_000
    assert abs(slope.mean() - truth) < 3 * slope.std()
    chains = post["income"].mean("draw").values
    assert np.ptp(chains) < slope.std()  # both chains found the same place
