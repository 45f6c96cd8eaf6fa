"""Frequency weights count identical observations; survey (expansion) weights are refused, since
multiplying the trials by them makes every interval far too narrow. Through `mrp check`."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app

runner = CliRunner()

SPEC = """
name = "weights"
[data]
source = "s.csv"
weights = "w"
{extra}
[model]
formula = "{formula}"
family = "{family}"
[population.margins]
region = {{ r1 = 0.2, r2 = 0.2, r3 = 0.2, r4 = 0.2, r5 = 0.2 }}
age = {{ young = 0.4, old = 0.6 }}
[estimands.m]
"""


def _check(folder, sample: pd.DataFrame, family="bernoulli", formula="y ~ age + (1|region)", extra=""):
    sample.to_csv(folder / "s.csv", index=False)
    text = textwrap.dedent(SPEC.format(extra=extra, formula=formula, family=family))
    (folder / "spec.toml").write_text(text)
    r = runner.invoke(app, ["check", str(folder / "spec.toml")])
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    return r, text


def _survey(n=2000, seed=1, continuous=False) -> pd.DataFrame:
    """Respondents with integer expansion weights from 1 to 5,000, as a survey file has them."""
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"region": rng.choice([f"r{i}" for i in range(1, 6)], n),
                      "age": rng.choice(["young", "old"], n), "w": rng.integers(1, 5001, n)})
    d["y"] = rng.normal(50, 10, n).round(2) if continuous else (rng.random(n) < 0.3).astype(int)
    return d


def _line(text, start):
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(start))


def test_survey_weights_are_refused(tmp_path):
    r, text = _check(tmp_path, _survey())
    assert r.exit_code == 4, r.output
    err = r.stderr
    assert f"spec.toml:{_line(text, 'weights =')}: data.weights: the weights in 'w' do not look like frequency " \
           f"weights" in err, err
    assert "of 2000 rows" in err and "repeat another row in every model column" in err
    assert "model the design variables" in err and 'data.weights_kind = "frequency"' in err


def test_declared_frequency_weights_are_trusted(tmp_path):
    r, _ = _check(tmp_path, _survey(), extra='weights_kind = "frequency"')
    assert r.exit_code == 0, r.output


def test_survey_weights_on_a_continuous_outcome_are_refused(tmp_path):
    d = _survey(n=400, continuous=True)
    r, _ = _check(tmp_path, d, family="gaussian")
    assert r.exit_code == 4, r.output
    assert "the outcome 'y' takes" in r.stderr and "observations of exactly that value" in r.stderr, r.stderr


def test_survey_weights_on_thin_binary_cells_are_refused(tmp_path):
    """Every respondent alone in their cell (rows all distinct): cells of thousands of identical
    outcomes would be needed, which a rate of 0.3 does not give."""
    rng = np.random.default_rng(3)
    n = 300
    d = pd.DataFrame({"region": rng.choice([f"r{i}" for i in range(1, 6)], n), "age": np.arange(n).astype(str),
                      "w": rng.integers(100, 5001, n), "y": (rng.random(n) < 0.3).astype(int)})
    r, _ = _check(tmp_path, d)
    assert r.exit_code == 4, r.output
    assert "every observation has the same outcome" in r.stderr, r.stderr


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
def test_a_table_of_counts_is_accepted(tmp_path, family):
    """One row per distinct combination with large counts: frequency weights as meant."""
    rng = np.random.default_rng(4)
    rows = []
    for region in [f"r{i}" for i in range(1, 6)]:
        for age in ["young", "old"]:
            for y in ([0, 1] if family == "bernoulli" else [1.0, 2.0, 3.0]):
                rows.append({"region": region, "age": age, "y": y, "w": int(rng.integers(50, 5000))})
    r, _ = _check(tmp_path, pd.DataFrame(rows), family=family)
    assert r.exit_code == 0, r.output


def test_small_weights_are_not_questioned(tmp_path):
    d = _survey(n=500)
    d["w"] = np.random.default_rng(5).integers(1, 4, len(d))  # a row counts 1-3 times
    r, _ = _check(tmp_path, d)
    assert r.exit_code == 0, r.output


def test_fractional_weights_name_survey_weights(tmp_path):
    d = _survey(n=300)
    d["w"] = d["w"] / d["w"].mean()  # normalised design weights
    r, _ = _check(tmp_path, d)
    assert r.exit_code == 4, r.output
    assert "must be whole numbers >= 0" in r.stderr and "survey (design) weights are not frequency weights" \
        in r.stderr


def test_weights_summing_to_zero(tmp_path):
    d = _survey(n=50).assign(w=0)
    r, _ = _check(tmp_path, d)
    assert r.exit_code == 4 and "sum to zero" in r.stderr, r.output


def test_check_json_reports_the_weighted_sample_size(tmp_path):
    d = _survey(n=500)
    d["w"] = 2
    d.to_csv(tmp_path / "s.csv", index=False)
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC.format(extra="", formula="y ~ age + (1|region)",
                                                                    family="bernoulli")))
    r = runner.invoke(app, ["check", str(tmp_path / "spec.toml"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sample_rows"] == 1000


@pytest.mark.parametrize("missing, code", [("error", 4), ("drop", 0)])
def test_a_population_row_without_a_weight(tmp_path, missing, code):
    """A population row whose weight is empty: an error naming its row (the header not counted),
    or, with missing = "drop", dropped and counted like a row with a missing value."""
    rng = np.random.default_rng(3)
    pd.DataFrame({"y": rng.integers(0, 2, 50), "g": rng.choice(["a", "b"], 50)}).to_csv(tmp_path / "s.csv",
                                                                                         index=False)
    (tmp_path / "pop.csv").write_text("g,N\na,10\nb,\nb,30\n")
    (tmp_path / "spec.toml").write_text(textwrap.dedent(f"""
        name = "w"
        [data]
        source = "s.csv"
        [model]
        formula = "y ~ (1|g)"
        family = "bernoulli"
        [population]
        source = "pop.csv"
        weight = "N"
        missing = "{missing}"
        [estimands.m]
        """))
    r = runner.invoke(app, ["check", str(tmp_path / "spec.toml"), "--json"])
    assert r.exit_code == code, r.output
    out = json.loads(r.stdout)
    if code:
        (e,) = out["errors"]
        assert "(rows [2], the header not counted" in e["message"] and 'missing = "drop"' in e["hint"]
    else:
        assert any("dropped 1 population rows without a weight in 'N'" in n for n in out["notes"])
        assert out["population_cells"] == 2


@pytest.mark.parametrize("values, extra, said", [
    ([1, None, 2, 1], "", "50 frequency weight(s) in 'w' are missing (rows [2, 6"),
    ([1, "two", 2, 1], "", "50 frequency weight(s) in 'w' are not a number (rows [2, 6"),
    ([1, -1, 2, 1], "", "50 frequency weight(s) in 'w' are negative (rows [2, 6"),
    ([1, None, 2, 1], 'missing = "drop"', None),  # dropped with the other missing values
])
def test_a_bad_frequency_weight_is_named_for_what_it_is(tmp_path, values, extra, said):
    """A blank weight was told "must be whole numbers; survey weights are not frequency weights"."""
    d = _survey(n=200)
    d["w"] = (values * 50)[:200]
    r, _ = _check(tmp_path, d, extra=extra)
    if said is None:
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 4 and said in r.stderr and "survey" not in r.stderr, r.stderr


def test_missing_values_name_their_rows_when_the_rows_are_the_files(tmp_path):
    """A gaussian sample is read row by row: the rows with a missing value are named (a binary one
    is read as distinct rows with counts, whose positions are not the file's)."""
    d = _survey(n=50, continuous=True)
    d.loc[[2, 7], "y"] = np.nan
    r, _ = _check(tmp_path, d, family="gaussian")
    assert r.exit_code == 4 and "y: 2 in rows [3, 8])" in r.stderr, r.stderr  # rows, not weighted units
