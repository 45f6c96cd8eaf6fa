from __future__ import annotations

import pytest

from mrp_formula.spec.priors import PriorSpec, PriorSyntaxError, parse_prior


@pytest.mark.parametrize("text,expected", [
    ("Normal(0, 1)", "Normal(mu=0.0, sigma=1.0)"),
    ("Normal(mu=0, sigma=2.5)", "Normal(mu=0.0, sigma=2.5)"),
    ("Normal(0, HalfNormal(0.5))", "Normal(mu=0.0, sigma=HalfNormal(sigma=0.5))"),
    ("StudentT(3, 0, 1)", "StudentT(nu=3.0, mu=0.0, sigma=1.0)"),
    ("Exponential(1e-1)", "Exponential(lam=0.1)"),
])
def test_string_form(text, expected):
    assert str(parse_prior(text)) == expected


@pytest.mark.parametrize("value,fragment", [
    ("Normall(0, 1)", "did you mean 'Normal'"),
    ("Normal(0, 1", "missing ')'"),
    ("Normal(0, 1, 2)", "takes 2 parameter"),
    ("Normal(0)", "needs sigma"),
    ("Normal(0, -1)", "must be positive"),
    ("__import__('os')", "unexpected character"),
    ({"mu": 0}, "needs 'dist'"),
    ({"dist": "Normal", "mu": 0, "sigma": True}, "must be a number"),
    (3, "a prior is a string"),
])
def test_rejections(value, fragment):
    with pytest.raises(PriorSyntaxError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_prior(value)


def test_table_form_nested():
    p = parse_prior({"dist": "Normal", "mu": 0, "sigma": {"dist": "HalfNormal", "sigma": 0.5}})
    assert p == PriorSpec("Normal", (("mu", 0.0), ("sigma", PriorSpec("HalfNormal", (("sigma", 0.5),)))))
