"""Priors as data: ``"Normal(0, HalfNormal(0.5))"`` or ``{ dist = "Normal", mu = 0, ... }``.

The string form is read by a small recursive-descent parser over numbers, names and
parentheses; nothing is evaluated. Every distribution is a record of :data:`DISTRIBUTIONS`:
its parameters in PyMC's positional order, each with the values it admits (a
:class:`Constraint`), whether it is required and whether it may itself be a prior (a
hyperprior). Parameters are checked against that table only, never by their name: Cauchy's
``alpha`` is a location and may be negative, Gamma's ``alpha`` is a shape and may not.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from mrp_formula.errors import did_you_mean

INF = math.inf


@dataclass(frozen=True)
class Constraint:
    """The values a parameter admits: an interval of finite numbers (ends excluded when open)."""

    text: str  # as the messages say it: "a finite number > 0"
    low: float = -INF
    high: float = INF
    low_open: bool = True
    high_open: bool = True

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def covers(self, support: tuple[float, float]) -> bool:
        """Whether every value of a distribution with this support is admitted (the ends of a
        continuous support carry no probability, so an open end may touch the support's end)."""
        return support[0] >= self.low and support[1] <= self.high


REAL = Constraint("a finite number")
POSITIVE = Constraint("positive (a finite number > 0)", low=0.0)
UNIT = Constraint("in (0, 1)", low=0.0, high=1.0)


@dataclass(frozen=True)
class Param:
    name: str
    constraint: Constraint
    required: bool = True
    hyperprior: bool = True  # may be a prior itself (group terms: a hyperprior)


@dataclass(frozen=True)
class Distribution:
    """A PyMC distribution: its parameters in PyMC's positional order and its support."""

    name: str
    params: tuple[Param, ...]
    support: tuple[float, float]  # before any bounds given by ``bounds``
    bounds: tuple[str, str] | None = None  # parameters that bound the support (lower, upper)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


def _p(name: str, constraint: Constraint, **kw) -> Param:
    return Param(name, constraint, **kw)


_BOUND = dict(required=False, hyperprior=False)
_R, _P, _U = (-INF, INF), (0.0, INF), (0.0, 1.0)

# The distribution table. Names and parameter names are PyMC's (``pm.<name>.dist(**params)``; a
# test checks each against the installed PyMC); one parameterization per distribution.
DISTRIBUTIONS: dict[str, Distribution] = {d.name: d for d in (
    Distribution("Normal", (_p("mu", REAL), _p("sigma", POSITIVE)), _R),
    Distribution("HalfNormal", (_p("sigma", POSITIVE),), _P),
    Distribution("StudentT", (_p("nu", POSITIVE), _p("mu", REAL), _p("sigma", POSITIVE)), _R),
    Distribution("HalfStudentT", (_p("nu", POSITIVE), _p("sigma", POSITIVE)), _P),
    Distribution("Cauchy", (_p("alpha", REAL), _p("beta", POSITIVE)), _R),
    Distribution("HalfCauchy", (_p("beta", POSITIVE),), _P),
    Distribution("Exponential", (_p("lam", POSITIVE),), _P),
    Distribution("Gamma", (_p("alpha", POSITIVE), _p("beta", POSITIVE)), _P),
    Distribution("InverseGamma", (_p("alpha", POSITIVE), _p("beta", POSITIVE)), _P),
    Distribution("LogNormal", (_p("mu", REAL), _p("sigma", POSITIVE)), _P),
    Distribution("Laplace", (_p("mu", REAL), _p("b", POSITIVE)), _R),
    Distribution("Logistic", (_p("mu", REAL), _p("s", POSITIVE)), _R),
    Distribution("Gumbel", (_p("mu", REAL), _p("beta", POSITIVE)), _R),
    Distribution("SkewNormal", (_p("alpha", REAL), _p("mu", REAL), _p("sigma", POSITIVE)), _R),
    Distribution("Weibull", (_p("alpha", POSITIVE), _p("beta", POSITIVE)), _P),
    Distribution("ChiSquared", (_p("nu", POSITIVE),), _P),
    Distribution("Beta", (_p("alpha", POSITIVE), _p("beta", POSITIVE)), _U),
    Distribution("Kumaraswamy", (_p("a", POSITIVE), _p("b", POSITIVE)), _U),
    Distribution("LogitNormal", (_p("mu", REAL), _p("sigma", POSITIVE)), _U),
    Distribution("Uniform", (_p("lower", REAL, hyperprior=False), _p("upper", REAL, hyperprior=False)), _R,
                 bounds=("lower", "upper")),
    Distribution("TruncatedNormal", (_p("mu", REAL), _p("sigma", POSITIVE), _p("lower", REAL, **_BOUND),
                                     _p("upper", REAL, **_BOUND)), _R, bounds=("lower", "upper")),
    Distribution("Flat", (), _R),
    Distribution("HalfFlat", (), _P),
)}


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

    @property
    def nested(self) -> bool:
        """Whether a parameter is itself a prior (a hyperprior)."""
        return any(isinstance(v, PriorSpec) for _, v in self.params)


def support(prior: PriorSpec) -> tuple[float, float]:
    """The interval of values ``prior`` can take (bounds given as numbers narrow it)."""
    d = DISTRIBUTIONS[prior.dist]
    low, high = d.support
    if d.bounds:
        lo, hi = (prior.param(b) for b in d.bounds)
        low = max(low, lo) if isinstance(lo, float) else low
        high = min(high, hi) if isinstance(hi, float) else high
    return low, high


def with_support_within(constraint: Constraint) -> list[str]:
    """The distributions (proper, without bounds) whose values are exactly the interval of
    ``constraint``, else all whose values fit inside it: what to suggest for a hyperprior."""
    proper = [d for d in DISTRIBUTIONS.values() if not d.bounds and d.params]
    exact = [d.name for d in proper if d.support == (constraint.low, constraint.high)]
    return exact or [d.name for d in proper if constraint.covers(d.support)]


def values_text(interval: tuple[float, float]) -> str:
    low, high = interval
    if low == -INF and high == INF:
        return "any number"
    if high == INF:
        return f"values >= {low:g}"
    if low == -INF:
        return f"values <= {high:g}"
    return f"values in [{low:g}, {high:g}]"


POSITIVE_DISTRIBUTIONS = tuple(with_support_within(POSITIVE))


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


def _check_dist(name: str) -> Distribution:
    if name not in DISTRIBUTIONS:
        raise PriorSyntaxError(f"unknown distribution '{name}'; {did_you_mean(name, DISTRIBUTIONS)}")
    return DISTRIBUTIONS[name]


def _set(dist: Distribution, params: dict, key: str, value) -> None:
    if key not in dist.names:
        raise PriorSyntaxError(f"{dist.name} has no parameter '{key}'; {did_you_mean(key, dist.names)}")
    if key in params:
        raise PriorSyntaxError(f"{dist.name} parameter {key} is given twice")
    params[key] = value


def _parse_call(toks, pos, text) -> tuple[PriorSpec, int]:
    if pos >= len(toks) or toks[pos][0] != "name":
        raise PriorSyntaxError(f"expected a distribution name such as Normal in {text!r}")
    dist = _check_dist(toks[pos][1])
    names = dist.names
    pos += 1
    if pos >= len(toks) or toks[pos][1] != "(":
        raise PriorSyntaxError(f"expected '(' after {dist.name}")
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
            if len(params) > positional:
                raise PriorSyntaxError(f"{dist.name}: a positional parameter follows a named one; name it "
                                       f"(its parameters: {', '.join(names)})")
            if positional >= len(names):
                raise PriorSyntaxError(f"{dist.name} takes {len(names)} parameter(s): {', '.join(names) or 'none'}")
            keyword = names[positional]
            positional += 1
        _set(dist, params, keyword, value)
        if pos < len(toks) and toks[pos][1] == ",":
            pos += 1
    if pos >= len(toks):
        raise PriorSyntaxError(f"missing ')' in {text!r}")
    return _finish(dist, params), pos + 1


def _from_table(table: dict) -> PriorSpec:
    if "dist" not in table:
        raise PriorSyntaxError("a prior table needs 'dist', e.g. { dist = \"Normal\", mu = 0, sigma = 1 }")
    dist = _check_dist(str(table["dist"]))
    params: dict[str, float | PriorSpec] = {}
    for k, v in table.items():
        if k == "dist":
            continue
        if k in dist.names and (isinstance(v, bool) or not isinstance(v, (int, float, dict, str))):
            raise PriorSyntaxError(f"{dist.name} parameter {k} must be a number or a prior (got {v!r})")
        _set(dist, params, k, float(v) if isinstance(v, (int, float)) else parse_prior(v))
    return _finish(dist, params)


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _finish(dist: Distribution, params: dict) -> PriorSpec:
    missing = [p.name for p in dist.params if p.required and p.name not in params]
    if missing:
        raise PriorSyntaxError(f"{dist.name} needs {', '.join(missing)} (its parameters: "
                               f"{', '.join(dist.names)})")
    for k, v in params.items():
        p = dist.param(k)
        c = p.constraint
        if isinstance(v, PriorSpec):
            if not p.hyperprior:
                raise PriorSyntaxError(f"{dist.name} parameter {k} must be {c.text}, not a prior (got {v})")
            if not c.covers(support(v)):
                raise PriorSyntaxError(f"{dist.name} parameter {k} must be {c.text} (got {v}, which takes "
                                       f"{values_text(support(v))}); use a prior whose values fit, such as "
                                       f"{', '.join(with_support_within(c))}")
        elif not c.admits(v):
            raise PriorSyntaxError(f"{dist.name} parameter {k} must be {c.text} (got {_shown(v)})")
    if dist.bounds:
        lo, hi = (params.get(b) for b in dist.bounds)
        if isinstance(lo, float) and isinstance(hi, float) and not lo < hi:
            raise PriorSyntaxError(f"{dist.name} parameters {dist.bounds[0]} and {dist.bounds[1]} must satisfy "
                                   f"{dist.bounds[0]} < {dist.bounds[1]} (got {lo:g} and {hi:g})")
    order = {name: i for i, name in enumerate(dist.names)}
    return PriorSpec(dist.name, tuple(sorted(params.items(), key=lambda kv: order[kv[0]])))


def reference_markdown() -> str:
    """The distribution table for ``docs/spec.md``."""
    out = ["| distribution | parameters, in positional order | its values |", "| --- | --- | --- |"]
    for d in DISTRIBUTIONS.values():
        args = []
        for p in d.params:
            extra = [] if p.required else ["optional"]
            if not p.hyperprior:
                extra.append("not a prior")
            args.append(f"`{p.name}`: {p.constraint.text}" + (f" ({', '.join(extra)})" if extra else ""))
        vals = values_text(d.support)
        between = f"between `{d.bounds[0]}` and `{d.bounds[1]}`" if d.bounds else ""
        if d.bounds:
            vals = between if all(d.param(b).required for b in d.bounds) else f"{vals}, {between} when given"
        out.append(f"| `{d.name}` | {'; '.join(args) or 'none'} | {vals} |")
    return "\n".join(out)
