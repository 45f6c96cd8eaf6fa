"""The posterior predictive check's noise for the families with a variance in their record:
replicated group means spread as the means of groups simulated by the family's own simulator."""

from __future__ import annotations

import numpy as np
import pytest

from mrp_formula.checks import ppc
from mrp_formula.spec.families import FAMILIES

CASES = {"hurdle_lognormal": (1.0, {"sigma": 0.8, "psi": 0.3}), "zero_inflated_poisson": (2.0, {"psi": 0.6}),
         "gamma": (5.0, {"alpha": 2.0}), "beta": (0.3, {"kappa": 10.0}), "t": (1.0, {"sigma": 2.0, "nu": 6.0}),
         "hurdle_poisson": (1.5, {"psi": 0.4})}


@pytest.mark.parametrize("family", list(CASES))
def test_replicated_means_spread_as_simulated_group_means(family):
    fam = FAMILIES[family]
    m, aux = CASES[family]
    n_units, reps = 40, 4000
    rng = np.random.default_rng(8)
    sims = fam.simulate(np.full(n_units * reps, m), np.ones(n_units * reps, dtype="int64"), aux, rng)
    group_means = sims.reshape(reps, n_units).mean(axis=1)
    mean = np.full(reps, float(fam.expected(np.float64(m), aux)))
    variance = np.full(reps, float(fam.variance(np.float64(m), aux)))
    replicated = ppc.replicate_means(family, mean, n_units, rng, variance=variance)
    assert replicated.mean() == pytest.approx(group_means.mean(), abs=5 * group_means.std() / np.sqrt(reps))
    # the sd of a sample sd is about sd / sqrt(2 reps): compare the two spreads within 5 of those
    tol = 5 * group_means.std() / np.sqrt(2 * reps) * np.sqrt(2)
    assert abs(replicated.std() - group_means.std()) < tol, (replicated.std(), group_means.std())
