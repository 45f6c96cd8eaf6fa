"""The convergence numbers are arviz-stats' (computed here without importing arviz on a run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from mrp_formula.checks.diagnostics import ess_bulk, ess_tail, fit_diagnostics, rhat


def _ar1(rng, chains, draws, phi, shift=0.0):
    x = np.zeros((chains, draws))
    e = rng.normal(size=(chains, draws))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x + shift * np.arange(chains)[:, None]


CHAINS = {
    "independent": lambda r: r.normal(size=(4, 500)),
    "autocorrelated": lambda r: _ar1(r, 4, 500, 0.9),
    "chains disagree": lambda r: _ar1(r, 4, 300, 0.5, shift=1.0),
    "heavy tails": lambda r: r.standard_cauchy(size=(2, 400)),
    "ties": lambda r: r.integers(0, 3, size=(4, 200)).astype(float),
    "one chain": lambda r: _ar1(r, 1, 400, 0.7),
    "odd draws": lambda r: _ar1(r, 3, 301, 0.3),
}


@pytest.mark.parametrize("kind", list(CHAINS))
def test_matches_arviz(kind):
    import arviz as az

    x = CHAINS[kind](np.random.default_rng(11))
    da = xr.DataArray(x, dims=("chain", "draw"))
    assert ess_bulk(x) == pytest.approx(float(az.ess(da, method="bulk")), rel=1e-9)
    assert ess_tail(x) == pytest.approx(float(az.ess(da, method="tail", prob=(0.05, 0.95))), rel=1e-9)
    if x.shape[0] > 1:
        assert rhat(x) == pytest.approx(float(az.rhat(da)), rel=1e-9)
    else:
        assert math.isnan(rhat(x))


def test_constant_and_too_short():
    assert ess_bulk(np.ones((2, 100))) == 200
    assert math.isnan(ess_bulk(np.ones((2, 3))))
    assert math.isnan(rhat(np.full((2, 50), np.nan)))


def test_fit_diagnostics_names_the_worst_parameters():
    rng = np.random.default_rng(3)
    post = xr.Dataset({
        "good": (("chain", "draw"), rng.normal(size=(4, 400))),
        "bad": (("chain", "draw", "bad_dim"), np.stack([_ar1(rng, 4, 400, 0.99, shift=2.0)] * 2, axis=-1)),
    })
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((4, 400), bool))})
    diag = fit_diagnostics(xr.DataTree.from_dict({"posterior": post, "sample_stats": stats}))
    assert list(diag.worst)[0] == "bad"
    assert diag.max_rhat > 1.5 and diag.min_ess_bulk < 40
    assert diag.worst["good"][1] > 1000


def test_one_chain_has_no_rhat_and_says_so():
    """R-hat compares chains: with one it was reported as 1.0, as if it had been checked."""
    from mrp_formula.checks.diagnostics import Thresholds

    rng = np.random.default_rng(3)
    post = xr.Dataset({"a": (("chain", "draw"), rng.normal(size=(1, 400)))})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, 400), bool))})
    diag = fit_diagnostics(xr.DataTree.from_dict({"posterior": post, "sample_stats": stats}), n_chains=1,
                           n_draws=400)
    assert math.isnan(diag.max_rhat) and diag.to_json()["max_rhat"] is None
    assert any(w.startswith("one chain: R-hat") for w in diag.warnings(Thresholds()))
    assert not any("R-hat nan" in w for w in diag.warnings(Thresholds(ess_min=10 ** 6)))


def test_a_quantity_that_does_not_vary_has_no_ess_or_rhat():
    """An estimand the calibration fixes varies only by rounding: its ranks would be noise."""
    import math

    import numpy as np

    from mrp_formula.checks.diagnostics import ess_rhat

    x = 0.3982 + np.random.default_rng(0).normal(0, 5e-12, (2, 200))
    assert all(math.isnan(v) for v in ess_rhat(x))
    ess, rhat = ess_rhat(0.3982 + np.random.default_rng(0).normal(0, 1e-3, (2, 200)))
    assert ess > 100 and rhat < 1.05
