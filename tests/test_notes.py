"""mrp_formula.notes: the words of notes."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("prob, kind, name", [(0.95, "eti", "95% ETI"), (0.999, "hdi", "99.9% HDI"), (0.9, "eti", "90% ETI")])
def test_interval_names_keep_their_digits(prob, kind, name):
    from mrp_formula.notes import interval_name

    assert interval_name(prob, kind) == name  # 0.999 was "100%"
