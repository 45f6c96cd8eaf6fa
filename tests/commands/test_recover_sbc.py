"""Honest calibration claims of `mrp recover`.

* With prior truths (simulation-based calibration, the default) coverage and rank uniformity are
  tested for every estimand row, with a Bonferroni adjustment so that a calibrated pipeline fails
  any test of the study with probability at most STUDY_ALPHA; only such a run is "calibrated".
* Every prior is fixed for the study: defaults that Bambi scales to the data are computed once on
  the real data and frozen for the truths and every refit; improper priors are refused.
* With posterior truths the run is a recovery check: coverage and ranks are reported without a
  verdict, and every output says which kind of run it is.
* Every family of the spec can be simulated (negative binomial, categorical and cumulative too).

The decision rule is checked on simulated studies without sampling; the sampled studies use tiny
data, 2 replicates, few draws and one chain.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.model import sampler as model_mod
from mrp_formula.commands import recover as rec
from mrp_formula.cli import app
from mrp_formula.errors import SpecError
from mrp_formula.steps import plan as prepared_plan

TINY = ["fit.draws=100", "fit.tune=100", "fit.chains=1"]
runner = CliRunner()


# ----------------------------------------------------------------------------- the decision rule


def _reps(covered: np.ndarray, ranks: np.ndarray, n_ranks: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replicate rows of a synthetic study: covered (rows, K) booleans, ranks (rows, K)."""
    rows, k = covered.shape
    recs = [{"replicate": r, "row": i, "label": f"e[{i}]", "truth": 0.0, "mean": 0.1, "median": 0.1,
             "lower": -1.0, "upper": 1.0, "sd": 0.5, "covered": bool(covered[i, r]), "rank": int(ranks[i, r]),
             "rank_draws": n_ranks, "error": 0.1} for i in range(rows) for r in range(k)]
    keys = pd.DataFrame({"row": range(rows), "estimand": "e", "label": [f"e[{i}]" for i in range(rows)]})
    return pd.DataFrame(recs), keys


def test_coverage_p_matches_the_band():
    """A count outside the central 1 - a band has an equal-tailed p-value of at most a."""
    for k, prob in [(8, 0.95), (20, 0.9), (50, 0.95), (13, 0.5)]:
        for a in (0.05, 0.01, 0.05 / 6):
            lo, hi = rec.coverage_band(k, prob, level=1 - a)
            for c in range(k + 1):
                if c < lo or c > hi:
                    assert rec.coverage_p(c, k, prob) <= a + 1e-12, (k, prob, a, c)
    assert rec.coverage_p(19, 20, 0.95) == pytest.approx(1.0)


@pytest.mark.slow  # 3,000 simulated studies: about 8 s
def test_calibrated_studies_fail_at_most_at_the_family_wise_level():
    """Studies of a calibrated pipeline (coverage ~ Binomial(K, p), uniform ranks), 4 independent
    rows each: the share with any failed test is at most STUDY_ALPHA (up to its binomial noise),
    while testing each of the 8 tests at 5% alone would fail far more often."""
    rng = np.random.default_rng(11)
    studies, rows, k, n_ranks, p = 3000, 4, 20, 100, 0.95
    level = rec.single_test_level(rows)
    assert level == pytest.approx(rec.STUDY_ALPHA / (2 * rows))
    lo, hi = rec.coverage_band(k, p, level=1 - level)
    lo5, hi5 = rec.coverage_band(k, p, level=0.95)
    covered = rng.binomial(k, p, size=(studies, rows))
    ranks = rng.integers(0, n_ranks + 1, size=(studies, rows, k))
    rank_p = np.array([[rec.rank_uniformity(ranks[s, i], n_ranks, rec.rank_bins(k))[1] for i in range(rows)]
                       for s in range(studies)])
    adjusted = ((covered < lo) | (covered > hi) | (rank_p < level)).any(axis=1).mean()
    single = ((covered < lo5) | (covered > hi5) | (rank_p < 0.05)).any(axis=1).mean()
    tolerance = 3 * np.sqrt(rec.STUDY_ALPHA * (1 - rec.STUDY_ALPHA) / studies)
    assert adjusted <= rec.STUDY_ALPHA + tolerance, adjusted
    assert single > rec.STUDY_ALPHA + tolerance, single  # what the adjustment prevents


def test_summary_of_prior_truths_tests_each_row_at_the_adjusted_level():
    rng = np.random.default_rng(3)
    k = 12
    covered = np.ones((3, k), bool)
    covered[1, :6] = False  # 6/12 at 95%: far below the band
    ranks = rng.integers(0, 101, size=(3, k))
    ranks[2] = 100  # every truth above every draw
    reps, keys = _reps(covered, ranks)
    summary, cov_off, ranks_off, notes = rec.summarise_study(reps, keys, 0.95, "eti", "prior")
    level = rec.single_test_level(3)
    lo, hi = rec.coverage_band(k, 0.95, level=1 - level)
    assert (summary["band_level"] == 1 - level).all() and (summary["rank_alpha"] == level).all()
    assert (summary["band_lower"] == lo / k).all() and (summary["band_upper"] == hi / k).all()
    assert list(summary["coverage_ok"]) == [lo <= c <= hi for c in covered.sum(1)]
    assert list(summary["ranks_ok"]) == [not p < level for p in summary["rank_p"]]
    assert cov_off[0] == "e[1]" and "e[2]" in ranks_off
    assert (summary["truth_from"] == "prior").all() and (summary["kind"] == "calibration (SBC)").all()
    assert any(n.startswith("coverage is OFF for e[1]") and "family-wise" in n for n in notes)
    assert summary.loc[1, "coverage_p"] < level


def test_summary_of_posterior_truths_has_no_verdict():
    covered = np.zeros((2, 10), bool)  # would be OFF under a test
    reps, keys = _reps(covered, np.full((2, 10), 100))
    summary, cov_off, ranks_off, notes = rec.summarise_study(reps, keys, 0.95, "eti", "posterior")
    assert cov_off == () and ranks_off == ()
    assert summary["coverage_ok"].isna().all() and summary["ranks_ok"].isna().all()
    assert summary["band_lower"].isna().all() and summary["rank_alpha"].isna().all()
    assert (summary["kind"] == "recovery check").all() and (summary["coverage"] == 0).all()
    assert all("no verdict" in n for n in notes) and not any("OFF" in n or "plausible" in n for n in notes)
    assert summary["mean_error_sd"].iloc[0] == pytest.approx(0.2)  # error 0.1 over sd 0.5


def test_only_a_passing_sbc_run_is_calibrated():
    common = {"summary": pd.DataFrame(), "replicates": pd.DataFrame(), "out": None, "notes": (), "seconds": 0.0}
    assert rec.RecoveryResult(coverage_off=(), ranks_off=(), failed=(), truth="prior", **common).calibrated is True
    assert rec.RecoveryResult(coverage_off=("x",), ranks_off=(), failed=(), truth="prior",
                              **common).calibrated is False
    assert rec.RecoveryResult(coverage_off=(), ranks_off=(), failed=("r",), truth="prior",
                              **common).calibrated is False
    post = rec.RecoveryResult(coverage_off=(), ranks_off=(), failed=(), truth="posterior", **common)
    assert post.calibrated is None and post.kind == "recovery check"
    # a pass with too few replicates to have been able to fail is no verdict; a failure stays one
    assert rec.RecoveryResult(coverage_off=(), ranks_off=(), failed=(), truth="prior", underpowered=True,
                              **common).calibrated is None
    assert rec.RecoveryResult(coverage_off=("x",), ranks_off=(), failed=(), truth="prior", underpowered=True,
                              **common).calibrated is False


@pytest.mark.parametrize("k, weak", [(2, True), (4, True), (8, True), (10, False), (20, False), (100, False)])
def test_too_few_replicates_give_no_verdict(k, weak):
    """With 3 estimand rows and 94 % intervals, 4 replicates pass any count of 2-4 covered (50 %):
    no better than two thirds of the nominal coverage is no test; 10 replicates need 7 (70 %)."""
    assert rec.underpowered(k, 0.94, 3) is weak


# ----------------------------------------------------------------------------- fixed priors


def _gaussian(folder, *, priors: str = "", scale: float = 1.0, n: int = 40):
    rng = np.random.default_rng(5)
    g = rng.choice(list("abcd"), n)
    y = (50 + np.vectorize({"a": -5, "b": 0, "c": 5, "d": 9}.get)(g) + rng.normal(0, 8, n)) * scale
    pd.DataFrame({"g": g, "y": y}).to_csv(folder / "d.csv", index=False)
    pd.DataFrame({"g": list("abcd"), "n": [1, 2, 3, 4]}).to_csv(folder / "pop.csv", index=False)
    (folder / "s.toml").write_text(textwrap.dedent(f"""
        name = "sbc"
        [data]
        source = "d.csv"
        [model]
        formula = "y ~ 1 + (1|g)"
        family = "gaussian"
        {priors}
        [fit]
        seed = 2
        [population]
        source = "pop.csv"
        weight = "n"
        [estimands.mean_y]
    """))
    return folder / "s.toml"


def _model(spec):
    plan = prepared_plan(spec)
    return model_mod.build_model(plan.loaded, plan.info, plan.fit_plan), plan


def test_frozen_priors_do_not_follow_the_data(tmp_path):
    """Defaults scaled to the data (gaussian intercept and sigma) differ for an outcome 1,000 times
    larger; frozen on the real data, a model of the other outcome gets exactly the same priors,
    and keeps its own parameterization of each group term."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    real, _ = _model(_gaussian(tmp_path / "a"))
    other, _ = _model(_gaussian(tmp_path / "b", scale=1000.0))
    frozen = model_mod.frozen_priors(real)
    described = model_mod.describe_priors(frozen)
    assert {"Intercept", "1|g", "sigma"} <= set(described)
    before = model_mod.describe_priors(model_mod.frozen_priors(other))
    assert before["Intercept"] != described["Intercept"] and before["sigma"] != described["sigma"]
    model_mod.set_frozen_priors(other, frozen, {"1|g": "centered"})
    after = model_mod.frozen_priors(other)
    def strip(text):
        return text.replace(", noncentered: True", "").replace(", noncentered: False", "")
    assert {k: strip(v) for k, v in model_mod.describe_priors(after).items()} == \
        {k: strip(v) for k, v in described.items()}
    assert after["1|g"].noncentered is False
    assert model_mod.improper_priors(frozen) == []


def test_improper_priors_are_refused_for_sbc(tmp_path):
    spec = _gaussian(tmp_path, priors='[model.priors]\nIntercept = "Flat()"')
    with pytest.raises(SpecError, match="'Intercept'.*improper") as exc:
        rec.recover(spec, replicates=2, jobs=1, overrides=TINY, truth="prior", out=tmp_path / "r")
    assert "--truth posterior" in str(exc.value)
    r = runner.invoke(app, ["recover", str(spec), "--replicates", "2", "--truth", "prior", "--json"])
    assert r.exit_code == 3, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and "Intercept" in json.dumps(doc)


def test_truth_and_its_former_name_must_agree(tmp_path):
    from mrp_formula.errors import UsageError

    with pytest.raises(UsageError, match="disagree"):
        rec.recover(tmp_path / "none.toml", replicates=2, truth="prior", source="posterior")
    with pytest.raises(UsageError, match="--truth prior"):
        rec.recover(tmp_path / "none.toml", replicates=2, truth="posteriors")


# ----------------------------------------------------------------------------- sampled


def _family_dir(folder, family: str):
    rng = np.random.default_rng(8)
    n = 60
    g = rng.choice(list("abc"), n)
    eff = np.vectorize({"a": -0.4, "b": 0.0, "c": 0.5}.get)(g)
    if family == "negativebinomial":
        mu = np.exp(1.0 + eff)
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
        formula = "y ~ 1 + (1|g)"
    else:
        cut = np.array([-0.7, 0.6])
        u = eff + rng.logistic(size=n)
        y = np.array(["low", "mid", "high"])[(u[:, None] > cut).sum(1)]
        formula = "y ~ g" if family == "categorical" else "y ~ 0 + g"
    pd.DataFrame({"g": g, "y": y}).to_csv(folder / "d.csv", index=False)
    pd.DataFrame({"g": list("abc"), "n": [3, 2, 1]}).to_csv(folder / "pop.csv", index=False)
    levels = 'levels.y = ["low", "mid", "high"]' if family != "negativebinomial" else ""
    (folder / "s.toml").write_text(textwrap.dedent(f"""
        name = "{family}"
        [data]
        source = "d.csv"
        [model]
        formula = "{formula}"
        family = "{family}"
        {levels}
        [fit]
        seed = 6
        [population]
        source = "pop.csv"
        weight = "n"
        [estimands.overall]
    """))
    return folder / "s.toml"


@pytest.mark.parametrize("family", ["negativebinomial", "categorical", "cumulative"])
@pytest.mark.slow
def test_sbc_runs_for_every_family(family, tmp_path):
    spec = _family_dir(tmp_path, family)
    res = rec.recover(spec, replicates=2, jobs=1, overrides=TINY, truth="prior", out=tmp_path / "r", cache=False)
    assert not res.failed, res.failed
    reps = res.replicates
    assert set(reps["replicate"]) == {0, 1} and (reps["truth_from"] == "prior").all()
    assert reps["truth"].notna().all() and ((reps["rank"] >= 0) & (reps["rank"] <= reps["rank_draws"])).all()
    if family != "negativebinomial":  # one row per category (and the mean for cumulative)
        assert len(res.summary) == (4 if family == "cumulative" else 3)
        shares = reps[reps["category"] != "mean"].groupby("replicate")["truth"].sum()
        np.testing.assert_allclose(shares, 1.0)
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["truth"] == "prior" and man["kind"] == "calibration (SBC)" and man["calibrated"] is res.calibrated
    assert man["tests"]["adjustment"] == "bonferroni" and man["tests"]["tests"] == 2 * len(res.summary)
    # every prior of the study is recorded, the defaults marked as such
    assert man["priors"] and all(p["from"] == "default" for p in man["priors"].values())
    if family == "negativebinomial":
        assert "alpha" in man["priors"]
    if family == "cumulative":
        assert "threshold" in man["priors"]
    assert any("kept fixed for the truths and every refit" in n for n in res.notes)
    written = pd.read_csv(tmp_path / "r" / "recovery.csv")
    assert (written["kind"] == "calibration (SBC)").all() and written["coverage_ok"].notna().all()


@pytest.mark.slow
def test_posterior_truths_are_a_recovery_check_everywhere(tmp_path):
    """--truth posterior: the table, the printed summary, the JSON and the files say it is a
    recovery check, and nothing calls it calibrated; --strict does not fail it for coverage."""
    spec = _gaussian(tmp_path, priors='[model.priors]\n"1|g" = "Normal(0, HalfNormal(5))"')
    out = tmp_path / "post"
    args = ["recover", str(spec), "--replicates", "2", "--jobs", "1", "--truth", "posterior"]
    for s in TINY:
        args += ["--set", s]
    r = runner.invoke(app, args + ["--out", str(out), "--strict", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["truth"] == "posterior" and doc["kind"] == "recovery check"
    assert doc["calibrated"] is None and doc["coverage_ok"] is None
    assert all(row["coverage_ok"] is None for row in doc["recovery"])
    assert not any(n.startswith("verdict") for n in doc["notes"])
    assert any("not a calibration test" in n for n in doc["notes"])
    summary = pd.read_csv(out / "recovery.csv")
    assert (summary["kind"] == "recovery check").all() and summary["coverage_ok"].isna().all()
    assert (pd.read_csv(out / "recovery_replicates.csv")["truth_from"] == "posterior").all()
    man = json.loads((out / "manifest.json").read_text())
    assert man["truth"] == "posterior" and man["calibrated"] is None and man["tests"] is None

    # the printed summary (the first fit is cached now)
    r = runner.invoke(app, args + ["--out", str(tmp_path / "post2")])
    assert r.exit_code == 0, r.output
    assert "recovery check (posterior truths, descriptive, not a calibration test)" in r.stderr
    assert "recovery check only" in r.stderr and "calibrated" not in r.stderr.replace("not a calibration", "")
