"""The Python API: mrp_formula.run and mrp_formula.check take overrides as --set does."""

from __future__ import annotations

import pytest

import mrp_formula


@pytest.mark.parametrize("overrides", [
    "fit.draws=300",  # one string (was read one character at a time)
    ["fit.draws=300", 'model.priors.treatment="Normal(0, 2)"'],
    {"fit.draws": 300, "model.priors": {"treatment": "Normal(0, 2)"}, "report.plots": False},
])
def test_overrides_as_a_string_a_list_or_a_dict(ab_dir, overrides):
    plan = mrp_formula.check(ab_dir / "ab.toml", overrides=overrides)
    assert plan.loaded.spec.fit.draws == 300


def test_none_in_overrides(ab_dir):
    """None has no TOML form: a usage error naming the key (it became the text "None"); no
    overrides at all is None or empty."""
    from mrp_formula.errors import UsageError

    with pytest.raises(UsageError, match="overrides\\['report.out'\\]"):
        mrp_formula.check(ab_dir / "ab.toml", overrides={"report.out": None})
    assert mrp_formula.check(ab_dir / "ab.toml", overrides=None).loaded.spec.fit.draws != 0
