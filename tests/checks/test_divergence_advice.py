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
