"""Every number is a function of the content (issue 9, invariances): the poststratified sums and
the estimands are the same, bit for bit, for any chunk size (``block``), any number of threads,
and any order of the population's rows.

How: ``poststratify`` puts the cells in a canonical order (group, then a hash of the row) and
sums fixed units of cells in that order, carrying the totals from chunk to chunk. The fast sums
(``CellPredictor.weighted_sums``) and the plain route (predict, then sum) are both checked, on
made-up draws, so no case samples.
"""

from __future__ import annotations

import textwrap
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings, strategies as st

import mrp_formula
from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.poststrat import sums as poststrat
from mrp_formula.predict import cells as predict_mod
from mrp_formula.steps import plan as prepared_plan
from mrp_formula.data.population import WEIGHT
from mrp_formula.poststrat.sums import Request, Scenario, canonical_order, group_codes, poststratify
from mrp_formula.predict.cells import CellPredictor, design
from _survey import survey_frames


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for req in a:
        pd.testing.assert_frame_equal(a[req].groups, b[req].groups)
        np.testing.assert_array_equal(a[req].values, b[req].values)  # bit for bit
        np.testing.assert_array_equal(a[req].weight, b[req].weight)


# ----------------------------------------------------------------------------- the plain route


def content_predict(draws: np.ndarray, k: int = 0):
    """Predictions that depend on a cell's values only (never on its position or index):
    (S, n), or (S, n, k) category probabilities."""
    def predict(cells, exclude=()):
        g = cells["g"].map({"a": 0.3, "b": -0.2, "c": 1.1}).to_numpy()
        h = cells["h"].astype(float).to_numpy()
        shift = 0.5 if "t" in cells and (cells["t"] == "on").all() else 0.0
        eta = draws[:, :1] + draws[:, 1:2] * g + draws[:, 2:3] * h * 0.1 + shift
        if "g_term" in exclude:
            eta = eta - draws[:, 1:2] * g
        p = 1 / (1 + np.exp(-eta))
        if not k:
            return p
        cats = np.stack([p ** (j + 1) for j in range(k)], axis=2)
        return cats / cats.sum(axis=2, keepdims=True)
    return predict


@st.composite
def populations(draw):
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cells = pd.DataFrame({
        "g": rng.choice(list("abc"), n),
        "h": rng.integers(0, 5, n).astype(str),  # text levels, numbers in the prediction
        WEIGHT: rng.choice([0.1, 1.0, 3.0, 1e6, 2.5e-3], n) * rng.random(n),
    })
    if draw(st.booleans()):  # rows repeated as they are (a table with duplicate cells)
        cells = pd.concat([cells, cells.iloc[: n // 2]], ignore_index=True)
    return cells, rng.normal(0, 2, (draw(st.integers(1, 6)), 3))


REQUESTS = [Request(Scenario()), Request(Scenario(), ("g",)), Request(Scenario((("t", "on"),)), ("h", "g")),
            Request(Scenario((), ("g_term",)), ("h",))]


@settings(max_examples=80, deadline=None)
@given(populations(), st.integers(0, 3), st.integers(1, 5), st.integers(1, 400), st.integers(0, 2**32 - 1))
@pytest.mark.slow  # many hypothesis examples of the plain route: about 20 s
def test_plain_sums_do_not_depend_on_chunks_or_row_order(pop, k, unit, block, perm_seed):
    cells, draws = pop
    predict = content_predict(draws, k)
    s = len(draws)
    per_cell = s * max(k, 1)
    with mock.patch.object(poststrat, "PLAIN_UNIT", unit):  # many units in a small table
        whole = poststratify(cells, predict, REQUESTS, n_samples=per_cell)
        chunked = poststratify(cells, predict, REQUESTS, n_samples=per_cell, block=block * per_cell)
        shuffled = cells.sample(frac=1, random_state=perm_seed % 2**31)
        permuted = poststratify(shuffled, predict, REQUESTS, n_samples=per_cell, block=block * per_cell)
        reindexed = poststratify(shuffled.reset_index(drop=True), predict, REQUESTS, n_samples=per_cell)
    assert_same(whole, chunked)
    assert_same(whole, permuted)
    assert_same(whole, reindexed)
    # and they are the weighted means, computed the plain way
    for req, red in whole.items():
        frame = cells.assign(**dict(req.scenario.settings))
        pred = predict(frame, req.scenario.exclude)
        w = cells[WEIGHT].to_numpy()
        keys = cells[list(req.by)].astype(str).agg("|".join, axis=1) if req.by else pd.Series([""] * len(cells))
        for gi, row in red.groups.reset_index(drop=True).iterrows():
            m = (keys == "|".join(str(row[c]) for c in req.by)).to_numpy()
            want = np.tensordot(pred[:, m], w[m], axes=([1], [0])) / w[m].sum()
            np.testing.assert_allclose(red.values[:, gi], want, rtol=1e-11, atol=1e-300)


@settings(max_examples=60, deadline=None)
@given(populations(), st.lists(st.sampled_from(["g", "h"]), max_size=2, unique=True), st.integers(0, 2**32 - 1))
def test_canonical_order_is_a_function_of_content(pop, by, perm_seed):
    cells, _ = pop
    shuffled = cells.sample(frac=1, random_state=perm_seed % 2**31).reset_index(drop=True)

    def ordered(c):
        codes, _ = group_codes(c, tuple(by))
        order = canonical_order(c, [codes])
        assert (np.diff(codes[order]) >= 0).all()  # grouped, groups in order
        return c.iloc[order].reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(cells), ordered(shuffled))


def test_canonical_order_survives_hash_collisions(monkeypatch):
    """Rows that differ but share a hash are ordered by their values, not by where they were."""
    rng = np.random.default_rng(4)
    cells = pd.DataFrame({"g": rng.choice(list("abc"), 300), "x": rng.integers(0, 50, 300) / 7,
                          WEIGHT: rng.random(300)})
    real = pd.util.hash_pandas_object

    def few_hashes(df, index=True, hash_key=None, **kw):
        h = real(df, index=index, **({"hash_key": hash_key} if hash_key else {}), **kw)
        return h if hash_key else h % np.uint64(5)  # the first hash collides all the time

    monkeypatch.setattr(pd.util, "hash_pandas_object", few_hashes)
    a = cells.iloc[canonical_order(cells)].reset_index(drop=True)
    shuffled = cells.sample(frac=1, random_state=2).reset_index(drop=True)
    b = shuffled.iloc[canonical_order(shuffled)].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- the fast sums


CASES = {
    "logit, continuous common term, new levels": ("y", "bernoulli", None,
                                                  "y ~ treatment*gender + x + (1|age) + (1|region)"),
    "log link, continuous slope": ("count", "poisson", None, "count ~ treatment + (1|region) + (x|age)"),
    "identity link, categorical slope": ("score", "gaussian", None, "score ~ treatment + (treatment|age) + (1|region)"),
    "probit link (plain inverse link)": ("y", "bernoulli", "probit", "y ~ treatment + x + (1|region)"),
}
ESTIMANDS = """
[estimands.rate]
at = { treatment = ["control", "treatment"] }
[estimands.lift_by_region]
contrast = { treatment = ["treatment", "control"] }
scale = "ratio"
by = ["region"]
[estimands.by_age_gender]
by = ["treatment", "region"]
[estimands.region_gap]
contrast = { region = ["r1", "r2"] }
"""


def _frames(seed=11, n_sample=300, n_pop=1500):  # three regions the sample lacks
    return survey_frames(np.random.default_rng(seed), n_sample=n_sample, n_pop=n_pop, sample_regions=30,
                         pop_regions=33)


def _posterior(dsg, n_chains=2, n_draws=40, shift=None):
    """Made-up draws named and shaped as Bambi names and shapes them."""
    rng = np.random.default_rng(5)
    data, coords = {}, {}
    for name, sl in dsg.common.slices.items():
        width = sl.stop - sl.start
        dims = ("chain", "draw") + ((f"{name}_dim",) if width > 1 else ())
        shape = (n_chains, n_draws) + ((width,) if width > 1 else ())
        data[name] = (dims, rng.normal(0, 0.7, shape) + (shift or {}).get(name, 0.0))
    for name, term in dsg.group.items():
        groups = [str(g) for g in term.groups]
        k = term.data.shape[1] // len(groups)
        fdim = f"{name.split('|')[1]}__factor_dim"
        coords[fdim] = groups
        dims = ("chain", "draw") + ((f"{name}__expr_dim",) if k > 1 else ()) + (fdim,)
        shape = (n_chains, n_draws) + ((k,) if k > 1 else ()) + (len(groups),)
        data[name] = (dims, rng.normal(0, 0.7, shape) + (shift or {}).get(name, 0.0))
        sd_dims = ("chain", "draw") + ((f"{name}__expr_dim",) if k > 1 else ())
        data[f"{name}_sigma"] = (sd_dims, np.abs(rng.normal(0.5, 0.1, shape[:-1])))
    ds = xr.Dataset({k: xr.Variable(*v) for k, v in data.items()})
    return xr.DataTree.from_dict({"posterior": ds.assign_coords(coords)})


@pytest.fixture(scope="module")
def small_blocks():
    """Micro-blocks of 16 cells (80 draws), 3 to a task: a unit is 48 cells, so many units."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predict_mod, "MICRO_BLOCK", 16 * 80)
        mp.setattr(predict_mod, "BLOCKS_PER_TASK", 3)
        yield


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory, small_blocks):
    response, family, link, formula = CASES[request.param]
    d = tmp_path_factory.mktemp("invariance")
    sample, pop = _frames()
    sample.to_csv(d / "sample.csv", index=False)
    pop.to_csv(d / "pop.csv", index=False)
    (d / "spec.toml").write_text(textwrap.dedent(f"""
        name = "invariance"
        [data]
        source = "sample.csv"
        [model]
        formula = "{formula}"
        family = "{family}"
        {f'link = "{link}"' if link else ""}
        [population]
        source = "pop.csv"
        weight = "N"
        """) + ESTIMANDS)
    plan = prepared_plan(d / "spec.toml")
    fp = plan.fit_plan
    dsg = design(fp.data, fp.formula, fp.family, plan.loaded.spec.model.link)
    posterior = _posterior(dsg)
    pieces = est_mod.plan(plan.loaded.spec.estimands, plan.tables.population_vars)

    def reduce(cells, *, threads=1, block=None, plain=False):
        pr = CellPredictor(dsg, posterior, plan.tables, plan.info, seed=3, threads=threads)
        assert pr.fast and pr.sum_unit() == 48
        kwargs = {"block": block} if block else {}
        return poststratify(cells, pr.predict if plain else pr, est_mod.requests(pieces),
                            n_samples=pr.n_samples, **kwargs)

    base = reduce(plan.tables.population)
    return plan, pieces, reduce, base


@pytest.mark.slow  # a sweep over thread pools and chunk sizes (seconds); the quick loop keeps the chunk and row-order tests
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(block_cells=st.integers(1, 2000), threads=st.integers(1, 3), perm_seed=st.integers(0, 2**31 - 1))
def test_fast_sums_do_not_depend_on_chunks_threads_or_row_order(case, block_cells, threads, perm_seed):
    plan, _, reduce, base = case
    pop = plan.tables.population
    assert len(pop) > 5 * 48  # many units, chunks and tasks
    shuffled = pop.sample(frac=1, random_state=perm_seed).reset_index(drop=True)
    got = reduce(shuffled, threads=threads, block=block_cells * 40)  # block counts values, not cells
    assert_same(base, got)


def test_fast_sums_smallest_chunks_and_plain_route(case):
    plan, _, reduce, base = case
    assert_same(base, reduce(plan.tables.population, block=1, threads=2))  # one unit a chunk
    plain = reduce(plan.tables.population, plain=True)
    plain_chunks = reduce(plan.tables.population.iloc[::-1], plain=True, block=1)
    assert_same(plain, plain_chunks)
    for req in base:  # the fast sums are the plain ones, up to the order of the arithmetic
        np.testing.assert_allclose(base[req].values, plain[req].values, rtol=1e-12, atol=1e-14)


def test_estimands_identical_for_any_chunks_and_row_order(case):
    plan, pieces, reduce, base = case
    spec = plan.loaded.spec
    cols = est_mod.group_columns(spec.estimands)

    def table(reduced):
        ed = est_mod.assemble(pieces, reduced, n_chains=2, n_draws=40, group_columns=cols)
        return est_mod.summarise(ed, spec.estimands, ci_prob=0.9, ci_kind="hdi"), ed.draws

    want, want_draws = table(base)
    shuffled = plan.tables.population.sample(frac=1, random_state=9)
    got, got_draws = table(reduce(shuffled, block=3 * 48 * 40, threads=3))
    pd.testing.assert_frame_equal(want, got, check_exact=True)
    np.testing.assert_array_equal(want_draws, got_draws)


def test_blocks_redone_the_plain_way_keep_their_place(small_blocks, tmp_path):
    """Over- and underflowing micro-blocks are redone in the main thread right after their task,
    so even they add up in the same order for every chunk size and thread count."""
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
        [estimands.by_region]
        by = ["region"]
        [estimands.rate]
        at = { treatment = ["control", "treatment"] }
        """))
    plan = prepared_plan(tmp_path / "spec.toml")
    fp = plan.fit_plan
    dsg = design(fp.data, fp.formula, fp.family, None)
    posterior = _posterior(dsg, shift={"Intercept": 800.0, "1|region": -800.0})  # inf * 0 everywhere
    reqs = est_mod.requests(est_mod.plan(plan.loaded.spec.estimands, plan.tables.population_vars))

    def reduce(cells, threads, block=None):
        pr = CellPredictor(dsg, posterior, plan.tables, plan.info, seed=3, threads=threads)
        return poststratify(cells, pr, reqs, n_samples=80, **({"block": block} if block else {}))

    base = reduce(plan.tables.population, 1)
    for threads, block in [(2, None), (3, 1), (1, 5 * 48 * 30)]:
        assert_same(base, reduce(plan.tables.population.sample(frac=1, random_state=threads), threads, block))
    for red in base.values():
        assert np.isfinite(red.values).all()


# ----------------------------------------------------------------------------- a whole run


@pytest.mark.slow
def test_run_with_shuffled_population_and_small_chunks_is_identical(tmp_path):
    """`mrp run` on the same population table with its rows shuffled, poststratified in small
    chunks, writes the same estimands.csv, byte for byte (the fit is cached, so one sampling)."""
    from generate import simulate

    from conftest import AB_SPEC

    rng = np.random.default_rng(3)
    simulate(n=1500, seed=8).to_csv(tmp_path / "clicks.csv", index=False)
    pop = pd.DataFrame({"gender": ["female", "male"] * 50, "age": np.repeat(np.arange(50), 2) % 7,
                        "count": rng.integers(1, 1000, 100)})
    pop.to_csv(tmp_path / "pop.csv", index=False)
    spec = textwrap.dedent(AB_SPEC).lstrip().split("[population.margins]")[0]
    spec += textwrap.dedent("""
        [population]
        source = "POP"
        weight = "count"
        [estimands.click_rate]
        at = { treatment = ["control", "treatment"] }
        [estimands.lift]
        contrast = { treatment = ["treatment", "control"] }
        scale = "odds_ratio"
        [estimands.gap]
        contrast = { gender = ["female", "male"] }
        at = { treatment = ["treatment"] }
        """)
    (tmp_path / "a.toml").write_text(spec.replace("POP", "pop.csv"))
    pop.sample(frac=1, random_state=1).to_csv(tmp_path / "pop_shuffled.csv", index=False)
    (tmp_path / "b.toml").write_text(spec.replace("POP", "pop_shuffled.csv"))
    fast = ["fit.draws=50", "fit.tune=50", "fit.chains=2", "report.plots=false"]
    a = mrp_formula.run(tmp_path / "a.toml", out=tmp_path / "runs" / "a", overrides=fast)
    b = mrp_formula.run(tmp_path / "b.toml", out=tmp_path / "runs" / "b", overrides=fast, block=7)
    assert b.manifest["fit_cache"]["reused"]
    assert (tmp_path / "runs" / "a" / "estimands.csv").read_bytes() == \
        (tmp_path / "runs" / "b" / "estimands.csv").read_bytes()
    pd.testing.assert_frame_equal(a.draws, b.draws, check_exact=True)
