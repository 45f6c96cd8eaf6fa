"""Priors as data: ``"Normal(0, HalfNormal(0.5))"`` or ``{ dist = "Normal", mu = 0, ... }``.

The string form is read by a small recursive-descent parser over numbers, names and
parentheses; nothing is evaluated. Distributions and their parameter names come from
:data:`DISTRIBUTIONS`, so positional arguments get their names and typos get a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mrp_formula.errors import did_you_mean

# name -> parameter names in positional order (the PyMC names).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "Normal": ("mu", "sigma"),
    "HalfNormal": ("sigma",),
    "StudentT": ("nu", "mu", "sigma"),
    "HalfStudentT": ("nu", "sigma"),
    "Cauchy": ("alpha", "beta"),
    "HalfCauchy": ("beta",),
    "Exponential": ("lam",),
    "Gamma": ("alpha", "beta"),
    "InverseGamma": ("alpha", "beta"),
    "LogNormal": ("mu", "sigma"),
    "Laplace": ("mu", "b"),
    "Beta": ("alpha", "beta"),
    "Uniform": ("lower", "upper"),
    "TruncatedNormal": ("mu", "sigma", "lower", "upper"),
    "Flat": (),
    "HalfFlat": (),
}

# Hyperpriors of a group term must be positive.
POSITIVE = {"HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma", "InverseGamma",
            "LogNormal", "HalfFlat"}


class PriorSyntaxError(ValueError):
    """A prior that cannot be read; the message says what and where."""


@dataclass(frozen=True)
class PriorSpec:
    """A distribution with named parameters; a parameter is a number or another prior."""

    dist: str
    params: tuple[tuple[str, "float | PriorSpec"], ...]

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.dist}({args})"

    def param(self, name: str) -> "float | PriorSpec | None":
        return dict(self.params).get(name)


_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<op>[(),=]))")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, i = [], 0
    text = text.rstrip()
    while i < len(text):
        m = _TOKEN.match(text, i)
        if not m or m.end() == i:
            raise PriorSyntaxError(f"unexpected character {text[i:].strip()[:1]!r} at position {i + 1}")
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind)))
        i = m.end()
    return out


def parse_prior(value: Any) -> PriorSpec:
    """Read the string or table form; raise :class:`PriorSyntaxError` with a helpful message."""
    if isinstance(value, str):
        toks = _tokens(value)
        prior, pos = _parse_call(toks, 0, value)
        if pos != len(toks):
            raise PriorSyntaxError(f"unexpected {toks[pos][1]!r} after the distribution")
        return prior
    if isinstance(value, dict):
        return _from_table(value)
    raise PriorSyntaxError(
        f"a prior is a string like \"Normal(0, 1)\" or a table with 'dist' (got {type(value).__name__})"
    )


def _check_dist(name: str) -> tuple[str, ...]:
    if name not in DISTRIBUTIONS:
        raise PriorSyntaxError(f"unknown distribution '{name}'; {did_you_mean(name, DISTRIBUTIONS)}")
    return DISTRIBUTIONS[name]


def _parse_call(toks, pos, text) -> tuple[PriorSpec, int]:
    if pos >= len(toks) or toks[pos][0] != "name":
        raise PriorSyntaxError(f"expected a distribution name such as Normal in {text!r}")
    name = toks[pos][1]
    names = _check_dist(name)
    pos += 1
    if pos >= len(toks) or toks[pos][1] != "(":
        raise PriorSyntaxError(f"expected '(' after {name}")
    pos += 1
    params: dict[str, float | PriorSpec] = {}
    positional = 0
    while pos < len(toks) and toks[pos][1] != ")":
        keyword = None
        if toks[pos][0] == "name" and pos + 1 < len(toks) and toks[pos + 1][1] == "=":
            keyword = toks[pos][1]
            pos += 2
        if pos >= len(toks):
            break
        if toks[pos][0] == "num":
            value: float | PriorSpec = float(toks[pos][1])
            pos += 1
        else:
            value, pos = _parse_call(toks, pos, text)
        if keyword is None:
            if positional >= len(names):
                raise PriorSyntaxError(f"{name} takes {len(names)} parameter(s): {', '.join(names) or 'none'}")
            keyword = names[positional]
            positional += 1
        elif keyword not in names:
            raise PriorSyntaxError(f"{name} has no parameter '{keyword}'; {did_you_mean(keyword, names)}")
        params[keyword] = value
        if pos < len(toks) and toks[pos][1] == ",":
            pos += 1
    if pos >= len(toks):
        raise PriorSyntaxError(f"missing ')' in {text!r}")
    return _finish(name, params), pos + 1


def _from_table(table: dict) -> PriorSpec:
    if "dist" not in table:
        raise PriorSyntaxError("a prior table needs 'dist', e.g. { dist = \"Normal\", mu = 0, sigma = 1 }")
    name = str(table["dist"])
    names = _check_dist(name)
    params: dict[str, float | PriorSpec] = {}
    for k, v in table.items():
        if k == "dist":
            continue
        if k not in names:
            raise PriorSyntaxError(f"{name} has no parameter '{k}'; {did_you_mean(k, names)}")
        if isinstance(v, bool) or not isinstance(v, (int, float, dict, str)):
            raise PriorSyntaxError(f"parameter '{k}' of {name} must be a number or a prior")
        params[k] = float(v) if isinstance(v, (int, float)) else parse_prior(v)
    return _finish(name, params)


def _finish(name: str, params: dict) -> PriorSpec:
    missing = [p for p in DISTRIBUTIONS[name] if p not in params and name not in ("TruncatedNormal",)]
    if name == "TruncatedNormal":
        missing = [p for p in ("mu", "sigma") if p not in params]
    if missing:
        raise PriorSyntaxError(f"{name} needs {', '.join(missing)}")
    for k, v in params.items():
        if isinstance(v, float) and k in ("sigma", "beta", "lam", "b", "alpha", "nu") and v <= 0:
            raise PriorSyntaxError(f"{name} parameter {k} must be positive (got {v:g})")
    order = {p: i for i, p in enumerate(DISTRIBUTIONS[name])}
    return PriorSpec(name, tuple(sorted(params.items(), key=lambda kv: order[kv[0]])))
