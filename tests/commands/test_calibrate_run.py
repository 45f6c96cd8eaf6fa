"""`mrp run` with `[calibrate]` on a survey with outcome-related nonresponse (issue 14, item 4):
the calibrated state totals equal the known ones in every draw, the sub-group estimates (age
within state, age nationally) are closer to the simulated truth than without calibration, and
the shifts are in the run folder, the manifest and the report. One small fit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _calibration_sim import nonresponse_survey, true_means, write_nonresponse_case
from mrp_formula.commands.run import run
from mrp_formula.steps import estimate
from mrp_formula.steps import plan as plan_of


def _rmse(table: pd.DataFrame, estimand: str, truth: pd.Series, by: list[str]) -> float:
    got = table[table.estimand == estimand].set_index(by)["mean"]
    return float(np.sqrt(((got - truth.loc[got.index]) ** 2).mean()))


@pytest.mark.slow
def test_calibration_corrects_outcome_related_nonresponse(tmp_path):
    spec = write_nonresponse_case(tmp_path, draws=100, tune=200)
    out = tmp_path / "run"
    r = run(spec, out=out)
    _, pop, truth_state = nonresponse_survey()
    known = pd.read_csv(tmp_path / "results.csv").set_index("state")["share"]

    # every draw's state total is the known one
    d = r.draws[r.draws.estimand == "by_state"]
    np.testing.assert_allclose(d["value"].to_numpy(), known.loc[d["state"]].to_numpy(), rtol=0, atol=1e-6)

    # the same posterior without calibration: the sample's bias (y = 1 answers 2.5 times as often)
    plain = estimate(plan_of(spec), r.posterior, calibrate=False).table
    for estimand, by in (("by_age", ["age"]), ("by_state_age", ["state", "age"])):
        truth = true_means(pop, by)
        calibrated, uncalibrated = _rmse(r.estimands, estimand, truth, by), _rmse(plain, estimand, truth, by)
        assert calibrated < 0.3 * uncalibrated, (estimand, calibrated, uncalibrated)
        assert calibrated < 0.05, (estimand, calibrated)

    # the shifts: per level in calibration.csv, per draw in calibration_draws.parquet
    cal = pd.read_csv(out / "calibration.csv")
    assert list(cal.state) == sorted(known.index)
    np.testing.assert_allclose(cal.known, known.loc[cal.state].to_numpy())
    assert (cal.shift_mean < 0).all()  # the sample over-represents y = 1 in every state
    assert (cal.shift_lower <= cal.shift_mean).all() and (cal.shift_mean <= cal.shift_upper).all()
    draws = pd.read_parquet(out / "calibration_draws.parquet")
    assert len(draws) == 2 * 100 * len(known)
    np.testing.assert_allclose(draws.groupby("state")["shift"].mean().loc[cal.state].to_numpy(), cal.shift_mean)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calibrate"]["by"] == "state" and manifest["calibrate"]["max_error"] < 1e-9
    assert "calibrate" in manifest["inputs"]
    assert any("known mean lies outside" in w for w in r.warnings)  # calibrate.bias
    html = (out / "report.html").read_text()
    assert 'id="calibration"' in html and "Calibration to known means" in html


@pytest.mark.slow
def test_prior_and_recover_say_they_leave_the_calibration_out(tmp_path):
    """`mrp prior` and `mrp recover` work on the model without its [calibrate]: said in their notes
    (the audit: a recovery study of a calibrated spec read as the spec's)."""
    from mrp_formula.commands.prior import prior
    from mrp_formula.commands.recover import recover

    spec = write_nonresponse_case(tmp_path, draws=100, tune=150)
    p = prior(spec, draws=100, out=tmp_path / "prior")
    assert any("[calibrate] is left out" in str(n) and "'state'" in str(n) for n in p.notes)
    r = recover(spec, replicates=2, jobs=1, out=tmp_path / "recover", truth="prior",
                overrides=["fit.draws=100", "fit.tune=150", "fit.chains=2"])
    (note,) = [n for n in r.notes if getattr(n, "code", "") == "recover.calibrate_left_out"]
    assert note.level == "warning" and "known means of 'state'" in note
