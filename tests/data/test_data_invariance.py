"""Every number is a function of the data's content, not of row order or file layout.

Checked at the cheapest seam, the prepared tables (and the cells handed to the sampler): they
must be identical when the sample's rows are permuted or its columns reordered, when it is read
from CSV, Parquet or a DuckDB file, when identical rows are merged into one row with a frequency
weight, and the population cells identical when the population's rows are permuted or split into
rows with smaller counts. No sampling here.
"""

from __future__ import annotations

import textwrap

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import mrp_formula
from mrp_formula.model.plan import plan_fit
from mrp_formula.steps import spec_checks as _spec_checks
from mrp_formula.spec.tree import load_spec
from mrp_formula.data.canonical import canonical_order
from mrp_formula.data.tables import prepare

SPEC = """
name = "inv"
[data]
source = "{source}"
{data_extra}
[model]
formula = "{formula}"
family = "{family}"
[population]
source = "pop.csv"
weight = "n"
[estimands.m]
by = ["g"]
"""

FORMULAS = {"bernoulli": "y ~ a + x + (1|g)", "gaussian": "y ~ a + x + (1|g)", "binomial": "p(k, t) ~ a + x + (1|g)"}


def make_sample(rng: np.random.Generator, family: str, n: int = 60) -> pd.DataFrame:
    d = pd.DataFrame({"g": rng.choice(["g1", "g2", "g10", "g3"], n), "a": rng.choice(["lo", "hi"], n),
                      "x": rng.integers(0, 3, n), "note": rng.integers(0, 2, n)})  # `note`: not a model column
    if family == "bernoulli":
        d["y"] = (rng.random(n) < 0.4).astype(int)
    elif family == "binomial":
        d["t"] = rng.integers(1, 4, n)
        d["k"] = rng.binomial(d["t"], 0.4)
    else:  # few distinct values, so identical rows exist and can be merged
        d["y"] = rng.choice([1.5, 2.25, 10.0], n)
    return d


def make_population() -> pd.DataFrame:
    rows = [{"g": g, "a": a, "x": x, "n": 10 + 7 * i}
            for i, (g, a, x) in enumerate((g, a, x) for g in ["g1", "g2", "g3", "g10", "g4"]
                                          for a in ["lo", "hi"] for x in range(3))]
    return pd.DataFrame(rows)


def write_sample(folder, df: pd.DataFrame, layout: str) -> tuple[str, str]:
    """The sample in a file of the given layout; returns (source, extra [data] lines)."""
    if layout == "csv":
        df.to_csv(folder / "s.csv", index=False)
        return "s.csv", ""
    if layout == "csv_query":
        df.to_csv(folder / "s.csv", index=False)
        return "s.csv", 'query = "SELECT * FROM source WHERE x >= 0"'
    if layout == "parquet":
        df.to_parquet(folder / "s.parquet", index=False)
        return "s.parquet", ""
    path = folder / "s.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    con.register("frame", df)
    con.execute("CREATE TABLE survey AS SELECT * FROM frame")
    con.close()
    return "s.duckdb", 'query = "SELECT * FROM survey"'


def prepared(folder, name: str, family: str, sample: pd.DataFrame, population: pd.DataFrame | None = None,
             layout: str = "csv", extra: str = "", overrides=()):
    sub = folder / name
    sub.mkdir(parents=True, exist_ok=True)
    source, data_extra = write_sample(sub, sample, layout)
    (population if population is not None else make_population()).to_csv(sub / "pop.csv", index=False)
    path = sub / "spec.toml"
    path.write_text(textwrap.dedent(SPEC.format(source=source, data_extra=data_extra + "\n" + extra,
                                                formula=FORMULAS[family], family=family)))
    loaded = load_spec(path, list(overrides))
    info = _spec_checks(loaded)
    tables = prepare(loaded, info)
    return tables, plan_fit(loaded, info, tables)


def assert_same(a, b):
    """Two (Tables, FitPlan) pairs hold the same numbers, the same way round."""
    (ta, pa), (tb, pb) = a, b
    pd.testing.assert_frame_equal(ta.sample, tb.sample)
    pd.testing.assert_frame_equal(ta.population, tb.population)
    assert ta.variables == tb.variables
    assert ta.population_vars == tb.population_vars and ta.weights == tb.weights
    assert ta.new_levels == tb.new_levels and ta.new_level_share == tb.new_level_share
    assert ta.stats["sample_rows_used"] == tb.stats["sample_rows_used"]
    pd.testing.assert_frame_equal(pa.data, pb.data)
    assert (pa.formula, pa.family, pa.aggregated, pa.cells) == (pb.formula, pb.family, pb.aggregated, pb.cells)
    assert pa.parameterization == pb.parameterization and pa.mass_matrix == pb.mass_matrix


FAMILIES = ["bernoulli", "gaussian", "binomial"]
LAYOUTS = ["csv", "csv_query", "parquet", "duckdb"]
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(family=st.sampled_from(FAMILIES), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1))
def test_permuted_rows_and_columns_give_the_same_tables(tmp_path, family, layout, seed):
    rng = np.random.default_rng(seed)
    sample = make_sample(rng, family)
    shuffled = sample.sample(frac=1.0, random_state=rng.integers(2**31))
    shuffled = shuffled[list(rng.permutation(shuffled.columns))]
    assert_same(prepared(tmp_path, "a", family, sample), prepared(tmp_path, "b", family, shuffled, layout=layout))


@SETTINGS
@given(family=st.sampled_from(FAMILIES), seed=st.integers(0, 2**32 - 1), zeros=st.booleans())
def test_identical_rows_merged_with_a_frequency_weight_give_the_same_tables(tmp_path, family, seed, zeros):
    rng = np.random.default_rng(seed)
    sample = make_sample(rng, family).drop(columns="note")
    merged = sample.groupby(list(sample.columns)).size().rename("w").reset_index()
    if zeros:  # rows with weight 0 count nothing
        merged = pd.concat([merged, merged.head(3).assign(w=0)])
    merged = merged.sample(frac=1.0, random_state=rng.integers(2**31))
    assert_same(prepared(tmp_path, "a", family, sample),
                prepared(tmp_path, "b", family, merged, extra='weights = "w"'))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), layout=st.sampled_from(["csv", "parquet", "duckdb"]))
def test_merged_rows_give_the_same_tables_in_any_layout_and_aggregate_setting(tmp_path, seed, layout):
    """A bernoulli sample read as rows (aggregate = "always" on a plain read) or counted by DuckDB."""
    rng = np.random.default_rng(seed)
    sample = make_sample(rng, "bernoulli")
    long = sample.loc[sample.index.repeat(rng.integers(1, 4, len(sample)))]
    merged = long.groupby(list(long.columns)).size().rename("w").reset_index()
    assert_same(prepared(tmp_path, "a", "bernoulli", long, layout=layout),
                prepared(tmp_path, "b", "bernoulli", merged, extra='weights = "w"', layout=layout))


@SETTINGS
@given(family=st.sampled_from(FAMILIES), seed=st.integers(0, 2**32 - 1))
def test_population_rows_permuted_or_split_give_the_same_cells(tmp_path, family, seed):
    rng = np.random.default_rng(seed)
    sample = make_sample(np.random.default_rng(1), family)
    pop = make_population()
    parts = []
    for _, row in pop.iterrows():
        k = int(rng.integers(1, 4))
        cuts = np.sort(rng.choice(np.arange(1, row.n), size=k - 1, replace=False)) if k > 1 else []
        for count in np.diff(np.concatenate([[0], cuts, [row.n]])):
            parts.append({**row.to_dict(), "n": int(count)})
    split = pd.DataFrame(parts).sample(frac=1.0, random_state=rng.integers(2**31))
    split = split[list(rng.permutation(split.columns))]
    a = prepared(tmp_path, "a", family, sample, population=pop)
    b = prepared(tmp_path, "b", family, sample, population=split)
    assert_same(a, b)
    assert a[0].new_levels == {"g": ("g4",)}  # the population's own level, kept and counted


def test_population_cells_do_not_depend_on_the_order_of_fractional_weights(tmp_path):
    """Shares that do not add up exactly in floating point still give bit-identical cells."""
    pop = make_population()
    pop = pd.concat([pop.assign(n=pop.n * 0.1), pop.assign(n=pop.n * 0.7), pop.assign(n=pop.n * 0.2)])
    sample = make_sample(np.random.default_rng(2), "gaussian")
    ref = prepared(tmp_path, "ref", "gaussian", sample, population=pop)
    for i in range(5):
        shuffled = pop.sample(frac=1.0, random_state=i)
        assert_same(ref, prepared(tmp_path, f"p{i}", "gaussian", sample, population=shuffled))


@pytest.mark.parametrize("family", FAMILIES)
def test_aggregate_never_keeps_rows_in_a_fixed_order(tmp_path, family):
    sample = make_sample(np.random.default_rng(4), family)
    a = prepared(tmp_path, "a", family, sample, overrides=['model.aggregate="never"'])
    b = prepared(tmp_path, "b", family, sample.iloc[::-1], overrides=['model.aggregate="never"'])
    assert_same(a, b)
    assert len(a[0].sample) == len(sample)  # rows, not cells


def test_canonical_order_is_a_function_of_the_rows_only():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"c": pd.Categorical(rng.choice(["b", "a", "c"], 50), categories=["c", "a", "b"]),
                       "n": rng.integers(0, 3, 50), "f": rng.choice([0.5, np.nan, 2.0], 50),
                       "s": rng.choice(["x", "y"], 50), "b": rng.random(50) < 0.5})
    ref = canonical_order(df)
    for i in range(10):
        pd.testing.assert_frame_equal(canonical_order(df.sample(frac=1.0, random_state=i)), ref)
    assert list(ref["c"].cat.codes) == sorted(ref["c"].cat.codes)  # categoricals by level order


RUN_SPEC = """
name = "shuffled"
[data]
source = "{source}"
[model]
formula = "y ~ age + (1|region)"
family = "{family}"
[fit]
draws = 100
tune = 150
chains = 2
seed = 7
[population]
source = "pop.csv"
weight = "n"
[estimands.by_region]
by = ["region"]
[estimands.age_gap]
contrast = {{ age = ["old", "young"] }}
"""


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
@pytest.mark.slow
def test_mrp_run_on_a_shuffled_survey_gives_the_same_numbers(tmp_path, family):
    """The user's view: the same survey, rows shuffled and saved as Parquet, fitted afresh."""
    rng = np.random.default_rng(11)
    n = 240
    d = pd.DataFrame({"region": rng.choice(["r1", "r2", "r3", "r4"], n), "age": rng.choice(["young", "old"], n)})
    eta = d.region.map({"r1": -0.5, "r2": 0.0, "r3": 0.3, "r4": 0.8}) + np.where(d.age == "old", 0.5, 0.0)
    d["y"] = ((rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int) if family == "bernoulli"
              else (10 + 2 * eta + rng.normal(0, 1, n)).round(3))
    pd.DataFrame([{"region": r, "age": a, "n": 100 + 10 * i} for i, (r, a) in
                  enumerate((r, a) for r in ["r1", "r2", "r3", "r4"] for a in ["young", "old"])]) \
        .to_csv(tmp_path / "pop.csv", index=False)
    d.to_csv(tmp_path / "s.csv", index=False)
    d.sample(frac=1.0, random_state=3)[["y", "age", "region"]].to_parquet(tmp_path / "s.parquet", index=False)
    results = []
    for source in ("s.csv", "s.parquet"):
        path = tmp_path / f"{source}.toml"
        path.write_text(textwrap.dedent(RUN_SPEC.format(source=source, family=family)))
        results.append(mrp_formula.run(path, out=tmp_path / f"out_{source}", cache=False))
    a, b = results
    assert a.manifest["fit_cache"]["key"] == b.manifest["fit_cache"]["key"]
    pd.testing.assert_frame_equal(a.estimands, b.estimands)
    pd.testing.assert_frame_equal(a.draws, b.draws)
