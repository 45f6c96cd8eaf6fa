"""End to end, with sampling: the method recovers a known truth that the raw sample misses.

Tolerances come from the posterior: the truth must lie inside the reported interval.
Each case samples once (module fixtures) with few draws.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

import mrp_formula
from conftest import AB_SPEC, simulate_survey
from generate import simulate, truth

pytestmark = pytest.mark.slow  # every test here samples

FAST = ["fit.draws=400", "fit.tune=400", "fit.chains=2"]


@pytest.fixture(scope="module")
def ab_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ab")
    data = simulate(n=20_000, seed=2026)
    data.to_csv(d / "clicks.csv", index=False)
    (d / "ab.toml").write_text(textwrap.dedent(AB_SPEC).replace("ci_prob", "ci_prob").lstrip()
                               + '\n[report]\nci_prob = 0.95\nci_kind = "hdi"\n')
    result = mrp_formula.run(d / "ab.toml", out=d / "run", overrides=FAST)
    return data, result, d


def _row(table, **where):
    m = np.ones(len(table), bool)
    for k, v in where.items():
        m &= (table[k] == v).to_numpy()
    assert m.sum() == 1, table
    return table[m].iloc[0]


def test_ab_intervals_cover_truth_while_raw_rates_do_not(ab_run):
    data, result, _ = ab_run
    t = truth()
    table = result.estimands
    for arm in ("control", "treatment"):
        row = _row(table, estimand="click_rate", treatment=arm)
        assert row["lower"] < t[arm] < row["upper"], row
        raw = data.loc[data.treatment == arm, "clicked"]
        se = np.sqrt(raw.mean() * (1 - raw.mean()) / len(raw))
        assert abs(raw.mean() - t[arm]) > 2 * se  # the raw sample rate is biased by the 75% women
    lift = _row(table, estimand="lift")
    assert lift["lower"] < 1.5 < lift["upper"]
    assert lift["p_above_null"] > 0.99
    assert 0 <= lift["p_in_rope"] < 0.05


def test_run_folder_contents(ab_run):
    _, result, d = ab_run
    out = d / "run"
    for name in ("estimands.csv", "estimand_draws.parquet", "posterior.nc", "manifest.json", "spec.toml"):
        assert (out / name).exists(), name
    est = pd.read_csv(out / "estimands.csv")
    assert {"estimand", "treatment", "mean", "median", "sd", "lower", "upper", "ci_prob", "ci_kind",
            "p_above_null", "p_in_rope"} <= set(est.columns)
    assert (est["ci_kind"] == "hdi").all() and (est["ci_prob"] == 0.95).all()
    draws = pd.read_parquet(out / "estimand_draws.parquet")
    assert list(draws.columns[:3]) == ["chain", "draw", "estimand"]
    assert len(draws) == 3 * 2 * 400
    # the summary is computed from the draws
    lift = draws[draws.estimand == "lift"]["value"]
    assert est.loc[est.estimand == "lift", "mean"].iloc[0] == pytest.approx(lift.mean())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 1
    # 20,000 rows in 4 cells: each gender level holds thousands of rows' information
    assert manifest["sampler"]["mass_matrix"] == "low_rank" and "information" in manifest["sampler"]["mass_matrix_reason"]
    assert manifest["model"]["aggregated"] is True and manifest["model"]["cells_fitted"] == 4
    assert manifest["model"]["rows_in"] == 20_000
    assert len(manifest["inputs"]["data"]["sha256"]) == 64
    assert "bambi" in manifest["versions"] and "diagnostics" in manifest


def test_the_page_names_the_run_folder_not_its_staging(ab_run, monkeypatch):
    """The page is written into a staged folder that is renamed when the run is complete: it names
    the folder the reader finds, and the command to write it again works from where the run ran."""
    _, _, d = ab_run
    page = (d / "run" / "report.html").read_text()
    assert ".tmp-" not in page
    assert str((d / "run").resolve()) in page  # the manifest section's run folder
    monkeypatch.chdir(d)
    from mrp_formula.output.report import RunView

    assert RunView.from_folder(d / "run", draws=False).rewrite == "mrp report run"


def test_same_seed_same_numbers(ab_run):
    _, result, d = ab_run
    again = mrp_formula.run(d / "ab.toml", out=d / "run2", overrides=FAST, refit=True)
    assert again.manifest["fit_cache"]["reused"] is False
    pd.testing.assert_frame_equal(result.estimands, again.estimands)


def test_cached_fit_reused_when_only_estimands_change(ab_run):
    _, result, d = ab_run
    changed = FAST + ['estimands.lift.scale="difference"', "estimands.lift.rope=[-0.01, 0.01]"]
    again = mrp_formula.run(d / "ab.toml", out=d / "run3", overrides=changed)
    assert again.manifest["fit_cache"]["reused"] is True
    assert any("reused the cached fit" in n for n in again.notes)
    # same posterior, so the click rates are identical; the lift is now a difference
    pd.testing.assert_frame_equal(result.estimands.iloc[:2], again.estimands.iloc[:2])
    lift = again.estimands.iloc[2]
    assert lift["scale"] == "difference" and lift["lower"] < 0.025 < lift["upper"]


def test_model_change_or_corrupt_cache_refits(ab_run):
    _, result, d = ab_run
    prior = FAST + ['model.priors.treatment="Normal(0, 0.5)"']
    changed = mrp_formula.run(d / "ab.toml", out=d / "run4", overrides=prior)
    assert changed.manifest["fit_cache"]["reused"] is False
    entry = d / ".mrp-cache" / changed.manifest["fit_cache"]["key"] / "posterior.nc"
    with open(entry, "r+b") as fh:  # flip bytes in the middle of the file
        fh.seek(entry.stat().st_size // 2)
        fh.write(b"\x00corrupt\x00")
    again = mrp_formula.run(d / "ab.toml", out=d / "run5", overrides=prior)
    assert again.manifest["fit_cache"]["reused"] is False
    assert any("corrupt" in n or "unreadable" in n for n in again.notes), again.notes
    pd.testing.assert_frame_equal(changed.estimands, again.estimands)


SURVEY_SPEC = """
name = "survey"
[data]
source = "survey.csv"
[model]
formula = "yes ~ age + (1 | region)"
family = "bernoulli"
levels.age = ["old", "young"]
[model.priors]
"1|region" = "Normal(0, HalfNormal(1))"
[fit]
draws = 400
tune = 400
chains = 2
seed = 3
[population]
source = "census.csv"
weight = "count"
[estimands.support]
by = ["region"]
[estimands.overall]
"""


def test_survey_by_region_with_population_counts(tmp_path):
    sample, pop, by_region, overall = simulate_survey()
    sample = sample[sample.region != "r6"]  # r6: in the population, no respondents
    sample.to_csv(tmp_path / "survey.csv", index=False)
    pop.to_csv(tmp_path / "census.csv", index=False)
    (tmp_path / "s.toml").write_text(textwrap.dedent(SURVEY_SPEC).lstrip())
    result = mrp_formula.run(tmp_path / "s.toml", out=tmp_path / "run")
    table = result.estimands
    rows = table[table.estimand == "support"]
    assert sorted(rows["region"]) == sorted(by_region)
    covered = [r.lower < by_region[r.region] < r.upper for r in rows.itertuples()]
    assert sum(covered) >= 5, rows  # 95% intervals: at most one of six may miss by chance
    # the new level is reported, and its effect comes from the group distribution: wider interval
    assert any("'region' have no sample (r6" in n for n in result.notes), result.notes
    assert result.manifest["new_levels"] == {"region": ["r6"]}
    width = (rows.upper - rows.lower).to_numpy()
    assert width[list(rows.region).index("r6")] > 1.5 * np.delete(width, list(rows.region).index("r6")).max()
    o = _row(table, estimand="overall")
    assert o["lower"] < overall < o["upper"]
    raw = sample["yes"].mean()
    assert abs(raw - overall) > 3 * np.sqrt(raw * (1 - raw) / len(sample))


MARGINS_SPEC = """
name = "ab-margins"
[data]
source = "clicks.csv"
[model]
formula = "clicked ~ treatment + gender"
family = "bernoulli"
levels.treatment = ["control", "treatment"]
[fit]
draws = 400
tune = 400
chains = 2
seed = 4
[population.margins]
gender = { female = 500, male = 500 }
[estimands.lift_by_gender]
contrast = { treatment = ["treatment", "control"] }
scale = "ratio"
by = ["gender"]
[estimands.gap]
contrast = { gender = ["female", "male"] }
at = { treatment = ["control"] }
"""


def test_ab_margins_lift_by_gender(tmp_path):
    simulate(n=20_000, seed=9).to_csv(tmp_path / "clicks.csv", index=False)
    (tmp_path / "m.toml").write_text(textwrap.dedent(MARGINS_SPEC).lstrip())
    table = mrp_formula.run(tmp_path / "m.toml", out=tmp_path / "run").estimands
    for g in ("female", "male"):
        row = _row(table, estimand="lift_by_gender", gender=g)
        assert row["lower"] < 1.5 < row["upper"], row
    gap = _row(table, estimand="gap")  # female - male under control: 0.075 - 0.025
    assert gap["gender"] == "female vs male" and gap["treatment"] == "control"
    assert gap["lower"] < 0.05 < gap["upper"]
