"""`mrp recover` gives the same numbers whatever the order of the rows and however many workers.

Its results must be a function of the spec, the content of the data and the seed. The pure parts
(canonical order, simulation) are checked with hypothesis; then small studies (2 replicates, few
draws, one chain) are compared bit for bit: the sample's rows permuted, in the file and as read
(the DuckDB read of a binary sample has no order), and --jobs 1 against --jobs 2. Only the
timing column may differ.
"""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrp_formula.commands import recover as rec
from mrp_formula.data import tables as tables_mod

TINY = ["fit.draws=100", "fit.tune=100", "fit.chains=1"]
VOLATILE = ["fit_seconds"]  # wall-clock time of each refit


# ----------------------------------------------------------------------------- pure, no sampling


@st.composite
def frames(draw):
    n = draw(st.integers(1, 30))
    levels = ["a", "b", "c"]
    g = draw(st.lists(st.sampled_from(levels), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    x = draw(st.lists(st.sampled_from([-1.5, 0.0, 2.25]), min_size=n, max_size=n))
    frame = pd.DataFrame({"g": pd.Categorical(g, categories=levels[::-1], ordered=True), "y": y, "x": x,
                          "s": [f"t{v}" for v in y]})
    perm = draw(st.permutations(range(n)))
    return frame, list(perm)


@settings(max_examples=60, deadline=None)
@given(frames())
def test_canonical_rows_do_not_depend_on_the_order(case):
    frame, perm = case
    a = rec.canonical_rows(frame)
    b = rec.canonical_rows(frame.iloc[perm])
    pd.testing.assert_frame_equal(a, b)
    assert list(a.index) == list(range(len(frame)))
    # the same rows (as a multiset), categories kept
    pd.testing.assert_frame_equal(a, rec.canonical_rows(a))
    assert a["g"].dtype == frame["g"].dtype
    assert sorted(map(tuple, a.astype(str).to_numpy())) == sorted(map(tuple, frame.astype(str).to_numpy()))


@pytest.mark.parametrize("family", ["bernoulli", "poisson", "gaussian", "negativebinomial", "categorical"])
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), perm_seed=st.integers(0, 2**31 - 1))
def test_simulation_on_canonical_rows_does_not_depend_on_the_order(family, seed, perm_seed):
    """The simulated sample is the same for any order of the same rows once they are canonical."""
    rng = np.random.default_rng(perm_seed)
    n = 25
    g = rng.choice(["a", "b", "c"], n)
    if family == "categorical":
        y = pd.Categorical(rng.choice(["x", "y", "z"], n), categories=["x", "y", "z"])
    else:
        y = rng.integers(0, 2, n)
    sample = pd.DataFrame({"g": pd.Categorical(g, categories=["a", "b", "c"]), "y": y})
    mu_of = {"a": 0.2, "b": 0.5, "c": 0.7}

    def simulated(frame):
        canon = rec.canonical_rows(frame)
        mu = canon["g"].astype(str).map(mu_of).to_numpy(dtype=float)
        if family == "categorical":
            mu = np.c_[mu / 2, mu / 2, 1 - mu]
        return rec.simulate_outcomes(family, mu, canon, ("y",), np.random.default_rng(seed), sigma=1.0, alpha=2.0)

    perm = rng.permutation(n)
    pd.testing.assert_frame_equal(simulated(sample), simulated(sample.iloc[perm]))


# ----------------------------------------------------------------------------- small studies, sampled

GAUSSIAN_SPEC = """
name = "inv"
[data]
source = "d.csv"
[model]
formula = "y ~ x + (1|g)"
family = "gaussian"
[model.priors]
Intercept = "Normal(100, 50)"
x = "Normal(0, 20)"
"1|g" = "Normal(0, HalfNormal(20))"
sigma = "HalfNormal(30)"
[fit]
seed = 4
[population]
source = "pop.csv"
weight = "n"
[estimands.mean_y]
by = ["x"]
"""


def _gaussian_dir(folder):
    rng = np.random.default_rng(3)
    n = 48
    g = rng.choice(list("abcd"), n)
    x = rng.choice(["u", "v"], n)
    y = 100 + np.vectorize({"a": -20, "b": 0, "c": 10, "d": 25}.get)(g) + np.where(x == "v", 15, 0) + rng.normal(0, 30, n)
    pd.DataFrame({"g": g, "x": x, "y": y.round(2)}).to_csv(folder / "d.csv", index=False)
    pd.DataFrame({"g": list("abcd") * 2, "x": ["u"] * 4 + ["v"] * 4, "n": [1, 2, 3, 4, 4, 3, 2, 1]}).to_csv(
        folder / "pop.csv", index=False)
    (folder / "s.toml").write_text(textwrap.dedent(GAUSSIAN_SPEC).lstrip())
    return folder / "s.toml"


def _ab_dir(folder):
    from conftest import AB_SPEC
    from generate import simulate

    simulate(n=2000, seed=5).to_csv(folder / "clicks.csv", index=False)
    (folder / "ab.toml").write_text(textwrap.dedent(AB_SPEC).lstrip())
    return folder / "ab.toml"


SPECS = {"gaussian": _gaussian_dir, "bernoulli": _ab_dir}


def _study(spec, out, *, jobs=1):
    return rec.recover(spec, replicates=2, jobs=jobs, out=out, overrides=TINY, truth="prior", cache=False)


def _shuffled_prepare(monkeypatch, seed):
    """``prepare`` returning the sample and the population in a shuffled order, as an unordered read may."""
    real = tables_mod.prepare

    def shuffled(loaded, info):
        t = real(loaded, info)
        rng = np.random.default_rng(seed)
        sample = t.sample.iloc[rng.permutation(len(t.sample))].reset_index(drop=True)
        population = t.population.iloc[rng.permutation(len(t.population))].reset_index(drop=True)
        assert not sample.equals(t.sample)
        return dataclasses.replace(t, sample=sample, population=population)

    monkeypatch.setattr(tables_mod, "prepare", shuffled)


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """Per family: the spec, and its study with the rows in file order on one process."""
    out = {}
    for family, make in SPECS.items():
        folder = tmp_path_factory.mktemp(f"base-{family}")
        spec = make(folder)
        out[family] = (spec, _study(spec, folder / "recovery"))
    return out


def _same(a: rec.RecoveryResult, b: rec.RecoveryResult):
    pd.testing.assert_frame_equal(a.replicates.drop(columns=VOLATILE), b.replicates.drop(columns=VOLATILE),
                                  check_exact=True)
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)


@pytest.mark.parametrize("family", list(SPECS))
@pytest.mark.slow
def test_recover_does_not_depend_on_the_order_of_the_rows(family, baselines, tmp_path, monkeypatch):
    spec, base = baselines[family]
    assert not base.failed
    # the file's rows shuffled, and the rows as read shuffled again
    data_file = spec.parent / ("d.csv" if family == "gaussian" else "clicks.csv")
    data = pd.read_csv(data_file)
    shuffled = data.sample(frac=1.0, random_state=9).reset_index(drop=True)
    assert not shuffled.equals(data)
    folder = tmp_path / "shuffled"
    folder.mkdir()
    for f in spec.parent.iterdir():
        if f.is_file():
            (folder / f.name).write_bytes(f.read_bytes())
    shuffled.to_csv(folder / data_file.name, index=False)
    _shuffled_prepare(monkeypatch, seed=17)
    again = _study(folder / spec.name, tmp_path / "recovery")
    _same(base, again)


@pytest.mark.slow
def test_recover_does_not_depend_on_jobs(baselines, tmp_path):
    spec, base = baselines["gaussian"]
    two = _study(spec, tmp_path / "recovery", jobs=2)
    assert two.manifest["jobs"] == 2 and base.manifest["jobs"] == 1
    _same(base, two)
