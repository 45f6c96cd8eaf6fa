"""Predicting from the posterior: the design built without Bambi is Bambi's, and the fast
weighted sums (tables of per-draw values, products for logit/log links, micro-blocks on threads)
equal the plain computation (predict every cell, then sum) for every kind of term.

Posteriors here are made-up draws with the shapes and names Bambi gives them, so every case
runs in milliseconds; the fitted cases are in test_end_to_end and test_families.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.steps import plan as prepared_plan
from mrp_formula.poststrat.sums import poststratify
from mrp_formula.predict.cells import CellPredictor, design
from _survey import survey_frames

RNG = np.random.default_rng(20261124)
N_SAMPLE, N_POP = 400, 3000


def _frames():
    """A sample and a population with discrete and continuous predictors and many regions (five
    regions the sample lacks)."""
    return survey_frames(RNG, n_sample=N_SAMPLE, n_pop=N_POP, sample_regions=40, pop_regions=45, digits=3)


CASES = {
    "logit, continuous common term, new levels": ("y", "bernoulli", None,
                                                  "y ~ treatment*gender + x + (1|age) + (1|region)"),
    "logit, discrete terms only": ("y", "bernoulli", None, "y ~ treatment + gender + (1|age) + (1|region)"),
    "log link, continuous slope": ("count", "poisson", None, "count ~ treatment + (1|region) + (x|age)"),
    "identity link, categorical slope": ("score", "gaussian", None, "score ~ treatment + (treatment|age) + (1|region)"),
    "probit link (plain inverse link)": ("y", "bernoulli", "probit", "y ~ treatment + x + (1|region)"),
    "interacted group factor": ("y", "bernoulli", None, "y ~ treatment + (1|age:gender) + (1|region)"),
    "cloglog link, continuous slope": ("y", "bernoulli", "cloglog", "y ~ treatment + (1|age) + (scale(x)|region)"),
    "log link, interacted slope factor": ("count", "poisson", None, "count ~ x + (treatment|age:gender) + (1|region)"),
}
ESTIMANDS = """
[estimands.rate]
at = { treatment = ["control", "treatment"] }
[estimands.lift_by_region]
contrast = { treatment = ["treatment", "control"] }
by = ["region"]
[estimands.by_age_gender]
by = ["age", "gender"]
[estimands.no_region]
at = { treatment = ["control"] }
exclude = ["1|region"]
"""


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    response, family, link, formula = CASES[request.param]
    d = tmp_path_factory.mktemp("predict")
    sample, pop = _frames()
    sample.to_csv(d / "sample.csv", index=False)
    pop.to_csv(d / "pop.csv", index=False)
    estimands = ESTIMANDS if "1|region" in formula else ESTIMANDS.replace('exclude = ["1|region"]', "")
    (d / "spec.toml").write_text(textwrap.dedent(f"""
        name = "predict"
        [data]
        source = "sample.csv"
        [model]
        formula = "{formula}"
        family = "{family}"
        {f'link = "{link}"' if link else ""}
        [population]
        source = "pop.csv"
        weight = "N"
        """) + estimands)
    plan = prepared_plan(d / "spec.toml")
    return plan


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Micro-blocks of 20 cells, 4 to a task: many blocks, tasks and group boundaries."""
    from mrp_formula.predict import cells as predict

    monkeypatch.setattr(predict, "MICRO_BLOCK", 2000)
    monkeypatch.setattr(predict, "BLOCKS_PER_TASK", 4)


def _posterior(dsg, n_chains=2, n_draws=50, scale=0.7, shift=None):
    """Draws named and shaped as Bambi names and shapes them."""
    rng = np.random.default_rng(5)
    data = {}
    for name, sl in dsg.common.slices.items():
        width = sl.stop - sl.start
        dims = ("chain", "draw") + ((f"{name}_dim",) if width > 1 else ())
        shape = (n_chains, n_draws) + ((width,) if width > 1 else ())
        data[name] = (dims, rng.normal(0, scale, shape) + (shift or {}).get(name, 0.0))
    for name, term in dsg.group.items():
        groups = [str(g) for g in term.groups]
        k = term.data.shape[1] // len(groups)
        fdim = f"{name.split('|')[1]}__factor_dim"
        dims = ("chain", "draw") + ((f"{name}__expr_dim",) if k > 1 else ()) + (fdim,)
        shape = (n_chains, n_draws) + ((k,) if k > 1 else ()) + (len(groups),)
        values = rng.normal(0, scale, shape) + (shift or {}).get(name, 0.0)
        data[name] = (dims, values)
        sd_dims = ("chain", "draw") + ((f"{name}__expr_dim",) if k > 1 else ())
        data[f"{name}_sigma"] = (sd_dims, np.abs(rng.normal(0.5, 0.1, shape[:-1])))
    coords = {f"{name.split('|')[1]}__factor_dim": [str(g) for g in term.groups] for name, term in dsg.group.items()}
    ds = xr.Dataset({k: xr.Variable(*v) for k, v in data.items()})
    return xr.DataTree.from_dict({"posterior": ds.assign_coords(coords)})


def _predictor(plan, threads=1, shift=None):
    fp = plan.fit_plan
    dsg = design(fp.data, fp.formula, fp.family, plan.loaded.spec.model.link)
    return CellPredictor(dsg, _posterior(dsg, shift=shift), plan.tables, plan.info, seed=3, threads=threads)


def _reduced(plan, predictor, block=None, n_samples=100):
    pieces = est_mod.plan(plan.loaded.spec.estimands, plan.tables.population_vars)
    kwargs = {"block": block} if block else {}
    return poststratify(plan.tables.population, predictor, est_mod.requests(pieces),
                        n_samples=n_samples, **kwargs)


def test_fast_weighted_sums_equal_predicting_every_cell(case):
    fast_predictor = _predictor(case)
    assert fast_predictor.fast
    assert len(case.tables.population) > 500
    fast = _reduced(case, fast_predictor)
    plain = _reduced(case, fast_predictor.predict)  # a plain callable: predict every cell, then sum
    assert fast.keys() == plain.keys()
    for req in fast:
        pd.testing.assert_frame_equal(fast[req].groups, plain[req].groups)
        np.testing.assert_allclose(fast[req].values, plain[req].values, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(fast[req].weight, plain[req].weight)


@pytest.mark.slow  # a sweep over thread pools and chunk sizes (seconds each)
def test_results_do_not_depend_on_threads_or_chunks(case):
    one = _reduced(case, _predictor(case, threads=1))
    two = _reduced(case, _predictor(case, threads=2))
    small_chunks = _reduced(case, _predictor(case, threads=2), block=20_000)
    for req in one:
        np.testing.assert_array_equal(one[req].values, two[req].values)  # bit for bit
        np.testing.assert_allclose(one[req].values, small_chunks[req].values, rtol=1e-12)


@pytest.fixture
def simple_plan(tmp_path):
    sample, pop = _frames()
    sample.to_csv(tmp_path / "sample.csv", index=False)
    pop.to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "spec.toml").write_text(textwrap.dedent("""
        name = "overflow"
        [data]
        source = "sample.csv"
        [model]
        formula = "y ~ treatment + (1|region)"
        family = "bernoulli"
        [population]
        source = "pop.csv"
        weight = "N"
        [estimands.rate]
        at = { treatment = ["control", "treatment"] }
        [estimands.by_region]
        by = ["region"]
        """))
    return prepared_plan(tmp_path / "spec.toml")


@pytest.mark.parametrize("shift", [
    {"Intercept": 800.0, "1|region": -800.0},  # exp(-800) * exp(800) = 0 * inf = nan
    {"Intercept": 740.0, "1|region": -760.0},  # a subnormal times inf = inf: p would be 0, truly 1
    {"Intercept": -800.0},  # p underflows to 0 for every cell (kept at EPS, as Bambi does)
    {"Intercept": 60.0},  # p rounds to 1 (kept at 1 - EPS)
])
def test_overflowing_products_are_redone_the_plain_way(simple_plan, shift):
    predictor = _predictor(simple_plan, threads=2, shift=shift)
    fast, plain = _reduced(simple_plan, predictor), _reduced(simple_plan, predictor.predict)
    for req in fast:
        assert np.isfinite(fast[req].values).all()
        np.testing.assert_allclose(fast[req].values, plain[req].values, rtol=1e-9, atol=0)


def test_one_cell_and_no_requests(simple_plan):
    predictor = _predictor(simple_plan)
    pieces = est_mod.plan(simple_plan.loaded.spec.estimands, simple_plan.tables.population_vars)
    one = simple_plan.tables.population.iloc[:1]
    fast = poststratify(one, predictor, est_mod.requests(pieces), n_samples=100)
    plain = poststratify(one, predictor.predict, est_mod.requests(pieces), n_samples=100)
    for req in fast:
        np.testing.assert_allclose(fast[req].values, plain[req].values, rtol=1e-12)
    assert poststratify(one, predictor, [], n_samples=100) == {}
    assert predictor.weighted_sums(one, np.ones(1), [], [], []) == []


def test_many_groups_keep_task_memory_small(simple_plan, monkeypatch):
    """A task returns sums only for the groups its cells touch, and cells are sorted by group, so
    the tasks' sums together hold about G rows, not G per task."""
    predictor = _predictor(simple_plan)
    seen = []
    real = predictor._run_task

    def spy(job, starts):
        touched, sums, redo = real(job, starts)
        seen.append(max(len(t) for t in touched.values()))  # the region grouping
        return touched, sums, redo

    monkeypatch.setattr(predictor, "_run_task", spy)
    _reduced(simple_plan, predictor)
    assert len(seen) > 1 and sum(seen) <= 45 + len(seen)  # 45 regions


@pytest.mark.parametrize("family, response, formula", [
    ("bernoulli", "y", "y ~ treatment*gender + scale(x) + (1|age) + (scale(x)|region) + (treatment|age:gender)"),
    ("poisson", "count", "count ~ C(age) + log1p(x ** 2) + (1|region)"),
    ("categorical", "age", "age ~ treatment + x + (1|region)"),
    ("cumulative", "age", "age ~ treatment + x + (1|region)"),
])
def test_design_is_the_one_bambi_builds(family, response, formula):
    """The prediction design is made without Bambi; on new cells it must give Bambi's matrices."""
    import bambi as bmb

    from mrp_formula.spec.formula import call_in_namespace

    sample, pop = _frames()
    if family == "cumulative":
        sample["age"] = pd.Categorical(sample["age"], ordered=True)
    mine = design(sample, formula, family, None)
    model = call_in_namespace(bmb.Model, formula, sample, family=family, dropna=False)  # as model.build_model
    theirs = model.parameters[model.family.likelihood.parent].design
    new = pop.head(200).assign(age=pd.Categorical(pop["age"].head(200), categories=sample["age"].unique()))
    X = np.asarray(mine.common.evaluate_new_data(new).design_matrix)
    np.testing.assert_array_equal(X, np.asarray(theirs.common.evaluate_new_data(new).design_matrix))
    assert list(mine.common.slices) == list(theirs.common.terms)
    for name, term in theirs.common.terms.items():  # each term's columns where predicting reads them (Bambi's
        # own slices of a cumulative model are left where they were before its intercept was removed)
        np.testing.assert_array_equal(X[:, mine.common.slices[name]], np.asarray(term.eval_new_data(new)).reshape(len(new), -1))
    assert list(mine.group) == list(theirs.group.terms)
    for name, term in mine.group.items():
        assert [str(g) for g in term.groups] == [str(g) for g in theirs.group.terms[name].groups]
        np.testing.assert_array_equal(np.asarray(term.expr.eval_new_data(new)),
                                      np.asarray(theirs.group.terms[name].expr.eval_new_data(new)))
    if family in ("categorical", "cumulative"):
        assert mine.response_levels == tuple(str(x) for x in model.response_term.levels)
        assert mine.response_name == model.response_term.name


@pytest.mark.slow  # fits in a subprocess (the sampler guard cannot see it)
def test_a_cached_run_imports_neither_bambi_nor_pymc(tmp_path):
    from conftest import AB_SPEC
    from generate import simulate

    simulate(n=2000, seed=1).to_csv(tmp_path / "clicks.csv", index=False)
    spec = tmp_path / "ab.toml"
    spec.write_text(textwrap.dedent(AB_SPEC).lstrip() + "\n[estimands.rate]\nat = { treatment = [\"control\", \"treatment\"] }\n")
    script = textwrap.dedent(f"""
        import sys, mrp_formula
        res = mrp_formula.run({str(spec)!r}, out={str(tmp_path / 'run')!r},
                              overrides=["fit.draws=100", "fit.tune=100", "report.plots=false", *sys.argv[1:]])
        print("bambi" in sys.modules, "pymc" in sys.modules)
        """)
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert first.stdout.split()[-2:] == ["True", "True"]  # fitted: Bambi and PyMC were needed
    second = subprocess.run([sys.executable, "-c", script, 'estimands.rate.by=["gender"]'],
                            capture_output=True, text=True, check=True)
    assert second.stdout.split()[-2:] == ["False", "False"], second.stderr
    import json

    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["fit_cache"]["reused"]
