"""mrp_formula.notes: the words of notes."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("prob, kind, name", [(0.95, "eti", "95% ETI"), (0.999, "hdi", "99.9% HDI"), (0.9, "eti", "90% ETI")])
def test_interval_names_keep_their_digits(prob, kind, name):
    from mrp_formula.notes import interval_name

    assert interval_name(prob, kind) == name  # 0.999 was "100%"


@pytest.mark.parametrize("p, shown", [
    (1.0, ">99.9%"), (0.9995, ">99.9%"), (0.999, "99.9%"), (0.625, "62.5%"),
    (0.001, "0.1%"), (0.0004, "<0.1%"), (0.0, "<0.1%"), (float("nan"), "n/a"),
])
def test_a_share_of_draws_never_claims_certainty(p, shown):
    """Every draw above the null is not certainty: 4,000 draws cannot show a chance above 99.975%."""
    from mrp_formula.notes import share_of_draws

    assert share_of_draws(p) == shown
