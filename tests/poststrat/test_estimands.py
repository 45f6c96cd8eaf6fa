"""Estimands from reduced draws: labels, contrasts per draw, intervals and probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrp_formula.poststrat import estimands as E
from mrp_formula.poststrat.sums import Reduced
from mrp_formula.spec.tree import EstimandSpec


def test_interval_eti_and_hdi():
    x = np.arange(1000, dtype=float)
    lo, hi = E.interval(x, 0.9, "eti")
    assert lo == pytest.approx(49.95) and hi == pytest.approx(949.05)
    skewed = np.concatenate([np.zeros(900), np.linspace(1, 100, 100)])
    lo, hi = E.interval(skewed, 0.9, "hdi")
    assert lo == 0 and hi == 0  # the narrowest 90% is the spike at zero


def _reduced(values, groups):
    return Reduced(groups=pd.DataFrame(groups), values=np.asarray(values, float),
                   weight=np.ones(len(pd.DataFrame(groups))))


def test_counterfactual_contrast_is_taken_per_draw():
    ests = {"lift": EstimandSpec(contrast={"arm": ["b", "a"]}, scale="ratio", rope=(0.9, 1.1))}
    pieces = E.plan(ests, population_vars=("gender",))
    ra, rb = pieces[0].first, pieces[0].second
    reduced = {}
    reduced[ra] = Reduced(pd.DataFrame(index=[0]), np.array([[0.2], [0.3], [0.1]]), np.ones(1))
    reduced[rb] = Reduced(pd.DataFrame(index=[0]), np.array([[0.1], [0.2], [0.1]]), np.ones(1))
    ed = E.assemble(pieces, reduced, n_chains=1, n_draws=3, group_columns=E.group_columns(ests))
    np.testing.assert_allclose(ed.draws[0], [2.0, 1.5, 1.0])
    assert ed.rows.loc[0, "arm"] == "b vs a"
    table = E.summarise(ed, ests, ci_prob=0.9, ci_kind="eti")
    assert table.loc[0, "p_above_null"] == pytest.approx(2 / 3 + 1 / 6)  # the draw at 1 counts half
    assert table.loc[0, "p_in_rope"] == pytest.approx(1 / 3)
    # the mean of the ratio is not the ratio of the means
    assert table.loc[0, "mean"] == pytest.approx(1.5)


def test_population_variable_contrast_compares_subpopulations_within_by():
    ests = {"gap": EstimandSpec(contrast={"gender": ["f", "m"]}, by=["region"])}
    (piece,) = E.plan(ests, population_vars=("gender", "region"))
    assert piece.second is None and piece.first.by == ("region", "gender")
    groups = {"region": ["n", "n", "s", "s"], "gender": ["f", "m", "f", "m"]}
    reduced = {piece.first: _reduced([[0.5, 0.2, 0.9, 0.4]], groups)}
    ed = E.assemble([piece], reduced, n_chains=1, n_draws=1, group_columns=E.group_columns(ests))
    assert list(ed.rows["region"]) == ["n", "s"]
    np.testing.assert_allclose(ed.draws[:, 0], [0.3, 0.5])


def test_long_draws_shape():
    ests = {"rate": EstimandSpec(by=["g"])}
    (piece,) = E.plan(ests, population_vars=("g",))
    reduced = {piece.first: _reduced(np.arange(12).reshape(6, 2), {"g": ["a", "b"]})}
    ed = E.assemble([piece], reduced, n_chains=2, n_draws=3, group_columns=["g"])
    long = E.long_draws(ed)
    assert list(long.columns) == ["chain", "draw", "estimand", "g", "value"]
    assert len(long) == 12
    row = long[(long.g == "b") & (long.chain == 1) & (long.draw == 0)]
    assert float(row["value"].iloc[0]) == 7.0
