"""`mrp recover` simulates the families with several parameters from the parent parameter per row
and the truth's auxiliary parameters by name (no sampling)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrp_formula.commands import recover as rec
from mrp_formula.errors import FitError
from mrp_formula.spec.families import FAMILIES


def test_simulated_hurdle_outcomes_have_the_records_mean():
    n = 40_000
    sample = pd.DataFrame({"y": np.zeros(n)})
    mu = np.where(np.arange(n) % 2 == 0, 1.0, 2.0)  # the log-scale mean of the amounts
    aux = {"sigma": 0.5, "psi": 0.25}
    out = rec.simulate_outcomes("hurdle_lognormal", mu, sample, ("y",), np.random.default_rng(2), aux=aux)
    y = out["y"].to_numpy()
    expected = FAMILIES["hurdle_lognormal"].expected(mu, aux)
    variance = FAMILIES["hurdle_lognormal"].variance(mu, aux)
    assert abs(y.mean() - expected.mean()) < 5 * np.sqrt(variance.sum()) / n
    assert (y >= 0).all() and 0.24 < (y > 0).mean() < 0.26


def test_a_missing_auxiliary_parameter_is_named():
    sample = pd.DataFrame({"y": np.zeros(3)})
    with pytest.raises(FitError, match="needs psi"):
        rec.simulate_outcomes("zero_inflated_negativebinomial", np.ones(3), sample, ("y",),
                              np.random.default_rng(1), aux={"alpha": 2.0})


class _OneDraw:
    """A one-draw predictor: E[y] = 10 x the parent parameter, the parent parameter = x."""

    def predict(self, cells, exclude=(), *, parent=False):
        x = cells["x"].to_numpy(dtype=float)[None, :]
        return x if parent else 10 * x


def test_rows_get_the_parent_parameter_when_asked():
    sample = pd.DataFrame({"x": [1.0, 2.0, 1.0, 3.0]})
    np.testing.assert_array_equal(rec.expected_by_row(_OneDraw(), sample, ["x"], parent=True), [1, 2, 1, 3])
    np.testing.assert_array_equal(rec.expected_by_row(_OneDraw(), sample, ["x"]), [10, 20, 10, 30])
