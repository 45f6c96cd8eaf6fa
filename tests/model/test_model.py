"""The model step: fitting on cells gives the row-level posterior; chunked prediction is exact."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

import mrp_formula
from mrp_formula.spec.formula import describe
from mrp_formula.model.plan import aggregate_cells

FAST = ["fit.draws=500", "fit.tune=500", "fit.chains=2"]


def test_aggregate_cells_sums_successes_and_trials():
    sample = pd.DataFrame({"y": [1, 0, 1, 1, 0], "arm": list("aabbb"), "w": [1, 2, 1, 1, 3]})
    info = describe("y ~ arm")
    cells, agg = aggregate_cells(sample, info, "bernoulli", force=True)
    assert agg and cells[["mrp_successes", "mrp_trials"]].values.tolist() == [[1, 2], [2, 3]]
    weighted, _ = aggregate_cells(sample, info, "bernoulli", weights="w", force=True)
    assert weighted[["mrp_successes", "mrp_trials"]].values.tolist() == [[1, 3], [2, 5]]


@pytest.mark.slow
def test_cells_fit_equals_row_fit_within_monte_carlo_error(ab_dir):
    cells = mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "cells", overrides=FAST, cache=False)
    rows = mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "rows", cache=False,
                           overrides=FAST + ['model.aggregate="never"'])
    assert cells.manifest["model"]["aggregated"] and cells.manifest["model"]["cells_fitted"] == 4
    assert not rows.manifest["model"]["aggregated"] and rows.manifest["model"]["cells_fitted"] == 2000
    a, b = cells.estimands, rows.estimands
    # Monte Carlo standard error of each mean is sd / sqrt(ESS); the two fits are independent.
    mcse = np.sqrt((a["sd"] ** 2 / a["ess_bulk"]) + (b["sd"] ** 2 / b["ess_bulk"]))
    z = (a["mean"] - b["mean"]).abs() / mcse
    assert (z < 4).all(), pd.DataFrame({"cells": a["mean"], "rows": b["mean"], "z": z})
    sd_ratio = a["sd"] / b["sd"]
    assert ((sd_ratio > 0.8) & (sd_ratio < 1.25)).all(), sd_ratio


@pytest.mark.slow
def test_chunked_prediction_equals_one_block(ab_dir):
    one = mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "one", overrides=FAST)
    tiny = mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "tiny", overrides=FAST, block=1)  # one cell a chunk
    assert tiny.manifest["fit_cache"]["reused"]
    np.testing.assert_array_equal(one.draws["value"].to_numpy(), tiny.draws["value"].to_numpy())


def test_duckdb_collapsed_read_equals_pandas_read(ab_dir):
    from mrp_formula.steps import spec_checks as _spec_checks
    from mrp_formula.spec.tree import load_spec
    from mrp_formula.data.tables import prepare

    loaded = load_spec(ab_dir / "ab.toml")
    collapsed = prepare(loaded, _spec_checks(loaded))
    plain_loaded = load_spec(ab_dir / "ab.toml", ['model.aggregate="never"'])
    plain = prepare(plain_loaded, _spec_checks(plain_loaded))
    assert collapsed.weights == "mrp_rows" and plain.weights is None
    assert collapsed.stats["sample_rows_used"] == plain.stats["sample_rows_used"] == 2000
    got = collapsed.sample.groupby(["treatment", "gender"], observed=True).apply(
        lambda d: (d["clicked"] * d["mrp_rows"]).sum() / d["mrp_rows"].sum())
    want = plain.sample.groupby(["treatment", "gender"], observed=True)["clicked"].mean()
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)


@pytest.mark.parametrize("setting, sampler, info, expected", [
    ("auto", "nutpie", {"1|age": 40.0, "1|region": 3.0}, "diagonal"),  # thin data: diagonal
    ("auto", "nutpie", {"1|age": 2400.0, "1|region": 30.0}, "low_rank"),  # cells hold a lot of data
    ("auto", "nutpie", {}, "diagonal"),  # no group terms
    ("diagonal", "nutpie", {"1|age": 1e6}, "diagonal"),  # the spec decides
    ("low_rank", "nutpie", {"1|age": 1.0}, "low_rank"),
    ("low_rank", "pymc", {"1|age": 1e6}, "diagonal"),  # only nutpie has a low-rank mass matrix
])
def test_mass_matrix_choice(setting, sampler, info, expected):
    from mrp_formula.model.plan import choose_mass_matrix

    choice, reason = choose_mass_matrix(setting, sampler, info)
    assert choice == expected and reason


@pytest.mark.parametrize("setting, expected", [
    # from the information per level: centred, partial between, non-centred
    ("auto", {"1|age": "centered", "1|state": "partial", "1|region": "noncentered"}),
    ("noncentered", {"1|age": "noncentered", "1|state": "noncentered", "1|region": "noncentered"}),  # every term
    ({"1|region": "centered"}, {"1|age": "centered", "1|state": "partial", "1|region": "centered"}),  # the rest auto
    ({"1|age": "noncentered", "1|region": "auto"}, {"1|age": "noncentered", "1|state": "partial",
                                                    "1|region": "noncentered"}),
])
def test_parameterization_choice(setting, expected):
    from mrp_formula.model.plan import choose_parameterization

    info = describe("y ~ x + (1|age) + (1|state) + (1|region)")
    choice, reason = choose_parameterization(info, setting, {"1|age": 4000.0, "1|state": 300.0, "1|region": 15.0})
    assert choice == expected
    for term, why in reason.items():
        set_here = setting != "auto" and (isinstance(setting, str) or setting.get(term, "auto") != "auto")
        assert why == "set in model.parameterization" if set_here else "median information per level" in why
    if setting == "auto":
        assert reason["1|state"] == "centring weight 0.60 = I / (I + 200), I = 300, the median information per level"


@pytest.mark.parametrize("information, weight, choice", [
    (0.0, 0.0, "noncentered"),
    (23.0, 0.1, "noncentered"),  # w = 0.103, to two decimals 0.10: the non-centred form
    (25.0, 0.11, "partial"),
    (200.0, 0.5, "partial"),  # where the binary rule switches, half way
    (1700.0, 0.89, "partial"),
    (1800.0, 0.9, "centered"),
    (1e7, 1.0, "centered"),
])
def test_centring_weight(information, weight, choice):
    """w = I / (I + 200), to two decimals, between the two forms; each form where w is 0.1 or less
    from it."""
    from mrp_formula.model.plan import centring_weight, choose_parameterization

    assert centring_weight(information) == weight
    got, _ = choose_parameterization(describe("y ~ (1|g)"), "auto", {"1|g": information})
    assert got == {"1|g": choice}


def test_a_slope_is_never_partial():
    """Only group intercepts are built partially non-centred: a slope keeps the binary rule."""
    from mrp_formula.model.plan import choose_parameterization

    got, _ = choose_parameterization(describe("y ~ x + (x|g)"), "auto", {"1|g": 300.0, "x|g": 300.0})
    assert got == {"1|g": "partial", "x|g": "centered"}


def test_a_term_set_in_the_spec_is_fitted_so(ab_dir):
    """`parameterization = { "1|gender" = ... }` reaches the plan and the model Bambi builds (the
    terms not named keeping their choice from the data is `test_parameterization_choice`'s)."""
    from mrp_formula.steps import plan_and_model

    auto, _ = plan_and_model(ab_dir / "ab.toml")
    for value in ("centered", "noncentered"):
        plan, built = plan_and_model(ab_dir / "ab.toml", [f'model.parameterization={{ "1|gender" = "{value}" }}'])
        fp = plan.fit_plan
        assert fp.parameterization["1|gender"] == value
        assert fp.parameterization_reason["1|gender"] == "set in model.parameterization"
        assert {t: c for t, c in fp.parameterization.items() if t != "1|gender"} == \
            {t: c for t, c in auto.fit_plan.parameterization.items() if t != "1|gender"}
        term = built.parameters[built.family.likelihood.parent].group_specific_terms["1|gender"]
        assert term.prior.noncentered is (value == "noncentered")


def test_a_centring_weight_set_in_the_spec_is_fitted_so(ab_dir):
    """`parameterization = { "1|gender" = 0.3 }` builds the partially non-centred form with that
    weight (the offset's prior sd is sd ** 0.3), says so in the plan's reasons, and another weight
    is another fit and another compiled model."""
    import pymc as pm

    from mrp_formula.model.cache import fit_key, model_key
    from mrp_formula.model.plan import versions
    from mrp_formula.steps import plan_and_model

    keys = set()
    for w in (0.3, 0.4):
        plan, built = plan_and_model(ab_dir / "ab.toml", [f'model.parameterization={{ "1|gender" = {w} }}'])
        fp = plan.fit_plan
        assert fp.parameterization["1|gender"] == "partial" and fp.centring == {"1|gender": w}
        assert fp.parameterization_reason["1|gender"] == f"centring weight {w} set in model.parameterization"
        keys |= {fit_key(plan, versions()), model_key(plan, versions())}
    built.build()
    with built.backend.model:
        prior = pm.sample_prior_predictive(draws=4000, random_seed=3,
                                           var_names=["1|gender_sigma", "1|gender_offset"])["prior"]
    z = (prior["1|gender_offset"].to_numpy() / prior["1|gender_sigma"].to_numpy()[..., None] ** 0.4).ravel()
    assert abs(z.mean()) < 0.04 and abs(z.std() - 1) < 0.04  # n = 8,000: the sd's standard error is under 0.008
    assert len(keys) == 4


@pytest.mark.parametrize("w", [0.3, 0.7])
def test_partial_effects_have_the_terms_prior(ab_dir, w):
    """A partially non-centred term (``FitPlan.centring``) is built as Bambi's non-centred names,
    ``offset ~ N(0, sd ** w)`` and effects ``sd ** (1 - w) * offset``: its effects are N(0, sd)
    whatever w (draws from the built model's prior: effect / sd is standard normal)."""
    from dataclasses import replace

    import pymc as pm

    from mrp_formula.model import sampler
    from mrp_formula.steps import plan as make_plan

    p = make_plan(ab_dir / "ab.toml")
    fp = replace(p.fit_plan, parameterization={**p.fit_plan.parameterization, "1|gender": "partial"},
                 centring={"1|gender": w})
    built = sampler.build_model(p.loaded, p.info, fp)
    built.build()
    model = built.backend.model
    assert {"1|gender_offset", "1|gender_sigma"} <= {v.name for v in model.free_RVs}
    with model:
        drawn = pm.sample_prior_predictive(draws=4000, random_seed=7, var_names=["1|gender", "1|gender_sigma",
                                                                              "1|gender_offset"])
    prior = drawn["prior"]
    sd = prior["1|gender_sigma"].to_numpy()[..., None]
    z_effect = (prior["1|gender"].to_numpy() / sd).ravel()
    z_offset = (prior["1|gender_offset"].to_numpy() / sd ** w).ravel()
    for z in (z_effect, z_offset):  # n >= 8,000: the sd's standard error is under 0.008
        assert abs(z.mean()) < 0.04 and abs(z.std() - 1) < 0.04


def test_a_partial_choice_the_sampler_cannot_build_goes_back_to_the_binary_rule():
    """Only a Normal(0, sd) group intercept with a prior on its sd is built partially: a term whose
    prior is another distribution keeps the binary rule (and says so)."""
    from mrp_formula.model.plan import Dist, TermPrior, choose_parameterization, partial_centring

    info = describe("y ~ (1|g) + (1|h)")
    by_term = {"1|g": 300.0, "1|h": 300.0}
    param, reason = choose_parameterization(info, "auto", by_term)
    sd = Dist("HalfNormal", (("sigma", 1.0),))
    priors = (TermPrior("1|g", "group", Dist("Normal", (("mu", 0.0), ("sigma", sd))), "default"),
              TermPrior("1|h", "group", Dist("StudentT", (("nu", 4.0), ("mu", 0.0), ("sigma", sd))), "spec"))
    assert partial_centring("bernoulli", priors, param, reason, by_term) == {"1|g": 0.6}
    assert param == {"1|g": "partial", "1|h": "centered"}
    assert reason["1|h"] == "median information per level 300 >= 200"
