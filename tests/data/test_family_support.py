"""The outcome against the support of the families recorded with one (spec/families.py): every
value outside it is an error naming the data file, the column, how many rows, the first rows
and values, and the family to use instead."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from mrp_formula.data.tables import prepare
from mrp_formula.errors import DataError
from mrp_formula.spec.families import FAMILIES
from mrp_formula.spec.tree import load_spec
from mrp_formula.steps import spec_checks

SPEC = """
name = "support"
[data]
source = "d.csv"
[model]
formula = "y ~ g"
family = "{family}"
[population]
source = "pop.csv"
weight = "n"
[estimands.m]
"""


def _prepare(tmp_path, family, y):
    g = ["a", "b", "c"] * (len(y) // 3)
    pd.DataFrame({"g": g, "y": y}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"g": ["a", "b", "c"], "n": [1, 1, 1]}).to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent(SPEC.format(family=family)))
    loaded = load_spec(tmp_path / "s.toml")
    return prepare(loaded, spec_checks(loaded))


POSITIVE = [3.2, 0.5, 12.0, 7.1, 1.0, 2.2]
WITH_ZEROS = [0.0, 0.0, 12.5, 0.0, 3.0, 0.0]
SHARES = [0.2, 0.5, 0.9, 0.01, 0.3, 0.6]
COUNTS = [0, 0, 3, 0, 1, 5]

FITS = [("gamma", POSITIVE), ("lognormal", POSITIVE), ("exponential", POSITIVE), ("weibull", POSITIVE),
        ("t", [-3.0, 0.0, 2.5, -1.0, 8.0, 0.2]), ("beta", SHARES), ("hurdle_lognormal", WITH_ZEROS),
        ("hurdle_gamma", WITH_ZEROS), ("hurdle_lognormal", POSITIVE), ("zero_inflated_poisson", COUNTS),
        ("zero_inflated_negativebinomial", COUNTS), ("hurdle_poisson", COUNTS), ("hurdle_negativebinomial", COUNTS)]


@pytest.mark.parametrize("family, y", FITS, ids=[f for f, _ in FITS])
def test_outcomes_inside_the_support_pass(tmp_path, family, y):
    tables = _prepare(tmp_path, family, y)
    assert len(tables.sample) == len(y)


# (family, outcome, expected message, a phrase of the hint)
REFUSED = [
    ("gamma", WITH_ZEROS, "the gamma family needs y > 0: 4 value(s) of 'y' in d.csv are at or below 0 "
                          "(rows [1, 2, 4, 6]: 0, 0, 0, 0)", "hurdle_gamma or hurdle_lognormal"),
    ("lognormal", [2.0, -1.0, 3.0, 0.0, 1.0, 2.0], "the lognormal family needs y > 0: 2 value(s) of 'y' in d.csv are "
                                                   "at or below 0 (rows [2, 4]: -1, 0)", "hurdle"),
    ("beta", [0.2, 1.0, 0.5, 0.0, 0.3, 0.4], "the beta family needs 0 < y < 1: 1 value(s) of 'y' in d.csv are at or "
                                             "below 0 (rows [4]: 0)", "squeeze 0 and 1 inwards"),
    ("hurdle_lognormal", [0.0, -5.0, 3.0, 0.0, 1.0, 2.0], "the hurdle_lognormal family needs y >= 0: 1 value(s) of "
                                                          "'y' in d.csv are below 0 (rows [2]: -5)", "gaussian or t"),
    ("zero_inflated_poisson", [0.0, 1.5, 3.0, 0.0, 1.0, 2.5], "the zero_inflated_poisson family needs whole numbers "
                                                              ">= 0: 2 value(s) of 'y' in d.csv are not whole numbers "
                                                              "(rows [2, 6]: 1.5, 2.5)", "hurdle_gamma"),
]


@pytest.mark.parametrize("family, y, message, hint", REFUSED, ids=[f for f, *_ in REFUSED])
def test_outcomes_outside_the_support_name_rows_values_and_what_to_use(tmp_path, family, y, message, hint):
    with pytest.raises(DataError) as exc:
        _prepare(tmp_path, family, y)
    messages = [p.message for p in exc.value.problems]
    assert message in messages, messages
    problem = exc.value.problems[messages.index(message)]
    assert hint in problem.hint and problem.key == "model.formula" and problem.line == 6
    assert problem.file.endswith("s.toml")


def test_beta_at_one_and_text_outcomes_are_refused(tmp_path):
    with pytest.raises(DataError) as exc:
        _prepare(tmp_path, "beta", [0.2, 1.0, 0.5, 0.1, 0.3, 0.4])
    assert [p.message for p in exc.value.problems] == [
        "the beta family needs 0 < y < 1: 1 value(s) of 'y' in d.csv are at or above 1 (rows [2]: 1)"]
    with pytest.raises(DataError) as exc:
        _prepare(tmp_path, "gamma", ["low", "high", "mid"] * 2)
    assert exc.value.problems[0].message.startswith("the gamma response 'y' in d.csv must be numeric (y > 0)")


def test_every_supported_family_is_tested():
    tested = {f for f, _ in FITS} | {f for f, *_ in REFUSED}
    assert tested == {n for n, f in FAMILIES.items() if f.support is not None}
    assert np.all(np.asarray(POSITIVE) > 0)


def test_a_share_of_non_zeros_that_differs_by_level_is_a_warning(tmp_path):
    """psi is one number for all cells: a clear difference between levels is noted (p < 1e-3),
    chance differences are not."""
    rng = np.random.default_rng(3)
    n = 600
    levels = np.array(["a", "b", "c"] * (n // 3))
    amounts = np.round(rng.lognormal(3, 1, n), 2)
    differs = np.where(rng.random(n) < np.where(levels == "a", 0.05, 0.4), amounts, 0.0)
    same = np.where(rng.random(n) < 0.2, amounts, 0.0)
    notes = [x for x in _prepare(tmp_path, "hurdle_lognormal", differs).notes if x.code == "family.constant_psi"]
    assert len(notes) == 1 and notes[0].level == "warning"
    assert "between the levels of 'g'" in notes[0] and "for a," in notes[0] and "model.formulas.psi" in notes[0]
    assert not [x for x in _prepare(tmp_path, "hurdle_lognormal", same).notes if x.code == "family.constant_psi"]


def test_a_zero_inflated_familys_share_of_non_zeros_moves_with_mu(tmp_path):
    """A zero-inflated Poisson with one psi: its share of non-zeros, psi (1 - exp(-mu)), differs
    between levels through mu alone, so a difference is no sign against one psi: no warning."""
    rng = np.random.default_rng(4)
    n = 900
    levels = np.array(["a", "b", "c"] * (n // 3))
    mu = np.where(levels == "a", 0.3, 3.0)
    y = np.where(rng.random(n) < 0.6, rng.poisson(mu), 0).astype(float)
    assert not [x for x in _prepare(tmp_path, "zero_inflated_poisson", y).notes if x.code == "family.constant_psi"]
