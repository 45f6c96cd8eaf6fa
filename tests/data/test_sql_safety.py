"""A spec is untrusted input: its SQL (data.query, population.query) may only read the file the
spec names. Every attack goes through `mrp check`, as a user validating a shared spec would run
it, and must end in exit 3 with a message that says what is allowed, having done nothing."""

from __future__ import annotations

import re
import textwrap

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app

runner = CliRunner()

SPEC = """
name = "sql"
[data]
source = "{source}"
query = {query}
[model]
formula = "y ~ g"
family = "{family}"
[population]
source = "pop.csv"
weight = "n"
[estimands.m]
"""


@pytest.fixture
def folder(tmp_path):
    rng = pd.Series(range(40))
    pd.DataFrame({"y": (rng % 3 == 0).astype(int), "g": (rng % 2).map({0: "a", 1: "b"})}).to_csv(
        tmp_path / "d.csv", index=False)
    pd.DataFrame({"g": ["a", "b"], "n": [10, 30]}).to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "secret.csv").write_text("y,g\n1,a\n0,b\n")  # a file the spec does not name
    con = duckdb.connect(str(tmp_path / "d.duckdb"))
    con.execute("CREATE TABLE survey AS SELECT * FROM read_csv(?)", [str(tmp_path / "d.csv")])
    con.close()
    return tmp_path


def _toml_string(text: str) -> str:
    return "'''" + text + "'''"


def _check(folder, query, *, family="bernoulli", source="d.csv", population_query=None):
    text = textwrap.dedent(SPEC).format(source=source, query=_toml_string(query), family=family)
    if population_query is not None:
        text = text.replace('weight = "n"', f'weight = "n"\nquery = {_toml_string(population_query)}')
    path = folder / "spec.toml"
    path.write_text(text)
    r = runner.invoke(app, ["check", str(path)])
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    return r, path, text


def _line(text: str, start: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(start))


ALLOWED = "it must be one read-only SELECT"


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])  # the collapsed DuckDB read and the plain one
def test_a_plain_select_is_fine(folder, family):
    r, _, _ = _check(folder, "SELECT * FROM source WHERE g IN ('a', 'b');", family=family)
    assert r.exit_code == 0, r.output
    r, _, _ = _check(folder, "WITH t AS (SELECT * FROM source) SELECT y, g FROM t", family=family,
                     source="d.csv")
    assert r.exit_code == 0, r.output
    r, _, _ = _check(folder, "SELECT * FROM survey", family=family, source="d.duckdb")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("attack, kind", [
    ("COPY (SELECT * FROM source) TO '{out}'", "a COPY statement"),
    ("COPY source TO '{out}' (FORMAT csv)", "a COPY statement"),
    ("SELECT * FROM source; COPY (SELECT * FROM source) TO '{out}'", "2 statements (SELECT, COPY)"),
    ("ATTACH '{out}' AS other", "an ATTACH statement"),
    ("INSTALL httpfs", "an INSTALL statement"),
    ("LOAD httpfs", "a LOAD statement"),
    ("PRAGMA enable_profiling", "a PRAGMA statement"),
    ("SET enable_external_access = true", "a SET statement"),
    ("CREATE TABLE t AS SELECT * FROM source", "a CREATE statement"),
    ("EXPORT DATABASE '{out}'", "an EXPORT statement"),
])
def test_statements_that_act_are_refused(folder, family, attack, kind):
    out = folder / "written.out"
    r, _, text = _check(folder, attack.format(out=out), family=family)
    assert r.exit_code == 3, r.output
    err = r.stderr
    line = _line(text, "query =")
    assert re.search(rf"spec\.toml:{line}: data\.query: the query (is|holds) ", err), err
    assert kind.split(" ", 1)[1] in err and ALLOWED in err, err
    assert not out.exists()


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("query", [
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM '{secret}'",
    "SELECT * FROM source UNION ALL SELECT * FROM read_csv_auto('{secret}')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM glob('{folder}/*')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM read_parquet('{secret}')",
])
def test_a_select_cannot_read_files_the_spec_does_not_name(folder, family, query):
    r, _, text = _check(folder, query.format(secret=folder / "secret.csv", folder=folder), family=family)
    assert r.exit_code == 3, r.output
    line = _line(text, "query =")
    assert f"spec.toml:{line}: data.query: the query may only read the file the spec names" in r.stderr, r.stderr


def test_a_query_of_a_duckdb_file_cannot_write_or_attach(folder):
    out = folder / "copied.csv"
    for query in (f"COPY survey TO '{out}'", f"ATTACH '{folder / 'new.duckdb'}'",
                  f"SELECT * FROM survey UNION ALL SELECT * FROM read_csv('{folder / 'secret.csv'}')"):
        r, _, _ = _check(folder, query, source="d.duckdb")
        assert r.exit_code == 3, r.output
        assert "data.query" in r.stderr
    assert not out.exists() and not (folder / "new.duckdb").exists()


def test_population_query_is_held_to_the_same_rules(folder):
    out = folder / "pop_out.csv"
    r, _, text = _check(folder, "SELECT * FROM source", population_query=f"COPY source TO '{out}'")
    assert r.exit_code == 3, r.output
    line = _line(text, "query = '''COPY")
    assert f"spec.toml:{line}: population.query: the query is a COPY statement" in r.stderr, r.stderr
    assert not out.exists()
    r, _, _ = _check(folder, "SELECT * FROM source",
                     population_query=f"SELECT * FROM read_csv('{folder / 'secret.csv'}')")
    assert r.exit_code == 3 and "population.query: the query may only read the file" in r.stderr, r.stderr
    r, _, _ = _check(folder, "SELECT * FROM source", population_query="SELECT g, n FROM source")
    assert r.exit_code == 0, r.output


def test_both_queries_are_reported_at_once(folder):
    r, _, _ = _check(folder, "SET threads = 1", population_query="PRAGMA version")
    assert r.exit_code == 3
    assert "data.query: the query is a SET statement" in r.stderr
    assert "population.query: the query is a PRAGMA statement" in r.stderr


def test_empty_query_and_syntax_error(folder):
    r, _, _ = _check(folder, " ; ")
    assert r.exit_code == 3 and "the query is empty" in r.stderr, r.output
    r, _, _ = _check(folder, "SELEC * FROM source")  # nothing runs; DuckDB's message is shown
    assert r.exit_code == 4 and "the query failed" in r.stderr and "syntax error" in r.stderr, r.output
