"""`mrp_formula.run(spec, data=df, population=pop)`: DataFrames in place of the spec's files, the
same checks and messages, the same numbers; a result shows the report's summary in a notebook."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

import mrp_formula
from mrp_formula.errors import DataError, SpecError

NO_FILES = """
name = "nb"
[model]
formula = "clicked ~ treatment + (1 | gender)"
family = "bernoulli"
levels.treatment = ["control", "treatment"]
[fit]
draws = 100
tune = 100
chains = 2
seed = 3
[estimands.lift]
contrast = { treatment = ["treatment", "control"] }
scale = "ratio"
"""


@pytest.fixture
def frames(ab_dir):
    sample = pd.read_csv(ab_dir / "clicks.csv")
    population = pd.DataFrame({"gender": ["female", "male"], "n": [30, 70]})
    (ab_dir / "nb.toml").write_text(textwrap.dedent(NO_FILES).lstrip() + '[population]\nweight = "n"\n')
    return ab_dir, sample, population


def test_a_spec_without_files_checks_with_dataframes(frames):
    d, sample, population = frames
    plan = mrp_formula.check(d / "nb.toml", data=sample, population=population)
    assert plan.tables.stats["population_cells"] == 2


def test_without_the_dataframe_the_missing_source_is_a_spec_error(frames):
    d, _, population = frames
    with pytest.raises(SpecError) as e:
        mrp_formula.check(d / "nb.toml", population=population)
    assert "data: required key is missing" in str(e.value)


def test_messages_name_the_dataframe(frames):
    d, sample, population = frames
    with pytest.raises(DataError) as e:
        mrp_formula.check(d / "nb.toml", data=sample.drop(columns="clicked"), population=population)
    assert "response 'clicked' is not a column of the data DataFrame" in str(e.value)
    with pytest.raises(DataError) as e:
        mrp_formula.check(d / "nb.toml", data=sample, population=population.rename(columns={"gender": "sex"}))
    assert any(p.key == "population (DataFrame)" and "'gender'" in p.message for p in e.value.problems)
    with pytest.raises(SpecError) as e:
        mrp_formula.check(d / "nb.toml", data=[1, 2], population=population)
    assert any("must be a pandas DataFrame" in p.message for p in e.value.problems)


def test_margins_and_a_population_dataframe_conflict(ab_dir):
    sample = pd.read_csv(ab_dir / "clicks.csv")
    with pytest.raises(SpecError) as e:
        mrp_formula.check(ab_dir / "ab.toml", population=pd.DataFrame({"gender": ["male"]}))
    assert any(p.key == "population.margins" for p in e.value.problems)
    # the sample DataFrame takes the place of the spec's file
    assert mrp_formula.check(ab_dir / "ab.toml", data=sample.iloc[:500]).tables.stats["sample_rows_used"] == 500


def test_the_query_runs_over_the_dataframe(frames):
    d, sample, population = frames
    text = (d / "nb.toml").read_text().replace("[model]", '[data]\nquery = "SELECT * FROM source WHERE '
                                                          'gender = \'female\'"\n[model]')
    (d / "q.toml").write_text(text)
    plan = mrp_formula.check(d / "q.toml", data=sample, population=population)
    assert plan.tables.stats["sample_rows_used"] == int((sample["gender"] == "female").sum())


@pytest.mark.slow
def test_a_dataframe_run_gives_the_numbers_of_the_same_data_from_a_csv(frames, tmp_path):
    d, sample, population = frames
    population.to_csv(d / "pop.csv", index=False)
    (d / "files.toml").write_text((d / "nb.toml").read_text().replace(
        "[population]\n", '[data]\nsource = "clicks.csv"\n[population]\nsource = "pop.csv"\n'))
    from_files = mrp_formula.run(d / "files.toml", out=tmp_path / "files")
    # shuffled rows: the same canonical sample. The same fit-cache key means the same fitted data,
    # model and settings (so the same posterior for the seed): the fit is reused, not sampled twice.
    in_memory = mrp_formula.run(d / "nb.toml", data=sample.sample(frac=1, random_state=1), population=population,
                                out=tmp_path / "memory")
    assert in_memory.manifest["fit_cache"]["key"] == from_files.manifest["fit_cache"]["key"]
    assert in_memory.manifest["fit_cache"]["reused"]
    cols = ["estimand", "mean", "lower", "upper", "raw", "weighted"]
    pd.testing.assert_frame_equal(in_memory.estimands[cols], from_files.estimands[cols])
    assert in_memory.manifest["inputs"]["data"]["path"] == "(DataFrame)"
    html = in_memory._repr_html_()
    assert "mrp-summary" in html and "lift" in html and "Decision numbers" in html and 'class="verdict' in html
