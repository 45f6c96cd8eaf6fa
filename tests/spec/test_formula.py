"""Formulas: described correctly; anything that could run code is refused and runs nothing."""

from __future__ import annotations

import pytest

from mrp_formula.errors import SpecError
from mrp_formula.spec.formula import check_safe, describe


def test_describe_terms_and_vars():
    info = describe("p(k, n) ~ treatment * gender + scale(x) + (1|race:female) + (x|g)")
    assert info.is_proportion and info.response_vars == ("k", "n")
    assert info.common_terms == ("treatment", "gender", "treatment:gender", "scale(x)")
    assert [g.name for g in info.group_terms] == ["1|race:female", "1|g", "x|g"]
    assert info.group_terms[0].factor_vars == ("race", "female")
    assert set(info.rhs_vars) == {"treatment", "gender", "x", "race", "female", "g"}
    assert "Intercept" in info.prior_names and "1|race:female" in info.prior_names


@pytest.mark.parametrize("formula,fragment", [
    ("y ~ __import__('os').system('touch pwned')", "not allowed"),
    ("y ~ os.system('touch pwned')", "attribute access"),
    ("y ~ eval('1')", "function 'eval' is not allowed"),
    ("y ~ x[0]", "subscripts"),
    ("y ~ (lambda: 1)()", "keyword 'lambda'"),
    ("y ~ getattr(x, 'y')", "function 'getattr' is not allowed"),
    ("y ~ np.log(x)", "attribute access"),
    ("y ~ x; import os", "statements"),
    ("y ~ scal(x)", "did you mean 'scale'"),
    ("y = x", "'=' is not allowed"),
])
def test_unsafe_formulas_are_refused(formula, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = check_safe(formula)
    assert problems, formula
    assert any(fragment in p.render() for p in problems), [p.render() for p in problems]
    with pytest.raises(SpecError):
        describe(formula)
    assert not (tmp_path / "pwned").exists()


def test_bad_part_is_marked():
    p = check_safe("y ~ x + os.system('x')")[0]
    lines = p.snippet.splitlines()
    assert lines[0] == "y ~ x + os.system('x')"
    assert lines[1].index("^") == lines[0].index(".")


def test_allowed_transforms_pass():
    assert check_safe("y ~ C(a) + scale(b) + log(c) + I(d ** 2) + (1 | g)") == []


def test_parse_error_is_a_spec_error():
    with pytest.raises(SpecError, match="does not parse"):
        describe("y ~ (1 | g")
