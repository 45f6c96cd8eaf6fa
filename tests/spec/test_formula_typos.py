"""A typo in the formula with a prior written for the right name: the formula's problem (the
unknown column, with "did you mean" from the data) comes first, and the misspelling is never
suggested as a prior key."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.errors import DataError, SpecError
from mrp_formula.steps import spec_checks as _spec_checks
from mrp_formula.spec.tree import load_spec

SPEC = """
name = "typos"
[data]
source = "d.csv"
[model]
formula = "{formula}"
family = "gaussian"
[model.priors]
{priors}
[population]
source = "pop.csv"
weight = "n"
[estimands.mean]
"""


def _spec(tmp_path, formula, priors, data=True):
    if data:
        rng = np.random.default_rng(1)
        n = 60
        pd.DataFrame({"y": rng.normal(size=n), "arm": rng.choice(["a", "b"], n), "x": rng.normal(size=n),
                      "region": rng.choice(["north", "south", "east"], n)}).to_csv(tmp_path / "d.csv", index=False)
        pd.DataFrame({"arm": ["a", "b"] * 3, "x": [0.0] * 6, "region": ["north", "south", "east"] * 2,
                      "n": [1] * 6}).to_csv(tmp_path / "pop.csv", index=False)
    lines = "\n".join(f'"{k}" = "{v}"' for k, v in priors.items())
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(SPEC.format(formula=formula, priors=lines)).lstrip())
    return path


def _problems(path):
    loaded = load_spec(path)
    with pytest.raises((SpecError, DataError)) as exc:
        _spec_checks(loaded)
    return type(exc.value), [(p.key, p.message, p.hint) for p in exc.value.problems]


GROUP = "Normal(0, HalfNormal(1))"
COLUMN = ("model.formula", "predictor 'regoin' is not a column of the sample", "did you mean 'region'?")


@pytest.mark.parametrize("formula, priors, expected", [
    # the case: the formula holds the typo, the prior the right name -> only the formula's problem
    ("y ~ arm + (1|regoin)", {"1|region": GROUP}, (DataError, [COLUMN])),
    ("y ~ arm + (x|regoin)", {"x|region": GROUP}, (DataError, [COLUMN])),
    ("y ~ arm + (1|arm:regoin)", {"1|arm:region": GROUP}, (DataError, [COLUMN])),
    ("y ~ armm + (1|region)", {"arm": "Normal(0, 1)"},
     (DataError, [("model.formula", "predictor 'armm' is not a column of the sample", "did you mean 'arm'?")])),
    # the prior holds the typo -> the prior's problem, suggesting the formula's (existing) term
    ("y ~ arm + (1|region)", {"1|regoin": GROUP},
     (SpecError, [('model.priors."1|regoin"', "'1|regoin' is not a term of the model", "did you mean '1|region'?")])),
    # both misspelt, differently -> the formula first; the broken term is not suggested
    ("y ~ arm + (1|regoin)", {"1|regon": GROUP},
     (DataError, [COLUMN, ('model.priors."1|regon"', "'1|regon' is not a term of the model",
                           "expected one of 'Intercept', 'arm', 'sigma'")])),
    # a formula typo and an unrelated prior typo -> the formula first, then the prior, with its hint
    ("y ~ arm + (1|regoin)", {"1|region": GROUP, "Intercep": "Normal(0, 1)"},
     (DataError, [COLUMN, ("model.priors.Intercep", "'Intercep' is not a term of the model",
                           "did you mean 'Intercept'?")])),
])
def test_formula_problem_first(tmp_path, formula, priors, expected):
    assert _problems(_spec(tmp_path, formula, priors)) == expected


def test_far_off_prior_key_is_the_priors_problem(tmp_path):
    """A key close to no term is the prior's problem alone when the data are fine."""
    path = _spec(tmp_path, "y ~ arm + (1|region)", {"zzz": "Normal(0, 1)"})
    assert _problems(path) == (SpecError, [("model.priors.zzz", "'zzz' is not a term of the model",
                                            "expected one of '1|region', 'Intercept', 'arm', 'sigma'")])


def test_far_off_prior_key_and_missing_data_at_once(tmp_path):
    """A spec problem does not hide the data's: the missing file is reported with the prior key,
    as the spec's error (exit 3)."""
    path = _spec(tmp_path, "y ~ arm + (1|region)", {"zzz": "Normal(0, 1)"}, data=False)
    cls, problems = _problems(path)
    assert cls is SpecError
    assert sorted(k for k, _, _ in problems) == ["data.source", "model.priors.zzz", "population.source"]
    assert "d.csv" in problems[0][1]


def test_cli_reports_the_formula(tmp_path):
    result = CliRunner().invoke(app, ["check", str(_spec(tmp_path, "y ~ arm + (1|regoin)", {"1|region": GROUP}))])
    assert result.exit_code == 4, result.output
    assert "predictor 'regoin' is not a column of the sample; did you mean 'region'?" in result.output
    assert "1|regoin'" not in result.output and "not a term" not in result.output


def test_family_parameters_are_prior_keys_of_their_family_only(tmp_path):
    path = _spec(tmp_path, "y ~ arm + (1|region)", {"alpha": "HalfNormal(1)"})
    assert _problems(path) == (SpecError, [("model.priors.alpha", "'alpha' is not a parameter of the gaussian family",
                                            "its parameter is 'sigma'")])
