"""Calibration to known totals (issue 14, item 4): the shift per draw and level makes the
poststratified mean equal the known value, through the explicit arithmetic and through the
chunked fast sums of a cell predictor; the shifts do not depend on the row order or the chunk
size; every estimand is computed from the shifted predictions. No case samples."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from _calibration_sim import made_up_posterior
from mrp_formula.data.population import WEIGHT
from mrp_formula.poststrat import calibrate as cal_mod
from mrp_formula.poststrat.calibrate import means_of_cells, solve_shifts
from mrp_formula.poststrat.sums import Request, Scenario, poststratify
from mrp_formula.predict import cells as predict_mod
from mrp_formula.predict.cells import LINKINV, CellPredictor, design
from mrp_formula.steps import estimate
from mrp_formula.steps import plan as prepared_plan
from _survey import survey_frames

LINKS = ["logit", "probit", "log", "identity"]


@st.composite
def problems(draw):
    link = draw(st.sampled_from(LINKS))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    S, n, L = draw(st.integers(1, 8)), draw(st.integers(1, 80)), draw(st.integers(1, 6))
    spread = draw(st.sampled_from([0.1, 1.0, 4.0]))
    eta = rng.normal(draw(st.floats(-3, 3)), spread, (S, n))
    weights = rng.choice([1e-3, 1.0, 50.0, 1e6], n) * (0.5 + rng.random(n))
    level = rng.integers(0, L, n)
    L = int(level.max()) + 1
    present = np.unique(level)
    if link in ("logit", "probit"):
        known = rng.uniform(0.002, 0.998, L)
    elif link == "log":
        known = np.exp(rng.normal(0, 2, L))
    else:
        known = rng.normal(0, 5, L)
    return link, eta, weights, level, L, known, present


@settings(max_examples=150, deadline=None)
@given(problems())
def test_shifted_means_equal_the_known_values_per_draw(problem):
    link, eta, weights, level, L, known, present = problem
    means = means_of_cells(eta, weights, level, L, link)
    with np.errstate(invalid="ignore", divide="ignore"):  # levels without cells have no mean
        shift, m0, passes, _, _ = solve_shifts(means, known, link, (eta.shape[0], L))
        got, _ = means(shift)
    np.testing.assert_allclose(got[:, present], np.broadcast_to(known, got.shape)[:, present], rtol=0, atol=1e-9)
    assert passes <= 60
    # the uncalibrated mean is the poststratified mean of the unshifted predictions
    p = LINKINV[link](eta)
    for j in present:
        w = weights * (level == j)
        np.testing.assert_allclose(m0[:, j], p @ w / w.sum(), rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(0, 2**31 - 1))
def test_shifts_do_not_depend_on_cell_order(problem, perm_seed):
    link, eta, weights, level, L, known, present = problem
    perm = np.random.default_rng(perm_seed).permutation(eta.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        a = solve_shifts(means_of_cells(eta, weights, level, L, link), known, link, (eta.shape[0], L))[0]
        b = solve_shifts(means_of_cells(eta[:, perm], weights[perm], level[perm], L, link), known, link,
                         (eta.shape[0], L))[0]
    np.testing.assert_allclose(a[:, present], b[:, present], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("known", [1e-15, 1e-9, 1 - 1e-9])
def test_a_known_share_near_0_or_1_is_met_relative_to_its_room(known):
    """An absolute 1e-10 met a known share of 1e-15 with 4.6e-16 (the audit); the tolerance is
    relative to the known value's distance from 0 or 1."""
    eta = np.array([[-3.0, -2.0], [-1.0, -4.0]])
    w, lev = np.array([1.0, 3.0]), np.array([0, 0])
    means = means_of_cells(eta, w, lev, 1, "logit")
    shift, _, _, err, rel = solve_shifts(means, np.array([known]), "logit", (2, 1))
    got, _ = means(shift)
    np.testing.assert_allclose(got, known, rtol=1e-9)
    assert rel <= 1e-10 and err <= 1e-10 * min(known, 1 - known) + 8 * np.finfo(float).eps


def test_closed_forms_and_one_cell_per_level():
    eta = np.array([[0.3, -1.0], [2.0, 0.5]])
    w, lev = np.array([1.0, 3.0]), np.array([0, 1])
    known = np.array([0.2, 0.9])
    for link, expect in (("identity", known - eta), ("log", np.log(known) - eta),
                         ("logit", np.log(known / (1 - known)) - eta)):
        shift, *_ = solve_shifts(means_of_cells(eta, w, lev, 2, link), known, link, (2, 2))
        np.testing.assert_allclose(shift, expect, atol=1e-9)


# ----------------------------------------------------------------------------- through the predictor


CASES = {
    "bernoulli, logit": ("bernoulli", None, "y ~ treatment*gender + x + (1|age) + (1|region)", (0.05, 0.95)),
    "bernoulli, probit": ("bernoulli", "probit", "y ~ treatment + x + (1|region)", (0.05, 0.95)),
    "poisson, log": ("poisson", None, "count ~ treatment + (1|region) + (x|age)", (0.5, 6.0)),
    "gaussian, identity": ("gaussian", None, "score ~ treatment + (treatment|age) + (1|region)", (-2.0, 2.0)),
}


def _frames(seed=11, n_sample=300, n_pop=1500):  # one region the sample lacks
    return survey_frames(np.random.default_rng(seed), n_sample=n_sample, n_pop=n_pop, sample_regions=8,
                         pop_regions=9)


@pytest.fixture(scope="module")
def small_blocks():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predict_mod, "MICRO_BLOCK", 16 * 40)
        mp.setattr(predict_mod, "BLOCKS_PER_TASK", 3)
        yield


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory, small_blocks):
    family, link, formula, span = CASES[request.param]
    d = tmp_path_factory.mktemp("calibrate")
    sample, pop = _frames()
    sample.to_csv(d / "sample.csv", index=False)
    pop.to_csv(d / "pop.csv", index=False)
    regions = sorted(pop.region.unique())
    known = np.random.default_rng(2).uniform(*span, len(regions))
    pd.DataFrame({"region": regions, "mean": known}).to_csv(d / "known.csv", index=False)
    (d / "spec.toml").write_text(textwrap.dedent(f"""
        name = "calibrate"
        [data]
        source = "sample.csv"
        [model]
        formula = "{formula}"
        family = "{family}"
        {f'link = "{link}"' if link else ""}
        [population]
        source = "pop.csv"
        weight = "N"
        [calibrate]
        by = "region"
        source = "known.csv"
        column = "mean"
        [estimands.by_region]
        by = ["region"]
        [estimands.overall]
        [estimands.lift]
        contrast = {{ treatment = ["treatment", "control"] }}
        by = ["age"]
        [estimands.all_treated]
        at = {{ treatment = ["treatment"], region = ["r1"] }}
        """))
    plan = prepared_plan(d / "spec.toml")
    fp = plan.fit_plan
    dsg = design(fp.data, fp.formula, fp.family, plan.loaded.spec.model.link)
    posterior = made_up_posterior(dsg, n_draws=20)
    return plan, dsg, posterior


def _predictor(case, threads=1):
    plan, dsg, posterior = case
    return CellPredictor(dsg, posterior, plan.tables, plan.info, seed=3, threads=threads)


def test_calibrated_totals_equal_the_known_values_per_draw(case):
    plan, _, _ = case
    pr = _predictor(case)
    assert pr.fast and pr.sum_unit() == 48
    cal = cal_mod.calibrate(pr, plan.tables.population, plan.targets, block=4 * 48 * 40)
    shifted = pr.with_offset(cal.by, cal.levels, cal.shift)
    req = Request(Scenario(), ("region",))
    red = poststratify(plan.tables.population, shifted, [req], n_samples=pr.n_samples)[req]
    assert list(red.groups.region) == list(cal.levels)
    np.testing.assert_allclose(red.values, np.broadcast_to(plan.targets.values, red.values.shape), atol=1e-9)
    # the fast sums agree with the explicit arithmetic on the predictor's own linear predictor
    pop = plan.tables.population
    eta = pr.linear_predictor(pop)[:, :, 0]
    level = pop.region.map({lv: j for j, lv in enumerate(cal.levels)}).to_numpy()
    with np.errstate(all="ignore"):
        want = solve_shifts(means_of_cells(eta, pop[WEIGHT].to_numpy(float), level, len(cal.levels),
                                           plan.targets.link), plan.targets.values, plan.targets.link,
                            cal.shift.shape)[0]
    np.testing.assert_allclose(cal.shift, want, atol=1e-8)
    # and the shifted plain prediction is the fitted one plus the shift
    p = shifted.predict(pop.iloc[:50])
    np.testing.assert_allclose(p, LINKINV[plan.targets.link](eta[:, :50] + cal.shift[:, level[:50]]), rtol=1e-12)


@pytest.mark.slow  # a sweep over thread pools and chunk sizes (seconds each)
@settings(max_examples=2, deadline=None)
@given(block_cells=st.integers(1, 700), threads=st.integers(1, 3), perm_seed=st.integers(0, 2**31 - 1))
def test_shifts_do_not_depend_on_chunks_threads_or_row_order(case, block_cells, threads, perm_seed):
    plan, _, _ = case
    pop = plan.tables.population
    base = cal_mod.calibrate(_predictor(case), pop, plan.targets)
    shuffled = pop.sample(frac=1, random_state=perm_seed).reset_index(drop=True)
    got = cal_mod.calibrate(_predictor(case, threads), shuffled, plan.targets, block=block_cells * 30)
    np.testing.assert_array_equal(base.shift, got.shift)  # bit for bit
    np.testing.assert_array_equal(base.uncalibrated, got.uncalibrated)


def test_every_estimand_comes_from_the_shifted_predictions(case):
    plan, dsg, posterior = case
    est = estimate(plan, posterior, block=5000)
    cal = est.calibration
    assert cal is not None and cal.shift.shape == (40, 9)
    rows = est.table.set_index(["estimand", "region"], drop=False)
    by_region = est.table[est.table.estimand == "by_region"].set_index("region")["mean"]
    np.testing.assert_allclose(by_region.loc[list(cal.levels)].to_numpy(), plan.targets.values, atol=1e-9)
    pop = plan.tables.population
    overall = (pop.groupby("region")[WEIGHT].sum().loc[list(cal.levels)].to_numpy() @ plan.targets.values
               / pop[WEIGHT].sum())
    np.testing.assert_allclose(rows[rows.estimand == "overall"]["mean"].iloc[0], overall, rtol=1e-9)
    # a counterfactual keeps each cell's own shift (its population level), also where `at` sets region
    pr = est.predictor.with_offset(cal.by, cal.levels, cal.shift)
    level = pop.region.map({lv: j for j, lv in enumerate(cal.levels)}).to_numpy()
    cf = pop.assign(treatment="treatment", region="r1")
    eta = est.predictor.linear_predictor(cf)[:, :, 0] + cal.shift[:, level]
    want = LINKINV[plan.targets.link](eta) @ pop[WEIGHT].to_numpy(float) / pop[WEIGHT].sum()
    got = est.draws.draws[list(est.draws.rows.estimand).index("all_treated")]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    del pr
    # without calibration the same posterior gives the uncalibrated means
    plain = estimate(plan, posterior, calibrate=False)
    assert plain.calibration is None
    by_region_plain = plain.table[plain.table.estimand == "by_region"].set_index("region")["mean"]
    np.testing.assert_allclose(by_region_plain.loc[list(cal.levels)].to_numpy(), cal.uncalibrated.mean(axis=0),
                               rtol=1e-9)


def test_estimands_the_calibration_fixes_are_named():
    import numpy as np
    import pandas as pd

    from mrp_formula.poststrat.calibrate import fixed_estimands

    table = pd.DataFrame({"estimand": ["overall", "by_state", "by_state"], "state": [None, "s01", "s02"],
                          "mean": [0.398, 0.3, 0.5], "sd": [4.8e-12, 0.02, 1e-13],
                          "ess_bulk": [np.nan, 800.0, np.nan]})
    (note,) = fixed_estimands(table, ["state"])
    assert note.code == "calibrate.fixed" and "overall, by_state s02 are fixed by" in note
    assert fixed_estimands(table.iloc[[1]], ["state"]) == []
