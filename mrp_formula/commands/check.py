"""`mrp check`: everything short of sampling."""

from __future__ import annotations

from dataclasses import replace

from mrp_formula.checks import coverage as coverage_mod
from mrp_formula.poststrat import classical as classical
from mrp_formula.errors import MrpError, SpecError
from mrp_formula.spec.tree import load_spec
from mrp_formula.steps import Plan, plan as plan_of, variant_error


def check(path, *, overrides=(), data=None, population=None) -> Plan:
    """Validate the spec (and the model of each of its variants), the files, columns, levels,
    terms and population coverage. ``data`` and ``population`` are DataFrames that take the place
    of the spec's files."""
    frames = {"data": data, "population": population}
    try:
        loaded = load_spec(path, tuple(overrides), frames=frames)
    except SpecError as exc:
        raise _with_the_rest(exc, path, overrides, frames) from None
    try:
        plan = plan_of(path, overrides, loaded=loaded)
    except MrpError as exc:  # the variants' own problems too, all at once
        extra = variant_error(loaded, overrides, frames, known=exc.problems)
        if extra is None:
            raise
        missing = any(p.key == "model.formula" and "is not a column" in p.message for p in exc.problems)
        same = type(exc) is type(extra) or isinstance(exc, SpecError) or missing
        cls = type(exc) if same else SpecError  # a spec mistake among them: exit 3
        raise cls(exc.problems + extra.problems) from None
    extra = variant_error(loaded, overrides, frames)
    if extra is not None:
        raise extra
    cov = coverage_mod.coverage(plan.tables, plan.info, plan.loaded.spec.model.family)
    return replace(plan, coverage=cov)


def _with_the_rest(exc: SpecError, path, overrides, frames) -> SpecError:
    """A spec whose only load problems are priors that do not parse: those, with every problem the
    rest of the spec has (a prior on a term the model lacks, the data's), all at once."""
    if not exc.problems or not all(p.key.startswith("model.priors.") for p in exc.problems):
        return exc
    try:
        rest = load_spec(path, tuple(overrides), frames=frames, skip_bad_priors=True)
        plan_of(path, overrides, loaded=rest)
    except MrpError as later:
        seen = {(p.key, p.message) for p in exc.problems}
        return SpecError(exc.problems + tuple(p for p in later.problems if (p.key, p.message) not in seen))
    return exc
