"""Raking (iterative proportional fitting) against independent references, and raking as a
user meets it: `population.joint = "rake"` keeps the sample's association between predictors
(each sample row weighed by its count and frequency weight), and refuses sample levels the
margins do not list."""

from __future__ import annotations

import itertools
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from mrp_formula.poststrat.classical import rake_weights
from mrp_formula.cli import app
from mrp_formula.steps import spec_checks as _spec_checks
from mrp_formula.data.population import WEIGHT, rake
from mrp_formula.spec.tree import load_spec
from mrp_formula.data.tables import prepare

runner = CliRunner()


# --------------------------------------------------------------------------- references


def reference_ipf(seed: np.ndarray, margins: list[np.ndarray], sweeps: int = 5000) -> np.ndarray:
    """Plain IPF on a dense array: scale along each axis in turn until the margins hold."""
    table = seed / seed.sum()
    for _ in range(sweeps):
        for axis, target in enumerate(margins):
            other = tuple(a for a in range(table.ndim) if a != axis)
            current = table.sum(axis=other)
            shape = [1] * table.ndim
            shape[axis] = -1
            table = table * (target / current).reshape(shape)
        if max(np.abs(table.sum(axis=tuple(a for a in range(table.ndim) if a != ax)) - t).max()
               for ax, t in enumerate(margins)) < 1e-14:
            break
    return table


def closed_form_2x2(odds_ratio: float, r: float, c: float) -> np.ndarray:
    """The 2x2 table with row-1 share r, column-1 share c and the given odds ratio (which raking
    preserves): p11 solves (1 - theta) p^2 + (1 - r - c + theta (r + c)) p - theta r c = 0."""
    theta = odds_ratio
    if abs(theta - 1) < 1e-12:
        p11 = r * c
    else:
        a, b, k = 1 - theta, 1 - r - c + theta * (r + c), -theta * r * c
        roots = np.roots([a, b, k]).real
        lo, hi = max(0.0, r + c - 1), min(r, c)
        p11 = float(next(x for x in roots if lo - 1e-12 <= x <= hi + 1e-12))
    return np.array([[p11, r - p11], [c - p11, 1 - r - c + p11]])


def _cells(seed: np.ndarray) -> pd.DataFrame:
    names = [f"v{i}" for i in range(seed.ndim)]
    rows = [list(f"l{j}" for j in idx) + [seed[idx]] for idx in itertools.product(*map(range, seed.shape))]
    return pd.DataFrame(rows, columns=names + [WEIGHT])


def _margins(shares: list[np.ndarray]) -> dict[str, dict[str, float]]:
    return {f"v{i}": {f"l{j}": float(x) for j, x in enumerate(m)} for i, m in enumerate(shares)}


positive = st.floats(min_value=0.05, max_value=20.0, allow_nan=False, allow_infinity=False)


@st.composite
def tables(draw, max_dims=3):
    ndim = draw(st.integers(2, max_dims))
    shape = tuple(draw(st.integers(2, 4)) for _ in range(ndim))
    seed = np.array(draw(st.lists(positive, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))).reshape(shape)
    margins = []
    for n in shape:
        m = np.array(draw(st.lists(positive, min_size=n, max_size=n)))
        margins.append(m / m.sum())
    return seed, margins


# --------------------------------------------------------------------------- the pure functions


@settings(max_examples=60, deadline=None)
@given(tables())
def test_rake_equals_a_plain_ipf(case):
    seed, margins = case
    result = rake(_cells(seed), _margins(margins))
    assert result.converged and result.max_error < 1e-10
    want = reference_ipf(seed, margins)
    got = result.cells[WEIGHT].to_numpy().reshape(seed.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(positive, min_size=4, max_size=4), st.floats(0.05, 0.95), st.floats(0.05, 0.95))
def test_rake_2x2_equals_the_closed_form(seed, r, c):
    seed = np.array(seed).reshape(2, 2)
    theta = seed[0, 0] * seed[1, 1] / (seed[0, 1] * seed[1, 0])
    result = rake(_cells(seed), _margins([np.array([r, 1 - r]), np.array([c, 1 - c])]))
    got = result.cells[WEIGHT].to_numpy().reshape(2, 2)
    np.testing.assert_allclose(got, closed_form_2x2(theta, r, c), rtol=1e-6, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(tables(max_dims=2), st.integers(0, 2**31 - 1))
def test_rake_weights_of_rows_equal_raking_their_cells(case, salt):
    """classical.rake_weights on rows with counts, in any order, gives each cell the raked share."""
    seed, margins = case
    rng = np.random.default_rng(salt)
    cells = _cells(seed)
    # split every cell into 1-3 rows with random parts of its weight, shuffled
    parts = []
    for _, row in cells.iterrows():
        k = int(rng.integers(1, 4))
        share = rng.dirichlet(np.ones(k)) * row[WEIGHT]
        parts += [{"v0": row["v0"], "v1": row["v1"], "count": s} for s in share]
    frame = pd.DataFrame(parts).sample(frac=1.0, random_state=int(rng.integers(1e6))).reset_index(drop=True)
    population = _cells(reference_ipf(np.ones(seed.shape), margins))  # independence: only margins count
    w = rake_weights(frame[["v0", "v1"]], frame["count"].to_numpy(), population, ["v0", "v1"])
    got = (pd.DataFrame({"v0": frame.v0, "v1": frame.v1, "w": w * frame["count"]})
           .groupby(["v0", "v1"])["w"].sum())
    got = (got / got.sum()).to_numpy().reshape(seed.shape)
    np.testing.assert_allclose(got, reference_ipf(seed, margins), rtol=1e-6, atol=1e-9)


def test_rake_refuses_levels_its_margins_do_not_list():
    cells = pd.DataFrame({"a": ["x", "y", "z"], WEIGHT: [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match=r"\['z'\] of 'a' are not in its margin"):
        rake(cells, {"a": {"x": 0.5, "y": 0.5}})


def test_rake_weights_drop_rows_the_population_lacks_and_renormalise():
    frame = pd.DataFrame({"g": ["f", "f", "m", "x"]})
    pop = pd.DataFrame({"g": ["f", "m", "o"], WEIGHT: [30.0, 10.0, 60.0]})  # 'o' has no rows
    w = rake_weights(frame, np.array([1.0, 3.0, 2.0, 5.0]), pop, ["g"])
    assert w[3] == 0
    wc = w * np.array([1.0, 3.0, 2.0, 5.0])
    assert wc[:2].sum() / wc.sum() == pytest.approx(0.75) and wc[2] / wc.sum() == pytest.approx(0.25)


# --------------------------------------------------------------------------- through the spec

SPEC = """
name = "rake"
[data]
source = "s.csv"
{extra}
[model]
formula = "y ~ a + b"
family = "{family}"
[population]
joint = "rake"
[population.margins]
a = {{ a0 = 0.5, a1 = 0.5 }}
b = {{ b0 = 0.5, b1 = 0.5 }}
[estimands.m]
"""

JOINT = {("a0", "b0"): 0.10, ("a0", "b1"): 0.40, ("a1", "b0"): 0.40, ("a1", "b1"): 0.10}


def _associated_sample(n=4000, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    keys = list(JOINT)
    idx = rng.choice(len(keys), size=n, p=list(JOINT.values()))
    return pd.DataFrame({"a": [keys[i][0] for i in idx], "b": [keys[i][1] for i in idx],
                         "y": (rng.random(n) < 0.3).astype(int)})


def _population(folder, sample, family="bernoulli", extra=""):
    sample.to_csv(folder / "s.csv", index=False)
    path = folder / "rake.toml"
    path.write_text(textwrap.dedent(SPEC.format(family=family, extra=extra)))
    loaded = load_spec(path)
    t = prepare(loaded, _spec_checks(loaded))
    return t.population.set_index(["a", "b"])[WEIGHT]


def _expected(sample, weight=None) -> pd.Series:
    w = sample[weight] if weight else pd.Series(1.0, index=sample.index)
    seed = w.groupby([sample.a, sample.b]).sum().unstack().to_numpy()
    table = reference_ipf(seed, [np.array([0.5, 0.5]), np.array([0.5, 0.5])])
    return pd.Series(table.ravel(), index=pd.MultiIndex.from_product([["a0", "a1"], ["b0", "b1"]], names=["a", "b"]))


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
def test_rake_keeps_the_sample_association(tmp_path, family):
    """The issue's case: strongly associated predictors came out 0.25 in every cell."""
    sample = _associated_sample()
    got = _population(tmp_path, sample, family)
    want = _expected(sample)
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False, rtol=1e-8)
    for key, share in JOINT.items():
        assert got[key] == pytest.approx(share, abs=0.02)


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
def test_rake_seed_counts_frequency_weights(tmp_path, family):
    sample = _associated_sample(n=600)
    merged = sample.groupby(["a", "b", "y"]).size().rename("w").reset_index()
    merged = pd.concat([merged, merged.assign(w=0)]).sample(frac=1.0, random_state=2)  # zero rows count nothing
    got = _population(tmp_path, merged, family, extra='weights = "w"')
    pd.testing.assert_series_equal(got.sort_index(), _expected(sample).sort_index(), check_names=False, rtol=1e-8)


def _check(folder, margins: str):
    _associated_sample(n=200).assign(
        a=lambda d: np.where(np.arange(len(d)) % 50 == 0, "a2", d.a),
        b=lambda d: np.where(np.arange(len(d)) % 40 == 1, "b9", d.b)).to_csv(folder / "s.csv", index=False)
    text = textwrap.dedent(SPEC.format(family="bernoulli", extra=""))
    text = text[:text.index("[population.margins]")] + "[population.margins]\n" + margins + "\n[estimands.m]\n"
    (folder / "rake.toml").write_text(text)
    r = runner.invoke(app, ["check", str(folder / "rake.toml")])
    assert "Traceback" not in r.output
    return r, text


def _line(text, start):
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(start))


def test_rake_refuses_sample_levels_the_margin_does_not_list(tmp_path):
    r, text = _check(tmp_path, 'a = { a0 = 0.5, a1 = 0.5 }')
    assert r.exit_code == 4, r.output
    assert (f"rake.toml:{_line(text, 'a =')}: population.margins.a: sample level(s) 'a2' of 'a' are not in the "
            f"margins, so raking cannot weight them") in r.stderr, r.stderr
    assert "recode them onto listed levels (data.recode.a" in r.stderr and "add them to the margins" in r.stderr


def test_rake_refuses_unlisted_levels_of_every_margin_at_once(tmp_path):
    r, text = _check(tmp_path, 'a = { a0 = 0.5, a1 = 0.5 }\nb = { b0 = 0.5, b1 = 0.5 }')
    assert r.exit_code == 4, r.output
    assert "2 problems found" in r.stderr
    assert f"rake.toml:{_line(text, 'a =')}: population.margins.a: sample level(s) 'a2'" in r.stderr
    assert f"rake.toml:{_line(text, 'b =')}: population.margins.b: sample level(s) 'b9'" in r.stderr
    r, _ = _check(tmp_path, 'a = { a0 = 0.4, a1 = 0.4, a2 = 0.2 }\nb = { b0 = 0.5, b1 = 0.4, b9 = 0.1 }')
    assert r.exit_code == 0, r.output  # listed, they are raked


# --------------------------------------------------------------------------- many problems at once


def _problem(rng, cells: int, margins: int):
    """A random raking problem: cells with positive seeds, each margin a code per cell (every
    level used) and target shares; with few cells the margins often cannot all be met."""
    seed = rng.gamma(1.0, 1.0, cells)
    parts = []
    for _ in range(margins):
        levels = int(rng.integers(1, min(cells, 4) + 1))
        codes = np.concatenate([np.arange(levels), rng.integers(0, levels, cells - levels)])
        rng.shuffle(codes)
        target = rng.dirichlet(np.ones(levels))
        parts.append((codes.astype(np.int64), target))
    return seed, parts


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), problems=st.integers(0, 12), margins=st.integers(0, 4),
       max_iter=st.sampled_from([1, 7, 1000]))
def test_raking_many_problems_at_once_is_bit_identical_to_one_by_one(seed, problems, margins, max_iter):
    """`rake_many` (every group of the classical estimates at once) gives each problem exactly
    the shares `rake_arrays` gives it alone, whether it converges in a few sweeps or never."""
    from mrp_formula.data.population import rake_arrays, rake_many

    rng = np.random.default_rng(seed)
    cases = [_problem(rng, int(rng.integers(1, 30)), margins) for _ in range(problems)]
    got = rake_many(cases, tol=1e-10, max_iter=max_iter)
    assert len(got) == len(cases)
    for (s, parts), w in zip(cases, got):
        np.testing.assert_array_equal(w, rake_arrays(s, parts, tol=1e-10, max_iter=max_iter)[0])
