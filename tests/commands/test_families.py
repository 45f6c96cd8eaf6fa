"""Each family poststratifies on its response scale and recovers a known population truth.

Data: a 4-level group g whose sample shares (.4, .3, .2, .1) differ from the population's
(.1, .2, .3, .4), so the weighting matters. The truth is the population-weighted mean of the
expected outcome under the simulating parameters; it must fall inside the 99% interval (20
targets over five families: at 95% about one would miss by chance alone).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, softmax

import mrp_formula

pytestmark = pytest.mark.slow  # every test here samples

LEVELS = np.array(["a", "b", "c", "d"])
EFFECT = np.array([-0.5, 0.0, 0.3, 0.8])
POP_W = np.array([1.0, 2.0, 3.0, 4.0])
N = 3000


def _design(seed):
    rng = np.random.default_rng(seed)
    idx = rng.choice(4, N, p=[0.4, 0.3, 0.2, 0.1])
    return rng, idx


def gaussian(seed):
    rng, idx = _design(seed)
    y = 1.0 + EFFECT[idx] + rng.normal(0, 1, N)
    return y, {"": 1.0 + EFFECT}


def poisson(seed):
    rng, idx = _design(seed)
    mu = np.exp(0.5 + EFFECT)
    return rng.poisson(mu[idx]), {"": mu}


def negativebinomial(seed):
    rng, idx = _design(seed)
    mu, alpha = np.exp(0.5 + EFFECT), 5.0
    y = rng.negative_binomial(alpha, alpha / (alpha + mu[idx]))
    return y, {"": mu}


def categorical(seed):
    rng, idx = _design(seed)
    eta = np.stack([np.zeros(4), 0.5 + EFFECT, -0.3 - EFFECT], axis=1)  # categories x, y, z
    p = softmax(eta, axis=1)
    y = np.array([rng.choice(["x", "y", "z"], p=p[i]) for i in idx])
    return y, {c: p[:, k] for k, c in enumerate(["x", "y", "z"])}


def cumulative(seed):
    rng, idx = _design(seed)
    th = np.array([-1.0, 0.5, 2.0])
    cdf = expit(th[None, :] - EFFECT[:, None])
    p = np.diff(cdf, axis=1, prepend=0.0, append=1.0)
    y = np.array([rng.choice([1, 2, 3, 4], p=p[i]) for i in idx])
    truth = {str(k + 1): p[:, k] for k in range(4)}
    truth["mean"] = p @ np.arange(1, 5)
    return y, truth


CASES = {
    "gaussian": (gaussian, "y ~ 1 + (1|g)"),
    "poisson": (poisson, "y ~ 1 + (1|g)"),
    "negativebinomial": (negativebinomial, "y ~ 1 + (1|g)"),
    "categorical": (categorical, "y ~ g"),
    "cumulative": (cumulative, "y ~ 0 + g"),
}


@pytest.mark.parametrize("family", list(CASES))
def test_family_recovers_population_truth(family, tmp_path):
    simulate, formula = CASES[family]
    y, truth = simulate(seed=22)
    _, idx = _design(22)
    pd.DataFrame({"g": LEVELS[idx], "y": y}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"g": LEVELS, "n": POP_W}).to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent(f"""
        name = "{family}"
        [data]
        source = "d.csv"
        [model]
        formula = "{formula}"
        family = "{family}"
        [fit]
        draws = 300
        tune = 300
        chains = 2
        seed = 5
        [population]
        source = "pop.csv"
        weight = "n"
        [estimands.overall]
        [report]
        ci_prob = 0.99
    """))
    table = mrp_formula.run(tmp_path / "s.toml", out=tmp_path / "run", cache=False).estimands
    w = POP_W / POP_W.sum()
    for category, values in truth.items():
        row = table[table["category"] == category] if category else table
        assert len(row) == 1, table
        row = row.iloc[0]
        target = float(values @ w)
        assert row["lower"] < target < row["upper"], (family, category, target, row.to_dict())
    if "category" in table and family == "categorical":
        assert table["mean"].sum() == pytest.approx(1.0)
