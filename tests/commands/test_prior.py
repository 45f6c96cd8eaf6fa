"""`mrp prior`: the estimands the priors imply, checked against an independent Monte Carlo
of the same priors written out in numpy. Tolerances are Monte Carlo standard errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.commands.prior import prior

pytestmark = pytest.mark.slow  # every test here samples

runner = CliRunner()
DRAWS = 2000


def _invlogit(x):
    return 1 / (1 + np.exp(-x))


def _treated_share_of_fitted_rows(spec) -> float:
    """Bambi puts the intercept's prior on mean-centred predictors: the mean of the treatment
    dummy over the rows it fits (here the aggregated cells)."""
    from mrp_formula.commands.check import check

    data = check(spec).fit_plan.data
    return float((data["treatment"].astype(str) == "treatment").mean())


def _ab_prior_monte_carlo(xbar, n=400_000, seed=0):
    """The A/B spec's priors by hand: Intercept ~ N(0, 1.5) at the centred treatment dummy,
    treatment ~ N(0, 1), gender effects ~ N(0, s) with s ~ HalfNormal(0.5); population 50/50."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1.5, n)
    b = rng.normal(0, 1, n)
    s = np.abs(rng.normal(0, 0.5, n))
    u_f, u_m = rng.normal(0, 1, n) * s, rng.normal(0, 1, n) * s
    a0 = a - xbar * b  # the intercept of the uncentred dummy: the control arm
    control = 0.5 * _invlogit(a0 + u_f) + 0.5 * _invlogit(a0 + u_m)
    treated = 0.5 * _invlogit(a0 + b + u_f) + 0.5 * _invlogit(a0 + b + u_m)
    return {"control": control, "treatment": treated, "lift": treated / control}


def test_prior_estimands_match_an_independent_monte_carlo(ab_dir):
    out = ab_dir / "prior"
    r = runner.invoke(app, ["prior", str(ab_dir / "ab.toml"), "--draws", str(DRAWS), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    table = pd.read_csv(out / "prior_estimands.csv", keep_default_na=False)
    assert (out / "prior_estimands.png").stat().st_size > 10_000
    assert len(doc["estimands"]) == len(table) == 3
    assert list(table["treatment"]) == ["control", "treatment", "treatment vs control"]
    assert (table["draws"] == DRAWS).all()

    mc = _ab_prior_monte_carlo(_treated_share_of_fitted_rows(ab_dir / "ab.toml"))
    for _, row in table.iterrows():
        key = "lift" if row["estimand"] == "lift" else row["treatment"]
        x = mc[key]
        if key == "lift":  # heavy tailed: compare P(lift > 1), a proportion
            p = float(np.mean(x > 1))
            se = np.sqrt(p * (1 - p) / DRAWS)
            assert abs(float(row["p_above_null"]) - p) < 4 * se, (row["p_above_null"], p)
        else:
            se = x.std() / np.sqrt(DRAWS)
            assert abs(float(row["mean"]) - x.mean()) < 4 * se, (key, row["mean"], x.mean())
            assert abs(float(row["sd"]) - x.std()) < 4 * x.std() / np.sqrt(2 * DRAWS)
            # the interval holds about ci_prob of the independent draws
            inside = np.mean((x >= float(row["lower"])) & (x <= float(row["upper"])))
            prob = float(row["ci_prob"])
            assert abs(inside - prob) < 4 * np.sqrt(prob * (1 - prob) / DRAWS) + 0.01


def test_prior_draws_are_shifted_to_the_uncentred_intercept(ab_dir):
    """Bambi samples the intercept of centred predictors; a posterior reports it uncentred, and
    the prior draws must too (CellPredictor uses the raw design): Intercept = a - xbar * b,
    so Intercept and the treatment effect are correlated, by -xbar sd(b) / sd(Intercept)."""
    from mrp_formula.model import sampler as model_mod
    from mrp_formula.commands.check import check

    plan = check(ab_dir / "ab.toml")
    xbar = _treated_share_of_fitted_rows(ab_dir / "ab.toml")
    bmodel = model_mod.build_model(plan.loaded, plan.info, plan.fit_plan)
    n = 4000
    post = model_mod.sample_prior(bmodel, draws=n, seed=3)["posterior"]
    a = post["Intercept"].to_numpy().ravel()
    b = post["treatment"].to_numpy().ravel()
    expected = -xbar / np.sqrt(1.5**2 + xbar**2)
    assert abs(np.arctanh(np.corrcoef(a, b)[0, 1]) - np.arctanh(expected)) < 4 / np.sqrt(n - 3)
    assert abs(a.std() - np.sqrt(1.5**2 + xbar**2)) < 4 * a.std() / np.sqrt(2 * n)


def test_prior_does_not_depend_on_the_outcomes(ab_dir):
    """Every prior of the A/B spec is given, so changing every outcome changes nothing."""
    first = prior(ab_dir / "ab.toml", draws=300, out=ab_dir / "p1")
    data = pd.read_csv(ab_dir / "clicks.csv")
    data["clicked"] = 1 - data["clicked"]
    data.to_csv(ab_dir / "clicks.csv", index=False)
    second = prior(ab_dir / "ab.toml", draws=300, out=ab_dir / "p2")
    np.testing.assert_array_equal(first.draws, second.draws)
    pd.testing.assert_frame_equal(first.estimands, second.estimands)
    # and a posterior would have moved: the outcomes' mean changed a lot
    assert data["clicked"].mean() > 0.9


def test_wide_priors_are_pointed_out(ab_dir):
    spec = ab_dir / "ab.toml"
    spec.write_text(spec.read_text().replace('Intercept = "Normal(0, 1.5)"', 'Intercept = "Normal(0, 10)"'))
    res = prior(spec, draws=400, out=ab_dir / "wide")
    control = res.draws[0]
    share = float(np.mean((control < 0.01) | (control > 0.99)))
    assert share > 0.25  # N(0, 10) on the logit scale puts most rates near 0 or 1
    (wide,) = [n for n in res.notes if "below 1% or above 99%" in n]  # one note for the estimand's rows
    assert "each of 2 rows of click_rate (e.g. click_rate[treatment=control])" in wide
    r = runner.invoke(app, ["prior", str(spec), "--draws", "1", "--json"])
    assert r.exit_code == 2  # below the minimum of --draws



def test_a_count_models_heavy_tailed_prior_is_pointed_out(tmp_path):
    """Poisson with a wide intercept prior on the log scale: the prior means of the counts reach far
    beyond the sample's counts, and their mean lies outside their own central 95 %; both said."""
    import textwrap

    rng = np.random.default_rng(1)
    n = 300
    pd.DataFrame({"visits": rng.poisson(2, n), "arm": rng.choice(["A", "B"], n),
                  "region": rng.choice(["n", "s"], n)}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"region": ["n", "s"], "count": [1, 1]}).to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent("""
        name = "counts"
        [data]
        source = "d.csv"
        [model]
        formula = "visits ~ arm + (1|region)"
        family = "poisson"
        [model.priors]
        Intercept = "Normal(0, 6)"
        [population]
        source = "pop.csv"
        weight = "count"
        [estimands.mean]
        at = { arm = ["A", "B"] }
        """))
    res = prior(tmp_path / "s.toml", draws=1000, out=tmp_path / "p")
    assert any("beyond 10 times the sample's largest |visits|" in n and "mean[arm=A]" in n for n in res.notes), res.notes
    assert any(n.startswith("the prior mean of each of 2 rows of mean (e.g. mean[arm=A] (")
               and "outside its central 95%" in n for n in res.notes), res.notes
