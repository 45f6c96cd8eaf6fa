"""The spec: parsing, rejection with FILE:LINE: key messages, overrides and extends."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from mrp_formula.errors import SpecError
from mrp_formula.spec.tree import load_spec

from conftest import AB_SPEC


def test_seed_spec_loads(ab_dir):
    loaded = load_spec(ab_dir / "ab.toml")
    spec = loaded.spec
    assert spec.model.family == "bernoulli"
    assert spec.model.levels["treatment"] == ["control", "treatment"]
    assert str(spec.model.priors["1|gender"]) == "Normal(mu=0.0, sigma=HalfNormal(sigma=0.5))"
    assert spec.estimands["lift"].rope == (0.98, 1.02)
    assert loaded.resolve(spec.data.source) == (ab_dir / "clicks.csv").resolve()
    with pytest.raises(pydantic.ValidationError):
        spec.name = "other"  # frozen


def test_prior_table_form_equals_string_form(write):
    a = write("a.toml", AB_SPEC)
    b = write("b.toml", AB_SPEC.replace(
        '"1|gender" = "Normal(0, HalfNormal(0.5))"',
        '"1|gender" = { dist = "Normal", mu = 0, sigma = { dist = "HalfNormal", sigma = 0.5 } }'))
    assert load_spec(a).spec.model.priors == load_spec(b).spec.model.priors


BAD = [
    # (replace this, with that, expected key, expected fragment of the message)
    ('family = "bernoulli"', 'family = "bernouli"', "model.family", "did you mean 'bernoulli'"),
    ("[fit]\n", "[fit]\ndraw = 10\n", "fit.draw", "did you mean 'draws'"),
    ("draws = 300", "draws = -5", "fit.draws", "greater than 0"),
    ("draws = 300", 'draws = "many"', "fit.draws", "got 'many'"),
    ('scale = "ratio"', 'scale = "ratios"', "estimands.lift.scale", "did you mean 'ratio'"),
    ("rope = [0.98, 1.02]", "rope = [1.02, 0.98]", "estimands.lift", "low < high"),
    ('contrast = { treatment = ["treatment", "control"] }', 'contrast = { treatment = ["treatment"] }',
     "estimands.lift", "two different levels"),
    ('"1|gender" = "Normal(0, HalfNormal(0.5))"', '"1|gender" = "Normal(0, HalfNormall(0.5))"',
     'model.priors."1|gender"', "did you mean 'HalfNormal'"),
    ('"1|gender" = "Normal(0, HalfNormal(0.5))"', '"1|gender" = "Normal(0, HalfNormal(-1))"',
     'model.priors."1|gender"', "must be positive"),
    ('"1|gender" = "Normal(0, HalfNormal(0.5))"', '"1|gender" = "Normal(mu=0, sd=1)"',
     'model.priors."1|gender"', "no parameter 'sd'; expected one of 'mu', 'sigma'"),
    ("[population.margins]\ngender = { female = 0.5, male = 0.5 }\n", "", "population", "required key is missing"),
    ('name = "ab"', 'name = "ab"\ncolour = "red"', "colour", "unknown key"),
    ('at = { treatment = ["control", "treatment"] }', 'at = { treatment = ["control", "treatment"] }\nby = ["treatment"]',
     "estimands.click_rate", "both in `by` and in `at`"),
    ('scale = "ratio"', 'scale = "ratio"\nby = ["treatment"]', "estimands.lift", "both in `by` and in `contrast`"),
]


@pytest.mark.parametrize("old,new,key,fragment", BAD)
def test_bad_specs_name_key_and_line(write, old, new, key, fragment):
    text = AB_SPEC.replace(old, new)
    assert text != AB_SPEC
    path = write("bad.toml", text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    rendered = str(info.value)
    assert f"{key}:" in rendered, rendered
    assert fragment in rendered, rendered
    assert rendered.startswith(str(path.resolve()) + ":") or rendered.startswith(str(path) + ":")


def test_line_numbers_point_at_the_key(write):
    text = AB_SPEC.replace('family = "bernoulli"', 'family = "bernouli"')
    path = write("bad.toml", text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    line = next(i for i, l in enumerate(text.lstrip().splitlines(), 1) if "bernouli" in l)
    assert info.value.problems[0].line == line


def test_all_problems_reported_at_once(write):
    text = AB_SPEC.replace('family = "bernoulli"', 'family = "bernouli"').replace("draws = 300", "draws = 0")
    text = text.replace('scale = "ratio"', 'scale = "rate"')
    with pytest.raises(SpecError) as info:
        load_spec(write("bad.toml", text))
    keys = {p.key for p in info.value.problems}
    assert {"model.family", "fit.draws", "estimands.lift.scale"} <= keys


def test_toml_syntax_error_has_line(write):
    path = write("bad.toml", 'name = "x"\n[data\nsource = "a.csv"\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.problems[0].line == 2
    assert "TOML syntax error" in str(info.value)


def test_overrides_are_type_checked(ab_dir):
    loaded = load_spec(ab_dir / "ab.toml", ["fit.draws=50", 'model.formula="clicked ~ treatment"'])
    assert loaded.spec.fit.draws == 50
    assert loaded.spec.model.formula == "clicked ~ treatment"
    with pytest.raises(SpecError) as info:
        load_spec(ab_dir / "ab.toml", ["fit.draws=lots"])
    assert "fit.draws" in str(info.value)


def test_extends_deep_merges_and_resolves_paths(ab_dir, write):
    child = ab_dir / "sub" / "child.toml"
    child.parent.mkdir()
    child.write_text('extends = "../ab.toml"\nname = "child"\n[fit]\ndraws = 77\n')
    spec = load_spec(child).spec
    assert spec.name == "child" and spec.fit.draws == 77 and spec.fit.chains == 2
    assert spec.data.source == str((ab_dir / "clicks.csv").resolve())


def test_extends_cycle_and_missing(write):
    a = write("a.toml", 'extends = "b.toml"\nname = "a"\n')
    write("b.toml", 'extends = "a.toml"\nname = "b"\n')
    with pytest.raises(SpecError, match="cycle: a.toml -> b.toml -> a.toml"):
        load_spec(a)
    c = write("c.toml", 'extends = "nope.toml"\nname = "c"\n')
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(c)


@pytest.mark.parametrize("key, path", [
    ("fit.draws", ("fit", "draws")),
    ('model.priors."1|race:female"', ("model", "priors", "1|race:female")),  # quoted, as in TOML
    ("model.priors.1|gender", ("model", "priors", "1|gender")),  # bare, as the docs write it
    ('estimands."every term".scale', ("estimands", "every term", "scale")),
])
def test_override_paths_read_quotes_as_toml_does(key, path):
    from mrp_formula.spec.tree import override_path

    assert override_path(key) == path


def test_a_quoted_term_in_an_override_sets_that_term(ab_dir):
    loaded = load_spec(ab_dir / "ab.toml", ('model.parameterization."1|gender"=0.3',))
    assert dict(loaded.spec.model.parameterization) == {"1|gender": 0.3}


@pytest.mark.parametrize("override", ['data.source="{d}/clicks.csv"', 'data={{ source = "{d}/clicks.csv" }}'])
def test_a_path_given_with_set_is_from_where_mrp_runs_in_either_form(ab_dir, monkeypatch, override):
    """A dotted path and a table given whole resolve their paths alike: from the current folder."""
    monkeypatch.chdir(ab_dir.parent)
    loaded = load_spec(ab_dir / "ab.toml", (override.format(d=ab_dir.name),))
    assert loaded.spec.data.source == str((ab_dir / "clicks.csv").resolve())


def test_a_spec_as_toml_reads_back_as_itself():
    """`to_toml` writes the spec a run used (extends resolved) into its manifest's readers: every
    shipped spec and keys that need quotes, arrays of tables and inline tables read back equal."""
    import glob

    from mrp_formula.spec.tree import load_spec, to_toml, tomllib

    root = Path(__file__).resolve().parents[2]
    for f in sorted(glob.glob(str(root / "specs" / "*.toml")) + glob.glob(str(root / "examples" / "*" / "*.toml"))):
        raw = load_spec(f).raw
        assert tomllib.loads(to_toml(raw)) == raw, f
    tricky = {"name": 'say "hi"\nthere', "x": 1.5, "flag": True, "empty": {},
              "model": {"priors": {"1|state": "Normal(0, 1)", "55+": "x"}, "levels": {"age": ["18-29", "65+"]}},
              "join": [{"source": "a.csv", "on": ["state"], "recode": {"1": "a"}}, {"source": "b.csv", "on": []}],
              "estimands": {"overall": {}, "lift": {"contrast": {"t": [1, 0]}, "rope": [-0.01, 0.01]}}}
    assert tomllib.loads(to_toml(tricky)) == tricky


def test_a_formula_given_with_set_that_does_not_parse_is_said_at_set():
    """It was placed at the spec file's line of model.formula, which holds a valid formula."""
    from mrp_formula.spec.tree import load_spec

    root = Path(__file__).resolve().parents[2]
    with pytest.raises(SpecError) as e:
        load_spec(root / "specs" / "ab_click.toml", ["model.formula=clicked ~ treatment +"])
    (p,) = e.value.problems
    assert p.file == "--set" and p.line is None and p.key == "model.formula" and "does not parse" in p.message


def test_a_rope_given_with_set_that_misses_no_difference_is_said_at_set():
    """The table's check names its `rope`: given with --set, the problem is there (the review)."""
    from mrp_formula.spec.tree import load_spec

    root = Path(__file__).resolve().parents[2]
    with pytest.raises(SpecError) as e:
        load_spec(root / "specs" / "ab_click.toml", ["estimands.lift.rope=[-0.1, 0.1]"])
    (p,) = e.value.problems
    assert p.file == "--set" and p.line is None and "does not contain 1" in p.message
