"""What the numbers mean, as the docs say (issue 9, semantics): p_above_null is P(contrast > null);
ratio and odds-ratio contrasts are of population-averaged outcomes per draw (the marginal odds
ratio, not exp(beta)); a contrast on a population variable compares two subpopulations, and the
run says so; group terms with slopes are independent, and the run says so. No case samples.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from typer.testing import CliRunner

from mrp_formula.poststrat import estimands as E
from mrp_formula.commands import run as pipeline
from mrp_formula.cli import app
from mrp_formula.steps import plan as prepared_plan
from mrp_formula.data.population import WEIGHT
from mrp_formula.poststrat.sums import Reduced, poststratify
from mrp_formula.spec.tree import EstimandSpec

ROOT = Path(__file__).resolve().parents[2]


def _contrast_table(draws_a, draws_b, scale, rope=None):
    ests = {"c": EstimandSpec(contrast={"arm": ["b", "a"]}, scale=scale, rope=rope)}
    pieces = E.plan(ests, population_vars=())
    ra, rb = pieces[0].first, pieces[0].second
    s = len(draws_a)
    reduced = {ra: Reduced(pd.DataFrame(index=[0]), np.asarray(draws_a, float).reshape(s, 1), np.ones(1)),
               rb: Reduced(pd.DataFrame(index=[0]), np.asarray(draws_b, float).reshape(s, 1), np.ones(1))}
    ed = E.assemble(pieces, reduced, n_chains=1, n_draws=s, group_columns=E.group_columns(ests))
    return E.summarise(ed, ests, ci_prob=0.9, ci_kind="eti").iloc[0], ed.draws[0]


@pytest.mark.parametrize("scale,null", [("difference", 0.0), ("ratio", 1.0), ("odds_ratio", 1.0)])
def test_p_above_null_is_the_share_above_the_null_not_the_probability_of_direction(scale, null):
    rng = np.random.default_rng(1)
    b = rng.uniform(0.2, 0.4, 400)
    for shift, want in [(-0.1, 0.0), (0.1, 1.0)]:  # the first level clearly below, then clearly above
        row, x = _contrast_table(b + shift, b, scale)
        assert "p_direction" not in row.index
        assert row["p_above_null"] == np.mean(x > null) == want
        assert row["chance_to_win"] == want  # positive outcomes: the same number
    mixed = b + rng.normal(0, 0.05, 400)
    row, x = _contrast_table(mixed, b, scale)
    assert row["p_above_null"] == pytest.approx(np.mean(mixed > b))
    probability_of_direction = max(row["p_above_null"], 1 - row["p_above_null"])
    assert probability_of_direction >= 0.5


def test_run_table_columns_are_named_as_documented():
    docs = (ROOT / "docs" / "outputs.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "p_above_null" in pipeline.SUMMARY and "p_direction" not in pipeline.SUMMARY
    assert "p_direction" not in readme.replace("probability of direction", "")
    for col in pipeline.SUMMARY + list(E.DECISION):
        assert f"`{col}`" in docs, col
    for col in ("variable", "level", "units", "observed", "predicted", "lower", "upper", "inside"):
        assert f"`{col}`" in docs, col  # ppc.csv
    for name in ("estimands.csv", "estimand_draws.parquet", "ppc.csv", "posterior.nc", "manifest.json",
                 "spec.toml", "plots/", "written_by", "--into-existing"):
        assert name in docs, name


# ----------------------------------------------------------------------------- ratio and odds-ratio scales


def test_odds_ratio_is_marginal_over_the_population_not_exp_beta():
    """Logit model with a group effect: p = expit(alpha_g + beta * treated). The odds_ratio
    contrast is the odds ratio of the population-averaged rates, per draw; with group
    heterogeneity it is closer to 1 than exp(beta), and the ratio is the ratio of averages."""
    alpha = {"g1": -3.0, "g2": 0.0, "g3": 2.5}
    beta = np.array([1.0, 0.8, 1.3])  # three draws
    cells = pd.DataFrame({"g": ["g1", "g2", "g3"], WEIGHT: [50.0, 30.0, 20.0]})

    def predict(c, exclude=()):
        a = c["g"].map(alpha).to_numpy()
        t = (c["arm"] == "treated").to_numpy().astype(float)
        return expit(a[None, :] + beta[:, None] * t[None, :])

    results = {}
    for scale in ("odds_ratio", "ratio", "difference"):
        ests = {"c": EstimandSpec(contrast={"arm": ["treated", "control"]}, scale=scale)}
        pieces = E.plan(ests, population_vars=("g",))
        reduced = poststratify(cells, predict, E.requests(pieces), n_samples=3)
        results[scale] = E.assemble(pieces, reduced, n_chains=1, n_draws=3, group_columns=E.group_columns(ests)).draws[0]
    w = cells[WEIGHT].to_numpy() / cells[WEIGHT].sum()
    a_ = np.array([alpha[g] for g in cells["g"]])
    p1 = expit(a_[None, :] + beta[:, None]) @ w  # population-averaged rate, treated, per draw
    p0 = expit(a_)[None, :].repeat(3, 0) @ w
    np.testing.assert_allclose(results["odds_ratio"], (p1 / (1 - p1)) / (p0 / (1 - p0)), rtol=1e-12)
    np.testing.assert_allclose(results["ratio"], p1 / p0, rtol=1e-12)
    np.testing.assert_allclose(results["difference"], p1 - p0, rtol=1e-12)
    assert (results["odds_ratio"] < np.exp(beta) - 0.1).all()  # attenuated: not the conditional exp(beta)
    # nor the weighted mean of the cells' odds ratios (each of which is exp(beta))
    assert not np.allclose(results["odds_ratio"], np.exp(beta))


# ----------------------------------------------------------------------------- subpopulations vs counterfactuals


def test_contrast_on_a_population_variable_compares_subpopulations():
    """Region a is old, region b young; the outcome depends on age only. The contrast on region
    (a population variable) is the difference of the two subpopulations' rates, which is all
    composition; a counterfactual setting of region would be 0."""
    cells = pd.DataFrame({"region": ["a", "a", "b", "b"], "age": ["old", "young", "old", "young"],
                          WEIGHT: [90.0, 10.0, 10.0, 90.0]})
    rate = {"old": 0.6, "young": 0.2}

    def predict(c, exclude=()):
        return c["age"].map(rate).to_numpy()[None, :].repeat(2, 0)

    ests = {"gap": EstimandSpec(contrast={"region": ["a", "b"]})}
    pieces = E.plan(ests, population_vars=("region", "age"))
    ed = E.assemble(pieces, poststratify(cells, predict, E.requests(pieces), n_samples=2), n_chains=1,
                    n_draws=2, group_columns=E.group_columns(ests))
    np.testing.assert_allclose(ed.draws[0], (0.9 * 0.6 + 0.1 * 0.2) - (0.1 * 0.6 + 0.9 * 0.2))
    # the same contrast on a variable the population lacks sets it in every cell: counterfactual
    pieces = E.plan(ests, population_vars=("age",))
    no_region = cells.groupby("age", as_index=False)[WEIGHT].sum()
    ed = E.assemble(pieces, poststratify(no_region, predict, E.requests(pieces), n_samples=2), n_chains=1,
                    n_draws=2, group_columns=E.group_columns(ests))
    np.testing.assert_allclose(ed.draws[0], 0.0, atol=1e-15)


def _survey(tmp_path, formula, estimands):
    rng = np.random.default_rng(2)
    n = 300
    sample = pd.DataFrame({"region": rng.choice(["north", "south"], n), "age": rng.choice(["old", "young"], n),
                           "arm": rng.choice(["a", "b"], n), "x": rng.normal(size=n).round(2),
                           "y": rng.integers(0, 2, n)})
    sample.to_csv(tmp_path / "sample.csv", index=False)
    pd.DataFrame({"region": ["north", "north", "south", "south"], "age": ["old", "young"] * 2,
                  "x": [0.1, -0.2, 0.3, 0.0], "N": [10, 20, 30, 40]}).to_csv(tmp_path / "pop.csv", index=False)
    spec = tmp_path / "s.toml"
    spec.write_text(textwrap.dedent(f"""
        name = "sem"
        [data]
        source = "sample.csv"
        [model]
        formula = "{formula}"
        family = "bernoulli"
        [population]
        source = "pop.csv"
        weight = "N"
        """) + textwrap.dedent(estimands))
    return spec


def test_notes_say_what_a_contrast_or_at_on_a_population_variable_means(tmp_path):
    spec = _survey(tmp_path, "y ~ arm + region + (1|age)", """
        [estimands.region_gap]
        contrast = { region = ["north", "south"] }
        at = { arm = ["a"] }
        [estimands.lift]
        contrast = { arm = ["b", "a"] }
        scale = "odds_ratio"
        [estimands.all_north]
        at = { region = ["north"], arm = ["a"] }
        """)
    notes = prepared_plan(spec).notes
    gap = [n for n in notes if n.startswith("estimand region_gap:")]
    assert len(gap) == 1 and "two subpopulations" in gap[0] and "not the whole population" in gap[0]
    assert "leave 'region' out of the population table" in gap[0]
    north = [n for n in notes if n.startswith("estimand all_north:")]
    assert len(north) == 1 and "counterfactual" in north[0] and "'region'" in north[0]
    assert not any(n.startswith("estimand lift:") for n in notes)  # arm is not in the population
    assert not any("'arm'" in n for n in notes if n.startswith("estimand"))
    assert not any("independent" in n for n in notes)  # no group slopes


@pytest.mark.parametrize("formula,terms", [
    ("y ~ arm + (1 + x | region)", ["x|region with 1|region"]),
    ("y ~ arm + (x | region) + (1 | age)", ["x|region with 1|region"]),
    ("y ~ (0 + x | region) + (arm | age)", ["x|region", "arm|age with 1|age"]),
    ("y ~ arm + (1 | region)", []),
])
def test_note_says_group_effects_with_slopes_are_independent(tmp_path, formula, terms):
    spec = _survey(tmp_path, formula, """
        [estimands.rate]
        at = { arm = ["a", "b"] }
        """)
    notes = [n for n in prepared_plan(spec).notes if n.startswith("group effects are independent")]
    if not terms:
        assert notes == []
        return
    assert len(notes) == 1 and "no correlation" in notes[0]
    listed = notes[0].split(": ")[1]
    assert listed.split(", ") == terms
    # and so they are fitted: one prediction design term per name, each with its own draws
    fp = prepared_plan(spec).fit_plan
    from mrp_formula.predict.cells import design

    dsg = design(fp.data, fp.formula, fp.family, None)
    for t in terms:
        for name in re.split(" with ", t):
            assert name in dsg.group


def test_mrp_check_prints_the_notes(tmp_path):
    spec = _survey(tmp_path, "y ~ arm + (x | region)", """
        [estimands.region_gap]
        contrast = { region = ["north", "south"] }
        at = { arm = ["a"] }
        """)
    r = CliRunner().invoke(app, ["check", str(spec), "--json"])
    assert r.exit_code == 0, r.output
    notes = json.loads(r.stdout)["notes"]
    assert any("two subpopulations" in n for n in notes)
    assert any(n.startswith("group effects are independent") for n in notes)
