"""`[calibrate]` validated like the rest of the spec (issue 14, item 4): FILE:LINE, did-you-mean,
exit 3 for spec mistakes, exit 4 for data problems, a warning for known values the population
does not use; and the section is not part of the fit-cache key."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.model.cache import fit_key
from mrp_formula.model.plan import versions
from mrp_formula.steps import plan as plan_of

runner = CliRunner()

SPEC = """
name = "cal"
[data]
source = "s.csv"
[model]
formula = "{formula}"
family = "{family}"
{link}
[population]
source = "pop.csv"
weight = "n"
[calibrate]
by = "{by}"
source = "{source}"
column = "{column}"
[estimands.m]
"""


def _files(folder, known=None):
    rng = np.random.default_rng(0)
    n = 300
    pd.DataFrame({"region": rng.choice(["R1", "R2", "R3"], n), "age": rng.choice(["young", "old"], n),
                  "y": (rng.random(n) < 0.3).astype(int), "k": rng.poisson(2, n),
                  "grade": rng.choice(["a", "b", "c"], n)}).to_csv(folder / "s.csv", index=False)
    pd.DataFrame([{"region": r, "age": a, "n": 100} for r in ["R1", "R2", "R3"] for a in ["young", "old"]]) \
        .to_csv(folder / "pop.csv", index=False)
    known = known if known is not None else {"R1": 0.3, "R2": 0.25, "R3": 0.4}
    pd.DataFrame({"region": list(known), "share": list(known.values())}).to_csv(folder / "known.csv", index=False)


def _check(folder, *, formula="y ~ age + (1|region)", family="bernoulli", link="", by="region",
           source="known.csv", column="share", estimand=""):
    text = textwrap.dedent(SPEC.format(formula=formula, family=family, link=link, by=by, source=source,
                                       column=column)) + estimand
    (folder / "spec.toml").write_text(text)
    r = runner.invoke(app, ["check", str(folder / "spec.toml")])
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    return r, text


def _line(text, start):
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(start))


def test_a_valid_calibration_checks(tmp_path):
    _files(tmp_path)
    r, _ = _check(tmp_path)
    assert r.exit_code == 0, r.output
    p = plan_of(tmp_path / "spec.toml")
    assert p.targets.levels == ("R1", "R2", "R3") and p.targets.link == "logit"
    np.testing.assert_allclose(p.targets.values, [0.3, 0.25, 0.4])


def test_by_must_be_a_population_variable(tmp_path):
    _files(tmp_path)
    r, text = _check(tmp_path, by="regon")
    assert r.exit_code == 3, r.output
    assert f"spec.toml:{_line(text, 'by = ')}: calibrate.by: 'regon' is not a population variable" in r.output
    assert "did you mean 'region'?" in r.output


def test_a_model_variable_the_population_lacks_is_refused(tmp_path):
    """The estimands set `grade` (at), the population has none: the shift would rest on a value of
    it chosen for the user (once: its first level), so calibration is refused."""
    _files(tmp_path)
    r, text = _check(tmp_path, formula="y ~ grade + age + (1|region)", estimand='at = { grade = ["a", "b"] }\n')
    assert r.exit_code == 3, r.output
    assert f"spec.toml:{_line(text, '[calibrate]')}: calibrate: calibration matches the population as it is, and " \
           "the population has no 'grade'" in r.output
    assert "add 'grade' to the population" in r.output


@pytest.mark.parametrize("what, kw, expect", [
    ("missing file", {"source": "nope.csv"}, "file not found"),
    ("missing column", {"column": "shar"}, "known.csv has no column 'shar'"),
])
def test_file_and_column_problems_are_data_errors(tmp_path, what, kw, expect):
    _files(tmp_path)
    r, text = _check(tmp_path, **kw)
    assert r.exit_code == 4, r.output
    assert expect in r.output
    key = "source" if "source" in kw else "column"
    assert f"spec.toml:{_line(text, f'{key} = "{kw[key]}')}: calibrate.{key}" in r.output
    if what == "missing column":
        assert "did you mean 'share'?" in r.output


def test_a_population_level_without_a_known_value_is_named(tmp_path):
    _files(tmp_path, known={"R1": 0.3, "R2": 0.25, "R03": 0.4})
    r, text = _check(tmp_path)
    assert r.exit_code == 4, r.output
    assert f"spec.toml:{_line(text, 'source = \"known')}: calibrate.source" in r.output
    assert "no known value for population level(s) ['R3'] of 'region'" in r.output
    assert "did you mean 'R03'?" in r.output


def test_extra_levels_are_a_warning(tmp_path):
    _files(tmp_path, known={"R1": 0.3, "R2": 0.25, "R3": 0.4, "R9": 0.5})
    r, _ = _check(tmp_path)
    assert r.exit_code == 0, r.output
    notes = plan_of(tmp_path / "spec.toml").notes
    assert [n for n in notes if getattr(n, "code", "") == "calibrate.extra_levels" and "R9" in n]


@pytest.mark.parametrize("family, formula, values, bad", [
    ("bernoulli", "y ~ age + (1|region)", {"R1": 30.0, "R2": 0.25, "R3": 0.4}, "'R1'"),
    ("bernoulli", "y ~ age + (1|region)", {"R1": 0.3, "R2": 0.0, "R3": 0.4}, "'R2'"),
    ("poisson", "k ~ age + (1|region)", {"R1": 2.0, "R2": -1.0, "R3": 0.4}, "'R2'"),
])
def test_values_outside_the_outcomes_range(tmp_path, family, formula, values, bad):
    _files(tmp_path, known=values)
    r, text = _check(tmp_path, family=family, formula=formula)
    assert r.exit_code == 4, r.output
    assert f"spec.toml:{_line(text, 'column = ')}: calibrate.column" in r.output
    assert f"[{bad}] of 'region' are outside the outcome's range" in r.output


def test_gaussian_takes_any_value(tmp_path):
    _files(tmp_path, known={"R1": -3.0, "R2": 0.0, "R3": 1e3})
    r, _ = _check(tmp_path, family="gaussian", formula="k ~ age + (1|region)")
    assert r.exit_code == 0, r.output


def test_families_with_several_predictors_are_refused(tmp_path):
    _files(tmp_path)
    r, text = _check(tmp_path, family="categorical", formula="grade ~ age + (1|region)")
    assert r.exit_code == 3, r.output
    assert f"spec.toml:{_line(text, '[calibrate]')}: calibrate: calibration shifts one linear predictor" in r.output


def test_other_links_are_refused(tmp_path):
    _files(tmp_path)
    r, text = _check(tmp_path, link='link = "cloglog"')
    assert r.exit_code == 3, r.output
    assert f"spec.toml:{_line(text, 'link = ')}: model.link: calibration supports the links" in r.output


def test_a_misspelt_key_gets_did_you_mean(tmp_path):
    _files(tmp_path)
    text = textwrap.dedent(SPEC.format(formula="y ~ age + (1|region)", family="bernoulli", link="", by="region",
                                       source="known.csv", column="share")).replace("column =", "colum =")
    (tmp_path / "spec.toml").write_text(text)
    r = runner.invoke(app, ["check", str(tmp_path / "spec.toml")])
    assert r.exit_code == 3, r.output
    assert "calibrate.colum" in r.output and "column" in r.output


def test_calibration_is_not_part_of_the_fit_key(tmp_path):
    _files(tmp_path)
    _check(tmp_path)
    a = fit_key(plan_of(tmp_path / "spec.toml"), versions())
    _files(tmp_path, known={"R1": 0.1, "R2": 0.2, "R3": 0.3})
    b = fit_key(plan_of(tmp_path / "spec.toml"), versions())
    text = (tmp_path / "spec.toml").read_text()
    (tmp_path / "plain.toml").write_text(text[:text.index("[calibrate]")] + "[estimands.m]\n")
    c = fit_key(plan_of(tmp_path / "plain.toml"), versions())
    assert a == b == c


def test_a_problem_of_a_table_given_with_set_is_placed_there(tmp_path):
    """[calibrate] given whole with --set: its problem names --set, not a line of the spec file."""
    _files(tmp_path)
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC.format(formula="y ~ age + (1|region)", family="bernoulli",
                                                                    link="", by="region", source="known.csv",
                                                                    column="share")).split("[calibrate]")[0]
                                        + "[estimands.m]\n")
    r = runner.invoke(app, ["check", str(tmp_path / "spec.toml"), "--set",
                            f'calibrate={{ by = "region", source = "{tmp_path / "known.csv"}", column = "shar" }}'])
    assert r.exit_code == 4, r.output
    assert "--set: calibrate.column: known.csv has no column 'shar'" in r.output


def test_a_problem_of_a_value_replaced_with_set_is_placed_there(tmp_path):
    """A key the spec file sets and --set replaces: its problem names --set, not the file's line
    of the value that --set replaced."""
    _files(tmp_path)
    (tmp_path / "spec.toml").write_text(textwrap.dedent(SPEC.format(formula="y ~ age + (1|region)", family="bernoulli",
                                                                    link="", by="region", source="known.csv",
                                                                    column="share")).split("[calibrate]")[0]
                                        + "[estimands.m]\n")
    r = runner.invoke(app, ["check", str(tmp_path / "spec.toml"), "--set", f'data.source="{tmp_path / "nothere.csv"}"'])
    assert r.exit_code == 4, r.output
    assert "--set: data.source: file not found" in r.output
