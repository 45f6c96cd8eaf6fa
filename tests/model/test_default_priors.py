"""Default priors: Bambi's rules, computed from the sample rows (weighted by their counts), scaled
to the outcome where the family calls for it; every prior explicit, listed by `mrp check` and
recorded in the manifest.

The bug these tests pin down: unspecified group terms got Normal(0, HalfNormal(1)) whatever the
outcome's scale, so a gaussian outcome in the thousands had its group effects shrunk to nothing
and every `by` breakdown collapsed to the grand mean.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

import mrp_formula
from mrp_formula.cli import app
from mrp_formula.steps import plan_and_model, plan as prepared_plan
from mrp_formula.model.plan import Dist, resolve_priors
from mrp_formula.model import sampler as sampler_mod

FAST = ["fit.draws=300", "fit.tune=300", "fit.chains=2", "report.plots=false"]
REGIONS = [f"r{i}" for i in range(6)]
EFFECT = np.array([-1.0, -0.5, 0.0, 0.3, 0.6, 1.0])


def rows(family: str, seed: int = 1, n: int = 240, scale: float = 1.0) -> pd.DataFrame:
    """Rows with a 6-level region, a 2-level arm and a numeric x far from 0 (mean 50, sd 10)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 6, n)
    arm = rng.choice(["a", "b"], n)
    x = np.round(rng.normal(50, 10, n), 1)
    eta = EFFECT[idx] + 0.4 * (arm == "b") + 0.02 * (x - 50)
    if family == "gaussian":
        y = (5.0 + eta + rng.normal(0, 1, n)) * scale
    elif family == "bernoulli":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    elif family in ("poisson", "negativebinomial"):
        y = rng.poisson(np.exp(1 + eta))
    elif family == "categorical":
        y = np.where(eta + rng.normal(0, 1, n) > 0.5, "hi", np.where(eta + rng.normal(0, 1, n) > -0.5, "mid", "lo"))
    else:  # cumulative
        y = np.clip(np.round(2 + eta + rng.normal(0, 1, n)), 1, 4).astype(int)
    return pd.DataFrame({"region": np.array(REGIONS)[idx], "arm": arm, "x": x, "y": y})


FORMULA = {"cumulative": "y ~ arm + x + (1 | region)"}


def write_spec(folder, family: str, data: pd.DataFrame, *, name: str = "s", priors: str = "",
               formula: str | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    data.to_csv(folder / f"{name}.csv", index=False)
    pop = pd.DataFrame([(r, a, 50.0, 100) for r in REGIONS for a in ("a", "b")],
                       columns=["region", "arm", "x", "count"])
    pop.to_csv(folder / "pop.csv", index=False)
    formula = formula or FORMULA.get(family, "y ~ arm + x + (1 | region)")
    text = f"""
    name = "{name}"
    [data]
    source = "{name}.csv"
    [model]
    formula = "{formula}"
    family = "{family}"
    [model.priors]
    {priors}
    [fit]
    seed = 3
    [population]
    source = "pop.csv"
    weight = "count"
    [estimands.mean]
    by = ["region"]
    [estimands.lift]
    contrast = {{ arm = ["b", "a"] }}
    """
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _args(prior) -> dict:
    """A Bambi prior's parameters as numbers or arrays (hyperpriors as nested dicts)."""
    out = {"dist": prior.name}
    for k, v in prior.args.items():
        if k == "transform":
            out[k] = type(v).__name__
        else:
            out[k] = _args(v) if hasattr(v, "args") else np.asarray(v, dtype=float)
    return out


def _close(ours: dict, theirs: dict, what: str) -> None:
    assert ours["dist"] == theirs["dist"], (what, ours, theirs)
    for k, v in theirs.items():
        if k in ("dist", "transform", "noncentered"):
            continue
        if isinstance(v, dict):
            _close(ours[k], v, f"{what}.{k}")
        else:
            np.testing.assert_allclose(np.broadcast_to(np.asarray(ours[k], dtype=float), np.shape(v)), v,
                                       rtol=1e-10, err_msg=f"{what}.{k}")


def _ours(dist: Dist) -> dict:
    out = {"dist": dist.name}
    for k, v in dist.params:
        out[k] = _ours(v) if isinstance(v, Dist) else np.asarray(v, dtype=float)
    return out


def _bambi_priors(model) -> dict[str, dict]:
    parent = model.parameters[model.family.likelihood.parent]
    out = {}
    if parent.intercept_term is not None:
        out["Intercept"] = _args(parent.intercept_term.prior)
    for name, term in parent.common_terms.items():
        out[name] = _args(term.prior)
    for name, term in parent.group_specific_terms.items():
        out[name] = _args(term.prior)
    for name, comp in model.parameters.items():
        if name != model.family.likelihood.parent and hasattr(comp.prior, "args"):
            out[name] = _args(comp.prior)
    return out


@pytest.mark.parametrize("family", ["gaussian", "bernoulli", "poisson", "negativebinomial", "categorical",
                                    "cumulative"])
def test_defaults_are_bambis_computed_on_the_rows_and_all_handed_to_bambi(family, tmp_path):
    """Intercept, common slopes and family parameters equal Bambi's own defaults for a model of
    the plain rows (also where the fit is on binomial cells: bernoulli); group sds follow the
    documented rule; and the Bambi model that is fitted carries exactly the resolved priors."""
    import bambi as bmb

    data = rows(family)
    plan, built = plan_and_model(write_spec(tmp_path, family, data))
    fp = plan.fit_plan
    assert fp.aggregated == (family == "bernoulli")
    resolved = {p.term: p for p in fp.priors}
    assert all(p.source == "default" for p in fp.priors)
    row_data = data if fp.aggregated else fp.data  # the rows as read (typed), or the raw rows of the cells
    reference = _bambi_priors(bmb.Model(FORMULA.get(family, "y ~ arm + x + (1 | region)"), row_data, family=family))
    for term, theirs in reference.items():
        if term == "1|region":
            continue
        _close(_ours(resolved[term].prior), theirs, f"{family} {term}")
    group = resolved["1|region"].prior
    sd = group.param("sigma")
    assert group.name == "Normal" and group.param("mu") == 0 and sd.name == "HalfNormal"
    expected = 2.5 * data["y"].std(ddof=0) if family == "gaussian" else 1.0
    assert sd.param("sigma") == pytest.approx(expected, rel=1e-12)
    fitted = _bambi_priors(built)
    assert set(fitted) == set(resolved), (set(fitted), set(resolved))
    for term, p in resolved.items():
        _close(_ours(p.prior), fitted[term], f"built {family} {term}")
        # ordered thresholds as Bambi's; Normal slopes and intercepts in units of their prior (for the sampler)
        scaled = sampler_mod.sampled_in_prior_units(fp.family, p)
        assert fitted[term].get("transform") == ("PriorScaled" if scaled else reference.get(term, {}).get("transform"))


def test_aggregated_fit_has_the_priors_of_the_row_fit(tmp_path):
    """Fitting bernoulli rows as binomial cells keeps the priors of the row fit (slopes per sd of
    x over the rows, not over the cells)."""
    path = write_spec(tmp_path, "bernoulli", rows("bernoulli", n=400))
    cells = prepared_plan(path).fit_plan
    plain = prepared_plan(path, ['model.aggregate="never"']).fit_plan
    assert cells.aggregated and not plain.aggregated and cells.cells < plain.cells
    assert [p.to_json() for p in cells.priors] == [p.to_json() for p in plain.priors]


def _plan(tmp_path, family, formula=None):
    return prepared_plan(write_spec(tmp_path, family, rows(family), formula=formula))


def _numbers(dist: Dist) -> dict:
    out = {}
    for k, v in dist.params:
        if isinstance(v, Dist):
            out.update({f"{k}.{kk}": vv for kk, vv in _numbers(v).items()})
        else:
            out[k] = np.asarray(v, dtype=float)
    return out


def _assert_scaled(small, big, factor: float) -> None:
    """Every location and scale of a default prior is multiplied by ``factor``; nu is not."""
    assert [p.term for p in small] == [p.term for p in big]
    for a, b in zip(small, big):
        na, nb = _numbers(a.prior), _numbers(b.prior)
        assert na.keys() == nb.keys()
        for k in na:
            want = na[k] if k.endswith("nu") else na[k] * factor
            np.testing.assert_allclose(nb[k], want, rtol=1e-12, atol=0, err_msg=f"{a.term} {k}")


GROUP_SLOPE = "y ~ arm + x + (1 | region) + (0 + x | arm)"


def test_gaussian_defaults_scale_exactly_with_the_outcome(plans):
    """y x 1,000: every default prior (intercept, slopes, group sds incl. a group slope, sigma)
    x 1,000 exactly; spec priors are the user's and stay."""
    plan = plans["slopes"]
    small, _ = resolve_priors(plan.loaded, plan.info, plan.tables)
    assert {p.term for p in small} == {"Intercept", "arm", "x", "1|region", "x|arm", "sigma"}
    big_tables = dataclasses.replace(plan.tables, sample=plan.tables.sample.assign(y=lambda d: d["y"] * 1000))
    big, scale = resolve_priors(plan.loaded, plan.info, big_tables)
    _assert_scaled(small, big, 1000.0)
    assert "sd 1" in scale  # the note names the outcome's sd
    model = plan.loaded.spec.model.model_copy(update={"priors": {"x": _normal(0, 3)}})
    given = plan.loaded.model_copy(update={"spec": plan.loaded.spec.model_copy(update={"model": model})})
    a, _ = resolve_priors(given, plan.info, plan.tables)
    b, _ = resolve_priors(given, plan.info, big_tables)
    assert str(next(p for p in a if p.term == "x").prior) == str(next(p for p in b if p.term == "x").prior) \
        == "Normal(mu=0, sigma=3)"


def _normal(mu, sigma):
    from mrp_formula.spec.priors import parse_prior

    return parse_prior(f"Normal({mu}, {sigma})")


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Prepared plans to resolve priors on (made once: the hypothesis tests only swap the sample)."""
    folder = tmp_path_factory.mktemp("plans")
    return {"slopes": _plan(folder / "slopes", "gaussian", GROUP_SLOPE),
            "gaussian": _plan(folder / "gaussian", "gaussian"),
            "bernoulli": _plan(folder / "bernoulli", "bernoulli")}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), exponent=st.integers(-3, 6))
def test_scale_equivariance_on_random_outcomes(plans, seed, exponent):
    """Any outcome, any power-of-ten scale: the defaults scale with it (and a shift of the outcome
    moves only the intercept's mean)."""
    plan = plans["slopes"]
    rng = np.random.default_rng(seed)
    y = rng.standard_t(3, len(plan.tables.sample)) * rng.uniform(0.1, 10) + rng.uniform(-100, 100)
    base = dataclasses.replace(plan.tables, sample=plan.tables.sample.assign(y=y))
    factor = 10.0 ** exponent
    scaled = dataclasses.replace(plan.tables, sample=plan.tables.sample.assign(y=y * factor))
    a, _ = resolve_priors(plan.loaded, plan.info, base)
    b, _ = resolve_priors(plan.loaded, plan.info, scaled)
    _assert_scaled(a, b, factor)
    shift = float(rng.uniform(-1e3, 1e3))
    c, _ = resolve_priors(plan.loaded, plan.info, dataclasses.replace(base, sample=base.sample.assign(y=y + shift)))
    for p, q in zip(a, c):
        np_, nq = _numbers(p.prior), _numbers(q.prior)
        for k in np_:
            want = np_[k] + shift if (p.term, k) == ("Intercept", "mu") else np_[k]
            np.testing.assert_allclose(nq[k], want, rtol=1e-9, atol=1e-9 * abs(shift), err_msg=f"{p.term} {k}")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), family=st.sampled_from(["gaussian", "bernoulli"]))
def test_counted_rows_give_the_priors_of_the_repeated_rows(plans, seed, family):
    """Merging identical rows into one with a count (as DuckDB reads binary samples, and as
    frequency weights say) leaves every default prior as it is."""
    plan = plans[family]
    rng = np.random.default_rng(seed)
    distinct = plan.tables.sample.drop(columns=[plan.tables.weights] if plan.tables.weights else [])
    distinct = distinct.drop_duplicates().reset_index(drop=True).iloc[: int(rng.integers(20, 120))]
    counts = rng.integers(1, 6, len(distinct))
    repeated = distinct.loc[distinct.index.repeat(counts)].sample(frac=1, random_state=seed).reset_index(drop=True)
    counted = distinct.assign(n_rows=counts)
    a, _ = resolve_priors(plan.loaded, plan.info, dataclasses.replace(plan.tables, sample=repeated, weights=None))
    b, _ = resolve_priors(plan.loaded, plan.info, dataclasses.replace(plan.tables, sample=counted, weights="n_rows"))
    assert [p.term for p in a] == [p.term for p in b]
    for p, q in zip(a, b):
        for k, v in _numbers(p.prior).items():
            np.testing.assert_allclose(_numbers(q.prior)[k], v, rtol=1e-9, err_msg=f"{p.term} {k}")


def test_check_lists_every_prior_marked_default_or_spec(tmp_path):
    path = write_spec(tmp_path, "gaussian", rows("gaussian", scale=1000), priors='x = "Normal(0, 100)"')
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 0, r.output
    lines = {ln.split()[0]: ln for ln in r.stderr.splitlines() if ln.startswith("    ")}
    for term in ("Intercept", "arm", "x", "1|region", "sigma"):
        assert term in lines, r.stderr
    assert lines["x"].rstrip().endswith("spec") and "Normal(mu=0, sigma=100)" in lines["x"]
    for term in ("Intercept", "arm", "1|region", "sigma"):
        assert "default" in lines[term], lines[term]
    assert "HalfNormal(sigma=" in lines["1|region"]  # the group sd's prior is shown with the term
    doc = json.loads(CliRunner().invoke(app, ["check", str(path), "--json"]).stdout)
    assert {p["term"]: p["source"] for p in doc["priors"]} == {
        "Intercept": "default", "arm": "default", "x": "spec", "1|region": "default", "sigma": "default"}
    group = next(p for p in doc["priors"] if p["term"] == "1|region")["distribution"]
    assert group["sigma"]["sigma"] == pytest.approx(2.5 * pd.read_csv(tmp_path / "s.csv")["y"].std(ddof=0))


def test_a_prior_for_the_wrong_family_parameter_is_refused(tmp_path):
    path = write_spec(tmp_path, "bernoulli", rows("bernoulli"), priors='sigma = "HalfNormal(1)"')
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 3 and "model.priors.sigma" in r.stderr and "bernoulli family" in r.stderr, r.stderr
    path = write_spec(tmp_path, "gaussian", rows("gaussian"), priors='"1|region" = "Normal(1, HalfNormal(1))"')
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 3 and "mean 0" in r.stderr, r.stderr


@pytest.mark.slow
def test_outcome_in_thousands_gives_the_same_estimands_up_to_the_scale(tmp_path):
    """The same gaussian data in units and in thousands, default priors: the same posterior up to
    the scale (means within Monte Carlo error, sds alike), and the region means do not collapse."""
    small = write_spec(tmp_path, "gaussian", rows("gaussian", seed=4), name="small")
    big = write_spec(tmp_path, "gaussian", rows("gaussian", seed=4, scale=1000.0), name="big")
    a = mrp_formula.run(small, out=tmp_path / "run_small", overrides=FAST, cache=False).estimands
    run_big = mrp_formula.run(big, out=tmp_path / "run_big", overrides=FAST, cache=False)
    b = run_big.estimands.copy()
    for col in ("mean", "sd", "lower", "upper"):
        b[col] = b[col] / 1000.0
    # Monte Carlo standard error of each mean: sd / sqrt(ESS); the two fits are independent.
    mcse = np.sqrt(a["sd"] ** 2 / a["ess_bulk"] + b["sd"] ** 2 / b["ess_bulk"])
    z = (a["mean"] - b["mean"]).abs() / mcse
    assert (z < 4).all(), pd.DataFrame({"small": a["mean"], "big / 1000": b["mean"], "z": z})
    ratio = b["sd"] / a["sd"]
    assert ((ratio > 0.8) & (ratio < 1.25)).all(), ratio
    by_region = run_big.estimands[run_big.estimands["estimand"] == "mean"]
    spread = by_region["mean"].max() - by_region["mean"].min()  # truth: about 2,000 (effects -1 .. 1, x 1,000)
    assert spread > 8 * by_region["sd"].max(), by_region[["region", "mean", "sd"]]
    manifest = json.loads((tmp_path / "run_big" / "manifest.json").read_text())
    terms = {p["term"]: p for p in manifest["priors"]}
    assert set(terms) == {"Intercept", "arm", "x", "1|region", "sigma"}
    assert all(p["source"] == "default" for p in terms.values())
    assert terms["1|region"]["distribution"]["sigma"]["sigma"] > 1000  # 2.5 sd(y), y in thousands


def test_the_fit_cache_key_covers_the_resolved_priors(plans):
    """Defaults come from the rows, which the fitted cells do not determine (binomial rows), and
    a fit cached with other defaults must not be reused: the key changes with them."""
    from mrp_formula.model.cache import fit_key

    plan = plans["bernoulli"]
    versions = {"bambi": "x", "pymc": "y"}
    wider = tuple(dataclasses.replace(p, prior=Dist("Normal", (("mu", 0.0), ("sigma", 9.0))))
                  if p.term == "Intercept" else p for p in plan.fit_plan.priors)
    other = dataclasses.replace(plan, fit_plan=dataclasses.replace(plan.fit_plan, priors=wider))
    assert fit_key(plan, versions) == fit_key(dataclasses.replace(plan), versions)
    assert fit_key(plan, versions) != fit_key(other, versions)
