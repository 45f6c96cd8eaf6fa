"""`mrp check` reports the spec's problems and the data's at once: a mistake in the spec does not
hide a typo in the population, a missing file or a variant's broken model (unless the formula or
the family is wrong, which the data checks read as they are)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app

SPEC = """
name = "at-once"
[data]
source = "clicks.csv"
[model]
formula = "{formula}"
family = "{family}"
{levels}
[model.priors]
"1|gender" = "{prior}"
[population.margins]
gender = {{ female = 0.5, {male} = 0.5 }}
[estimands.rate]
at = {{ arm = ["a", "b"] }}
{variants}
"""

GOOD = dict(formula="clicked ~ arm + (1 | gender)", family="bernoulli", prior="Normal(0, HalfNormal(0.5))",
            male="male", variants="", levels="")
BAD_PRIOR = "Normal(1, HalfNormal(0.5))"  # a group term's effects have mean 0
MEAN_ZERO = "a group term's effects have mean 0"
MAL = "population level 'mal' of 'gender'"


def _write(tmp_path, data=True, drop=(), **edits):
    if data:
        rng = np.random.default_rng(3)
        n = 80
        pd.DataFrame({"clicked": rng.integers(0, 2, n), "arm": rng.choice(["a", "b"], n),
                      "gender": rng.choice(["female", "male"], n)}).drop(columns=list(drop)).to_csv(
            tmp_path / "clicks.csv", index=False)
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(SPEC.format(**(GOOD | edits))).lstrip())
    return path


def _check(path):
    result = CliRunner().invoke(app, ["check", str(path), "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


RATE = '[estimands.rate]\nat = { arm = ["a", "b"] }'


def _spec(tmp_path, formula, *, sample=None, population=None, weight="n", estimands=RATE, head=""):
    """A spec over clicks.csv and pop.csv (each written when given), for the tests below."""
    if sample is not None:
        pd.DataFrame(sample).to_csv(tmp_path / "clicks.csv", index=False)
    if population is not None:
        pd.DataFrame(population).to_csv(tmp_path / "pop.csv", index=False)
    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "s"\n[data]\nsource = "clicks.csv"\n{head}[model]\nformula = "{formula}"\n'
                    f'family = "bernoulli"\n[population]\nsource = "pop.csv"\nweight = "{weight}"\n{estimands}\n')
    return spec



def _messages(out):
    return [(p["key"], p["message"]) for p in out["errors"]]


@pytest.mark.parametrize("edits, data, expected", [
    # a spec problem and a population typo: both, in the order of the file, as the spec's error
    (dict(prior=BAD_PRIOR, male="mal"), True, ['model.priors."1|gender"', "population.margins.gender"]),
    # a spec problem and no data file at all
    (dict(prior=BAD_PRIOR), False, ["data.source", 'model.priors."1|gender"']),
    # a variant whose model is broken, beside the spec's own problem; its population margins
    # name the variable it dropped (the variant is checked against the data as well)
    (dict(prior=BAD_PRIOR, variants='[variants.nogender]\n"model.formula" = "clicked ~ arm"'), True,
     ['model.priors."1|gender"', 'variants.nogender (model.priors."1|gender")',
      'variants.nogender (population.margins.gender)']),
])
def test_spec_and_data_problems_at_once(tmp_path, edits, data, expected):
    code, out = _check(_write(tmp_path, data=data, **edits))
    assert code == 3
    assert [k for k, _ in _messages(out)] == expected
    assert MEAN_ZERO in _messages(out)[expected.index('model.priors."1|gender"')][1]


def test_the_population_typo_alone_is_the_datas_error(tmp_path):
    code, out = _check(_write(tmp_path, male="mal"))
    assert code == 4
    assert [k for k, _ in _messages(out)] == ["population.margins.gender"]
    assert MAL in _messages(out)[0][1]


@pytest.mark.parametrize("edits", [
    dict(family="binomial"),  # the family's response is p(successes, trials): the data checks wait
    dict(family="binomial", prior=BAD_PRIOR),
])
def test_a_wrong_family_keeps_the_data_checks_back(tmp_path, edits):
    """With the family wrong, the data's problems (here: no file) would be found against it: only
    the spec's are reported."""
    code, out = _check(_write(tmp_path, data=False, male="mal", **edits))
    assert code == 3
    keys = [k for k, _ in _messages(out)]
    assert "model.formula" in keys and "data.source" not in keys and "population.margins.gender" not in keys


ARM = ("model.formula", "predictor 'arm' is not a column of the sample")


def test_a_predictor_missing_from_the_sample_does_not_hide_the_population(tmp_path):
    """The sample lacks a predictor: the population's problems are found with the rest of the model."""
    code, out = _check(_write(tmp_path, drop=["arm"], male="mal"))
    assert code == 4
    got = _messages(out)
    assert [k for k, _ in got] == ["model.formula", "population.margins.gender"]
    assert got[0][1].startswith(ARM[1]) and MAL in got[1][1]


def test_what_follows_from_the_missing_predictor_is_not_repeated(tmp_path):
    """Its levels, its estimands' `at` and the population's want of it follow from its absence:
    only the missing column is reported."""
    code, out = _check(_write(tmp_path, drop=["arm"], levels='levels.arm = ["a", "b"]'))
    assert code == 4
    assert [(k, m.split(";")[0]) for k, m in _messages(out)] == [ARM]


def test_a_term_of_the_missing_predictor_excluded_is_not_a_problem(tmp_path):
    """An estimand that excludes the term of the missing predictor: only the column is reported
    (with the population's own problem)."""
    path = _write(tmp_path, formula="clicked ~ arm + (1 | gender) + (1 | region)", variants='exclude = ["1|region"]',
                  male="mal")
    code, out = _check(path)
    assert code == 4
    got = _messages(out)
    assert [k for k, _ in got] == ["model.formula", "population.margins.gender"]
    assert "predictor 'region' is not a column of the sample" in got[0][1] and MAL in got[1][1]


def test_a_variable_met_only_beside_the_missing_one_is_not_misreported(tmp_path):
    """`gender` is in the formula only in a term with the missing `channel`: the checks without that
    term must not say `gender` is not a predictor (its levels are listed)."""
    path = _write(tmp_path, formula="clicked ~ arm + (1 | gender:channel)", levels='levels.gender = ["female", "male"]',
                  prior="Normal(0, HalfNormal(0.5))")
    text = path.read_text().replace('"1|gender" =', '"1|gender:channel" =')
    path.write_text(text)
    code, out = _check(path)
    assert code == 4
    assert [(k, m.split(";")[0]) for k, m in _messages(out)] == [
        ("model.formula", "predictor 'channel' is not a column of the sample")]


def test_a_predictor_named_like_a_key_hides_nothing(tmp_path):
    """A missing predictor called `source` does not hide `population.source`'s problem."""
    path = _write(tmp_path, formula="clicked ~ arm + (1 | source)")
    path.write_text(path.read_text().replace('"1|gender" =', '"1|source" =').replace(
        "[population.margins]\ngender = { female = 0.5, male = 0.5 }", '[population]\nsource = "nope.csv"\nweight = "n"'))
    code, out = _check(path)
    assert code == 4
    keys = [k for k, _ in _messages(out)]
    assert keys == ["model.formula", "population.source"], _messages(out)


def test_the_specs_own_problems_are_not_repeated_for_each_variant(tmp_path):
    variants = '[variants.long]\n"fit.draws" = 2000\n[variants.longer]\n"fit.draws" = 4000'
    code, out = _check(_write(tmp_path, prior=BAD_PRIOR, male="mal", variants=variants))
    assert code == 3
    assert [k for k, _ in _messages(out)] == ['model.priors."1|gender"', "population.margins.gender"]


def test_a_variants_mistake_beside_a_data_problem_is_the_specs_error(tmp_path):
    """A data problem of the spec and a variant's mistake: exit 3, as for a mistake of the spec."""
    code, out = _check(_write(tmp_path, male="mal", variants='[variants.nogender]\n"model.formula" = "clicked ~ arm"'))
    assert code == 3
    assert [k for k, _ in _messages(out)] == ["population.margins.gender",
                                               'variants.nogender (model.priors."1|gender")',
                                               'variants.nogender (population.margins.gender)']


def test_sample_levels_the_population_never_names_are_a_warning(tmp_path):
    """A population that names a sample level otherwise (a typo `55+` for `65+` that no "did you
    mean" catches): the sample's level gets no population cell, which `mrp check` warns of."""
    rng = np.random.default_rng(5)
    n = 300
    age = rng.choice(["18-34", "35-54", "55+"], n)
    spec = _spec(tmp_path, "clicked ~ arm + (1 | age)",
                 sample={"clicked": rng.integers(0, 2, n), "arm": rng.choice(["a", "b"], n), "age": age},
                 population={"age": ["18-34", "35-54", "65+"], "n": [30, 40, 30]})
    code, out = _check(spec)
    assert code == 0
    unused = [w for w in out["warnings"] if w.startswith("sample level(s)")]
    assert len(unused) == 1 and unused[0].startswith("sample level(s) '55+' of 'age' (34% of the sample) are not in "
                                                     "the population table") and "population.recode.age" in unused[0]
    plain = CliRunner().invoke(app, ["check", str(spec)])
    assert "  warning: sample level(s) '55+'" in plain.output


@pytest.mark.parametrize("pop_ages, warned", [
    (["18-34", "35-54"], True),  # a third of the sample is of an age the population table lacks
    (["18-34", "35-54", "55+"], False),
])
def test_a_population_without_a_large_part_of_the_sample_is_warned_of(tmp_path, pop_ages, warned):
    """The trial: a census without its 65+ rows read as complete. A population that is a subset of
    the sample's levels warns from a fifth of the sample on (no typo's other half to name)."""
    rng = np.random.default_rng(5)
    n = 300
    spec = _spec(tmp_path, "clicked ~ arm + (1 | age)",
                 sample={"clicked": rng.integers(0, 2, n), "arm": rng.choice(["a", "b"], n),
                         "age": rng.choice(["18-34", "35-54", "55+"], n)},
                 population={"age": pop_ages, "n": [30] * len(pop_ages)})
    code, out = _check(spec)
    assert code == 0
    unused = [w for w in out["warnings"] if w.startswith("sample level(s)")]
    assert len(unused) == warned
    if warned:
        assert unused[0].startswith("sample level(s) '55+' of 'age' (30% of the sample) are not in the population "
                                    "table") and "the estimates are of a population without them" in unused[0]


@pytest.mark.parametrize("variant, code, key, words", [
    # a variant adding a predictor the data lack: the data's error, at the variant's line
    ('"model.formula" = "clicked ~ arm + (1 | gender) + age"', 4, "variants.more (model.formula)",
     "predictor 'age' is not a column of the sample"),
    # a variant on a data file that does not exist
    ('"data.source" = "nothere.csv"', 4, "variants.more (data.source)", "file not found"),
])
def test_a_variants_own_data_is_checked(tmp_path, variant, code, key, words):
    """A spec that is sound with a variant that is not: `mrp check` reads each variant's data as
    `mrp batch` will, and names the variant and its line."""
    path = _write(tmp_path, variants=f"[variants.more]\n{variant}")
    got, out = _check(path)
    assert got == code
    ((k, message),) = _messages(out)
    assert k == key and words in message
    assert out["errors"][0]["line"] == path.read_text().splitlines().index(variant) + 1


def test_every_population_level_problem_at_once(tmp_path):
    """A common predictor's unknown population level does not hide a group factor's typo (both
    were reported one run of `mrp check` after the other); each hint is TOML one can paste."""
    rng = np.random.default_rng(2)
    n = 200
    spec = _spec(tmp_path, "clicked ~ arm + sex + (1 | state)",
                 sample={"clicked": rng.integers(0, 2, n), "arm": rng.choice(["a", "b"], n),
                         "sex": rng.choice(["F", "M"], n), "state": rng.choice(["CA", "TX"], n)},
                 population={"sex": ["f", "M", "f", "M"], "state": ["CA", "CA", "tx", "tx"], "n": [1, 1, 1, 1]})
    code, out = _check(spec)
    assert code == 4
    sex, state = sorted(out["errors"], key=lambda e: "state" in e["message"])
    assert "of 'sex'" in sex["message"] and "did you mean 'F'?" in sex["hint"]
    assert 'population.recode.sex = { f = "F" }' in sex["hint"]
    assert "'tx' of 'state'" in state["message"] and 'population.recode.state = { tx = "TX" }' in state["hint"]


@pytest.mark.parametrize("response, weight, by, data, expected", [
    # a misspelt response does not hide the population's weight column nor a `by` typo
    ("clickd", "N", "gendr", True, (3, ["model.formula", "population.weight", "estimands.by.by"])),
    # a wrong weight column does not hide a `by` typo
    ("clicked", "N", "gendr", True, (3, ["population.weight", "estimands.by.by"])),
    # two missing files: both named
    ("clicked", "n", "gender", False, (4, ["data.source", "population.source"])),
])
def test_the_sample_does_not_hide_the_population(tmp_path, response, weight, by, data, expected):
    rng = np.random.default_rng(4)
    spec = _spec(tmp_path, f"{response} ~ (1 | gender)", weight=weight, estimands=f'[estimands.by]\nby = ["{by}"]',
                 sample={"clicked": rng.integers(0, 2, 60), "gender": rng.choice(["female", "male"], 60)} if data
                 else None, population={"gender": ["female", "male"], "n": [1, 1]} if data else None)
    code, out = _check(spec)
    assert (code, [e["key"] for e in out["errors"]]) == expected


def test_priors_that_do_not_parse_come_with_the_rest(tmp_path):
    """A prior that does not parse no longer hides the other priors' problems (a group prior with a
    mean, a prior on a term the model lacks) nor the data's."""
    path = _write(tmp_path, male="mal", prior="Normal(0, -1)")
    path.write_text(path.read_text().replace('"1|gender" = "Normal(0, -1)"',
                                             '"1|gender" = "Normal(0, -1)"\narm = "Normal(0)"\nregion = "Normal(0, 1)"'))
    code, out = _check(path)
    assert code == 3
    keys = [k for k, _ in _messages(out)]
    assert keys == ['model.priors."1|gender"', "model.priors.arm", "model.priors.region", "population.margins.gender"]


def test_a_missing_join_file_does_not_hide_the_missing_sample(tmp_path):
    """The population's probe meets a join file that is missing too: both files are named (the
    probe's error replaced the sample's)."""
    spec = _spec(tmp_path, "clicked ~ share + (1 | gender)", population={"gender": ["female", "male"], "n": [1, 1]},
                 head='[[join]]\nsource = "nojoin.csv"\non = { gender = "gender" }\ncolumns = ["share"]\n',
                 estimands="[estimands.m]")
    code, out = _check(spec)
    assert (code, sorted(e["key"] for e in out["errors"])) == (4, ["data.source", "join[0].source"])


def test_a_common_predictors_typo_is_said_once_not_again_for_its_group_factor(tmp_path):
    """`sex` is a common predictor and part of `race:sex`: the population's 'F' for 'f' is one
    problem, not one more per race:sex level."""
    rng = np.random.default_rng(6)
    n = 200
    spec = _spec(tmp_path, "clicked ~ sex + (1 | race:sex)", estimands="[estimands.m]",
                 sample={"clicked": rng.integers(0, 2, n), "sex": rng.choice(["f", "m"], n),
                         "race": rng.choice(["a", "b"], n)},
                 population={"sex": ["F", "m", "F", "m"], "race": ["a", "a", "b", "b"], "n": [1, 1, 1, 1]})
    code, out = _check(spec)
    assert code == 4 and len(out["errors"]) == 1 and "of 'sex'" in out["errors"][0]["message"]


def test_missing_values_and_bad_weights_do_not_hide_a_population_typo(tmp_path):
    """The trial's three rounds to see five problems: missing sample values, blank population
    weights and a population level's case typo, reported in one go (exit 4: all the data's)."""
    sample = {"clicked": [0, 1] * 10, "arm": ["a", "b"] * 10,
              "region": ["North", "South", None, "South"] + ["North", "South"] * 8}
    population = {"arm": ["a", "b"] * 2, "region": ["north", "north", "South", "South"], "n": [10, None, 10, 10]}
    code, out = _check(_spec(tmp_path, "clicked ~ arm + (1 | region)", sample=sample, population=population))
    assert code == 4
    keys = [k for k, _ in _messages(out)]
    assert sorted(keys) == ["data.missing", "population", "population.weight"], _messages(out)
    text = " ".join(m for _, m in _messages(out))
    assert "missing values in model columns (region: 1)" in text and "1 weight(s) in 'n' are missing" in text
    assert "population level 'north' of 'region'" in text and "sample level 'North'" in text


def test_weights_summing_to_zero_are_said_beside_missing_values(tmp_path, recwarn):
    """The review: "sum to zero" was left out when a missing sample value was held, and a share of
    a zero total printed Python's RuntimeWarning."""
    sample = {"clicked": [0, 1, None, 1] * 5, "arm": ["a", "b"] * 10, "region": ["x", "y"] * 10}
    population = {"arm": ["a", "b"], "region": ["x", "z"], "n": [0, 0]}
    code, out = _check(_spec(tmp_path, "clicked ~ arm + (1 | region)", sample=sample, population=population))
    text = " ".join(m for _, m in _messages(out))
    assert code == 4 and "missing values in model columns (clicked: 5)" in text and "sum to zero" in text
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
