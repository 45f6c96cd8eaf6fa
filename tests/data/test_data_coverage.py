"""Population coverage in `mrp check`, and new population levels that look like typos of sample
levels (R3 vs R03): an error naming both and the weight at stake, unless declared new."""

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
name = "cov"
[data]
source = "s.csv"
[model]
formula = "y ~ age + (1|region)"
family = "bernoulli"
[population]
source = "pop.csv"
weight = "n"
{extra}
[estimands.m]
"""


def _files(folder, pop_regions=("R01", "R02", "R3")):
    rng = np.random.default_rng(0)
    n = 300
    pd.DataFrame({"region": rng.choice(["R01", "R02", "R03"], n), "age": rng.choice(["young", "old"], n),
                  "y": (rng.random(n) < 0.3).astype(int)}).to_csv(folder / "s.csv", index=False)
    counts = {"R01": 400, "R02": 474, "R3": 126, "R03": 200, "R04": 50}
    pd.DataFrame([{"region": r, "age": a, "n": counts[r] / 2} for r in pop_regions for a in ["young", "old"]]) \
        .to_csv(folder / "pop.csv", index=False)


def _check(folder, extra="", *args):
    text = textwrap.dedent(SPEC.format(extra=extra))
    (folder / "spec.toml").write_text(text)
    r = runner.invoke(app, ["check", str(folder / "spec.toml"), *args])
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    return r, text


def _line(text, start):
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(start))


def test_a_typo_of_a_sample_level_is_an_error(tmp_path):
    _files(tmp_path)
    r, text = _check(tmp_path)
    assert r.exit_code == 4, r.output
    assert (f"spec.toml:{_line(text, '[population]')}: population: population level 'R3' of 'region' "
            f"(12.6% of the population weight) is not in the sample, and sample level 'R03' is not in the "
            f"population: a typo?") in r.stderr, r.stderr
    assert 'population.recode.region = { R3 = "R03" }' in r.stderr
    assert 'population.declared_new = { region = ["R3"] }' in r.stderr


def test_a_declared_new_level_passes_and_check_reports_coverage(tmp_path):
    _files(tmp_path)
    r, _ = _check(tmp_path, 'declared_new = { region = ["R3"] }')
    assert r.exit_code == 0, r.output
    err = r.stderr
    assert "coverage: 4 of 6 population cells have sample; 2 (12.6% of the population weight) have none" in err, err
    assert "coverage: new levels of 'region'" in err and "R3, 12.6% of the population weight" in err
    assert "coverage: effective sample size" in err
    r, _ = _check(tmp_path, 'declared_new = { region = ["R3"] }', "--json")
    out = json.loads(r.stdout)
    assert out["new_levels"] == {"region": ["R3"]}
    cov = out["coverage"]
    assert cov["cells"] == 6 and cov["cells_without_sample"] == 2
    assert cov["weight_without_sample"] == pytest.approx(0.126)
    assert cov["new_level_share"] == {"region": pytest.approx(0.126)}


def test_declared_new_levels_pass_new_levels_error_but_others_do_not(tmp_path):
    _files(tmp_path, pop_regions=("R01", "R02", "R03", "R3", "R04"))
    r, _ = _check(tmp_path, 'new_levels = "error"\ndeclared_new = { region = ["R3", "R04"] }')
    assert r.exit_code == 0, r.output
    r, text = _check(tmp_path, 'new_levels = "error"\ndeclared_new = { region = ["R3"] }')
    assert r.exit_code == 4
    assert "population.new_levels: population levels of 'region' absent from the sample: R04" in r.stderr, r.stderr


def test_a_level_unlike_any_sample_level_stays_a_note(tmp_path):
    _files(tmp_path, pop_regions=("R01", "R02", "R03", "R04"))
    r, _ = _check(tmp_path)
    assert r.exit_code == 0, r.output
    assert "1 population level(s) of 'region' have no sample (R04" in r.stderr


@pytest.mark.parametrize("extra, code, fragments", [
    ('declared_new = { regoin = ["R3"] }', 3, ("population.declared_new.regoin: 'regoin' is not a group factor",
                                              "did you mean 'region'")),
    ('declared_new = { region = ["R3", "R01"] }', 4, ("level 'R01' of 'region' is declared new but occurs in "
                                                     "the sample",)),
    ('declared_new = { region = ["R3", "R9"] }', 4, ("level 'R9' of 'region' is declared new but is not in the "
                                                    "population",)),
])
def test_declared_new_is_checked(tmp_path, extra, code, fragments):
    _files(tmp_path)
    r, _ = _check(tmp_path, extra)
    assert r.exit_code == code, r.output
    for f in fragments:
        assert f in r.stderr, r.stderr
