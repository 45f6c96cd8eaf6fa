"""psi with a formula of its own (``model.formulas.psi``): the predictor's psi per draw and cell is
the inverse logit of the psi formula's linear predictor, in the plain prediction and in the fast
weighted sums alike. Made-up posteriors named as Bambi names a distributional component
(``psi_Intercept``, ``psi_arm``, ``psi_1|region``), no sampling."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special

from mrp_formula.errors import SpecError
from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.poststrat.sums import poststratify
from mrp_formula.predict.cells import predictor
from mrp_formula.steps import plan as prepared_plan

RNG = np.random.default_rng(20261201)
N_SAMPLE, N_POP, S = 300, 1500, 40
PSI = "~ arm + (1|region)"


def _write(d, family="hurdle_lognormal", psi=PSI, priors=""):
    def frame(n, regions):
        return pd.DataFrame({"arm": RNG.choice(["a", "b"], n), "age": RNG.choice(["young", "mid", "old"], n),
                             "region": RNG.choice(regions, n), "x": np.round(RNG.normal(size=n), 3)})
    sample = frame(N_SAMPLE, [f"r{i}" for i in range(10)])
    sample["spend"] = np.where(RNG.random(N_SAMPLE) < np.where(sample["arm"] == "b", 0.5, 0.2),
                               RNG.gamma(2.0, 5.0, N_SAMPLE), 0.0)
    pop = frame(N_POP, [f"r{i}" for i in range(12)])  # two regions the sample lacks
    pop["N"] = RNG.integers(1, 300, N_POP)
    sample.to_csv(d / "sample.csv", index=False)
    pop.to_csv(d / "pop.csv", index=False)
    (d / "spec.toml").write_text(textwrap.dedent(f"""
        name = "psif"
        [data]
        source = "sample.csv"
        [model]
        formula = "spend ~ arm + x + (1|age) + (1|region)"
        family = "{family}"
        formulas.psi = "{psi}"
        [model.priors]
        {priors}
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
    return d / "spec.toml"


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    from mrp_formula.predict import cells as predict

    monkeypatch.setattr(predict, "MICRO_BLOCK", 2000)
    monkeypatch.setattr(predict, "BLOCKS_PER_TASK", 4)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return prepared_plan(_write(tmp_path_factory.mktemp("psif")))


def _posterior(plan):
    """Main terms and sigma as Bambi names them; psi's terms with its prefix; no scalar psi."""
    rng = np.random.default_rng(9)
    shape = (2, S // 2)
    data, coords = {}, {}
    draws = lambda sd, *extra: rng.normal(0, sd, shape + extra)  # noqa: E731
    data["Intercept"] = (("chain", "draw"), draws(0.3) + 1.0)
    data["arm"] = (("chain", "draw"), draws(0.3))
    data["x"] = (("chain", "draw"), draws(0.3))
    data["sigma"] = (("chain", "draw"), rng.uniform(0.3, 1.0, shape))
    data["psi_Intercept"] = (("chain", "draw"), draws(0.3) - 1.0)
    data["psi_arm"] = (("chain", "draw"), draws(0.3) + 1.0)
    sample = plan.tables.sample
    for prefix, var in (("", "age"), ("", "region"), ("psi_", "region")):
        levels = sorted(sample[var].astype(str).unique())
        coords[f"{var}__factor_dim"] = levels
        data[f"{prefix}1|{var}"] = (("chain", "draw", f"{var}__factor_dim"), draws(0.4, len(levels)))
        data[f"{prefix}1|{var}_sigma"] = (("chain", "draw"), np.abs(rng.normal(0.4, 0.05, shape)))
    ds = xr.Dataset({k: xr.Variable(*v) for k, v in data.items()}).assign_coords(coords)
    return xr.DataTree.from_dict({"posterior": ds})


def _predictor(plan, threads=1):
    return predictor(plan.fit_plan, None, _posterior(plan), plan.tables, plan.info, seed=3, threads=threads)


def _flat(post, name):
    return post["posterior"][name].transpose("chain", "draw", ...).to_numpy().reshape(S, -1)


def test_psi_is_the_inverse_logit_of_its_own_formula_per_cell(plan):
    pred = _predictor(plan)
    assert "psi" not in pred.auxiliary and set(pred.components) == {"psi"}
    post = _posterior(plan)
    cells = plan.tables.population
    cells = cells[cells["region"].isin(plan.tables.sample["region"].unique())].iloc[:300]
    region = _flat(post, "psi_1|region")
    levels = list(post["posterior"]["region__factor_dim"].to_numpy())
    eta = (_flat(post, "psi_Intercept") + _flat(post, "psi_arm") * (cells["arm"].to_numpy() == "b")
           + region[:, [levels.index(r) for r in cells["region"]]])
    psi = special.expit(eta)
    main = pred.linear_predictor(cells)[:, :, 0]
    expected = psi * np.exp(main + _flat(post, "sigma") ** 2 / 2)
    np.testing.assert_allclose(pred.aux_of(cells)["psi"], psi, rtol=1e-12)
    np.testing.assert_allclose(pred.predict(cells), expected, rtol=1e-12)
    b, a = cells.assign(arm="b"), cells.assign(arm="a")
    assert (pred.aux_of(b)["psi"] != pred.aux_of(a)["psi"]).all()  # the arm moves psi


def _reduced(plan, predict):
    pieces = est_mod.plan(plan.loaded.spec.estimands, plan.tables.population_vars)
    return poststratify(plan.tables.population, predict, est_mod.requests(pieces), n_samples=S)


def test_fast_weighted_sums_equal_predicting_every_cell(plan):
    pred = _predictor(plan, threads=2)
    assert pred.fast
    fast, plain = _reduced(plan, pred), _reduced(plan, pred.predict)
    assert fast.keys() == plain.keys()
    for req in fast:
        np.testing.assert_allclose(fast[req].values, plain[req].values, rtol=1e-11, atol=1e-14)
    one = _reduced(plan, _predictor(plan, threads=1))
    for req in fast:
        np.testing.assert_array_equal(one[req].values, fast[req].values)  # bit for bit, whatever the threads


def test_psi_terms_get_logit_scale_priors_and_spec_priors_by_dotted_key(tmp_path):
    p = prepared_plan(_write(tmp_path, priors='"psi.arm" = "Normal(0, 0.5)"'))
    priors = {tp.key: tp for tp in p.fit_plan.priors}
    assert "psi" not in priors  # the formula replaces the one psi
    assert priors["psi.arm"].source == "spec" and priors["psi.arm"].prior.param("sigma") == 0.5
    share = float((p.tables.sample["spend"] > 0).mean())
    assert priors["psi.Intercept"].prior.param("mu") == pytest.approx(special.logit(share), rel=1e-9)
    assert priors["psi.1|region"].role == "group" and priors["psi.1|region"].component == "psi"
    assert priors["psi.arm"].to_json()["component"] == "psi"
    assert p.fit_plan.formulas == (("psi", "arm + (1|region)"),)
    assert not [n for n in p.tables.notes if n.code == "family.constant_psi"]


def test_the_constant_psi_warning_is_for_models_without_a_psi_formula(tmp_path):
    """The sample's share of non-zeros differs by arm (0.2 vs 0.5): one psi for every cell is
    warned about, a formula of psi is not."""
    spec = _write(tmp_path)
    spec.write_text(spec.read_text().replace(f'formulas.psi = "{PSI}"', ""))
    notes = [n for n in prepared_plan(spec).tables.notes if n.code == "family.constant_psi"]
    assert len(notes) == 1 and "'arm'" in notes[0]


@pytest.mark.parametrize("family, psi, priors, says", [
    ("gaussian", PSI, "", "only psi"),
    ("hurdle_lognormal", "~ arm + colour", "", "'colour'"),
    ("hurdle_lognormal", "~ arm +", "", "does not parse"),
    ("hurdle_lognormal", PSI, '"psi.amr" = "Normal(0, 1)"', "psi.arm"),
    ("hurdle_lognormal", PSI, 'psi = "Beta(2, 2)"', "its terms take the priors"),
    ("hurdle_lognormal", PSI, '"psi.1|region" = "Normal(0, 0.5)"', "prior on its sd"),
])
def test_bad_psi_formulas_and_priors_name_the_key(tmp_path, family, psi, priors, says):
    with pytest.raises(SpecError) as err:
        prepared_plan(_write(tmp_path, family=family, psi=psi, priors=priors))
    text = str(err.value)
    assert says in text and ("model.formulas.psi" in text or "model.priors" in text)
    assert "spec.toml:" in text  # FILE:LINE
