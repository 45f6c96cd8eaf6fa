"""The MRP primer by spec alone (Kastellec, Lax & Phillips), on the data shipped with the example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mrp_formula

pytestmark = pytest.mark.slow  # every test here samples

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "mrp_primer" / "primer.toml"
DATA = SPEC.parent / "data"


@pytest.fixture(scope="module")
def primer(tmp_path_factory):
    out = tmp_path_factory.mktemp("primer")
    return mrp_formula.run(SPEC, out=out / "run", overrides=["fit.draws=300", "fit.tune=300", "fit.chains=2"])


def test_all_51_states_with_ak_and_hi_flagged(primer):
    states = primer.estimands[primer.estimands.estimand == "support"]
    assert len(states) == 51 and states["state"].nunique() == 51
    assert primer.manifest["new_levels"]["state"] == ["AK", "HI"]
    assert any("AK, HI" in n and "no sample" in n for n in primer.notes)
    assert primer.manifest["tables"]["sample_rows_used"] == 6341  # complete cases, as in SOURCES.md


def test_converges_with_the_mass_matrix_chosen_from_the_data(primer):
    """The well-informed terms (age, edu, region, poll: median information per level 218-396) lean
    to the centred form (partial, centring weight over one half), the states (23) are non-centred,
    and the mass matrix is low-rank (with every term non-centred, a low-rank one once left a chain
    stuck here, R-hat 1.67), and the chains agree on the estimands."""
    m = primer.manifest
    param, weight = m["model"]["parameterization"], m["model"]["centring_weight"]
    assert param["1|state"] == "noncentered"
    assert all(param[t] == "partial" and weight[t] > 0.5 for t in ("1|age", "1|edu", "1|region", "1|poll"))
    assert m["sampler"]["mass_matrix"] == "low_rank"
    assert primer.diagnostics.estimand_max_rhat < 1.05
    assert primer.diagnostics.divergences <= 5


def test_estimates_in_line_with_the_data(primer):
    table = primer.estimands
    national = table[table.estimand == "national"].iloc[0]
    assert 0.28 < national["mean"] < 0.42  # support for same-sex marriage in 2004-05 polls
    # States with many respondents: the MRP estimate follows the state's raw share closely.
    raw = pd.read_csv(DATA / "gay_marriage_megapoll.csv").dropna(subset=["yes_of_all", "state"])
    by_state = raw.groupby("state")["yes_of_all"].agg(["mean", "size"])
    big = by_state[by_state["size"] >= 150]
    est = table[table.estimand == "support"].set_index("state")["mean"].reindex(big.index)
    assert np.corrcoef(est, big["mean"])[0, 1] > 0.8
    s = table[table.estimand == "support"].set_index("state")["mean"]
    assert s["MA"] > s["AL"] and s["NY"] > s["MS"] and s["VT"] > s["UT"]
    # new levels get the widest intervals of the non-tiny states
    width = table[table.estimand == "support"].set_index("state").eval("upper - lower")
    assert width["AK"] > width.median() and width["HI"] > width.median()
