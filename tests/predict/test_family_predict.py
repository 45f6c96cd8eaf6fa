"""Families whose expected outcome is not the inverse link (lognormal, hurdle, zero-inflated...)
and families with their own links (gamma's log, beta's logit): the predictor's expected outcome
per cell and draw is the record's formula with the auxiliary parameters of that draw, and the
fast weighted sums equal predicting every cell. Made-up posteriors, no sampling."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special

from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.poststrat.sums import poststratify
from mrp_formula.predict.cells import CellPredictor, design
from mrp_formula.spec.families import FAMILIES
from mrp_formula.steps import plan as prepared_plan

RNG = np.random.default_rng(20261130)
N_SAMPLE, N_POP, S = 300, 2000, 60


def _frames():
    def frame(n, regions):
        return pd.DataFrame({"arm": RNG.choice(["a", "b"], n), "age": RNG.choice(["young", "mid", "old"], n),
                             "region": RNG.choice(regions, n), "x": np.round(RNG.normal(size=n), 3)})
    sample = frame(N_SAMPLE, [f"r{i}" for i in range(12)])
    sample["amount"] = RNG.gamma(2.0, 5.0, N_SAMPLE)  # > 0
    sample["spend"] = np.where(RNG.random(N_SAMPLE) < 0.3, sample["amount"], 0.0)  # >= 0, mostly 0
    sample["share"] = RNG.beta(2, 5, N_SAMPLE)  # in (0, 1)
    sample["count"] = RNG.poisson(1.0, N_SAMPLE)
    sample["score"] = RNG.standard_t(4, N_SAMPLE)
    pop = frame(N_POP, [f"r{i}" for i in range(14)])  # two regions the sample lacks
    pop["N"] = RNG.integers(1, 300, N_POP)
    return sample, pop


RESPONSE = {"gamma": "amount", "lognormal": "amount", "exponential": "amount", "weibull": "amount",
            "t": "score", "beta": "share", "hurdle_lognormal": "spend", "hurdle_gamma": "spend",
            "hurdle_poisson": "count", "hurdle_negativebinomial": "count", "zero_inflated_poisson": "count",
            "zero_inflated_negativebinomial": "count"}
AUX = {"sigma": (0.3, 1.0), "alpha": (0.8, 4.0), "psi": (0.1, 0.9), "nu": (3.0, 20.0), "kappa": (2.0, 30.0)}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    from mrp_formula.predict import cells as predict

    monkeypatch.setattr(predict, "MICRO_BLOCK", 2000)
    monkeypatch.setattr(predict, "BLOCKS_PER_TASK", 4)


@pytest.fixture(scope="module", params=list(RESPONSE))
def case(request, tmp_path_factory):
    family = request.param
    d = tmp_path_factory.mktemp("famp")
    sample, pop = _frames()
    sample.to_csv(d / "sample.csv", index=False)
    pop.to_csv(d / "pop.csv", index=False)
    (d / "spec.toml").write_text(textwrap.dedent(f"""
        name = "famp"
        [data]
        source = "sample.csv"
        [model]
        formula = "{RESPONSE[family]} ~ arm + x + (1|age) + (1|region)"
        family = "{family}"
        [population]
        source = "pop.csv"
        weight = "N"
        [estimands.by_arm]
        at = {{ arm = ["a", "b"] }}
        [estimands.lift]
        contrast = {{ arm = ["b", "a"] }}
        scale = "ratio"
        [estimands.by_region]
        by = ["region"]
        """))
    return family, prepared_plan(d / "spec.toml")


def _posterior(dsg, family):
    """Draws named and shaped as Bambi names them, with the family's parameters (one per draw)."""
    rng = np.random.default_rng(5)
    data = {}
    for name, sl in dsg.common.slices.items():
        width = sl.stop - sl.start
        dims = ("chain", "draw") + ((f"{name}_dim",) if width > 1 else ())
        data[name] = (dims, rng.normal(0, 0.3, (2, S // 2) + ((width,) if width > 1 else ())))
    if family == "gamma" or "Intercept" in data:  # a positive mean where the link needs it
        data["Intercept"] = (("chain", "draw"), data["Intercept"][1] + (-1.0 if family == "beta" else 1.0))
    for name, term in dsg.group.items():
        groups = [str(g) for g in term.groups]
        fdim = f"{name.split('|')[1]}__factor_dim"
        data[name] = (("chain", "draw", fdim), rng.normal(0, 0.3, (2, S // 2, len(groups))))
        data[f"{name}_sigma"] = (("chain", "draw"), np.abs(rng.normal(0.3, 0.05, (2, S // 2))))
    for a in FAMILIES[family].auxiliary:
        data[a] = (("chain", "draw"), rng.uniform(*AUX[a], (2, S // 2)))
    coords = {f"{n.split('|')[1]}__factor_dim": [str(g) for g in t.groups] for n, t in dsg.group.items()}
    ds = xr.Dataset({k: xr.Variable(*v) for k, v in data.items()}).assign_coords(coords)
    return xr.DataTree.from_dict({"posterior": ds})


def _predictor(plan, family, threads=1):
    fp = plan.fit_plan
    dsg = design(fp.data, fp.formula, fp.family, None)
    return CellPredictor(dsg, _posterior(dsg, family), plan.tables, plan.info, seed=3, threads=threads)


def _by_hand(family, eta, aux):
    """E[y] per draw (rows) and cell (columns) from the linear predictor, written out."""
    a = {k: v[:, None] for k, v in aux.items()}
    if family in ("lognormal", "hurdle_lognormal"):
        return a.get("psi", 1.0) * np.exp(eta + a["sigma"] ** 2 / 2)
    if family == "beta":
        return special.expit(eta)
    if family == "t":
        return eta
    mu = np.exp(eta)
    if family == "hurdle_poisson":
        return a["psi"] * mu / (1 - np.exp(-mu))
    if family == "hurdle_negativebinomial":
        return a["psi"] * mu / (1 - (a["alpha"] / (a["alpha"] + mu)) ** a["alpha"])
    return a.get("psi", 1.0) * mu


def _reduced(plan, predictor):
    pieces = est_mod.plan(plan.loaded.spec.estimands, plan.tables.population_vars)
    return poststratify(plan.tables.population, predictor, est_mod.requests(pieces), n_samples=S)


def test_expected_outcome_per_cell_and_draw_is_the_familys(case):
    family, plan = case
    pred = _predictor(plan, family)
    cells = plan.tables.population.iloc[:200]
    eta = pred.linear_predictor(cells)[:, :, 0]
    np.testing.assert_allclose(pred.predict(cells), _by_hand(family, eta, pred.auxiliary), rtol=1e-12)
    assert set(pred.auxiliary) == set(FAMILIES[family].auxiliary)


def test_fast_weighted_sums_equal_predicting_every_cell(case):
    family, plan = case
    pred = _predictor(plan, family, threads=2)
    assert pred.fast
    fast, plain = _reduced(plan, pred), _reduced(plan, pred.predict)
    assert fast.keys() == plain.keys()
    for req in fast:
        np.testing.assert_allclose(fast[req].values, plain[req].values, rtol=1e-11, atol=1e-14)
    one = _reduced(plan, _predictor(plan, family, threads=1))
    for req in fast:
        np.testing.assert_array_equal(one[req].values, fast[req].values)  # bit for bit, whatever the threads


def test_default_priors_fit_the_outcomes_scale(case):
    """The records' default priors: centred on the outcome, auxiliary parameters on their scale."""
    family, plan = case
    priors = {p.term: p for p in plan.fit_plan.priors}
    y = plan.tables.sample[RESPONSE[family]].to_numpy(dtype=float)
    intercept = priors["Intercept"].prior.param("mu")
    pos = y[y > 0]
    if family in ("lognormal", "hurdle_lognormal"):
        centre = np.log(pos).mean()
    elif family in ("t", "beta"):
        centre = y.mean() if family == "t" else special.logit(y.mean())
    else:  # log links: the log of the mean, of the non-zero part for hurdle and zero-inflated families
        centre = np.log(pos.mean() if family.startswith(("hurdle", "zero")) else y.mean())
    assert intercept == pytest.approx(centre, rel=1e-9)
    assert {p.term for p in plan.fit_plan.priors if p.role == "auxiliary"} == set(FAMILIES[family].auxiliary)
    if "psi" in priors:
        assert priors["psi"].prior.name == "Beta"
    if family in ("lognormal", "hurdle_lognormal"):
        assert priors["sigma"].prior.param("sigma") == pytest.approx(np.log(y[y > 0]).std(), rel=1e-9)
