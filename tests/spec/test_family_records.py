"""The families added for skewed, zero-heavy and bounded metrics, as records (spec/families.py):
each record's expected outcome and variance given the parent parameter are those of its own
simulator (a Monte Carlo mean with a tolerance from its standard error), written here a second
time from PyMC's definitions, and its simulator keeps to the family's support. No sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from mrp_formula.spec.families import FAMILIES

NEW = ["gamma", "lognormal", "t", "beta", "exponential", "weibull", "hurdle_lognormal", "hurdle_gamma",
       "hurdle_poisson", "hurdle_negativebinomial", "zero_inflated_poisson", "zero_inflated_negativebinomial"]
N = 60_000

# a parent parameter m on the family's own scale and auxiliary parameters, as hypothesis draws them
PARENT = {"lognormal": st.floats(-1.0, 2.0), "hurdle_lognormal": st.floats(-1.0, 2.0), "t": st.floats(-5.0, 5.0),
          "beta": st.floats(0.05, 0.95)}
AUX = {"sigma": st.floats(0.2, 1.2), "alpha": st.floats(0.5, 8.0), "psi": st.floats(0.05, 0.95),
       "nu": st.floats(5.0, 30.0), "kappa": st.floats(1.0, 50.0)}


def by_hand(name, m, a):
    """E[y] from PyMC's definitions of the distributions, written independently of the records."""
    psi = a.get("psi", 1.0)
    if name in ("lognormal", "hurdle_lognormal"):
        return psi * np.exp(m + a["sigma"] ** 2 / 2)
    if name == "hurdle_poisson":  # the count part is truncated at zero
        return psi * m / (1 - stats.poisson.pmf(0, m))
    if name == "hurdle_negativebinomial":
        return psi * m / (1 - stats.nbinom.pmf(0, a["alpha"], a["alpha"] / (a["alpha"] + m)))
    return psi * m  # gamma, t, beta, exponential, weibull (mean parameterised), zero-inflated


@pytest.mark.parametrize("name", NEW)
def test_expected_outcome_and_variance_are_the_simulators(name):
    fam = FAMILIES[name]

    @settings(max_examples=4, deadline=None)
    @given(m=PARENT.get(name, st.floats(0.2, 20.0)), aux=st.fixed_dictionaries({a: AUX[a] for a in fam.auxiliary}),
           seed=st.integers(0, 2**31 - 1))
    def check(m, aux, seed):
        y = fam.simulate(np.full(N, m), np.ones(N, dtype="int64"), aux, np.random.default_rng(seed)).astype(float)
        mean = float(fam.expected(np.float64(m), aux))
        var = float(fam.variance(np.float64(m), aux))
        assert mean == pytest.approx(by_hand(name, m, aux), rel=1e-9)
        se = np.sqrt(var / N)
        assert abs(y.mean() - mean) < 5 * se, (y.mean(), mean, se)
        d2 = (y - y.mean()) ** 2  # the sample variance, with its own standard error
        assert abs(d2.mean() - var) < 6 * d2.std() / np.sqrt(N) + 1e-12, (d2.mean(), var)

    check()


@pytest.mark.parametrize("name", NEW)
def test_simulated_outcomes_keep_to_the_support(name):
    fam, sup = FAMILIES[name], FAMILIES[name].support
    rng = np.random.default_rng(4)
    m = {"lognormal": 0.5, "hurdle_lognormal": 0.5, "t": -3.0, "beta": 0.02}.get(name, 0.3)
    aux = {"sigma": 1.0, "alpha": 0.7, "psi": 0.3, "nu": 3.0, "kappa": 2.0}
    y = fam.simulate(np.full(5000, m), np.ones(5000, dtype="int64"), {a: aux[a] for a in fam.auxiliary}, rng)
    assert np.isfinite(y).all()
    assert (y >= sup.lower).all() if sup.closed else (y > sup.lower).all()
    assert (y < sup.upper).all()
    if sup.whole:
        assert y.dtype.kind == "i"
    if name.startswith(("hurdle", "zero_inflated")):  # psi is the probability of the non-zero part
        nonzero = (y > 0).mean()
        assert nonzero <= 0.3 + 5 * np.sqrt(0.3 * 0.7 / 5000)
        if name.startswith("hurdle"):
            assert nonzero == pytest.approx(0.3, abs=5 * np.sqrt(0.3 * 0.7 / 5000))


def test_expected_outcome_broadcasts_auxiliary_draws_over_cells():
    """Per draw (rows) one auxiliary value, per cell (columns) one parent parameter: what the
    predictor hands the record, in both orientations."""
    fam = FAMILIES["hurdle_lognormal"]
    m = np.array([[0.0, 1.0, 2.0], [0.5, 0.5, 0.5]])  # (S=2, n=3)
    aux = {"sigma": np.array([0.5, 1.0]), "psi": np.array([0.1, 0.4])}
    got = fam.expected(m, {k: v[:, None] for k, v in aux.items()})
    want = aux["psi"][:, None] * np.exp(m + aux["sigma"][:, None] ** 2 / 2)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    np.testing.assert_allclose(fam.expected(m.T.copy(), aux), want.T, rtol=1e-14)  # (cells, S) blocks


def test_weibull_mean_is_the_parent_parameter():
    k, m = 1.7, 3.0
    scale = m / special.gamma(1 + 1 / k)
    assert stats.weibull_min(k, scale=scale).mean() == pytest.approx(m)


@pytest.mark.parametrize("name", NEW)
def test_every_new_family_is_a_bambi_family_with_its_link_and_parameters(name):
    from bambi.defaults.families import BUILTIN_FAMILIES

    bambi = BUILTIN_FAMILIES[name]
    parent = bambi["likelihood"]["parent"]
    assert set(FAMILIES[name].auxiliary) == set(bambi["likelihood"]["params"]) - {parent}
    # Bambi's own link, except the gamma's: the log link here (Bambi's inverse link is link = "inverse")
    assert FAMILIES[name].link == ("log" if name == "gamma" else bambi["link"][parent])
