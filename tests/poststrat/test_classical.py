"""Raw and classical weighted estimates, coverage, sample-ratio mismatch, diagnostics advice."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.checks.coverage import coverage, srm_check
from mrp_formula.poststrat.classical import rake_weights, raw_and_weighted
from mrp_formula.poststrat import estimands as E
from mrp_formula.cli import app
from mrp_formula.checks.diagnostics import Diagnostics, Thresholds
from mrp_formula.steps import spec_checks as _spec_checks
from mrp_formula.data.population import WEIGHT
from mrp_formula.spec.tree import load_spec
from mrp_formula.data.tables import prepare


def test_rake_weights_hit_the_margins():
    frame = pd.DataFrame({"g": list("ffffffmm"), "a": list("yoyoyyoo")})
    count = np.ones(len(frame))
    pop = pd.DataFrame({"g": ["f", "f", "m", "m"], "a": ["y", "o", "y", "o"], WEIGHT: [10, 40, 30, 20]})
    w = rake_weights(frame, count, pop, ["g", "a"])
    share = lambda col, lv: w[(frame[col] == lv).to_numpy()].sum() / w.sum()  # noqa: E731
    assert share("g", "f") == pytest.approx(0.5) and share("a", "y") == pytest.approx(0.4)


def _tables(ab_dir, *extra):
    loaded = load_spec(ab_dir / "ab.toml", list(extra))
    info = _spec_checks(loaded)
    return loaded, info, prepare(loaded, info)


def test_raw_and_weighted_on_the_ab_sample(ab_dir):
    loaded, info, tables = _tables(ab_dir)
    pieces = E.plan(loaded.spec.estimands, tables.population_vars)
    cols = E.group_columns(loaded.spec.estimands)
    got = raw_and_weighted(pieces, tables, info, "bernoulli", None, cols)
    data = pd.read_csv(ab_dir / "clicks.csv")
    control = data[data.treatment == "control"]
    assert got.loc[0, "raw"] == pytest.approx(control.clicked.mean())
    # weighted: the 50/50 gender mean of the control arm's rates
    by_gender = control.groupby("gender").clicked.mean()
    assert got.loc[0, "weighted"] == pytest.approx(by_gender.mean())
    treated = data[data.treatment == "treatment"].groupby("gender").clicked.mean().mean()
    assert got.loc[2, "weighted"] == pytest.approx(treated / by_gender.mean())  # the lift row: a ratio


def test_coverage_and_design_effect(ab_dir):
    _, info, tables = _tables(ab_dir)
    cov = coverage(tables, info, "bernoulli", None)
    assert cov.cells_without_sample == 0 and cov.n_units == 2000
    n = 2000
    data = pd.read_csv(ab_dir / "clicks.csv")
    nf = (data.gender == "female").sum()
    w = np.where(data.gender == "female", 0.5 / nf, 0.5 / (n - nf))
    assert cov.effective_n == pytest.approx(w.sum() ** 2 / (w ** 2).sum())
    assert cov.design_effect > 1.2


def test_sample_ratio_mismatch(ab_dir):
    _, _, tables = _tables(ab_dir)
    ok = srm_check(tables, {"treatment": {"control": 0.5, "treatment": 0.5}})
    assert ok[0].startswith("sample ratio of 'treatment' matches")
    bad = srm_check(tables, {"treatment": {"control": 0.3, "treatment": 0.7}})
    assert bad[0].startswith("sample ratio mismatch in 'treatment'")


def test_divergences_and_poor_estimands_give_advice():
    d = Diagnostics(divergences=3, max_rhat=1.3, min_ess_bulk=20, min_ess_tail=20, worst={"Intercept": (1.3, 20)},
                    estimand_max_rhat=1.002, estimand_min_ess=900, n_samples=2000, n_chains=2)
    t = Thresholds(target_accept=0.8)
    problems = d.problems(t)
    assert len(problems) == 1 and "3 divergent transitions" in problems[0] and "target_accept (now 0.8)" in problems[0]
    text = " ".join(d.warnings(t))
    assert "model parameters mix poorly" in text
    ok = Diagnostics(divergences=0, max_rhat=1.3, min_ess_bulk=20, min_ess_tail=20, worst={"Intercept": (1.3, 20)},
                     estimand_max_rhat=1.002, estimand_min_ess=900, n_samples=2000, n_chains=2)
    assert ok.problems(t) == []
    assert "The estimands are fine" in ok.warnings(t)[0] and "Judge the run by the estimands" in ok.warnings(t)[0]


@pytest.mark.slow
def test_strict_exits_5_when_a_check_fails(ab_dir, tmp_path):
    r = CliRunner().invoke(app, ["run", str(ab_dir / "ab.toml"), "--out", str(tmp_path / "o"), "--strict",
                                 "--set", "report.ess_min=1e9", "--set", "fit.draws=200", "--set", "fit.tune=200"])
    assert r.exit_code == 5, r.output
    assert "too few effective draws" in r.stderr and "diagnostics" in r.stderr
    assert (tmp_path / "o" / "estimands.csv").exists()  # the results are written all the same


def _classical(tmp_path, sample: pd.DataFrame, population: pd.DataFrame, formula: str, family: str,
               estimands: str = "[estimands.mean]\n", data_extra: str = ""):
    """(tables, info, coverage, raw and weighted) of a spec over these two tables."""
    sample.to_csv(tmp_path / "d.csv", index=False)
    population.to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "s.toml").write_text(f'name = "num"\n[data]\nsource = "d.csv"\n{data_extra}[model]\n'
                                     f'formula = "{formula}"\nfamily = "{family}"\n[population]\n'
                                     f'source = "pop.csv"\nweight = "N"\n{estimands}')
    loaded = load_spec(tmp_path / "s.toml")
    info = _spec_checks(loaded)
    tables = prepare(loaded, info)
    got = raw_and_weighted(E.plan(loaded.spec.estimands, tables.population_vars), tables, info, family, None,
                           E.group_columns(loaded.spec.estimands))
    return tables, coverage(tables, info, family, None), got


def test_a_numeric_predictor_in_the_population_is_no_raking_variable(tmp_path):
    """A continuous x in the population table rarely equals a sample row's value: raking on its
    text kept only the rows that matched. The classical weights and the coverage go by the
    categorical variables; x is named as left out."""
    rng = np.random.default_rng(1)
    n = 400
    sample = pd.DataFrame({"sex": np.where(rng.random(n) < 0.75, "f", "m"), "x": rng.normal(size=n).round(2)})
    sample["y"] = 1.0 + (sample.sex == "m") + 0.5 * sample.x + rng.normal(0, 0.3, n)
    population = pd.DataFrame({"sex": ["f", "f", "m", "m"], "x": [-1.0, 1.5, -1.0, 1.5], "N": [25, 25, 25, 25]})
    _, cov, got = _classical(tmp_path, sample, population, "y ~ sex + x", "gaussian")
    assert got.loc[0, "weighted"] == pytest.approx(sample.groupby("sex").y.mean().mean())  # 50/50 over sex
    assert cov.cells_without_sample == 0 and cov.numeric == ("x",)
    nf = (sample.sex == "f").sum()
    w = np.where(sample.sex == "f", 0.5 / nf, 0.5 / (n - nf))
    assert cov.effective_n == pytest.approx(w.sum() ** 2 / (w ** 2).sum())  # before: 5 rows of 400 kept


def test_a_numeric_predictor_the_categories_determine_is_not_named(tmp_path):
    """A group-level number (one value per state, as the primer's state-level percentages) is
    matched when the states are: the coverage does not name it as left out."""
    rng = np.random.default_rng(2)
    n = 200
    sample = pd.DataFrame({"sex": rng.choice(["f", "m"], n)})
    sample["z"] = np.where(sample.sex == "f", 0.3, 0.7)
    sample["y"] = rng.normal(size=n) + sample.z
    population = pd.DataFrame({"sex": ["f", "m"], "z": [0.3, 0.7], "N": [1, 1]})
    _, cov, _ = _classical(tmp_path, sample, population, "y ~ sex + z", "gaussian")
    assert cov.numeric == () and cov.cells_without_sample == 0


def test_a_numeric_arm_and_a_numeric_by_still_select_their_rows(tmp_path):
    """`raw` of a contrast of a numeric 0/1 arm and of a `by` over a numeric variable with a few
    values: each row's own sample rows (leaving numeric variables out of the frame made every group
    the whole sample: a raw lift of exactly 0)."""
    rng = np.random.default_rng(3)
    n = 400
    sample = pd.DataFrame({"treat": rng.integers(0, 2, n), "x": rng.integers(1, 4, n)})
    sample["y"] = (rng.random(n) < 0.3 + 0.3 * sample.treat).astype(int)
    _, _, got = _classical(tmp_path, sample, pd.DataFrame({"x": [1, 2, 3], "N": [1, 1, 1]}), "y ~ treat + x",
                           "bernoulli", '[estimands.lift]\ncontrast = { treat = [1, 0] }\n'
                                        '[estimands.by_x]\nby = ["x"]\nat = { treat = [1] }\n')
    rate = sample.groupby("treat").y.mean()
    assert got.loc[0, "raw"] == pytest.approx(rate[1] - rate[0])
    treated = sample[sample.treat == 1]
    assert list(got.loc[1:, "raw"]) == pytest.approx(list(treated.groupby("x").y.mean()))


def test_a_numeric_arm_stored_as_decimals_is_matched_by_value(tmp_path):
    """A 0/1 arm with one blank (read as 0.0/1.0, the blank dropped) against a population of 0/1:
    the same levels by value, so raked and selected as levels (their text differed: raw and
    weighted were empty, and the numeric note said the values were not the population's)."""
    rng = np.random.default_rng(4)
    n = 300
    sample = pd.DataFrame({"treat": rng.integers(0, 2, n).astype(float), "g": rng.choice(["a", "b"], n)})
    sample["y"] = (rng.random(n) < 0.3 + 0.3 * sample.treat).astype(int)
    sample.loc[0, "treat"] = np.nan
    population = pd.DataFrame({"treat": [0, 1, 0, 1], "g": ["a", "a", "b", "b"], "N": [1, 1, 1, 1]})
    _, cov, got = _classical(tmp_path, sample, population, "y ~ treat + g", "bernoulli",
                             '[estimands.by_g]\nby = ["g"]\nat = { treat = [1] }\n', data_extra='missing = "drop"\n')
    kept = sample.dropna()
    assert list(got["raw"]) == pytest.approx(list(kept[kept.treat == 1].groupby("g").y.mean()))
    assert cov.numeric == ()
