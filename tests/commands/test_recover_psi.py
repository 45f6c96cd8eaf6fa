"""mrp recover with psi modelled by its own formula (model.formulas.psi): each sample row is
simulated with its cell's psi from the truth draw, not one psi for all rows. No sampling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.commands.recover import _Component, expected_by_row, simulate_outcomes
from mrp_formula.steps import plan as prepared_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "predict"))
import test_psi_formula as psi_case  # noqa: E402  (its spec and made-up posterior)


def test_rows_take_their_cells_psi_from_the_truth_draw(tmp_path):
    plan = prepared_plan(psi_case._write(tmp_path))
    pred = psi_case._predictor(plan)
    sample = plan.tables.sample
    per_row = expected_by_row(_Component(pred, "psi"), sample, plan.info.rhs_vars)
    np.testing.assert_allclose(per_row, pred.aux_of(sample)["psi"][0], rtol=1e-12)
    assert len(np.unique(np.round(per_row, 12))) > 2  # it varies by arm and region


def test_simulated_non_zero_share_follows_each_rows_psi():
    n = 40_000
    rng = np.random.default_rng(11)
    psi = np.where(np.arange(n) % 2 == 0, 0.1, 0.6)
    sample = pd.DataFrame({"g": np.arange(n) % 2, "y": 0.0})
    out = simulate_outcomes("hurdle_lognormal", np.full(n, 1.0), sample, ["y"], rng, aux={"sigma": 0.5, "psi": psi})
    for g, p in ((0, 0.1), (1, 0.6)):
        share = float((out["y"][sample["g"] == g] > 0).mean())
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / (n / 2))
