"""The tracking-poll example: weekly estimates under an RW1 over the weeks follow the truth."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mrp_formula import steps

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tracking_poll"


@pytest.mark.slow
def test_weekly_estimates_follow_the_truth_within_their_intervals():
    plan = steps.plan(EXAMPLE / "tracking.toml", ["fit.draws=200", "fit.tune=200"])
    fitted = steps.posterior(plan, [], cache=False)
    table = steps.estimate(plan, fitted.fit.posterior).table
    table = table.assign(week=table["week"].astype(int)).set_index("week").sort_index()
    truth = pd.read_csv(EXAMPLE / "truth.csv").set_index("week")["approval"]
    covered = ((table["lower"] <= truth) & (truth <= table["upper"])).mean()
    assert covered >= 0.8, table
    mrp_err = float(np.sqrt(np.mean((table["mean"] - truth) ** 2)))
    raw = pd.read_csv(EXAMPLE / "poll.csv").groupby("week")["approve"].mean()
    raw_err = float(np.sqrt(np.mean((raw - truth[raw.index]) ** 2)))
    assert mrp_err < raw_err  # the raw weekly shares are biased (the old answer more) and noisy
    assert 15 in table.index and 15 not in raw.index  # a week without fieldwork is estimated


def test_the_week_without_fieldwork_is_said_to_come_from_the_walk():
    """`mrp check` says where week 15's effect comes from as the run's notes do: the RW1 structure,
    not an independent draw from the group distribution."""
    from mrp_formula.checks.coverage import coverage_lines
    from mrp_formula.commands.check import check

    plan = check(EXAMPLE / "tracking.toml")
    kinds = {sp.factor: sp.kind for sp in plan.fit_plan.structures}
    line = next(x for x in coverage_lines(plan.coverage, plan.tables.new_levels, kinds) if "'week'" in x)
    assert "rw1 structure" in line and "drawn from the fitted group distribution" not in line
    assert "drawn from the fitted group distribution" in coverage_lines(plan.coverage, plan.tables.new_levels)[1]
