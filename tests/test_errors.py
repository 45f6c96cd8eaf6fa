"""mrp_formula.errors: how a problem names its place."""

from __future__ import annotations

import pytest


def test_problems_name_their_file_in_one_form(tmp_path, monkeypatch):
    """Whichever step found a problem (the spec's checks keep the path as given, the data's checks
    a resolved one), the message and --json name the file the same way."""
    from mrp_formula.errors import Problem

    (tmp_path / "in").mkdir()
    spec = tmp_path / "in" / "spec.toml"
    spec.write_text("")
    other = tmp_path / "other.toml"
    other.write_text("")
    monkeypatch.chdir(tmp_path / "in")
    assert Problem("x", file=str(spec), line=3).render() == "spec.toml:3: x"
    assert Problem("x", file="spec.toml", line=3).render() == "spec.toml:3: x"
    assert Problem("x", file="../other.toml").to_json()["file"] == str(other.resolve())
    assert Problem("x", file="data (DataFrame)").render() == "data (DataFrame): x"


def test_problems_come_in_the_order_of_the_file():
    from mrp_formula.errors import Problem, SpecError

    err = SpecError([Problem("b", file="s.toml", line=9), Problem("no line", file="s.toml"),
                     Problem("a", file="s.toml", line=5), Problem("other file", file="base.toml", line=1),
                     Problem("c", file="s.toml", line=6)])
    assert [p.message for p in err.problems] == ["a", "c", "b", "no line", "other file"]


@pytest.mark.parametrize("word, choices, hint", [
    ("f", ["F", "M"], "did you mean 'F'?"),  # case only: difflib alone finds nothing
    ("n", ["N", "state"], "did you mean 'N'?"),
    ("STAT", ["state", "sex"], "did you mean 'state'?"),  # close once the case is set aside
    ("zzz", ["a", "b"], "expected one of 'a', 'b'"),
])
def test_did_you_mean_sees_through_case(word, choices, hint):
    from mrp_formula.errors import did_you_mean

    assert did_you_mean(word, choices) == hint


def test_closest_keeps_a_level_with_an_apostrophe_whole():
    from mrp_formula.data.population_table import _closest

    assert _closest("Hawaii", ["Hawai'i", "Texas"]) == "Hawai'i"
    assert _closest("zzz", ["Texas"]) == "..."

