"""The fit cache's key includes the formulas of auxiliary parameters (model.formulas)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from mrp_formula.model.cache import fit_key
from mrp_formula.steps import plan as prepared_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "predict"))
import test_psi_formula as psi_case  # noqa: E402  (its spec and data)


def test_the_psi_formula_is_part_of_the_fit_key(tmp_path):
    plan = prepared_plan(psi_case._write(tmp_path))
    versions = {"bambi": "x", "pymc": "y"}
    other = dataclasses.replace(plan, fit_plan=dataclasses.replace(plan.fit_plan, formulas=(("psi", "arm"),)))
    assert fit_key(plan, versions) != fit_key(other, versions)  # the same priors, another psi formula
    assert fit_key(plan, versions) == fit_key(prepared_plan(tmp_path / "spec.toml"), versions)
