"""`joint = "rake"` starts from the sample's joint distribution, counted in respondents, however
the sample was read (rows collapsed by DuckDB, frequency weights, or row by row)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrp_formula.commands.check import check
from mrp_formula.data.population import WEIGHT

# Respondents per (a, b): strongly associated, cross-product ratio (300 * 150) / (100 * 50) = 9.
COUNTS = {("x", "u"): 300, ("x", "v"): 100, ("y", "u"): 50, ("y", "v"): 150}

SPEC = """
name = "rake"
[data]
source = "{source}"
{weights}
[model]
formula = "y ~ (1|a) + (1|b)"
family = "bernoulli"
aggregate = "{aggregate}"
[population]
joint = "rake"
[population.margins]
a = {{ x = 0.5, y = 0.5 }}
b = {{ u = 0.5, v = 0.5 }}
[estimands.all]
"""


def _rows() -> pd.DataFrame:
    rows = []
    for (a, b), n in COUNTS.items():
        ones = n // 3  # both outcomes occur in every cell
        rows += [{"a": a, "b": b, "y": 1}] * ones + [{"a": a, "b": b, "y": 0}] * (n - ones)
    return pd.DataFrame(rows)


def _joint(write, tmp_path, *, aggregate="auto", weighted=False) -> dict:
    df = _rows()
    weights = ""
    if weighted:
        df = df.groupby(["a", "b", "y"]).size().rename("n").reset_index()
        weights = 'weights = "n"'
    df.to_csv(tmp_path / "sample.csv", index=False)
    spec = write("rake.toml", SPEC.format(source="sample.csv", weights=weights, aggregate=aggregate))
    pop = check(spec).tables.population
    return {(r.a, r.b): r[WEIGHT] for _, r in pop.iterrows()}


@pytest.mark.parametrize("how", [{"aggregate": "auto"}, {"aggregate": "never"}, {"weighted": True}],
                         ids=["collapsed-by-duckdb", "row-by-row", "frequency-weights"])
def test_rake_keeps_the_sample_association(write, tmp_path, how):
    """Raking keeps the seed's cross-product ratio (9) while matching the margins (0.5 each), so
    the cells are p, 0.5 - p, 0.5 - p, p with p / (0.5 - p) = 3: p = 0.375."""
    joint = _joint(write, tmp_path, **how)
    total = sum(joint.values())
    shares = {k: v / total for k, v in joint.items()}
    expected = {("x", "u"): 0.375, ("x", "v"): 0.125, ("y", "u"): 0.125, ("y", "v"): 0.375}
    assert shares.keys() == expected.keys()
    for cell, p in expected.items():
        assert shares[cell] == pytest.approx(p, abs=1e-8), (cell, shares)
    ratio = shares["x", "u"] * shares["y", "v"] / (shares["x", "v"] * shares["y", "u"])
    assert np.isclose(ratio, 9.0)
