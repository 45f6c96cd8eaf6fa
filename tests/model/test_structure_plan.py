"""model.structure in the spec and the fit plan: validation, order, adjacency (no sampling)."""

import numpy as np
import pandas as pd
import pytest

from mrp_formula import steps
from mrp_formula.errors import DataError, MrpError, SpecError

SPEC = '''
name = "st"
[data]
source = "sample.csv"
[model]
formula = "{formula}"
family = "bernoulli"
{model}
[fit]
draws = 100
[population]
source = "pop.csv"
weight = "n"
[estimands.by_area]
by = ["area"]
'''


def _write(tmp_path, *, model='structure = { age = "rw1" }', formula="y ~ g + (1|age) + (1|area)",
           adjacency=None, sample_age=(1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12), areas=("a", "b", "c", "d", "e")):
    rng = np.random.default_rng(0)
    rows = [(int(rng.random() < 0.5), a, areas[i % (len(areas) - 1)], i % 2) for i, a in
            enumerate(list(sample_age) * 3)]
    pd.DataFrame(rows, columns=["y", "age", "area", "g"]).to_csv(tmp_path / "sample.csv", index=False)
    pop = pd.DataFrame([(a, r, g, 10) for a in range(1, 13) for r in areas for g in (0, 1)],
                       columns=["age", "area", "g", "n"])
    pop.to_csv(tmp_path / "pop.csv", index=False)
    if adjacency is not None:
        (tmp_path / "adj.csv").write_text(adjacency)
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(formula=formula, model=model))
    return path


def test_rw1_covers_population_levels_in_natural_order(tmp_path):
    plan = steps.plan(_write(tmp_path))
    (sp,) = plan.fit_plan.structures
    assert sp.kind == "rw1" and sp.term == "1|age"
    assert sp.levels == tuple(str(k) for k in range(1, 13))  # 5 has no sample, 10 after 9
    assert sp.factor_matrix.shape == (12, 11)
    assert plan.fit_plan.parameterization["1|age"] == "noncentered"
    assert any("without sample get their effects from the rw1 prior" in str(n) for n in plan.notes)


def test_order_from_model_levels_may_name_population_only_levels(tmp_path):
    order = [str(k) for k in range(12, 0, -1)]
    plan = steps.plan(_write(tmp_path, model=f'levels = {{ age = {order} }}\nstructure = {{ age = "rw2" }}'))
    (sp,) = plan.fit_plan.structures
    assert sp.levels == tuple(order) and sp.order_source == "model.levels.age"
    assert sp.trend_sd == 1.0  # the scale of the default HalfNormal(1) of 1|age


def test_model_levels_missing_a_population_level_is_a_data_error(tmp_path):
    order = [str(k) for k in range(1, 13) if k != 5]
    with pytest.raises(DataError) as e:
        steps.plan(_write(tmp_path, model=f'levels = {{ age = {order} }}\nstructure = {{ age = "ar1" }}'))
    assert "['5']" in e.value.problems[0].message and e.value.problems[0].key == "model.levels.age"


def test_unknown_kind_suggests(tmp_path):
    with pytest.raises(SpecError) as e:
        steps.plan(_write(tmp_path, model='structure = { age = "bmy2" }'))
    p = e.value.problems[0]
    assert p.key == "model.structure.age.kind" and "bym2" in p.hint and p.line


@pytest.mark.parametrize("model, needle", [
    ('structure = { area = "bym2" }', "needs an adjacency table"),
    ('structure = { age = { kind = "rw1", adjacency = "adj.csv" } }', "for icar and bym2 only"),
])
def test_adjacency_required_for_spatial_refused_otherwise(tmp_path, model, needle):
    with pytest.raises(SpecError) as e:
        steps.plan(_write(tmp_path, model=model))
    assert needle in e.value.problems[0].message


@pytest.mark.parametrize("formula, needle", [
    ("y ~ g + (1|area)", "add (1 | age)"),
    ("y ~ g + (0 + g|age)", "group slopes"),
    ("y ~ g + (1|age:area)", "interactions"),
])
def test_structure_needs_a_group_intercept_of_its_variable(tmp_path, formula, needle):
    with pytest.raises(SpecError) as e:
        steps.plan(_write(tmp_path, formula=formula))
    p = e.value.problems[0]
    assert p.key == "model.structure.age" and needle in p.hint


def test_missing_adjacency_file_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError) as e:
        steps.plan(_write(tmp_path, model='structure = { area = { kind = "icar", adjacency = "nope.csv" } }'))
    assert e.value.exit_code == 4 and "nope.csv" in e.value.problems[0].message


def test_level_missing_from_adjacency_is_named(tmp_path):
    with pytest.raises(DataError) as e:
        steps.plan(_write(tmp_path, model='structure = { area = { kind = "bym2", adjacency = "adj.csv" } }',
                          adjacency="from,to\na,b\nb,c\nc,d\n"))
    assert "['e']" in e.value.problems[0].message and e.value.problems[0].key == "model.structure.area.adjacency"


def test_islands_and_components(tmp_path):
    # e has no sample (areas cycle over a..d) and is an island; {a, b} and {c, d} are two parts
    plan = steps.plan(_write(tmp_path, model='structure = { area = { kind = "bym2", adjacency = "adj.csv" } }',
                             adjacency="from,to\na,b\nd,c\ne,\nzz,a\n"))
    (sp,) = plan.fit_plan.structures
    assert sp.levels == ("a", "b", "c", "d", "e") and sp.islands == ("e",) and sp.n_components == 3
    assert np.allclose(sp.scaling, [0.25, 0.25])
    notes = " ".join(map(str, plan.notes))
    assert "3 connected parts" in notes and "zz" in notes  # a level of the table the model lacks is left out
    assert sp.to_json()["scaling_factors"] == [0.25, 0.25]
    # the island without sample is not said to be pulled towards neighbours it does not have
    assert "island(s) without sample (e) have no neighbours to pull them: their effects are independent N(0, sd) " \
           "draws" in notes
    assert "pulled towards their neighbours" not in notes


def test_structure_changes_the_fit_key(tmp_path):
    from mrp_formula.model.cache import fit_key

    a = fit_key(steps.plan(_write(tmp_path)), {})
    b = fit_key(steps.plan(_write(tmp_path, model='structure = { age = "rw2" }')), {})
    c = fit_key(steps.plan(_write(tmp_path, model="")), {})
    assert len({a, b, c}) == 3


def test_the_structure_does_not_depend_on_row_order(tmp_path):
    model = 'structure = { area = { kind = "bym2", adjacency = "adj.csv" } }'
    adjacency = "from,to\na,b\nd,c\nb,c\ne,\n"
    first = steps.plan(_write(tmp_path, model=model, adjacency=adjacency)).fit_plan.structures[0]
    for name, seed in (("pop.csv", 1), ("sample.csv", 2)):
        frame = pd.read_csv(tmp_path / name)
        frame.sample(frac=1, random_state=seed).to_csv(tmp_path / name, index=False)
    (tmp_path / "adj.csv").write_text("x,y\ne,\nc,b\nc,d\nb,a\n")
    again = steps.plan(tmp_path / "spec.toml").fit_plan.structures[0]
    assert again.levels == first.levels
    np.testing.assert_array_equal(again.factor_matrix, first.factor_matrix)
    assert again.key() == {**first.key(), "adjacency": again.adjacency}


def test_the_adjacency_graph_is_in_the_fit_key(tmp_path):
    from mrp_formula.model.cache import fit_key

    model = 'structure = { area = { kind = "icar", adjacency = "adj.csv" } }'
    a = fit_key(steps.plan(_write(tmp_path, model=model, adjacency="p,q\na,b\nb,c\nc,d\nd,e\n")), {})
    b = fit_key(steps.plan(_write(tmp_path, model=model, adjacency="p,q\na,b\nb,c\nc,d\nd,a\ne,\n")), {})
    assert a != b


def test_a_typo_in_the_adjacency_table_is_an_error_not_a_lost_edge(tmp_path):
    """`A` is not a level but `a` is: its pair would silently drop out of the graph."""
    with pytest.raises(DataError) as e:
        steps.plan(_write(tmp_path, model='structure = { area = { kind = "icar", adjacency = "adj.csv" } }',
                          adjacency="from,to\na,b\nb,c\nc,d\nd,e\nA,e\n"))
    (p,) = e.value.problems
    assert p.key == "model.structure.area.adjacency"
    assert "level 'A' of the adjacency table adj.csv is not a level of 'area' but 'a' is: a typo?" in p.message
    assert "A-e" in p.message and "write 'a' in the table" in p.hint


def test_a_table_level_merely_like_a_model_level_is_a_warning(tmp_path):
    """A county table names neighbours the survey lacks, with codes one digit from those it has:
    no error (they may be real areas), a warning that names them."""
    areas = ("r001", "r002", "r003", "r004", "r005")
    plan = steps.plan(_write(tmp_path, model='structure = { area = { kind = "icar", adjacency = "adj.csv" } }',
                             adjacency="from,to\nr001,r002\nr002,r003\nr003,r004\nr004,r005\nr005,r009\n",
                             areas=areas))
    (w,) = [n for n in plan.notes if getattr(n, "code", "") == "structure.adjacency_levels"]
    assert w.level == "warning" and "'r009' (like 'r00" in w


def test_mrp_check_lists_the_structures_own_priors(tmp_path):
    """`mrp check` lists every prior: an RW2's trend beside the terms'."""
    from typer.testing import CliRunner

    from mrp_formula.cli import app

    r = CliRunner().invoke(app, ["check", str(_write(tmp_path, model='structure = { age = "rw2" }'))])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("1|age_trend"))
    assert "Normal(0, " in line and "structure (model.structure.age)" in line


def test_mrp_check_json_gives_the_structures_and_their_priors(tmp_path):
    """`mrp check --json` carries `structure` with each structure's own priors, as manifest.json does."""
    import json

    from typer.testing import CliRunner

    from mrp_formula.cli import app

    r = CliRunner().invoke(app, ["check", str(_write(tmp_path, model='structure = { age = "rw2" }')), "--json"])
    assert r.exit_code == 0, r.output
    (sp,) = json.loads(r.stdout)["structure"]
    assert sp["kind"] == "rw2" and sp["variable"] == "age" and sp["parameters"]["1|age_trend"].startswith("Normal(0, ")


@pytest.mark.parametrize("bands, warned", [
    (("5k-10k", "10k-50k", "100k-200k"), True),  # text order: 100k-200k, 10k-50k, 5k-10k
    (("2024-W01", "2024-W02", "2024-W10"), False),  # text that sorts as its numbers do
    (("18-34", "35-64", "65+"), False),
])
def test_text_levels_of_an_ordered_structure_warn_when_their_numbers_disagree(tmp_path, bands, warned):
    """Income bands as text sort '100k-200k' before '5k-10k': a walk over them in that order is
    rarely meant, so the plan warns, names model.levels and gives the order by their numbers;
    weeks or age bands whose text order is their order are not warned of."""
    path = _write(tmp_path, model='structure = { age = "rw1" }', sample_age=(1, 2, 3))
    for name in ("sample.csv", "pop.csv"):  # the ages as text bands
        df = pd.read_csv(tmp_path / name)
        df["age"] = df["age"].map(dict(zip((1, 2, 3), bands))).fillna(bands[-1])
        df.to_csv(tmp_path / name, index=False)
    found = [n for n in steps.plan(path).notes if getattr(n, "code", "") == "structure.text_order"]
    assert bool(found) == warned
    if warned:
        assert found[0].level == "warning" and '["5k-10k", "10k-50k", "100k-200k"]' in found[0]


@pytest.mark.parametrize("table, words", [
    # no header row: the first pair was taken for the column names and its edge lost
    ("a,b\nb,c\nc,d\nd,e\n", "the first row of the adjacency table adj.csv (a, b) was read as its header"),
    # the same when the first row is an island, written with an empty cell or paired with itself
    ("e,\na,b\nb,c\nc,d\n", "the first row of the adjacency table adj.csv (e) was read as its header"),
    ("e,e\na,b\nb,c\nc,d\n", "the first row of the adjacency table adj.csv (e, e) was read as its header"),
    # every level in another case: said so, not only "not in the table"
    ("from,to\nA,B\nB,C\nC,D\nD,E\n", "(it writes ['A', 'B', 'C', 'D', 'E']: the case differs)"),
])
def test_an_adjacency_table_read_otherwise_than_meant_is_said_so(tmp_path, table, words):
    with pytest.raises(MrpError) as err:
        steps.plan(_write(tmp_path, model='structure = { area = { kind = "icar", adjacency = "adj.csv" } }',
                          adjacency=table))
    assert words in str(err.value)


@pytest.mark.parametrize("island_row", ["c,c", "c,"])
def test_a_level_written_as_an_island_that_has_neighbours_is_warned_of(tmp_path, island_row):
    """`c,c` (or `c,` with an empty cell) says c is an island, `b,c` gives it a neighbour: the
    graph keeps the pair, and the contradiction is said, not settled silently."""
    plan = steps.plan(_write(tmp_path, model='structure = { area = { kind = "icar", adjacency = "adj.csv" } }',
                             adjacency=f"from,to\na,b\nb,c\n{island_row}\nc,d\nd,e\n"))
    (sp,) = plan.fit_plan.structures
    assert sp.islands == () and sp.n_components == 1
    (w,) = [n for n in plan.notes if getattr(n, "code", "") == "structure.island_with_neighbours"]
    assert w.level == "warning" and "writes c as an island" in w and "read as not an island" in w
    clean = steps.plan(_write(tmp_path, model='structure = { area = { kind = "icar", adjacency = "adj.csv" } }',
                              adjacency="from,to\na,b\nb,c\nc,d\nd,e\n"))
    assert not [n for n in clean.notes if getattr(n, "code", "") == "structure.island_with_neighbours"]


@pytest.mark.parametrize("kind, how", [("rw1", "interpolated along the walk"),
                                       ("ar1", "pulled towards the levels next in order")])
def test_a_level_without_sample_is_said_to_get_its_effect_as_the_structure_gives_it(tmp_path, kind, how):
    """Age 5 has no sample; an AR(1) is not a walk (the audit's wording note)."""
    plan = steps.plan(_write(tmp_path, model=f'structure = {{ age = "{kind}" }}'))
    notes = " ".join(map(str, plan.notes))
    assert f"get their effects from the {kind} prior ({how})" in notes
