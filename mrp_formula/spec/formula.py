"""The model formula: checked against an allowlist before anything parses or evaluates it,
then described (response, common terms, group terms, variables) with formulae.

A spec is data, never code: attribute access, subscripts, dunder names, keywords and
calls outside :data:`ALLOWED_CALLS` are refused here, with the bad part marked.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

import numpy as np

from mrp_formula.errors import Problem, did_you_mean

# Transforms a formula may call, with what each does and the function that does it (None: formulae's
# own, which formulae resolves before anything else). Everything else is refused before formulae
# sees the text, and this table is the whole namespace formulas are evaluated in
# (:func:`namespace`, :func:`environment`, :func:`call_in_namespace`).
ALLOWED_CALLS: dict[str, tuple[str, object]] = {
    "C": ("categorical, e.g. C(age)", None),
    "I": ("arithmetic on columns, e.g. I(age ** 2)", None),
    "scale": ("centre and divide by the standard deviation", None),
    "center": ("subtract the mean", None),
    "standardize": ("same as scale", None),
    "log": ("natural logarithm", np.log),
    "log2": ("base-2 logarithm", np.log2),
    "log10": ("base-10 logarithm", np.log10),
    "log1p": ("log(1 + x)", np.log1p),
    "exp": ("exponential", np.exp),
    "sqrt": ("square root", np.sqrt),
    "abs": ("absolute value", np.abs),
    "p": ("binomial response p(successes, trials)", None),
    "Treatment": ("reference level inside C(), e.g. C(arm, Treatment('control'))", None),
}


def namespace() -> dict[str, object]:
    """The functions formulas call beyond formulae's own: exactly those of :data:`ALLOWED_CALLS`."""
    return {name: fn for name, (_, fn) in ALLOWED_CALLS.items() if fn is not None}


def formulae():
    """The formulae package, imported without scipy.interpolate until formulae's ``bs()`` runs
    (:func:`mrp_formula.system.import_deferring`; the formulas here do not allow it). Every import
    of formulae here goes through it."""
    from mrp_formula.system import import_deferring

    return import_deferring("formulae", "scipy.interpolate", ("splev",))


def environment():
    """The formulae evaluation environment of a formula: the allowed calls and nothing else (no
    module's globals, so no name of this package can shadow a transform, as a logger named
    ``log`` once did)."""
    formulae()
    from formulae.environment import Environment

    return Environment([namespace()])


def _clean_caller():
    # A function whose frame holds only dunder locals (which formulas cannot name) and whose
    # globals are the allowed calls: Bambi evaluates a formula in the frame that calls bambi.Model.
    scope = {"__builtins__": {}, **namespace()}
    exec(compile("def _call(__fn, __args, __kwargs):\n    return __fn(*__args, **__kwargs)\n",
                 "<formula namespace>", "exec"), scope)
    return scope.pop("_call")


_CALLER = _clean_caller()


def call_in_namespace(fn, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` called from a frame whose namespace is :func:`namespace` only: for
    ``bambi.Model``, which evaluates the formula in its caller's frame (its locals, then its
    module's globals, then its ``extra_namespace``)."""
    return _CALLER(fn, args, kwargs)


# Spellings from R and elsewhere, with what to write instead.
R_STYLE = {
    "factor": "use C(x) for a categorical variable",
    "as_factor": "use C(x) for a categorical variable",
    "ln": "use log(x)",
    "poly": "use I(x ** 2) for a square",
}

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
      |(?P<bq>`[^`]*`)
      |(?P<str>"[^"\\]*"|'[^'\\]*')
      |(?P<op>\*\*|//|==|!=|<=|>=|[~+\-*/:|(),%^<>={}])
      |(?P<bad>.)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class GroupTerm:
    name: str  # as Bambi names it: "1|gender", "x|g", "1|race:female"
    expr_vars: tuple[str, ...]
    factor_vars: tuple[str, ...]

    @property
    def factor(self) -> str:
        return ":".join(self.factor_vars)


@dataclass(frozen=True)
class FormulaInfo:
    """What the rest of the tool needs to know about a formula."""

    text: str
    response: str  # the response expression as written (e.g. "clicked" or "p(k, n)")
    response_vars: tuple[str, ...]
    is_proportion: bool  # p(successes, trials)
    rhs: str
    has_intercept: bool
    common_terms: tuple[str, ...]
    common_vars: tuple[str, ...]
    group_terms: tuple[GroupTerm, ...]
    common_term_vars: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def rhs_vars(self) -> tuple[str, ...]:
        out = list(self.common_vars)
        for g in self.group_terms:
            out += [v for v in g.expr_vars + g.factor_vars]
        return tuple(dict.fromkeys(out))

    def vars_used(self, exclude=()) -> tuple[str, ...]:
        """Predictor variables of the terms that are not excluded (what a prediction needs)."""
        out = [v for name, vs in self.common_term_vars if name not in exclude for v in vs]
        for g in self.group_terms:
            if g.name not in exclude:
                out += list(g.expr_vars + g.factor_vars)
        return tuple(dict.fromkeys(out))

    @property
    def factor_vars(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for g in self.group_terms for v in g.factor_vars))

    @property
    def prior_names(self) -> tuple[str, ...]:
        names = (["Intercept"] if self.has_intercept else []) + list(self.common_terms)
        for g in self.group_terms:
            names.append(g.name)
        return tuple(names)


def mark(text: str, start: int, end: int) -> str:
    """The formula reprinted with ``^^^`` under ``text[start:end]`` (one line)."""
    flat = text.replace("\n", " ")
    return f"{flat}\n{' ' * start}{'^' * max(1, end - start)}"


def check_safe(text: str, *, key: str = "model.formula", file: str = "", line: int | None = None) -> list[Problem]:
    """Problems that make the formula unsafe to hand to formulae; empty when it is safe."""
    problems: list[Problem] = []

    def bad(msg: str, start: int, end: int, hint: str) -> None:
        problems.append(Problem(msg, key=key, file=file, line=line, hint=hint, snippet=mark(text, start, end)))

    tokens = [(m.lastgroup, m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text) if m.lastgroup != "ws"]
    for i, (kind, tok, s, e) in enumerate(tokens):
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "bad":
            what = {".": "attribute access", "[": "subscripts", "]": "subscripts", ";": "statements"}.get(tok)
            bad(f"{what or f'the character {tok!r}'} is not allowed in a formula", s, e,
                "a formula names columns and allowed transforms only")
        elif kind == "name":
            if "__" in tok:
                bad(f"the name '{tok}' is not allowed (double underscores)", s, e, "rename the column")
            elif keyword.iskeyword(tok) and tok not in ("True", "False"):
                bad(f"the Python keyword '{tok}' is not allowed in a formula", s, e,
                    "a formula names columns and allowed transforms only")
            elif nxt == "(" and tok not in ALLOWED_CALLS:
                arg = tokens[i + 2][1] if i + 2 < len(tokens) and tokens[i + 2][0] == "name" else "x"
                close = R_STYLE.get(tok, "").replace("(x)", f"({arg})") or did_you_mean(tok, ALLOWED_CALLS)
                close = f"{close}; " if close.startswith(("did you mean", "use ")) else ""
                bad(f"the function '{tok}' is not allowed", s, e,
                    f"{close}allowed: {', '.join(sorted(ALLOWED_CALLS))}")
        elif kind == "op" and tok == "=" :
            bad("'=' is not allowed in a formula", s, e, "use '~' between the response and the predictors")
    if text.count("~") != 1 and not problems:
        problems.append(Problem("a formula has exactly one '~' between the response and the predictors",
                                key=key, file=file, line=line, got=repr(text),
                                hint='e.g. "clicked ~ treatment + (1 | gender)"'))
    return problems


def describe(text: str, *, key: str = "model.formula", file: str = "", line: int | None = None) -> FormulaInfo:
    """Describe a safe formula; raise :class:`SpecError` with the bad part marked when it does not parse."""
    from mrp_formula.errors import SpecError

    problems = check_safe(text, key=key, file=file, line=line)
    if problems:
        raise SpecError(problems)
    fm = formulae()
    from formulae.terms import GroupSpecificTerm, Intercept

    if not text.split("~", 1)[0].strip():
        raise SpecError(Problem("the formula has no response (left of '~')", key=key, file=file, line=line,
                                snippet=mark(text, 0, max(1, text.index("~") + 1)),
                                hint='write "outcome ~ predictors"'))
    try:
        desc = fm.model_description(text)
    except Exception as exc:  # formulae raises ParseError/ScanError/ValueError
        msg = str(exc) or type(exc).__name__
        start, end, what = _locate(text)
        raise SpecError(Problem(f"the formula does not parse: {what or msg}", key=key, file=file, line=line,
                                snippet=mark(text, start, end),
                                hint="check parentheses and operators, e.g. \"y ~ x + (1 | g)\"")) from None
    if desc.response is None:
        raise SpecError(Problem("the formula has no response (left of '~')", key=key, file=file, line=line,
                                hint='write "outcome ~ predictors"'))
    lhs, rhs = text.split("~", 1)
    resp_term = desc.response.term
    resp_vars = tuple(sorted(resp_term.var_names))
    is_prop = lhs.strip().startswith("p(")
    if is_prop:
        inner = lhs.strip()[2:].rstrip().removesuffix(")")
        resp_vars = tuple(a.strip() for a in inner.split(","))
    common, common_vars, groups, has_intercept, term_vars = [], [], [], False, []
    for term in desc.terms:
        if isinstance(term, Intercept):
            has_intercept = True
        elif isinstance(term, GroupSpecificTerm):
            expr_vars = tuple(sorted(term.expr.var_names)) if not isinstance(term.expr, Intercept) else ()
            factor_vars = tuple(c.name for c in term.factor.components)
            groups.append(GroupTerm(term.name, expr_vars, factor_vars))
        else:
            common.append(term.name)
            common_vars += [v for v in _ordered_vars(term) if v not in common_vars]
            term_vars.append((term.name, tuple(_ordered_vars(term))))
    return FormulaInfo(
        text=text,
        response=lhs.strip(),
        response_vars=resp_vars,
        is_proportion=is_prop,
        rhs=rhs.strip(),
        has_intercept=has_intercept,
        common_terms=tuple(common),
        common_vars=tuple(common_vars),
        group_terms=tuple(groups),
        common_term_vars=tuple(term_vars),
    )


_NAME = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)"


def transformed_response(text: str) -> tuple[int, int] | None:
    """Where the response (left of '~') is more than a column or ``p(successes, trials)`` over two
    columns: the span of ``text`` to mark; None when it is plain."""
    lhs = text.split("~", 1)[0]
    stripped = lhs.strip()
    if re.fullmatch(_NAME, stripped) or re.fullmatch(rf"p\(\s*{_NAME}\s*,\s*{_NAME}\s*\)", stripped):
        return None
    start = len(lhs) - len(lhs.lstrip())
    return start, start + len(stripped)


def _locate(text: str) -> tuple[int, int, str]:
    """Where a formula that formulae cannot parse goes wrong: an unclosed '(', a stray ')',
    or a dangling operator; the whole formula otherwise."""
    stack = []
    for i, ch in enumerate(text):
        if ch == "(":
            stack.append(i)
        elif ch == ")":
            if not stack:
                return i, i + 1, "a ')' closes nothing"
            stack.pop()
    if stack:
        return stack[-1], stack[-1] + 1, "this '(' is never closed"
    stripped = text.rstrip()
    if stripped and stripped[-1] in "+-*/:|~^":
        return len(stripped) - 1, len(stripped), f"the formula ends with '{stripped[-1]}'"
    m = re.search(r"([+\-*/:|~^])\s*([+*/:|~^)])", text)
    if m:
        return m.start(2), m.end(2), f"'{m.group(2)}' follows '{m.group(1)}'"
    return 0, len(text.replace("\n", " ")), ""


def _ordered_vars(term) -> list[str]:
    out = []
    for comp in getattr(term, "components", []):
        names = getattr(comp, "var_names", None) or {getattr(comp, "name", "")}
        out += sorted(n for n in names if n)
    return out or sorted(term.var_names)


def with_response(info: FormulaInfo, response: str) -> str:
    """The same right-hand side with another response (used to fit aggregated cells)."""
    return f"{response} ~ {info.rhs}"
