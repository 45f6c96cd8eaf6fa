"""Poststratification arithmetic against hand-computed weighted means, on made-up draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from mrp_formula.poststrat.sums import Request, Scenario, poststratify
from mrp_formula.data.population import WEIGHT

CELLS = pd.DataFrame({
    "gender": ["f", "f", "m", "m"],
    "age": ["young", "old", "young", "old"],
    WEIGHT: [10.0, 30.0, 20.0, 40.0],
})
# Two draws; a cell's prediction is fixed per draw, and treatment adds 0.1.
BASE = np.array([[0.1, 0.2, 0.3, 0.4],
                 [0.5, 0.6, 0.7, 0.8]])


def fake_predict(cells, exclude=()):
    idx = cells.index.to_numpy()
    out = BASE[:, idx].copy()
    if "treatment" in cells and (cells["treatment"] == "b").all():
        out += 0.1
    if "age_term" in exclude:
        out -= 0.05
    return out


def test_overall_weighted_mean():
    req = Request(Scenario())
    res = poststratify(CELLS, fake_predict, [req], n_samples=2)[req]
    # draw 0: (10*.1 + 30*.2 + 20*.3 + 40*.4) / 100 = 0.29
    np.testing.assert_allclose(res.values[:, 0], [0.29, 0.69])
    np.testing.assert_allclose(res.weight, [100.0])


def test_by_group_and_counterfactual():
    req = Request(Scenario((("treatment", "b"),)), ("gender",))
    res = poststratify(CELLS, fake_predict, [req], n_samples=2)[req]
    assert list(res.groups["gender"]) == ["f", "m"]
    # f, draw 0: (10*.1 + 30*.2)/40 + 0.1 = 0.275 ; m: (20*.3 + 40*.4)/60 + .1 = 0.4667
    np.testing.assert_allclose(res.values[0], [0.275, 22 / 60 + 0.1])
    np.testing.assert_allclose(res.values[1], [(5 + 18) / 40 + 0.1, (14 + 32) / 60 + 0.1])


def test_exclude_is_passed_to_the_predictor():
    req = Request(Scenario((), ("age_term",)))
    res = poststratify(CELLS, fake_predict, [req], n_samples=2)[req]
    np.testing.assert_allclose(res.values[:, 0], [0.24, 0.64])


@pytest.mark.parametrize("block", [1, 2, 3, 5, 8, 10_000])
def test_chunked_equals_plain(block):
    reqs = [Request(Scenario(), ("gender",)), Request(Scenario(), ("age", "gender")), Request(Scenario())]
    plain = poststratify(CELLS, fake_predict, reqs, n_samples=2)
    chunked = poststratify(CELLS, fake_predict, reqs, n_samples=2, block=block)
    for r in reqs:
        np.testing.assert_allclose(chunked[r].values, plain[r].values, rtol=0, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(1, 7), st.integers(0, 10_000))
def test_matches_dense_computation(n_cells, n_draws, block_cells, seed):
    rng = np.random.default_rng(seed)
    cells = pd.DataFrame({"g": rng.choice(list("abc"), n_cells), WEIGHT: rng.uniform(0.1, 5, n_cells)})
    pred = rng.random((n_draws, n_cells))
    predict = lambda c, exclude=(): pred[:, c.index.to_numpy()]  # noqa: E731
    req = Request(Scenario(), ("g",))
    got = poststratify(cells, predict, [req], n_samples=n_draws, block=block_cells * n_draws)[req]
    for gi, g in enumerate(got.groups["g"]):
        m = (cells["g"] == g).to_numpy()
        w = cells[WEIGHT].to_numpy()[m]
        np.testing.assert_allclose(got.values[:, gi], pred[:, m] @ w / w.sum(), rtol=1e-12)
