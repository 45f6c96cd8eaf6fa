"""Every spec and example the project ships validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mrp_formula.commands.check import check

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(ROOT.glob("specs/*.toml")) + sorted(ROOT.glob("examples/*/*.toml"))


def _ensure_example_data():
    for example, data in (("ab_click", "clicks.csv"), ("ab_revenue", "revenue.csv")):
        if not (ROOT / "examples" / example / data).exists():
            subprocess.run([sys.executable, str(ROOT / "examples" / example / "generate.py")], check=True)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_spec_validates(spec):
    _ensure_example_data()
    plan = check(spec)
    assert plan.loaded.spec.estimands


def test_there_are_shipped_specs():
    assert any(p.name == "ab_click.toml" for p in SPECS)
