"""Structured priors end to end: spec -> fit -> prediction of levels without sample -> estimands."""

import numpy as np
import pandas as pd
import pytest

from mrp_formula import steps

SPEC = '''
name = "structured"
[data]
source = "sample.csv"
[model]
formula = "y ~ (1|{var})"
family = "bernoulli"
structure = {{ {var} = {structure} }}
[fit]
draws = 200
tune = 200
chains = 2
seed = 3
[population]
source = "pop.csv"
weight = "n"
[estimands.by]
by = ["{var}"]
'''


def _fit(tmp_path, var, structure, truth: dict, n_per: dict, adjacency=None):
    rng = np.random.default_rng(11)
    rows = []
    for lv, n in n_per.items():
        p = 1 / (1 + np.exp(-truth[lv]))
        rows += [(int(y), lv) for y in rng.random(n) < p]
    pd.DataFrame(rows, columns=["y", var]).to_csv(tmp_path / "sample.csv", index=False)
    pd.DataFrame({var: list(truth), "n": 1.0}).to_csv(tmp_path / "pop.csv", index=False)
    if adjacency:
        (tmp_path / "adj.csv").write_text(adjacency)
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(var=var, structure=structure))
    plan = steps.plan(path)
    fitted = steps.posterior(plan, [tmp_path / "cache"], cache=False)
    est = steps.estimate(plan, fitted.fit.posterior)
    table = est.table.set_index(var)
    return plan, fitted.fit.posterior["posterior"], table


@pytest.mark.slow
def test_rw1_interpolates_a_level_without_sample_and_recovers_a_smooth_effect(tmp_path):
    levels = [str(k) for k in range(1, 13)]
    truth = {lv: float(1.2 * np.sin(k / 12 * 3.0) - 0.6) for k, lv in enumerate(levels, 1)}
    n_per = {lv: 30 for lv in levels if lv != "6"}
    plan, post, table = _fit(tmp_path, "age", '"rw1"', truth, n_per)
    full = post["1|age_structured"]
    assert list(full.coords["1|age__structured_dim"].values) == levels
    np.testing.assert_allclose(full.sum("1|age__structured_dim"), 0.0, atol=1e-9)  # sum to zero
    sampled = post["1|age"]  # Bambi's term over the sample's levels is the same effects
    (dim,) = [d for d in sampled.dims if d not in ("chain", "draw")]
    for lv in sampled.coords[dim].values:
        np.testing.assert_array_equal(sampled.sel({dim: lv}).values,
                                      full.sel({"1|age__structured_dim": str(lv)}).values)
    mean, sd = table["mean"], (table["upper"] - table["lower"]) / 4
    # level 6 has no respondents: its estimate sits between its neighbours', within its own sd
    assert abs(mean["6"] - (mean["5"] + mean["7"]) / 2) < sd["6"]
    true_p = {lv: 1 / (1 + np.exp(-t)) for lv, t in truth.items()}
    covered = sum(table.loc[lv, "lower"] <= true_p[lv] <= table.loc[lv, "upper"] for lv in levels)
    assert covered >= 10, table
    # the comparison of Gao et al. in small: iid pulls the band without sample (at the peak of the
    # effect) to the overall mean, the walk interpolates it from its neighbours
    _, _, iid = _fit(tmp_path, "age", '"iid"', truth, n_per)
    assert abs(mean["6"] - true_p["6"]) < abs(iid.loc["6", "mean"] - true_p["6"]), (table, iid)


@pytest.mark.slow
def test_bym2_with_an_island_and_an_area_without_sample(tmp_path):
    # a chain a-b-c-d-e, e has no sample; the island z stands alone
    truth = {"a": -1.0, "b": -0.6, "c": -0.2, "d": 0.2, "e": 0.5, "z": 0.0}
    n_per = {"a": 40, "b": 40, "c": 40, "d": 40, "z": 40}
    adjacency = "area,neighbour\na,b\nb,c\nc,d\nd,e\nz,\n"
    plan, post, table = _fit(tmp_path, "area", '{ kind = "bym2", adjacency = "adj.csv" }', truth, n_per, adjacency)
    (sp,) = plan.fit_plan.structures
    assert sp.islands == ("z",) and sp.n_components == 2
    assert {"1|area_rho", "1|area_sigma", "1|area_structured"} <= set(post.data_vars)
    assert set(post["1|area_structured"].coords["1|area__structured_dim"].values) == set(truth)
    mean = table["mean"]
    # e borrows from its neighbour d (the data rise along the chain), not only from the mean of all areas
    assert mean["e"] > mean[["a", "b", "c"]].mean()
    true_p = {lv: 1 / (1 + np.exp(-t)) for lv, t in truth.items()}
    assert sum(table.loc[lv, "lower"] <= true_p[lv] <= table.loc[lv, "upper"] for lv in truth) >= 5, table
