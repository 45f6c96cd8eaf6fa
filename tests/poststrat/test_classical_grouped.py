"""The classical weighted estimates computed for all groups in one pass (population sums per group
and level once, the raking on arrays) give the same bits as raking each group's rows against its
own population, as pandas would (the reference below is the earlier per-group code)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from mrp_formula.data.population import WEIGHT, rake
from mrp_formula.poststrat.classical import Units, _group_values, rake_weights
from mrp_formula.poststrat.sums import Request, Scenario


def reference_rake_weights(frame, count, population, vars_):
    """Rows' joint of ``vars_`` (weighted by ``count``) raked to the population margins, with pandas."""
    count = np.asarray(count, dtype=float)
    if not len(frame) or population[WEIGHT].sum() <= 0:
        return np.zeros(len(frame))
    if not vars_:
        return np.ones(len(frame))
    labels = frame[list(vars_)].astype(str)
    keep = np.ones(len(frame), bool)
    pops = {v: population.groupby(population[v].astype(str))[WEIGHT].sum() for v in vars_}
    for v in vars_:
        keep &= labels[v].map(pops[v]).fillna(0.0).to_numpy() > 0
    keep &= count > 0
    if not keep.any():
        return np.zeros(len(frame))
    kept = labels.loc[keep]
    margins = {v: pops[v].reindex(sorted(set(kept[v]))).to_dict() for v in vars_}
    grouped = kept.groupby(list(vars_), sort=True)
    ids = grouped.ngroup().to_numpy()
    cells = grouped.size().reset_index()[list(vars_)]
    seed = np.bincount(ids, weights=count[keep], minlength=len(cells))
    cells[WEIGHT] = seed
    raked = rake(cells, margins).cells[WEIGHT].to_numpy()
    w = np.zeros(len(frame))
    w[keep] = raked[ids] / seed[ids]
    return w


def reference_group_values(units, population, req, post_vars):
    """(2, G) raw and raked means per group: each group's rows and population sliced, then raked."""
    from mrp_formula.poststrat.sums import group_codes

    _, groups = group_codes(population, req.by)
    frame, outcome, count = units.frame, units.outcome, units.count
    vals = np.full((2, len(groups), outcome.shape[1]), np.nan)
    for gi in range(len(groups)):
        m = np.ones(len(frame), bool)
        pmask = np.ones(len(population), bool)
        for col in groups.columns:
            level = str(groups.loc[gi, col])
            if col in frame:
                m &= (frame[col] == level).to_numpy()
            pmask &= (population[col].astype(str) == level).to_numpy()
        c = count[m]
        if not m.any() or c.sum() <= 0:
            continue
        vals[0, gi] = (outcome[m] * c[:, None]).sum(0) / c.sum()
        rake_vars = [v for v in post_vars if v not in req.by]
        w = reference_rake_weights(frame.loc[m].reset_index(drop=True), c, population.loc[pmask], rake_vars)
        if (w * c).sum() > 0:
            vals[1, gi] = (outcome[m] * (w * c)[:, None]).sum(0) / (w * c).sum()
    return vals[:, :, 0]


def _case(seed: int, n: int):
    rng = np.random.default_rng(seed)
    levels = {"state": ["AL", "AK", "CA", "NY", "TX"], "age": ["18-29", "30-44", "45-64", "65+"],
              "edu": ["hs", "some", "ba", "post"], "female": ["0", "1"]}
    frame = pd.DataFrame({v: rng.choice(lv, size=n) for v, lv in levels.items()}).astype(str)
    # a level the population lacks (weight 0 for those rows) and rows without units
    frame.loc[rng.random(n) < 0.05, "edu"] = "none"
    count = rng.integers(0, 4, size=n).astype(float)
    grid = pd.MultiIndex.from_product(list(levels.values()), names=list(levels)).to_frame(index=False)
    grid = grid[rng.random(len(grid)) < 0.85].reset_index(drop=True)  # cells absent from the population
    grid[WEIGHT] = rng.gamma(2.0, 100.0, size=len(grid))
    outcome = rng.random((n, 1))
    return Units(frame=frame, outcome=outcome, count=count), grid


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300),
       by=st.sampled_from([(), ("state",), ("state", "female"), ("age",)]))
def test_grouped_classical_estimates_are_bit_identical_to_raking_each_group(seed, n, by):
    units, population = _case(seed, n)
    post_vars = ["state", "age", "edu", "female"]
    req = Request(scenario=Scenario(), by=by)
    got = _group_values(units, population, req, post_vars).values
    want = reference_group_values(units, population, req, post_vars)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rake_weights_are_bit_identical_to_the_pandas_reference(seed):
    units, population = _case(seed, 400)
    vars_ = ["age", "edu", "female"]
    got = rake_weights(units.frame, units.count, population, vars_)
    want = reference_rake_weights(units.frame, units.count, population, vars_)
    np.testing.assert_array_equal(got, want)
    assert (got[units.frame["edu"].eq("none").to_numpy()] == 0).all()
