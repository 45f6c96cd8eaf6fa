"""Every call the formula allowlist offers works in a formula, end to end through the model Bambi
builds and the prediction design; no name of the package can shadow one; a transformed response
is refused (its estimands would be on another scale than raw and weighted)."""

from __future__ import annotations

import json
import logging
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.errors import SpecError
from mrp_formula.spec.formula import ALLOWED_CALLS, call_in_namespace, namespace

N = 240


def _sample(n=N, seed=7):
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({
        "arm": rng.choice(["a", "b", "c"], n),
        "g": rng.choice(["g1", "g2", "g3", "g4"], n),
        "x": np.round(np.exp(rng.normal(0.3, 0.4, n)), 4),  # positive, 0.5 to 4
        "z": np.round(rng.normal(0, 1, n), 4),  # either sign
        "k": rng.integers(1, 4, n),  # a whole-number code
    })
    d["y"] = np.round(1.0 + 0.5 * d["z"] + rng.normal(0, 1, n), 4)
    d["t"] = rng.integers(5, 15, n)
    d["s"] = rng.binomial(d["t"], 0.3)
    return d


def _population(sample):
    cells = sample[["arm", "g", "x", "z", "k"]].drop_duplicates().reset_index(drop=True)
    return cells.assign(n=1 + np.arange(len(cells)) % 5)


# allowed call -> (family, formula, term, expected columns of that term from the data, or None)
CASES = {
    "log": ("gaussian", "y ~ log(x) + (1|g)", "log(x)", lambda d: np.log(d.x)),
    "log2": ("gaussian", "y ~ log2(x) + (1|g)", "log2(x)", lambda d: np.log2(d.x)),
    "log10": ("gaussian", "y ~ log10(x) + (1|g)", "log10(x)", lambda d: np.log10(d.x)),
    "log1p": ("gaussian", "y ~ log1p(x) + (1|g)", "log1p(x)", lambda d: np.log1p(d.x)),
    "exp": ("gaussian", "y ~ exp(z) + (1|g)", "exp(z)", lambda d: np.exp(d.z)),
    "sqrt": ("gaussian", "y ~ sqrt(x) + (1|g)", "sqrt(x)", lambda d: np.sqrt(d.x)),
    "abs": ("gaussian", "y ~ abs(z) + (1|g)", "abs(z)", lambda d: np.abs(d.z)),
    "I": ("gaussian", "y ~ I(x ** 2) + (1|g)", "I(x ** 2)", lambda d: d.x ** 2),
    "scale": ("gaussian", "y ~ scale(z) + (1|g)", "scale(z)", lambda d: (d.z - d.z.mean()) / d.z.std(ddof=0)),
    "standardize": ("gaussian", "y ~ standardize(z) + (1|g)", "standardize(z)",
                    lambda d: (d.z - d.z.mean()) / d.z.std(ddof=0)),
    "center": ("gaussian", "y ~ center(z) + (1|g)", "center(z)", lambda d: d.z - d.z.mean()),
    "C": ("gaussian", "y ~ C(k) + (1|g)", "C(k)", lambda d: np.column_stack([d.k == 2, d.k == 3]).astype(float)),
    "Treatment": ("gaussian", "y ~ C(arm, Treatment('b')) + (1|g)", "C(arm, Treatment('b'))",
                  lambda d: np.column_stack([d.arm == "a", d.arm == "c"]).astype(float)),
    "p": ("binomial", "p(s, t) ~ arm + (1|g)", "arm",
          lambda d: np.column_stack([d.arm == "b", d.arm == "c"]).astype(float)),
}

SPEC = """
name = "transforms"
[data]
source = "d.csv"
[model]
formula = "{formula}"
family = "{family}"
[fit]
draws = {draws}
tune = {draws}
chains = 1
seed = 3
[population]
source = "pop.csv"
weight = "n"
[estimands.mean]
"""


def _folder(tmp_path, family, formula, sample=None, draws=50):
    sample = _sample() if sample is None else sample
    sample.to_csv(tmp_path / "d.csv", index=False)
    _population(sample).to_csv(tmp_path / "pop.csv", index=False)
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(SPEC.format(family=family, formula=formula, draws=draws)).lstrip())
    return path


def test_every_allowed_call_has_a_case():
    assert set(CASES) == set(ALLOWED_CALLS)
    assert set(namespace()) == {name for name, (_, fn) in ALLOWED_CALLS.items() if fn is not None}


@pytest.mark.parametrize("call", list(CASES))
def test_allowed_call_end_to_end(tmp_path, call):
    """``mrp check``'s path builds the Bambi model with the call; the prediction design is the
    same matrix, and the term's columns are the transform of the data."""
    from mrp_formula.steps import plan_and_model
    from mrp_formula.predict.cells import design

    family, formula, term, expected = CASES[call]
    plan, bmodel = plan_and_model(_folder(tmp_path, family, formula))
    fp = plan.fit_plan
    theirs = bmodel.parameters[bmodel.family.likelihood.parent].design.common
    mine = design(fp.data, fp.formula, fp.family, None).common
    assert dict(mine.slices) == dict(theirs.slices)
    np.testing.assert_array_equal(np.asarray(mine.design_matrix), np.asarray(theirs.design_matrix))
    cols = np.asarray(mine.design_matrix)[:, mine.slices[term]]
    np.testing.assert_allclose(cols, np.asarray(expected(fp.data), dtype=float).reshape(cols.shape), rtol=1e-12)


def test_cli_check_with_log(tmp_path):
    result = CliRunner().invoke(app, ["check", str(_folder(tmp_path, "gaussian", "y ~ log(x) + arm + (1|g)"))])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("module", ["mrp_formula.model.sampler", "mrp_formula.predict.cells", "mrp_formula.spec.formula"])
def test_no_module_name_shadows_a_transform(tmp_path, monkeypatch, module):
    """A module-level name equal to an allowed call (``log = logging.getLogger(...)`` once) must not
    replace the transform: formulas are evaluated in the allowlist's namespace only."""
    import importlib

    from mrp_formula.steps import plan_and_model

    mod = importlib.import_module(module)
    for name in namespace():
        monkeypatch.setattr(mod, name, logging.getLogger("shadow"), raising=False)
    plan, bmodel = plan_and_model(_folder(tmp_path, "gaussian", "y ~ log(x) + exp(z) + sqrt(x) + abs(z) + (1|g)"))
    x = plan.fit_plan.data["x"].to_numpy()
    common = bmodel.parameters[bmodel.family.likelihood.parent].design.common
    np.testing.assert_allclose(np.asarray(common.design_matrix)[:, common.slices["log(x)"]].ravel(), np.log(x))


def test_caller_locals_do_not_shadow():
    import formulae as fm

    def build(log="not a function"):  # a local named like a transform, in the caller's frame
        return call_in_namespace(fm.design_matrices, "y ~ log(x)", pd.DataFrame({"y": [1.0, 2.0, 3.0],
                                                                                 "x": [1.0, 2.0, 4.0]}), "error", 0)

    dm = build()
    np.testing.assert_allclose(np.asarray(dm.common.design_matrix)[:, 1], np.log([1.0, 2.0, 4.0]))


@pytest.mark.slow
def test_tiny_fit_with_log_recovers_the_slope(tmp_path):
    """y = 1 + 2 log(x) + group + noise: the posterior of the log(x) coefficient holds 2."""
    sample = _sample(n=300, seed=11)
    rng = np.random.default_rng(12)
    group = sample["g"].map({"g1": -0.4, "g2": 0.0, "g3": 0.2, "g4": 0.4})
    sample["y"] = np.round(1.0 + 2.0 * np.log(sample["x"]) + group + rng.normal(0, 0.3, len(sample)), 5)
    path = _folder(tmp_path, "gaussian", "y ~ log(x) + (1|g)", sample=sample, draws=150)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code in (0, 5), result.output
    import xarray as xr

    post = xr.open_datatree(tmp_path / "run" / "posterior.nc")["posterior"].to_dataset()
    beta = post["log(x)"].values.ravel()
    assert abs(beta.mean() - 2.0) < 4 * beta.std() + 0.02, (beta.mean(), beta.std())
    mean = json.loads(result.stdout)["estimands"][0]["mean"]
    pop = _population(sample)
    truth = np.average(1.0 + 2.0 * np.log(pop["x"]) + pop["g"].map({"g1": -0.4, "g2": 0.0, "g3": 0.2, "g4": 0.4}),
                       weights=pop["n"])
    assert abs(mean - truth) < 0.3


# --------------------------------------------------------------------------- a transformed response

TRANSFORMED = {
    "gaussian": ("log10(revenue) ~ arm + (1|g)", "log10(revenue)", "revenue",
                 'model the outcome on its own scale: "revenue ~ arm + (1|g)" with family = "gaussian" (the estimands '
                 "are then means in its units); for a positive, skewed amount family = \"lognormal\" or \"gamma\" "
                 "(with zeros: "
                 '"hurdle_lognormal" or "hurdle_gamma"), whose estimands are means in its units too; for whole-number counts '
                 'family = "poisson" or "negativebinomial", whose log link already models the log of the mean'),
    "poisson": ("log1p(visits) ~ arm + (1|g)", "log1p(visits)", "visits",
                'model the count itself: "visits ~ arm + (1|g)"; the poisson family\'s log link already models '
                "the logarithm of its mean"),
    "bernoulli": ("I(revenue > 0) ~ arm + (1|g)", "I(revenue > 0)", "revenue",
                  'make the 0/1 (or successes and trials) columns in the data, e.g. data.query = "SELECT *, '
                  'CAST(revenue > 0 AS INTEGER) AS converted FROM source", and write "converted ~ arm + (1|g)"'),
    "binomial": ("p(log(k), n) ~ arm + (1|g)", "p(log(k), n)", None,
                 'write p(successes, trials) over two columns, e.g. "p(clicks, visits) ~ arm + (1|g)"; derive '
                 "columns in data.query"),
    "categorical": ("C(answer) ~ arm + (1|g)", "C(answer)", "answer",
                    'write the column itself: "answer ~ arm + (1|g)"; the categorical family treats its values as '
                    "categories (their order: model.levels.answer)"),
}


@pytest.mark.parametrize("family", list(TRANSFORMED))
def test_transformed_response_is_refused(tmp_path, family):
    from mrp_formula.steps import spec_checks as _spec_checks
    from mrp_formula.spec.tree import load_spec

    formula, expr, var, hint = TRANSFORMED[family]
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(SPEC.format(family=family, formula=formula, draws=10)).lstrip())
    with pytest.raises(SpecError) as exc:
        _spec_checks(load_spec(path))
    (problem,) = exc.value.problems
    of = (f", not of {var}, while raw, weighted and the plots are in {var}" if var else
          ", while raw, weighted and the plots are on the scale of the data")
    assert problem.message == f"a transformed response is not supported: the estimands would be population means of {expr}{of}"
    assert (problem.key, problem.line, problem.got, problem.hint) == ("model.formula", 5, repr(expr), hint)
    assert problem.snippet == f"{formula}\n{'^' * len(expr)}"


def test_transformed_response_exits_3_before_reading_data(tmp_path):
    """The issue's case: refused by `mrp check` with exit 3, the transform marked; nothing is fitted."""
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(SPEC.format(family="gaussian", formula="log10(revenue) ~ arm * device + (1|country)",
                                                draws=10)).lstrip())
    for command in (["check", str(path)], ["run", str(path), "--out", str(tmp_path / "run")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 3, result.output
        assert "a transformed response is not supported" in result.output
        assert "log10(revenue) ~ arm * device + (1|country)\n    ^^^^^^^^^^^^^^" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("formula", ["y ~ x", " y ~ x", "`y` ~ x", "p(k, n) ~ x", "p( k , n ) ~ x"])
def test_plain_responses_pass(formula):
    from mrp_formula.spec.formula import transformed_response

    assert transformed_response(formula) is None
