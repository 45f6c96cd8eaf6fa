"""`mrp check`: everything short of sampling."""

from __future__ import annotations

from dataclasses import replace

from mrp_formula.checks import coverage as coverage_mod
from mrp_formula.poststrat import classical as classical
from mrp_formula.steps import Plan, plan as plan_of


def check(path, *, overrides=()) -> Plan:
    """Validate the spec, the files, columns, levels, terms and population coverage."""
    plan = plan_of(path, overrides)
    cov = coverage_mod.coverage(plan.tables, plan.info, plan.loaded.spec.model.family)
    return replace(plan, coverage=cov)
