"""mrp compare: PSIS-LOO across specs fitted on the same data, and the refusals when they are not."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.commands.compare import COLUMNS

pytestmark = pytest.mark.slow  # every test here samples

runner = CliRunner()
FAST = ["--set", "fit.draws=200", "--set", "fit.tune=200", "--set", "fit.chains=2"]
ROWS = ["--set", "model.aggregate=never"]

SPEC = """
name = "{name}"
[data]
source = "{source}"
{data_extra}
[model]
formula = "{formula}"
family = "bernoulli"
[fit]
draws = 200
tune = 200
chains = 2
seed = 3
[population.margins]
gender = {{ female = 0.5, male = 0.5 }}
{margins_extra}
[estimands.rate]
at = {{ {at} }}
"""


def simulate_strong(n=2000, seed=11) -> pd.DataFrame:
    """A click log where the treatment more than doubles the click rate: the effect is clear."""
    rng = np.random.default_rng(seed)
    gender = np.where(rng.random(n) < 0.6, "female", "male")
    treatment = np.where(rng.random(n) < 0.5, "treatment", "control")
    p = np.where(treatment == "treatment", 0.45, 0.2) * np.where(gender == "female", 1.1, 0.9)
    age = np.where(rng.random(n) < 0.5, "young", "old").astype(object)
    return pd.DataFrame({"gender": gender, "treatment": treatment, "age": age,
                         "clicked": (rng.random(n) < p).astype(int),
                         "bought": (rng.random(n) < 0.1).astype(int)})


def spec(folder, name, formula, *, source="strong.csv", at='gender = ["female", "male"]', data_extra="",
         margins_extra=""):
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(SPEC).lstrip().format(name=name, source=source, formula=formula, at=at,
                                                          data_extra=data_extra, margins_extra=margins_extra))
    return path


@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    """strong.csv with specs with and without the treatment; compared once on rows (--json)."""
    d = tmp_path_factory.mktemp("compare")
    simulate_strong().to_csv(d / "strong.csv", index=False)
    with_t = spec(d, "with_treatment", "clicked ~ treatment + (1 | gender)",
                  at='treatment = ["control", "treatment"]')
    without = spec(d, "without_treatment", "clicked ~ 1 + (1 | gender)")
    r = runner.invoke(app, ["compare", str(with_t), str(without), "--json", "--out", str(d / "runs" / "cmp"),
                            *FAST, *ROWS])
    return d, with_t, without, r


def test_the_real_effect_wins(strong):
    d, _, _, r = strong
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stdout holds only the JSON
    assert doc["ok"] is True and doc["loo_unit"] == "row" and doc["n_loo"] == 2000 and doc["n_obs"] == 2000
    best, other = doc["compare"]
    assert best["model"] == "with_treatment" and best["rank"] == 0 and best["elpd_diff"] == 0
    assert other["model"] == "without_treatment"
    assert other["elpd_diff"] < -20 and other["elpd_diff"] < -3 * other["diff_se"]
    assert best["elpd_loo"] > other["elpd_loo"]
    assert best["weight"] > 0.9 and abs(best["weight"] + other["weight"] - 1) < 1e-6
    assert best["n_high_k"] == 0 and best["fit"] == "sampled"
    assert not any("cells" in w for w in doc["warnings"])
    assert any("with_treatment predicts clearly better" in n for n in doc["notes"])
    table = pd.read_csv(d / "runs" / "cmp" / "compare.csv")
    assert list(table.columns) == COLUMNS
    assert list(table["model"]) == ["with_treatment", "without_treatment"]
    manifest = json.loads((d / "runs" / "cmp" / "manifest.json").read_text())
    assert manifest["loo"] == {"unit": "row", "n_obs": 2000, "n_loo": 2000}


def test_table_on_stderr_reuses_the_cached_fits(strong):
    d, with_t, without, first = strong
    assert first.exit_code == 0, first.output
    r = runner.invoke(app, ["compare", str(with_t), str(without), "--out", str(d / "runs" / "again"),
                            *FAST, *ROWS])
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    for col in ("model", "elpd_loo", "se", "p_loo", "elpd_diff", "diff_se", "weight", "pareto_k_max", "n_high_k"):
        assert col in r.stderr
    assert "cached fit" in r.stderr and "PSIS-LOO over 2000 rows" in r.stderr
    again = pd.read_csv(d / "runs" / "again" / "compare.csv")
    before = pd.read_csv(d / "runs" / "cmp" / "compare.csv")
    assert list(again["fit"]) == ["cached", "cached"]
    assert np.allclose(again["elpd_loo"], before["elpd_loo"])


def test_distinct_row_loo_equals_arviz_on_every_row(strong):
    """Identical rows are scored once and expanded: the same numbers as arviz on all rows."""
    from mrp_formula.model import sampler as model_mod
    from mrp_formula.model.cache import CACHE_DIR
    from mrp_formula.commands.compare import psis_loo, row_patterns
    from mrp_formula.steps import plan_and_model, posterior

    d, with_t, _, first = strong
    assert first.exit_code == 0, first.output
    plan, bmodel = plan_and_model(with_t, ["fit.draws=200", "fit.tune=200", "fit.chains=2", "model.aggregate=never"])
    fitted = posterior(plan, [d / "runs" / CACHE_DIR], model=bmodel)
    assert fitted.reused
    post = fitted.fit.posterior
    codes, first_rows = row_patterns(plan.fit_plan.data)
    assert len(first_rows) == 8  # 2 treatments x 2 genders x 2 outcomes
    full = psis_loo(post, model_mod.pointwise_log_likelihood(bmodel, post))
    ll = model_mod.pointwise_log_likelihood(bmodel, post, data=plan.fit_plan.data.iloc[first_rows])
    fast = psis_loo(post, ll.assign_coords(__obs__=np.arange(len(first_rows))), codes)
    assert fast.n_data_points == full.n_data_points == 2000
    assert np.isclose(fast.elpd, full.elpd) and np.isclose(fast.se, full.se) and np.isclose(fast.p, full.p)
    assert np.allclose(fast.elpd_i.values, full.elpd_i.values)
    assert np.allclose(fast.pareto_k.values, full.pareto_k.values)


def test_other_data_refused_exit_4(strong):
    d, with_t, _, _ = strong
    simulate_strong().iloc[:1500].to_csv(d / "short.csv", index=False)
    short = spec(d, "short", "clicked ~ 1 + (1 | gender)", source="short.csv")
    r = runner.invoke(app, ["compare", str(with_t), str(short), "--out", str(d / "runs" / "x"), *FAST, *ROWS])
    assert r.exit_code == 4, r.output
    assert "short.toml" in r.stderr and "with_treatment.toml" in r.stderr
    assert "1500 observations" in r.stderr and "2000" in r.stderr and "not fitted on the same data" in r.stderr
    assert not (d / "runs" / "x").exists()


def test_same_size_other_rows_refused_exit_4_json(strong):
    d, with_t, _, _ = strong
    simulate_strong(seed=12).to_csv(d / "other.csv", index=False)
    other = spec(d, "other", "clicked ~ 1 + (1 | gender)", source="other.csv")
    r = runner.invoke(app, ["compare", str(with_t), str(other), "--json", "--out", str(d / "runs" / "x"),
                            *FAST, *ROWS])
    assert r.exit_code == 4, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 4
    msg = doc["errors"][0]["message"]
    assert "other.toml" in msg and "with_treatment.toml" in msg and "not the same rows" in msg


def test_rows_dropped_for_missing_values_in_other_columns_refused(strong):
    d, _, _, _ = strong
    data = simulate_strong()
    data.loc[3, "age"] = None
    data.loc[4, "treatment"] = None
    data.to_csv(d / "holes.csv", index=False)
    extra = 'missing = "drop"'
    a = spec(d, "by_age", "clicked ~ (1 | age) + (1 | gender)", source="holes.csv", data_extra=extra,
             margins_extra="age = { young = 0.5, old = 0.5 }")
    b = spec(d, "by_treatment", "clicked ~ treatment + (1 | gender)", source="holes.csv", data_extra=extra,
             at='treatment = ["control", "treatment"]')
    r = runner.invoke(app, ["compare", str(a), str(b), "--out", str(d / "runs" / "x"), *FAST, *ROWS])
    assert r.exit_code == 4, r.output
    assert "by_treatment.toml dropped rows with missing values (treatment: 1)" in r.stderr
    assert "by_age.toml (age: 1)" in r.stderr and "data.missing" in r.stderr


def test_other_response_refused_exit_3(strong):
    d, with_t, _, _ = strong
    bought = spec(d, "bought", "bought ~ 1 + (1 | gender)")
    r = runner.invoke(app, ["compare", str(with_t), str(bought), "--out", str(d / "runs" / "x"), *FAST, *ROWS])
    assert r.exit_code == 3, r.output
    assert "bought.toml models the response 'bought' but " in r.stderr
    assert "with_treatment.toml models 'clicked'" in r.stderr and "model.formula" in r.stderr


def test_cells_and_rows_refused_with_a_hint(strong):
    d, with_t, without, _ = strong
    # by default both are fitted on binomial cells, but of other predictors: not comparable
    r = runner.invoke(app, ["compare", str(with_t), str(without), "--out", str(d / "runs" / "x"), *FAST])
    assert r.exit_code == 3, r.output
    assert "2 binomial cells (rows grouped by gender)" in r.stderr
    assert "4 binomial cells (rows grouped by treatment, gender)" in r.stderr
    assert 'model.aggregate = "never"' in r.stderr
    # one on cells, one on rows
    rows = spec(d, "rows", "clicked ~ 1 + (1 | gender)", data_extra="")
    rows.write_text(rows.read_text().replace('family = "bernoulli"', 'family = "bernoulli"\naggregate = "never"'))
    r = runner.invoke(app, ["compare", str(with_t), str(rows), "--json", "--out", str(d / "runs" / "x"), *FAST])
    assert r.exit_code == 3, r.output
    err = json.loads(r.stdout)["errors"][0]
    assert err["key"] == "model.aggregate" and err["line"] and "its 2000 rows" in err["message"]
    assert "rows.toml" in err["message"] and 'model.aggregate = "never"' in err["hint"]


def test_aggregated_cells_warned(strong):
    d, with_t, _, _ = strong
    fixed = spec(d, "fixed_gender", "clicked ~ treatment + gender", at='treatment = ["control", "treatment"]')
    r = runner.invoke(app, ["compare", str(with_t), str(fixed), "--out", str(d / "runs" / "cells"), *FAST])
    assert r.exit_code == 0, r.output
    assert "aggregated binomial cells (2000 rows in 4 cells" in r.stderr
    assert "leaves out a whole cell at a time, not a row" in r.stderr
    table = pd.read_csv(d / "runs" / "cells" / "compare.csv")
    assert set(table["loo_unit"]) == {"cell"} and set(table["n_loo"]) == {4}


def test_one_spec_is_a_usage_error(strong):
    d, with_t, _, _ = strong
    r = runner.invoke(app, ["compare", str(with_t), "--out", str(d / "runs" / "x")])
    assert r.exit_code == 2
    assert "at least two specs" in r.stderr
