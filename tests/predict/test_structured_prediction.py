"""Prediction reads a structured term's effects for every level, those without sample included
(no sampling: a posterior made by hand)."""

import numpy as np
import pandas as pd
import xarray as xr

from mrp_formula import steps

SPEC = '''
name = "st"
[data]
source = "sample.csv"
[model]
formula = "y ~ (1|age)"
family = "bernoulli"
structure = { age = "rw1" }
[population]
source = "pop.csv"
weight = "n"
[estimands.by_age]
by = ["age"]
'''


def test_levels_without_sample_take_the_structured_effect(tmp_path):
    sample_levels = ["1", "2", "3", "5"]  # 4 has no sample
    pd.DataFrame({"y": [0, 1] * 4, "age": sample_levels * 2}).to_csv(tmp_path / "sample.csv", index=False)
    pd.DataFrame({"age": [1, 2, 3, 4, 5], "n": [1.0] * 5}).to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "spec.toml").write_text(SPEC)
    plan = steps.plan(tmp_path / "spec.toml")
    (sp,) = plan.fit_plan.structures
    assert sp.levels == ("1", "2", "3", "4", "5")
    rng = np.random.default_rng(0)
    chains, draws = 2, 7
    intercept = rng.normal(size=(chains, draws))
    full = rng.normal(size=(chains, draws, 5))
    pos = [sp.levels.index(lv) for lv in sample_levels]
    post = xr.Dataset({
        "Intercept": (("chain", "draw"), intercept),
        "1|age_sigma": (("chain", "draw"), np.abs(rng.normal(size=(chains, draws)))),
        "1|age": (("chain", "draw", "1|age__factor_dim"), full[:, :, pos]),
        "1|age_structured": (("chain", "draw", "1|age__structured_dim"), full),
    }, coords={"chain": range(chains), "draw": range(draws), "1|age__factor_dim": sample_levels,
               "1|age__structured_dim": list(sp.levels)})
    tree = xr.DataTree.from_dict({"posterior": post})
    est = steps.estimate(plan, tree)
    by_age = est.table.set_index("age")["mean"]
    for i, lv in enumerate(sp.levels):
        expected = np.mean(1 / (1 + np.exp(-(intercept + full[:, :, i]))))
        assert np.isclose(by_age[lv], expected, rtol=1e-10), lv
