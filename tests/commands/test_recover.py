"""`mrp recover`: simulation-based checks of the whole pipeline.

The sampling tests use the A/B spec (4 binomial cells, so a fit takes about two seconds) with
few draws and few replicates. Every tolerance comes from the binomial band of the coverage
count or from the rank test, as the command computes them; nothing is compared with a
remembered answer.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from typer.testing import CliRunner

from generate import simulate
from mrp_formula.poststrat import sums as poststrat
from mrp_formula.commands import recover as rec
from mrp_formula.cli import app
from mrp_formula.errors import UsageError
from mrp_formula.data.population import WEIGHT

FAST = ["fit.draws=200", "fit.tune=200", "fit.chains=2"]
runner = CliRunner()


# ----------------------------------------------------------------------------- statistics, no sampling


@pytest.mark.parametrize("k,prob", [(10, 0.94), (20, 0.95), (50, 0.9), (8, 0.5)])
def test_coverage_band_holds_95_percent_and_is_tight(k, prob):
    lo, hi = rec.coverage_band(k, prob)
    inside = binom.cdf(hi, k, prob) - binom.cdf(lo - 1, k, prob)
    assert inside >= 0.95
    # each tail outside the band has at most 2.5 %, and one more count would pass 2.5 %
    assert binom.cdf(lo - 1, k, prob) <= 0.025 < binom.cdf(lo, k, prob)
    assert binom.sf(hi, k, prob) <= 0.025 < binom.sf(hi - 1, k, prob)


def test_rank_statistics():
    rng = np.random.default_rng(3)
    draws = rng.normal(size=400)
    n = rec.RANK_DRAWS
    assert rec.truth_rank(draws, -10.0, n, rng) == (0, n)
    assert rec.truth_rank(draws, 10.0, n, rng) == (n, n)
    assert rec.truth_rank(draws[:40], 10.0, n, rng) == (40, 40)  # fewer draws than RANK_DRAWS
    # ranks of truths drawn from the same distribution as the draws are uniform ...
    ranks = [rec.truth_rank(rng.normal(size=400), rng.normal(), n, rng)[0] for _ in range(400)]
    _, p_uniform = rec.rank_uniformity(np.array(ranks), n, rec.rank_bins(400))
    # ... and those of shifted truths are not
    ranks_shifted = [rec.truth_rank(rng.normal(size=400), rng.normal() + 1.5, n, rng)[0] for _ in range(400)]
    _, p_shifted = rec.rank_uniformity(np.array(ranks_shifted), n, rec.rank_bins(400))
    assert p_uniform > 0.001 and p_shifted < 1e-6
    edges, probs = rec.rank_bin_probs(n, 4)
    assert probs.sum() == pytest.approx(1.0) and len(probs) == 4


def test_replicate_seeds_depend_on_seed_and_index_only():
    a = rec.replicate_rng(7, 3).integers(2**31, size=3)
    b = rec.replicate_rng(7, 3).integers(2**31, size=3)
    c = rec.replicate_rng(7, 4).integers(2**31, size=3)
    assert (a == b).all() and not (a == c).all()


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson", "gaussian"])
def test_simulated_outcomes_have_the_expected_mean(family):
    rng = np.random.default_rng(1)
    n = 20_000
    mu = np.where(np.arange(n) % 2 == 0, 0.2, 0.6) * (10 if family == "poisson" else 1)
    sample = pd.DataFrame({"y": np.zeros(n, dtype=int), "n": np.full(n, 5)})
    out = rec.simulate_outcomes(family, mu, sample, ("y", "n") if family == "binomial" else ("y",), rng,
                                sigma=2.0 if family == "gaussian" else None)
    y = out["y"].to_numpy(dtype=float)
    expected = mu * (5 if family == "binomial" else 1)
    var = {"bernoulli": mu * (1 - mu), "binomial": 5 * mu * (1 - mu), "poisson": mu,
           "gaussian": np.full(n, 4.0)}[family]
    se = np.sqrt(var.sum()) / n
    assert abs(y.mean() - expected.mean()) < 4 * se
    assert (sample["y"] == 0).all()  # the input is not modified
    if family == "gaussian":
        assert np.std(y - mu) == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("family", ["bernoulli", "binomial"])
def test_simulation_with_frequency_weights_keeps_the_observations(family):
    """A row of weight w is w observations: their successes are simulated, their number kept."""
    rng = np.random.default_rng(2)
    w = np.array([400, 0, 1200, 7])
    mu = np.array([0.1, 0.5, 0.7, 0.3])
    sample = pd.DataFrame({"y": [1, 0, 0, 1], "n": [3, 3, 3, 3], "x": ["a", "b", "c", "d"], "freq": w})
    resp = ("y", "n") if family == "binomial" else ("y",)
    out = rec.simulate_outcomes(family, mu, sample, resp, rng, weights="freq")
    trials_per_row = 3 if family == "binomial" else 1
    by_x = out.assign(obs=out["freq"] * (out["n"] if family == "binomial" else 1),
                      succ=out["freq"] * out["y"]).groupby("x")[["obs", "succ"]].sum()
    np.testing.assert_array_equal(by_x["obs"].reindex(list("abcd"), fill_value=0), w * trials_per_row)
    n_obs = w * trials_per_row
    for x, n_i, p in zip("abcd", n_obs, mu):
        if n_i:
            k = by_x.loc[x, "succ"]
            assert abs(k - n_i * p) <= 4 * np.sqrt(n_i * p * (1 - p)) + 1
    if family == "bernoulli":
        assert set(out["y"]) <= {0, 1} and (out["freq"] > 0).all()


def test_unsupported_family_and_bad_options(write):
    spec = write("cat.toml", """
        name = "cat"
        [data]
        source = "none.csv"
        [model]
        formula = "choice ~ x"
        family = "categorical"
        [population]
        source = "pop.csv"
        [estimands.share]
    """)
    from mrp_formula.spec.tree import FAMILIES

    assert set(rec.SUPPORTED) == set(FAMILIES)  # every family of the spec can be simulated
    with pytest.raises(UsageError, match="source"):
        rec.recover(spec, replicates=3, source="posterior_predictive")
    with pytest.raises(UsageError, match="at least 2"):
        rec.recover(spec, replicates=1)
    r = runner.invoke(app, ["recover", str(spec), "--source", "nope", "--json"])
    assert r.exit_code == 2
    assert json.loads(r.stdout)["ok"] is False


# ----------------------------------------------------------------------------- with sampling


@pytest.mark.slow
def test_recovery_of_the_ab_spec_is_plausible_and_reproducible(ab_dir):
    """10 replicates through the CLI on 2 worker processes; then 2 replicates in-process
    must give exactly the same numbers (seeds come from the spec seed and the index)."""
    out = ab_dir / "recovery"
    args = ["recover", str(ab_dir / "ab.toml"), "--replicates", "10", "--jobs", "2", "--out", str(out), "--json"]
    for s in FAST:
        args += ["--set", s]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["failed"] == []
    assert doc["coverage_ok"] is True, doc["notes"]
    assert any("coverage is plausible" in n for n in doc["notes"])

    summary = pd.read_csv(out / "recovery.csv")
    reps = pd.read_csv(out / "recovery_replicates.csv")
    assert (out / "rank_histogram.png").stat().st_size > 10_000
    assert list(summary["label"]) == ["click_rate[treatment=control]", "click_rate[treatment=treatment]",
                                      "lift[treatment=treatment vs control]"]
    assert (summary["replicates"] == 10).all() and (summary["ci_prob"] == 0.95).all()
    # coverage inside the binomial band, as reported, and the band is the binomial one at the
    # level of each of the 6 tests (Bonferroni)
    lo, hi = rec.coverage_band(10, 0.95, level=1 - rec.single_test_level(3))
    assert ((summary["covered"] >= lo) & (summary["covered"] <= hi)).all()
    assert (summary["band_lower"] == lo / 10).all()
    assert len(reps) == 30 and set(reps["replicate"]) == set(range(10))
    assert ((reps["rank"] >= 0) & (reps["rank"] <= reps["rank_draws"])).all()
    assert (reps["covered"] == ((reps["lower"] <= reps["truth"]) & (reps["truth"] <= reps["upper"]))).all()
    # the truths vary between replicates (different parameter draws), and the errors are small
    # compared with the posterior's own uncertainty
    assert reps.groupby("row")["truth"].nunique().eq(10).all()
    assert (summary["mean_abs_error"] < summary["mean_width"]).all()

    again = rec.recover(ab_dir / "ab.toml", replicates=2, jobs=1, out=ab_dir / "again", overrides=FAST)
    cols = ["replicate", "row", "truth", "mean", "lower", "upper", "rank", "fit_seed"]
    pd.testing.assert_frame_equal(again.replicates[cols].reset_index(drop=True),
                                  reps.loc[reps["replicate"] < 2, cols].reset_index(drop=True),
                                  check_dtype=False)


@pytest.mark.slow
def test_a_pipeline_that_ignores_the_population_is_caught(ab_dir, monkeypatch):
    """The sample is 75% women, the population 50/50. A poststratification that ignores the
    population weights (and so averages over the sample's make-up) must be flagged, while the
    correct pipeline on the same replicates is not."""
    data = simulate(n=20_000, seed=11)  # a larger sample: the bias is many posterior sds
    data.to_csv(ab_dir / "clicks.csv", index=False)
    spec = ab_dir / "ab.toml"
    sample_share = data["gender"].value_counts(normalize=True).to_dict()
    assert sample_share["female"] > 0.7

    good = rec.recover(spec, replicates=8, jobs=1, out=ab_dir / "good", overrides=FAST, truth="prior")
    assert good.coverage_off == (), good.notes
    assert not good.failed

    correct = poststrat.poststratify

    def ignore_population_weights(cells, predict, requests, **kw):
        return correct(cells.assign(**{WEIGHT: cells["gender"].astype(str).map(sample_share)}), predict,
                       requests, **kw)

    monkeypatch.setattr(poststrat, "poststratify", ignore_population_weights)
    bad = rec.recover(spec, replicates=8, jobs=1, out=ab_dir / "bad", overrides=FAST, truth="prior")

    rates = ["click_rate[treatment=control]", "click_rate[treatment=treatment]"]
    assert set(rates) <= set(bad.coverage_off), bad.notes
    assert any(n.startswith("coverage is OFF for click_rate") for n in bad.notes)
    # the truths are the same in both studies: only the pipeline under test changed
    np.testing.assert_array_equal(bad.replicates["truth"].to_numpy(), good.replicates["truth"].to_numpy())
    s = bad.summary.set_index("label")
    g = good.summary.set_index("label")
    for label in rates:
        assert s.loc[label, "covered"] < rec.coverage_band(8, s.loc[label, "ci_prob"])[0]
        assert abs(s.loc[label, "mean_error"]) > 2 * abs(g.loc[label, "mean_error"])
        # the truth falls outside all the draws more often (on either side: with prior truths the
        # sign of the bias follows the drawn gender effect, so a two-bin rank test cannot see it)
        def outside(reps, label=label):
            r = reps[reps["label"] == label]
            return ((r["rank"] == 0) | (r["rank"] == r["rank_draws"])).mean()
        assert outside(bad.replicates) > outside(good.replicates)
    written = pd.read_csv(ab_dir / "bad" / "recovery.csv")
    assert not written.set_index("label").loc[rates, "coverage_ok"].any()
