"""The distribution table of priors.py: every distribution with legal and illegal parameters, given
positionally, by name and as a table, checked against a declaration written out here by hand (from
PyMC's documentation) and against the installed PyMC itself."""

from __future__ import annotations

import inspect
import math
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.spec.priors import DISTRIBUTIONS, POSITIVE, REAL, UNIT, PriorSpec, PriorSyntaxError, parse_prior

INF, NAN = math.inf, math.nan

# name -> (parameter, kind) in PyMC's positional order. "bound": a number that bounds the support
# (required for Uniform, optional for TruncatedNormal), never a prior.
DECLARED = {
    "Normal": [("mu", "real"), ("sigma", "positive")],
    "HalfNormal": [("sigma", "positive")],
    "StudentT": [("nu", "positive"), ("mu", "real"), ("sigma", "positive")],
    "HalfStudentT": [("nu", "positive"), ("sigma", "positive")],
    "Cauchy": [("alpha", "real"), ("beta", "positive")],
    "HalfCauchy": [("beta", "positive")],
    "Exponential": [("lam", "positive")],
    "Gamma": [("alpha", "positive"), ("beta", "positive")],
    "InverseGamma": [("alpha", "positive"), ("beta", "positive")],
    "LogNormal": [("mu", "real"), ("sigma", "positive")],
    "Laplace": [("mu", "real"), ("b", "positive")],
    "Logistic": [("mu", "real"), ("s", "positive")],
    "Gumbel": [("mu", "real"), ("beta", "positive")],
    "SkewNormal": [("alpha", "real"), ("mu", "real"), ("sigma", "positive")],
    "Weibull": [("alpha", "positive"), ("beta", "positive")],
    "ChiSquared": [("nu", "positive")],
    "Beta": [("alpha", "positive"), ("beta", "positive")],
    "Kumaraswamy": [("a", "positive"), ("b", "positive")],
    "LogitNormal": [("mu", "real"), ("sigma", "positive")],
    "Uniform": [("lower", "bound"), ("upper", "bound")],
    "TruncatedNormal": [("mu", "real"), ("sigma", "positive"), ("lower", "bound"), ("upper", "bound")],
    "Flat": [],
    "HalfFlat": [],
}
# The values each distribution takes (before bounds), from PyMC's documentation.
SUPPORT = {"HalfNormal": "positive", "HalfStudentT": "positive", "HalfCauchy": "positive", "Exponential": "positive",
           "Gamma": "positive", "InverseGamma": "positive", "LogNormal": "positive", "Weibull": "positive",
           "ChiSquared": "positive", "HalfFlat": "positive", "Beta": "unit", "Kumaraswamy": "unit",
           "LogitNormal": "unit"}
TEXT = {"real": "a finite number", "positive": "positive (a finite number > 0)", "bound": "a finite number"}
LEGAL = {"real": -2.5, "positive": 1.5}
BOUNDS = {"lower": -1.0, "upper": 2.0}
ILLEGAL = {"real": [INF, -INF, NAN], "positive": [0.0, -1.0, INF, NAN], "bound": [INF, NAN]}
POSITIVE_PRIORS = ("HalfNormal, HalfStudentT, HalfCauchy, Exponential, Gamma, InverseGamma, LogNormal, Weibull, "
                   "ChiSquared")


def _legal(name: str) -> dict[str, float]:
    return {p: BOUNDS[p] if kind == "bound" else LEGAL[kind] for p, kind in DECLARED[name]}


def _call(name: str, values: dict, named: bool) -> str:
    if named:  # by name, in reverse order
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in reversed(list(values.items())))})"
    return f"{name}({', '.join(repr(v) for v in values.values())})"


def test_table_is_the_declared_one():
    assert list(DISTRIBUTIONS) == list(DECLARED)
    kinds = {id(REAL): "real", id(POSITIVE): "positive", id(UNIT): "unit"}
    for name, d in DISTRIBUTIONS.items():
        got = [(p.name, "bound" if name in ("Uniform", "TruncatedNormal") and p.name in ("lower", "upper")
                else kinds[id(p.constraint)]) for p in d.params]
        assert got == DECLARED[name], name
        for p in d.params:
            bound = got[d.names.index(p.name)][1] == "bound"
            assert p.hyperprior is not bound and p.required is (not bound or name == "Uniform"), (name, p.name)
        want = {"positive": (0.0, INF), "unit": (0.0, 1.0)}.get(SUPPORT.get(name), (-INF, INF))
        assert d.support == want, name


@pytest.mark.parametrize("name", list(DECLARED))
@pytest.mark.parametrize("form", ["positional", "named", "table"])
def test_legal_parameters(name, form):
    values = _legal(name)
    expected = PriorSpec(name, tuple(values.items()))
    given = {"dist": name, **values} if form == "table" else _call(name, values, form == "named")
    assert parse_prior(given) == expected


def _illegal_cases():
    for name, params in DECLARED.items():
        for p, kind in params:
            for value in ILLEGAL[kind]:
                for form in ("positional", "named", "table"):
                    if form != "table" and not math.isfinite(value):
                        continue  # the string form has no inf or nan
                    yield pytest.param(name, p, kind, value, form, id=f"{name}-{p}={value}-{form}")


@pytest.mark.parametrize("name, param, kind, value, form", list(_illegal_cases()))
def test_illegal_parameter(name, param, kind, value, form):
    values = {**_legal(name), param: value}
    given = {"dist": name, **values} if form == "table" else _call(name, values, form == "named")
    with pytest.raises(PriorSyntaxError) as exc:
        parse_prior(given)
    assert str(exc.value) == f"{name} parameter {param} must be {TEXT[kind]} (got {value:g})"


@pytest.mark.parametrize("text, message", [
    ("Uniform(2, 1)", "Uniform parameters lower and upper must satisfy lower < upper (got 2 and 1)"),
    ("Uniform(upper=1, lower=1)", "Uniform parameters lower and upper must satisfy lower < upper (got 1 and 1)"),
    ("TruncatedNormal(0, 1, lower=3, upper=-3)",
     "TruncatedNormal parameters lower and upper must satisfy lower < upper (got 3 and -3)"),
    ("Normal(0)", "Normal needs sigma (its parameters: mu, sigma)"),
    ("Uniform(0)", "Uniform needs upper (its parameters: lower, upper)"),
    ("TruncatedNormal(lower=0)", "TruncatedNormal needs mu, sigma (its parameters: mu, sigma, lower, upper)"),
    ("Normal(0, 1, 2)", "Normal takes 2 parameter(s): mu, sigma"),
    ("Flat(1)", "Flat takes 0 parameter(s): none"),
    ("Normal(0, 1, mu=2)", "Normal parameter mu is given twice"),
    ("Normal(sigma=1, 2)", "Normal: a positional parameter follows a named one; name it (its parameters: mu, sigma)"),
    ("Cauchy(0, sigma=1)", "Cauchy has no parameter 'sigma'; expected one of 'alpha', 'beta'"),
    ("Cauchy(location=0, beta=1)", "Cauchy has no parameter 'location'; expected one of 'alpha', 'beta'"),
    ("Gama(1, 1)", "unknown distribution 'Gama'; did you mean 'Gamma'?"),
])
def test_other_mistakes(text, message):
    with pytest.raises(PriorSyntaxError) as exc:
        parse_prior(text)
    assert str(exc.value) == message


def test_table_form_mistakes():
    from mrp_formula.errors import SHOWN

    with pytest.raises(PriorSyntaxError) as exc:
        parse_prior({"dist": "Cauchy", "alpha": 0, "beta": "wide"})
    assert str(exc.value) == "unknown distribution 'wide'; expected one of " + ", ".join(
        f"'{d}'" for d in sorted(DECLARED)[:SHOWN]) + f" (and {len(DECLARED) - SHOWN} more)"
    with pytest.raises(PriorSyntaxError) as exc:
        parse_prior({"dist": "Gamma", "alpha": [1], "beta": 1})
    assert str(exc.value) == "Gamma parameter alpha must be a number or a prior (got [1])"


def _hyper_cases():
    for name, params in DECLARED.items():
        for p, kind in params:
            yield pytest.param(name, p, kind, id=f"{name}-{p}")


@pytest.mark.parametrize("name, param, kind", list(_hyper_cases()))
def test_hyperpriors(name, param, kind):
    """A parameter given as a prior: allowed where the table says so, when the prior's values fit."""
    values = {k: v for k, v in _legal(name).items()}
    fits = {"real": "Normal(0, 1)", "positive": "HalfNormal(2)", "bound": "Normal(0, 1)"}[kind]
    nested = parse_prior(fits)
    named = {**values, param: fits}
    text = f"{name}({', '.join(f'{k}={v}' for k, v in named.items())})"
    if kind == "bound":
        with pytest.raises(PriorSyntaxError) as exc:
            parse_prior(text)
        assert str(exc.value) == f"{name} parameter {param} must be a finite number, not a prior (got {nested})"
        return
    assert parse_prior(text).param(param) == nested
    assert parse_prior({"dist": name, **{**values, param: {"dist": nested.dist, "sigma": 2 if kind == "positive" else 1,
                                                           **({"mu": 0} if kind == "real" else {})}}}
                       ).param(param) == nested
    if kind == "positive":
        for bad, takes in [("Normal(0, 1)", "any number"), ("Uniform(-1, 5)", "values in [-1, 5]"),
                           ("Cauchy(0, 1)", "any number")]:
            with pytest.raises(PriorSyntaxError) as exc:
                parse_prior(text.replace(fits, bad))
            assert str(exc.value) == (f"{name} parameter {param} must be positive (a finite number > 0) "
                                      f"(got {parse_prior(bad)}, which takes {takes}); use a prior whose values "
                                      f"fit, such as {POSITIVE_PRIORS}")
        for good in ("Uniform(0, 5)", "TruncatedNormal(0, 1, lower=0)", "Gamma(2, 2)", "Beta(2, 2)"):
            assert parse_prior(text.replace(fits, good)).param(param) == parse_prior(good)


def test_legal_values_the_name_once_refused():
    """Cauchy's alpha is a location, SkewNormal's alpha a skewness: negative values are legal."""
    assert parse_prior("Cauchy(-3, 1)") == PriorSpec("Cauchy", (("alpha", -3.0), ("beta", 1.0)))
    assert parse_prior("SkewNormal(alpha=-4, mu=0, sigma=1)").param("alpha") == -4.0
    assert parse_prior("Normal(-2, 0.5)").param("mu") == -2.0


# --------------------------------------------------------------------------- the installed PyMC


def _in_support(name, values, draws):
    low, high = {"positive": (0.0, INF), "unit": (0.0, 1.0)}.get(SUPPORT.get(name), (-INF, INF))
    low, high = max(low, values.get("lower", -INF)), min(high, values.get("upper", INF))
    return np.isfinite(draws).all() and (draws >= low).all() and (draws <= high).all()


@pytest.mark.parametrize("name", [n for n in DECLARED if n not in ("Flat", "HalfFlat")])
def test_pymc_accepts_the_table(name):
    """Each distribution exists in PyMC under that name, takes those parameter names, draws within
    the declared support, and PyMC itself refuses (or gives no finite density for) the values the
    table refuses."""
    pm = pytest.importorskip("pymc")
    from pymc.logprob.utils import ParameterValueError

    cls = getattr(pm, name)
    accepted = inspect.signature(cls.dist).parameters
    assert all(p in accepted for p, _ in DECLARED[name]), (name, list(accepted))
    values = _legal(name)
    draws = pm.draw(cls.dist(**values), draws=400, random_seed=1, mode="FAST_COMPILE")
    assert _in_support(name, values, np.asarray(draws)), name
    point = float(np.median(draws))
    assert np.isfinite(pm.logp(cls.dist(**values), point).eval(mode="FAST_COMPILE"))
    for p, kind in DECLARED[name]:
        for bad in [v for v in ILLEGAL[kind] if math.isfinite(v)]:
            try:
                logp = pm.logp(cls.dist(**{**values, p: bad}), point).eval(mode="FAST_COMPILE")
            except ParameterValueError:
                continue
            assert not np.isfinite(logp), (name, p, bad)


def test_pymc_flat_distributions():
    pm = pytest.importorskip("pymc")
    for name in ("Flat", "HalfFlat"):
        assert hasattr(pm, name) and not [p for p in inspect.signature(getattr(pm, name).dist).parameters
                                          if p != "kwargs"]


# --------------------------------------------------------------------------- through a spec

SPEC = """
name = "priors"
[data]
source = "d.csv"
[model]
formula = "y ~ x + (1 | g)"
family = "gaussian"
[model.priors]
Intercept = "{intercept}"
x = "{slope}"
"1|g" = "{group}"
sigma = "{sigma}"
[fit]
draws = 60
tune = 60
chains = 1
[population.margins]
g = {{ a = 0.5, b = 0.3, c = 0.2 }}
x = {{ ctl = 0.5, trt = 0.5 }}
[estimands.mean]
"""


def _folder(tmp_path, **priors):
    rng = np.random.default_rng(3)
    n = 120
    g = rng.choice(["a", "b", "c"], n)
    x = rng.integers(0, 2, n)
    y = 1.0 + 0.5 * x + pd.Series(g).map({"a": -0.3, "b": 0.0, "c": 0.3}).to_numpy() + rng.normal(0, 0.5, n)
    pd.DataFrame({"g": g, "x": np.where(x == 1, "trt", "ctl"), "y": y}).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent(SPEC.format(**priors)).lstrip())
    return tmp_path / "s.toml"


@pytest.mark.parametrize("priors", [
    dict(intercept="Cauchy(0, 1)", slope="StudentT(3, 0, 2.5)", group="Normal(0, HalfCauchy(1))",
         sigma="Exponential(1)"),
    dict(intercept="Laplace(-1, 2)", slope="Logistic(0, 1)", group="Normal(0, Gamma(2, 2))",
         sigma="HalfStudentT(3, 1)"),
    dict(intercept="SkewNormal(-2, 0, 3)", slope="Gumbel(0, 1)", group="Normal(0, Uniform(0, 5))",
         sigma="LogNormal(0, 1)"),
], ids=["cauchy", "laplace", "skewnormal"])
def test_legal_priors_pass_mrp_check(tmp_path, priors):
    spec = _folder(tmp_path, **priors)
    result = CliRunner().invoke(app, ["check", str(spec)])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_legal_priors_run(tmp_path):
    """Several distributions at once, fitted: the model builds, samples and gives an estimate."""
    spec = _folder(tmp_path, intercept="Cauchy(0, 1)", slope="StudentT(3, 0, 2.5)",
                   group="Normal(0, HalfCauchy(1))", sigma="Exponential(1)")
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code in (0, 5), result.output
    import json

    rows = json.loads(result.stdout)["estimands"]
    assert len(rows) == 1 and math.isfinite(rows[0]["mean"])


@pytest.mark.parametrize("where, value, message", [
    ("sigma", "Normal(0, 1)", "the gaussian family's sigma is positive, and a Normal prior takes any number "
                               "(got Normal(mu=0.0, sigma=1.0)); use a prior on positive values: " + POSITIVE_PRIORS),
    ("x", "Normal(0, HalfNormal(1))", "a prior inside a prior (a hyperprior) is for group terms only; 'x' is a "
                                      "common term (got Normal(mu=0.0, sigma=HalfNormal(sigma=1.0))); give its "
                                      "parameters as numbers, e.g. \"Normal(0, 1)\""),
    ("1|g", "Normal(0, Normal(0, 1))", "Normal parameter sigma must be positive (a finite number > 0) (got "
                                       "Normal(mu=0.0, sigma=1.0), which takes any number); use a prior whose "
                                       "values fit, such as " + POSITIVE_PRIORS),
    ("Intercept", "Cauchy(0, -1)", "Cauchy parameter beta must be positive (a finite number > 0) (got -1)"),
])
def test_refused_priors_in_a_spec(tmp_path, where, value, message):
    priors = dict(intercept="Normal(0, 1)", slope="Normal(0, 1)", group="Normal(0, HalfNormal(1))",
                  sigma="HalfNormal(1)")
    priors[{"sigma": "sigma", "x": "slope", "1|g": "group", "Intercept": "intercept"}[where]] = value
    spec = _folder(tmp_path, **priors)
    result = CliRunner().invoke(app, ["check", str(spec)])
    assert result.exit_code == 3, result.output
    assert message in result.output, result.output
