"""Population levels the sample lacks get their own effects drawn from N(0, sigma), also when the
group term's prior fixes sigma to a number (then the posterior has no draws of sigma: this used to
crash with a KeyError)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.errors import FitError
from mrp_formula.steps import plan as prepared_plan
from mrp_formula.predict.cells import CellPredictor, design, predictor

SEEN = ["r1", "r2", "r3", "r4"]


def _folder(tmp_path, prior: str, formula: str = "y ~ arm + (1 | region)"):
    rng = np.random.default_rng(8)
    n = 400
    region = rng.choice(SEEN, n)
    arm = rng.choice(["a", "b"], n)
    eff = pd.Series(region).map(dict(zip(SEEN, [-0.4, -0.1, 0.2, 0.4]))).to_numpy()
    y = (rng.random(n) < 1 / (1 + np.exp(-(-0.5 + eff + 0.3 * (arm == "b"))))).astype(int)
    pd.DataFrame({"region": region, "arm": arm, "y": y}).to_csv(tmp_path / "sample.csv", index=False)
    pop = pd.DataFrame([(r, a, 100) for r in SEEN + ["r5"] for a in ("a", "b")], columns=["region", "arm", "count"])
    pop.to_csv(tmp_path / "pop.csv", index=False)
    text = f"""
    name = "new-levels"
    [data]
    source = "sample.csv"
    [model]
    formula = "{formula}"
    family = "bernoulli"
    [model.priors]
    {prior}
    [fit]
    draws = 200
    tune = 200
    chains = 2
    seed = 4
    [population]
    source = "pop.csv"
    weight = "count"
    [estimands.rate]
    by = ["region"]
    [report]
    plots = false
    """
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _posterior(plan, chains: int, draws: int, *, sigma: bool) -> xr.DataTree:
    """A posterior shaped like Bambi's for y ~ arm + (1|region): fixed values, so only the new
    level's draws are random."""
    rng = np.random.default_rng(0)
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    ds = xr.Dataset({
        "Intercept": (("chain", "draw"), np.full((chains, draws), -0.5)),
        "arm": (("chain", "draw", "arm_dim"), np.full((chains, draws, 1), 0.3)),
        "1|region": (("chain", "draw", "region__factor_dim"), rng.normal(0, 0.3, (chains, draws, len(SEEN)))),
    }, coords={**coords, "arm_dim": ["b"], "region__factor_dim": SEEN})
    if sigma:
        ds["1|region_sigma"] = (("chain", "draw"), np.full((chains, draws), 2.0))
    return xr.DataTree.from_dict({"posterior": ds})


def _new_level_draws(pred: CellPredictor) -> np.ndarray:
    u, index = pred._u["1|region"]
    return u[:, 0, 0, index["r5"]]


def test_fixed_sigma_new_levels_are_drawn_with_that_sigma(tmp_path):
    """No sampling: with "Normal(0, 0.5)" the new level r5 gets N(0, 0.5) draws, one per posterior
    draw (mean and sd within 4 standard errors of 0 and 0.5)."""
    plan = prepared_plan(_folder(tmp_path, '"1|region" = "Normal(0, 0.5)"'))
    assert plan.tables.new_levels == {"region": ("r5",)}
    pred = predictor(plan.fit_plan, None, _posterior(plan, 2, 4000, sigma=False), plan.tables, plan.info, seed=3)
    x = _new_level_draws(pred)
    s = len(x)
    assert s == 8000 and len(np.unique(x)) == s
    assert abs(x.mean()) < 4 * 0.5 / np.sqrt(s)
    assert abs(x.std(ddof=1) - 0.5) < 4 * 0.5 / np.sqrt(2 * (s - 1))


def test_sigma_draws_win_over_a_fixed_value_and_a_missing_sigma_is_a_clear_error(tmp_path):
    plan = prepared_plan(_folder(tmp_path, '"1|region" = "Normal(0, HalfNormal(1))"'))
    pred = predictor(plan.fit_plan, None, _posterior(plan, 2, 4000, sigma=True), plan.tables, plan.info, seed=3)
    x = _new_level_draws(pred)
    assert abs(x.std(ddof=1) - 2.0) < 4 * 2.0 / np.sqrt(2 * (len(x) - 1))
    with pytest.raises(FitError) as err:  # a posterior without sigma and a prior that fixes none
        CellPredictor(design(plan.fit_plan.data, plan.fit_plan.formula, plan.fit_plan.family, None),
                      _posterior(plan, 1, 10, sigma=False), plan.tables, plan.info, seed=3)
    message = str(err.value.problems[0].message)
    assert "r5" in message and "1|region_sigma" in message


@pytest.mark.slow
def test_fixed_sigma_with_new_levels_runs_end_to_end(tmp_path):
    """A tiny fit through `mrp run`: exit 0, a row for the new level whose uncertainty includes the
    N(0, 0.5) draw of its effect."""
    spec = _folder(tmp_path, '"1|region" = "Normal(0, 0.5)"')
    r = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "run"), "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    rows = {row["region"]: row for row in doc["estimands"] if row["estimand"] == "rate"}
    assert set(rows) == set(SEEN) | {"r5"}
    # A seen level is pinned by ~100 rows; the new one carries the prior's sd 0.5 on the logit
    # scale (about 0.1 on the rate near p = 0.4).
    assert rows["r5"]["sd"] > 1.5 * max(rows[r]["sd"] for r in SEEN), rows
    assert 0.05 < rows["r5"]["sd"] < 0.2
    assert any("r5" in n for n in doc["notes"])  # the run says the level is new and drawn
