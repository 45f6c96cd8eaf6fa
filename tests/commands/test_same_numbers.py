"""The same spec and seed give the same numbers: the shipped specs against numbers recorded
before the code was reorganised (tests/golden/, rewritten only on purpose with
`python tests/test_same_numbers.py`, when a change is meant to move the numbers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mrp_formula

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
NUMBERS = ["mean", "median", "sd", "lower", "upper"]
CASES = {  # name -> (spec, --set overrides): small fits, so the test stays quick
    "ab_click": (ROOT / "specs" / "ab_click.toml", ["fit.draws=300", "fit.tune=300", "fit.chains=2"]),
    "mrp_primer": (ROOT / "examples" / "mrp_primer" / "primer.toml",
                   ["fit.draws=200", "fit.tune=200", "fit.chains=2"]),
}


def numbers(name: str, out: Path) -> pd.DataFrame:
    spec, overrides = CASES[name]
    if not (ROOT / "examples" / "ab_click" / "clicks.csv").exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "ab_click" / "generate.py")], check=True)
    result = mrp_formula.run(spec, out=out, overrides=overrides, cache=False)
    table = result.estimands
    labels = [c for c in ("estimand", *result.manifest.get("group_columns", ()), "scale") if c in table.columns]
    labels += [c for c in table.columns if c not in labels and c not in NUMBERS and pd.api.types.is_string_dtype(table[c])
               and c not in ("ci_kind", "expected_loss_unit", "first", "second")]
    return table[labels + NUMBERS].reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_numbers_as_recorded(name, tmp_path):
    now = numbers(name, tmp_path / "run")
    before = pd.read_csv(GOLDEN / f"{name}.csv", keep_default_na=False)
    assert list(now.columns) == list(before.columns)
    for col in now.columns:
        if col in NUMBERS:
            np.testing.assert_allclose(now[col].to_numpy(float), before[col].to_numpy(float), rtol=1e-9,
                                       err_msg=f"{name}: {col} moved")
        else:
            assert now[col].fillna("").astype(str).tolist() == before[col].fillna("").astype(str).tolist(), f"{name}: {col}"


if __name__ == "__main__":  # record the numbers (only when a change is meant to move them)
    import tempfile

    GOLDEN.mkdir(exist_ok=True)
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            numbers(case, Path(d) / "run").to_csv(GOLDEN / f"{case}.csv", index=False, float_format="%.17g")
            print("recorded", case)
