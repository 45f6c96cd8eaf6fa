"""The advice for divergent transitions fits the model: switching a parameterization only where a
group term can be switched."""

from __future__ import annotations

import pytest

from mrp_formula.checks.diagnostics import divergence_advice


@pytest.mark.parametrize("switchable, has, lacks", [
    (True, "switch a group term's parameterization", "structured"),
    (False, "every group term here is structured", "switch a group term"),
    (None, "check that the priors fit the data's scale", "group term"),
])
def test_the_advice_names_only_what_the_model_has(switchable, has, lacks):
    text = divergence_advice(0.9, switchable)
    assert text.startswith("raise fit.target_accept (now 0.9) towards 0.99")
    assert has in text and lacks not in text


@pytest.mark.parametrize("switchable, estimands_fine, has, lacks", [
    (True, True, "an intercept and a group effect", "slope"),
    (None, True, "an intercept and a slope", "group effect"),
    (True, False, "a different parameterization or more draws may help", "centred"),
    (None, False, "a predictor centred", "parameterization"),
])
def test_poor_mixing_is_explained_by_what_the_model_has(switchable, estimands_fine, has, lacks):
    """A model without group terms (the A/B revenue spec) is not told of group effects nor of
    switching a parameterization."""
    from mrp_formula.checks.diagnostics import Diagnostics, Thresholds

    d = Diagnostics(divergences=0, max_rhat=1.2, min_ess_bulk=20, min_ess_tail=20, worst={"Intercept": (1.2, 20)},
                    estimand_max_rhat=1.0 if estimands_fine else 1.2, estimand_min_ess=2000 if estimands_fine else 20,
                    n_samples=1000, n_chains=2)
    t = Thresholds(switchable=switchable)
    (text,) = [w for w in d.warnings(t) if w.startswith("model parameters mix poorly")]
    assert has in text and lacks not in text
