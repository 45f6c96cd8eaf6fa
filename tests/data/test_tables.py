"""Preparing the tables: frequency weights, missing values, levels matched by value."""

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
name = "w"
[data]
source = "{source}"
{extra}
[model]
formula = "y ~ g"
family = "{family}"
[population]
source = "pop.csv"
weight = "n"
[estimands.m]
"""


def _prepare(tmp_path, name, source, family, extra=""):
    path = tmp_path / name
    path.write_text(textwrap.dedent(SPEC.format(source=source, family=family, extra=extra)))
    loaded = load_spec(path)
    return prepare(loaded, _spec_checks(loaded))


def test_frequency_weights_equal_repeated_rows(tmp_path):
    pd.DataFrame({"g": ["a", "b"], "n": [1.0, 1.0]}).to_csv(tmp_path / "pop.csv", index=False)
    d = pd.DataFrame({"y": [1.5, 2.0, 3.0], "g": ["a", "b", "b"], "w": [2, 1, 3]})
    d.to_csv(tmp_path / "w.csv", index=False)
    d.loc[d.index.repeat(d.w)].drop(columns="w").to_csv(tmp_path / "long.csv", index=False)
    weighted = _prepare(tmp_path, "a.toml", "w.csv", "gaussian", 'weights = "w"')
    long = _prepare(tmp_path, "b.toml", "long.csv", "gaussian")
    pd.testing.assert_frame_equal(weighted.sample, long.sample)
    assert weighted.stats["sample_rows_used"] == 6 and weighted.weights is None


def test_missing_rows_are_counted_through_distinct_row_counts(tmp_path):
    pd.DataFrame({"g": ["a", "b"], "n": [1.0, 1.0]}).to_csv(tmp_path / "pop.csv", index=False)
    pd.DataFrame({"y": [1, 1, 1, 0, 1], "g": ["a", "a", None, None, "b"]}).to_csv(tmp_path / "d.csv", index=False)
    t = _prepare(tmp_path, "a.toml", "d.csv", "bernoulli", 'missing = "drop"')
    assert t.weights == "mrp_rows"  # read as counted distinct rows
    assert t.stats["dropped_missing"] == {"g": 2} and t.stats["sample_rows_used"] == 3
    assert any("dropped 2 of 5 sample rows" in n for n in t.notes)


def test_levels_match_by_value(tmp_path):
    pd.DataFrame({"g": [1, 2], "n": [1.0, 1.0]}).to_csv(tmp_path / "pop.csv", index=False)  # 1, 2
    pd.DataFrame({"y": [1, 0, 1], "g": [1.0, 2.0, 2.0]}).to_csv(tmp_path / "d.csv", index=False)  # 1.0, 2.0
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(SPEC.format(source="d.csv", family="bernoulli", extra=""))
                    .replace('formula = "y ~ g"', 'formula = "y ~ (1|g)"'))
    loaded = load_spec(path)
    t = prepare(loaded, _spec_checks(loaded))
    assert t.new_levels == {} and sorted(t.population["g"]) == ["1", "2"]
    assert np.isclose(t.population["__weight"].sum(), 2.0)


def test_new_level_that_looks_like_a_typo_is_an_error_unless_declared(tmp_path):
    pd.DataFrame({"g": ["north", "South"], "n": [1.0, 3.0]}).to_csv(tmp_path / "pop.csv", index=False)
    pd.DataFrame({"y": [1, 0, 1], "g": ["north", "south", "south"]}).to_csv(tmp_path / "d.csv", index=False)
    path = tmp_path / "s.toml"
    text = (textwrap.dedent(SPEC.format(source="d.csv", family="bernoulli", extra=""))
            .replace('formula = "y ~ g"', 'formula = "y ~ (1|g)"'))
    path.write_text(text)
    loaded = load_spec(path)
    with pytest.raises(DataError) as exc:
        prepare(loaded, _spec_checks(loaded))
    msg = str(exc.value)
    assert "population level 'South' of 'g' (75.0% of the population weight)" in msg and "'south'" in msg, msg
    assert 'declared_new = { g = ["South"] }' in msg
    path.write_text(text.replace('weight = "n"', 'weight = "n"\ndeclared_new = { g = ["South"] }'))
    loaded = load_spec(path)
    t = prepare(loaded, _spec_checks(loaded))
    assert t.new_levels == {"g": ("South",)} and t.new_level_share == {"g": 0.75}


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("sep, word", [(";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")])
def test_a_csv_with_another_separator_is_named_whichever_reader_the_family_takes(tmp_path, family, sep, word):
    """bernoulli reads the sample through DuckDB, gaussian through pandas: both read commas only,
    and a file written with semicolons (whose decimals may be commas) is said to be so."""
    pd.DataFrame({"g": ["a", "b"], "n": [1.0, 1.0]}).to_csv(tmp_path / "pop.csv", index=False)
    pd.DataFrame({"y": [1, 0, 1], "g": ["a", "b", "b"]}).to_csv(tmp_path / "d.csv", index=False, sep=sep)
    with pytest.raises(DataError) as err:
        _prepare(tmp_path, "a.toml", "d.csv", family)
    (p,) = err.value.problems
    assert p.key == "data.source" and f"separated by {word}, not by commas" in p.message and "'y" in p.message


def test_a_tsv_file_is_read_with_tabs_by_both_readers(tmp_path):
    pd.DataFrame({"g": ["a", "b"], "n": [1.0, 1.0]}).to_csv(tmp_path / "pop.csv", index=False)
    pd.DataFrame({"y": [1, 0, 1], "g": ["a", "b", "b"]}).to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    binary, gaussian = (_prepare(tmp_path, f"{f}.toml", "d.tsv", f) for f in ("bernoulli", "gaussian"))
    assert binary.stats["sample_rows_used"] == gaussian.stats["sample_rows_used"] == 3


def test_a_query_over_a_semicolon_file_is_told_so_and_a_tsv_gz_reads_with_tabs(tmp_path):
    """The DuckDB reader (`query`) reads with the same delimiter as pandas and says so of a file
    with another; a .tsv.gz is tab-separated for both."""
    pd.DataFrame({"g": ["a", "b"], "n": [1.0, 1.0]}).to_csv(tmp_path / "pop.csv", index=False)
    d = pd.DataFrame({"y": [1.5, 0.5, 1.0], "g": ["a", "b", "b"]})
    d.to_csv(tmp_path / "d.csv", index=False, sep=";")
    with pytest.raises(DataError) as err:
        _prepare(tmp_path, "a.toml", "d.csv", "gaussian", 'query = "SELECT * FROM source"')
    assert "separated by semicolons" in err.value.problems[0].message
    d.to_csv(tmp_path / "d.tsv.gz", index=False, sep="\t")
    for extra in ("", 'query = "SELECT * FROM source"'):
        assert _prepare(tmp_path, "b.toml", "d.tsv.gz", "gaussian", extra).stats["sample_rows_used"] == 3
