"""Family and outcome that do not fit: each family against each kind of outcome, with the exact
message (an error says what the outcome looks like and which family fits it; a legal but doubtful
choice is a note)."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from mrp_formula.errors import DataError
from mrp_formula.steps import spec_checks as _spec_checks
from mrp_formula.spec.tree import load_spec
from mrp_formula.data.tables import prepare

SPEC = """
name = "fit"
[data]
source = "d.csv"
{data}
[model]
formula = "{response} ~ g"
family = "{family}"
[population]
source = "pop.csv"
weight = "n"
[estimands.m]
"""

N = 12
OUTCOMES = {  # kind -> a column of N values
    "binary": [0, 1] * 6,
    "bool": [True, False] * 6,
    "yes_no": ["yes", "no", "no"] * 4,
    "three_text": ["low", "mid", "high"] * 4,
    "continuous": [round(0.37 * i - 1.1, 2) for i in range(N)],
    "counts": [0, 3, 1, 7, 2, 0, 5, 1, 0, 2, 4, 9],
    "negative": [-2, 0, 3, 1, -1, 4, 2, 0, 1, 5, 3, 2],
}

BERN = "a bernoulli response must be 0/1 or true/false; 'y' has "
GAUSS_TEXT = "a gaussian response must be numeric; 'y' is text"
LINEAR_NOTE = ("the gaussian response 'y' holds only 0 and 1: a linear probability model, whose predictions can "
               "leave [0, 1]; family = \"bernoulli\" models a 0/1 outcome")
CONT = "['-1.1', '-0.73', '-0.36', '0.01', '0.38', ...]"


def _count_msg(family, what, got, hint):
    return (f"'y' must hold non-negative whole numbers for the {family} family; it {what}", got, hint)


COUNT_TEXT_HINT = 'for categories use family = "bernoulli" (two, recoded to 0/1) or "categorical"'
GAUSS_HINT = 'use family = "gaussian" for a continuous outcome'

# (family, outcome kind) -> None (fits), ("note", text) or (message, got, hint) of the error.
EXPECTED = {
    ("bernoulli", "binary"): None,
    ("bernoulli", "bool"): None,
    ("bernoulli", "yes_no"): (BERN + "['no', 'yes']", None, "recode it, e.g. data.recode.y = { yes = 1, no = 0 }"),
    ("bernoulli", "three_text"): (BERN + "['high', 'low', 'mid']: 3 categories", None,
                                  'use family = "categorical" (or "cumulative" for ordered categories), or recode '
                                  "them to 0/1 with data.recode.y"),
    ("bernoulli", "continuous"): (BERN + CONT + ": it looks continuous (12 distinct values from -1.1 to 2.97)", None,
                                  'use family = "gaussian" for a continuous outcome, or make a 0/1 column in '
                                  "data.query, e.g. CAST(y > 0 AS INTEGER)"),
    ("bernoulli", "counts"): (BERN + "['0', '1', '2', '3', '4', ...]: whole numbers from 0 to 9, like a rating scale or "
                              "counts", None,
                              'for ordered categories (a 1-5 rating) use family = "cumulative", for counts use '
                              'family = "poisson" or "negativebinomial", for successes out of trials p(successes, '
                              'trials) with family = "binomial"; or fix the values that are not 0/1'),
    ("bernoulli", "negative"): (BERN + "['-2', '-1', '0', '1', '2', ...]: whole numbers from -2 to 5, like counts",
                                None, 'for counts use family = "poisson" or "negativebinomial", for successes out '
                                'of trials p(successes, trials) with family = "binomial"; or fix the values that '
                                "are not 0/1"),
    ("gaussian", "binary"): ("note", LINEAR_NOTE),
    ("gaussian", "bool"): ("note", LINEAR_NOTE),
    ("gaussian", "yes_no"): (GAUSS_TEXT, "['no', 'yes']",
                             'for two outcomes use family = "bernoulli" after data.recode.y = { yes = 1, no = 0 }'),
    ("gaussian", "three_text"): (GAUSS_TEXT, "['high', 'low', 'mid']",
                                 'for categories use family = "categorical" (or "cumulative" for ordered categories)'),
    ("gaussian", "continuous"): None,
    ("gaussian", "counts"): None,
    ("gaussian", "negative"): None,
    ("categorical", "binary"): None,
    ("categorical", "yes_no"): None,
    ("categorical", "three_text"): None,
    ("categorical", "counts"): None,
    ("categorical", "continuous"): ("a categorical response is a set of categories; 'y' looks continuous "
                                    "(12 distinct values from -1.1 to 2.97)", None, GAUSS_HINT),
    ("cumulative", "three_text"): None,
    ("cumulative", "continuous"): ("a cumulative response is a set of categories; 'y' looks continuous "
                                   "(12 distinct values from -1.1 to 2.97)", None, GAUSS_HINT),
}
for fam in ("poisson", "negativebinomial"):
    EXPECTED.update({
        (fam, "binary"): ("note", f"the {fam} response 'y' holds only 0 and 1: family = \"bernoulli\" models a 0/1 "
                                  f"outcome (a {fam} rate is not held below 1)"),
        (fam, "counts"): None,
        (fam, "yes_no"): _count_msg(fam, "is text", "['no', 'yes']", COUNT_TEXT_HINT),
        (fam, "three_text"): _count_msg(fam, "is text", "['high', 'low', 'mid']", COUNT_TEXT_HINT),
        (fam, "continuous"): _count_msg(fam, "has values that are not whole numbers", CONT, GAUSS_HINT),
        (fam, "negative"): _count_msg(fam, "has negative values", "['-2', '-1', '0', '1', '2', ...]", GAUSS_HINT),
    })


def _prepare(tmp_path, family, y, response="y", data=""):
    g = ["a", "b", "c"] * (len(y) // 3)
    pd.DataFrame({"y": y, "g": g}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"g": ["a", "b", "c"], "n": [1, 1, 1]}).to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent(SPEC.format(family=family, response=response, data=data)))
    loaded = load_spec(tmp_path / "s.toml")
    return prepare(loaded, _spec_checks(loaded))


@pytest.mark.parametrize("family, kind", list(EXPECTED), ids=[f"{f}-{k}" for f, k in EXPECTED])
def test_family_and_outcome(tmp_path, family, kind):
    expected = EXPECTED[(family, kind)]
    if expected is None or expected[0] == "note":
        tables = _prepare(tmp_path, family, OUTCOMES[kind])
        family_notes = [n for n in tables.notes if n.startswith(f"the {family} response")]
        assert family_notes == ([] if expected is None else [expected[1]])
        return
    with pytest.raises(DataError) as exc:
        _prepare(tmp_path, family, OUTCOMES[kind])
    (problem,) = exc.value.problems
    message, got, hint = expected
    assert (problem.message, problem.got, problem.hint, problem.key) == (message, got, hint, "model.formula")
    assert problem.line == 7 and problem.file.endswith("s.toml")


def test_recoded_yes_no_is_a_bernoulli_outcome(tmp_path):
    """The hint's recoding works: data.recode gives text "1"/"0", read as numbers."""
    tables = _prepare(tmp_path, "bernoulli", OUTCOMES["yes_no"], data="recode.y = { yes = 1, no = 0 }")
    assert pd.api.types.is_numeric_dtype(tables.sample["y"])
    assert sorted(tables.sample["y"].unique()) == [0, 1]


@pytest.mark.parametrize("successes, trials, message", [
    ([1, 2, 0], [3, 4, 2], None),
    ([1.5, 2, 0], [3, 4, 2], "'k' must hold non-negative whole numbers for the binomial family; it has values "
                             "that are not whole numbers"),
    ([1, 2, 0], [3, -4, 2], "'n' must hold non-negative whole numbers for the binomial family; it has negative "
                            "values"),
    ([1, 5, 0], [3, 4, 2], "successes 'k' exceed trials 'n' in 1 rows"),
])
def test_binomial_successes_and_trials(tmp_path, successes, trials, message):
    g = ["a", "b", "c"]
    pd.DataFrame({"k": successes, "n": trials, "g": g}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"g": g, "n": [1, 1, 1]}).to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent(SPEC.format(family="binomial", response="p(k, n)", data="")))
    loaded = load_spec(tmp_path / "s.toml")
    if message is None:
        prepare(loaded, _spec_checks(loaded))
        return
    with pytest.raises(DataError) as exc:
        prepare(loaded, _spec_checks(loaded))
    assert [p.message for p in exc.value.problems] == [message]


def test_every_family_is_covered():
    from mrp_formula.spec.families import FAMILIES as RECORDS
    from mrp_formula.spec.tree import FAMILIES

    supported = {f for f in FAMILIES if RECORDS[f].support is not None}  # test_family_support.py
    assert {f for f, _ in EXPECTED} | {"binomial"} | supported == set(FAMILIES)
    assert np.unique(OUTCOMES["continuous"]).size == N
