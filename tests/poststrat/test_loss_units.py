"""Expected losses are in outcome units on every contrast scale; the table and the printed
sentence say so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrp_formula.cli import decision_lines
from mrp_formula.poststrat.estimands import LOSS_UNIT, outcome_unit, with_loss_unit


@pytest.mark.parametrize("family, response, unit", [
    ("bernoulli", ("clicked",), "probability that clicked = 1"),
    ("binomial", ("clicks", "visits"), "proportion clicks / visits"),
    ("gaussian", ("revenue",), "mean of revenue, in its units"),
    ("poisson", ("orders",), "mean count of orders"),
    ("negativebinomial", ("orders",), "mean count of orders"),
    ("categorical", ("answer",), "probability of the category"),
    ("cumulative", ("answer",), "probability of the category"),
])
def test_outcome_unit(family, response, unit):
    assert outcome_unit(family, response) == unit


def _table():
    return pd.DataFrame({
        "estimand": ["rate", "rate", "lift", "odds", "diff"],
        "treatment": ["control", "treatment", "treatment vs control", "treatment vs control", "treatment vs control"],
        "scale": ["", "", "ratio", "odds_ratio", "difference"],
        "first": [None, None, "treatment", "treatment", "treatment"],
        "second": [None, None, "control", "control", "control"],
        "mean": [0.05, 0.075, 1.5, 1.55, 0.025],
        "chance_to_win": [np.nan, np.nan, 0.99, 0.99, 0.99],
        "expected_loss_first": [np.nan, np.nan, 0.0001, 0.0001, 0.0001],
        "expected_loss_second": [np.nan, np.nan, 0.025, 0.025, 0.025],
    })


def test_table_column():
    table = with_loss_unit(_table(), outcome_unit("bernoulli", ("clicked",)))
    assert table[LOSS_UNIT].isna().tolist() == [True, True, False, False, False]
    assert table[LOSS_UNIT].iloc[2:].tolist() == ["outcome units: probability that clicked = 1"] * 3
    assert LOSS_UNIT not in with_loss_unit(_table().drop(columns=["expected_loss_first"]), "x")


def test_printed_sentence_names_the_unit():
    table = with_loss_unit(_table(), outcome_unit("bernoulli", ("clicked",)))
    assert decision_lines(table) == [
        "lift: chance that treatment beats control 99.0%; expected loss if you choose treatment: 0.0001, if you "
        "choose control: 0.025 (in outcome units: probability that clicked = 1, not ratio units)",
        "odds: chance that treatment beats control 99.0%; expected loss if you choose treatment: 0.0001, if you "
        "choose control: 0.025 (in outcome units: probability that clicked = 1, not odds ratio units)",
        "diff: chance that treatment beats control 99.0%; expected loss if you choose treatment: 0.0001, if you "
        "choose control: 0.025 (in outcome units: probability that clicked = 1)",
    ]


def test_sentence_without_the_column_still_says_outcome_units():
    (line, *_) = decision_lines(_table())
    assert line.endswith("(in outcome units, not ratio units)")


def test_pipeline_orders_the_column_after_the_losses():
    from mrp_formula.commands.run import SUMMARY

    assert SUMMARY.index(LOSS_UNIT) == SUMMARY.index("expected_loss_second") + 1


def test_a_tie_counts_half_towards_the_chance_to_win():
    """Draws in which the two sides are equal (an effect left out or fixed) are no win for either:
    an exact tie gives 50 %, not 0 % (nor 100 % for the other side)."""
    import numpy as np

    from mrp_formula.poststrat.estimands import _decision

    a = np.array([[0.3], [0.3], [0.5], [0.1]])
    b = np.array([[0.3], [0.3], [0.2], [0.4]])
    assert _decision((a, b), 0, None)["chance_to_win"] == 0.5  # one win, one loss, two ties
    assert _decision((a, a), 0, None)["chance_to_win"] == 0.5


def test_the_mean_category_rows_loss_is_in_category_values():
    import pandas as pd

    from mrp_formula.poststrat.estimands import LOSS_UNIT, with_loss_unit

    table = pd.DataFrame({"estimand": ["e"] * 3, "category": ["1", "2", "mean"], "expected_loss_first": [0.1, 0.2, 0.3]})
    units = list(with_loss_unit(table, "probability of the category")[LOSS_UNIT])
    assert units[:2] == ["outcome units: probability of the category"] * 2
    assert units[2].startswith("outcome units: expected category value")
