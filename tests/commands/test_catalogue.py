"""A catalogue of broken inputs and the message each must produce.

Each case starts from a small valid A/B-style analysis (a click log, a population cell
table or margins, a binomial variant and a DuckDB variant), applies one mutation to the
spec text, the sample data or the population table, runs ``mrp check`` and asserts what a
demanding user should see: the exit code (2 usage, 3 invalid spec, 4 data or population),
the dotted key, a fragment of the message, "did you mean" for misspellings, the
``FILE:LINE:`` prefix pointing at the offending line, the bad part of a formula marked,
and never a traceback.

Cases where the tool does not (yet) say what it should are kept with the expected message
and marked ``xfail(strict=True)`` with what is wrong now. No sampling happens here.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app

runner = CliRunner()

# --------------------------------------------------------------------------- valid inputs

CELLS = """
name = "ab-catalogue"
description = "Click-through by arm, poststratified to a population cell table"

[data]
source = "clicks.csv"
missing = "error"

[model]
formula = "clicked ~ treatment + age_band + (1 | gender) + (1 | region)"
family = "bernoulli"
levels.treatment = ["control", "treatment"]

[model.priors]
Intercept = "Normal(0, 1.5)"
treatment = "Normal(0, 1)"
"1|gender" = "Normal(0, HalfNormal(0.5))"
"1|region" = { dist = "Normal", mu = 0, sigma = { dist = "HalfNormal", sigma = 0.5 } }

[fit]
sampler = "nutpie"
draws = 200
tune = 200
chains = 2
seed = 1
target_accept = 0.9

[population]
source = "population.csv"
weight = "count"
new_levels = "sample"

[estimands.click_rate]
at = { treatment = ["control", "treatment"] }

[estimands.by_market]
at = { treatment = ["treatment"] }
by = ["market"]

[estimands.lift]
contrast = { treatment = ["treatment", "control"] }
scale = "ratio"
rope = [0.98, 1.02]
exclude = ["1|region"]

[report]
ci_prob = 0.9
ci_kind = "eti"
"""

MARGINS = """
name = "ab-margins"

[data]
source = "clicks.csv"

[model]
formula = "clicked ~ treatment + age_band + (1 | gender)"
family = "bernoulli"

[population]
joint = "independent"

[population.margins]
gender = { female = 0.5, male = 0.5 }
age_band = { "18-34" = 0.3, "35-54" = 0.4, "55+" = 0.3 }

[estimands.lift]
contrast = { treatment = ["treatment", "control"] }
scale = "difference"
"""

BINOMIAL = """
name = "ab-binomial"

[data]
source = "visits.csv"

[model]
formula = "p(clicks, visits) ~ treatment + (1 | gender)"
family = "binomial"

[population.margins]
gender = { female = 0.5, male = 0.5 }

[estimands.lift]
contrast = { treatment = ["treatment", "control"] }
scale = "odds_ratio"
"""

DUCKDB = CELLS.replace('source = "clicks.csv"', 'source = "clicks.duckdb"\nquery = "SELECT * FROM clicks"')
CSV_QUERY = CELLS.replace('source = "clicks.csv"',
                          'source = "clicks.csv"\nquery = "SELECT * FROM source WHERE user > 10"')

BASES = {"cells": CELLS, "margins": MARGINS, "binomial": BINOMIAL, "duckdb": DUCKDB, "csv_query": CSV_QUERY}
DATA_FILE = {"cells": "clicks.csv", "margins": "clicks.csv", "binomial": "visits.csv", "duckdb": "clicks.csv",
             "csv_query": "clicks.csv"}
# valid bases the tool rejects today
BROKEN_BASES: dict[str, str] = {}
FORMULA = "clicked ~ treatment + age_band + (1 | gender) + (1 | region)"


def _clicks(n: int = 400, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "user": np.arange(1, n + 1),
        "gender": np.where(rng.random(n) < 0.75, "female", "male"),
        "treatment": np.where(rng.random(n) < 0.5, "treatment", "control"),
        "age_band": rng.choice(["18-34", "35-54", "55+"], n),
        "region": rng.choice(["north", "south", "east", "west"], n),
    })
    p = np.where(df.gender == "female", 0.3, 0.15) * np.where(df.treatment == "treatment", 1.5, 1.0)
    df["clicked"] = (rng.random(n) < p).astype(int)
    return df[["user", "gender", "treatment", "clicked", "age_band", "region"]]


def _population() -> pd.DataFrame:
    rows = []
    market = {"north": "eu", "east": "eu", "south": "us", "west": "us"}
    for i, (g, a, r) in enumerate((g, a, r) for g in ("female", "male") for a in ("18-34", "35-54", "55+")
                                  for r in ("north", "south", "east", "west")):
        rows.append({"gender": g, "age_band": a, "region": r, "market": market[r], "count": 1000 + 37 * i})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def valid_dir(tmp_path_factory) -> Path:
    """The valid input files, written once and copied into each case's folder."""
    d = tmp_path_factory.mktemp("catalogue_valid")
    clicks = _clicks()
    clicks.to_csv(d / "clicks.csv", index=False)
    _population().to_csv(d / "population.csv", index=False)
    visits = (clicks.groupby(["gender", "treatment", "region"])["clicked"]
              .agg(clicks="sum", visits="size").reset_index())
    visits.to_csv(d / "visits.csv", index=False)
    import duckdb

    con = duckdb.connect(str(d / "clicks.duckdb"))
    con.execute("CREATE TABLE clicks AS SELECT * FROM read_csv_auto(?)", [str(d / "clicks.csv")])
    con.close()
    return d


# --------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Edit:
    kind: str  # spec | data | pop | file | rm
    a: object = None
    b: object = None


def S(old: str, new: str) -> Edit:
    """Replace text in the spec."""
    return Edit("spec", old, new)


def D(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Edit:
    """Change the sample data file."""
    return Edit("data", fn)


def P(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Edit:
    """Change the population table."""
    return Edit("pop", fn)


def F(name: str, text: str) -> Edit:
    """Write another file beside the spec."""
    return Edit("file", name, text)


def at_row(col: str, row: int, value):
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        if not pd.isna(value) and not isinstance(value, (int, float)):
            df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return fn


@dataclass(frozen=True)
class Case:
    id: str
    code: int
    expect: tuple[str, ...]  # fragments that must all be on stderr
    edits: tuple[Edit, ...] = ()
    key: str | None = None  # the dotted key the problem is reported under
    at: str | tuple[str, str] | None = None  # text on the offending line of the spec (or (file, text))
    base: str = "cells"
    args: tuple[str, ...] = ()
    spec_name: str = "spec.toml"  # the file given to `mrp check`
    marked: str | None = None  # the part of the formula that must be underlined with ^^^
    absent: tuple[str, ...] = ()  # fragments that must not be on stderr (noise, repeats)
    xfail: str | None = None


def C(id, code, *expect, **kw) -> Case:
    edits = kw.pop("edits", ())
    if isinstance(edits, Edit):
        edits = (edits,)
    return Case(id, code, tuple(expect), tuple(edits), **kw)


# --------------------------------------------------------------------------- the catalogue

PRIOR_G = '"1|gender" = "Normal(0, HalfNormal(0.5))"'
PRIOR_R = '"1|region" = { dist = "Normal", mu = 0, sigma = { dist = "HalfNormal", sigma = 0.5 } }'
AT_RATE = 'at = { treatment = ["control", "treatment"] }'
CONTRAST = 'contrast = { treatment = ["treatment", "control"] }'


def F_(formula: str) -> Edit:
    """Replace the formula of the cells spec."""
    return S(f'formula = "{FORMULA}"', f"formula = {formula}")


CASES: list[Case] = [
    # ---- TOML syntax
    C("toml_unclosed_table_header", 3, "TOML syntax error", edits=S("[model]\n", "[model\n"), at="[model"),
    C("toml_unterminated_string", 3, "TOML syntax error", "quotes",
      edits=S('family = "bernoulli"', 'family = "bernoulli'),
      at="family = "),
    C("toml_bare_word_value", 3, "TOML syntax error", "quotes", edits=S('ci_kind = "eti"', "ci_kind = eti"),
      at="ci_kind"),
    C("toml_duplicate_key", 3, "TOML syntax error", "family",
      edits=S('family = "bernoulli"', 'family = "bernoulli"\nfamily = "binomial"'), at='family = "binomial"'),
    C("spec_is_a_csv_file", 3, "TOML syntax error", spec_name="clicks.csv", at=("clicks.csv", "user,gender")),

    # ---- unknown keys, at every level, with did-you-mean
    C("unknown_top_level_key", 3, "unknown key", "did you mean 'description'", key="descripton",
      edits=S("description = ", "descripton = "), at="descripton"),
    C("unknown_section", 3, "unknown key", "did you mean 'estimands'", key="estimand",
      edits=S("[estimands.lift]", "[estimand.lift]"), at="[estimand.lift]"),
    C("unknown_required_key", 3, "unknown key", "did you mean 'source'", key="data.sorce",
      edits=S('source = "clicks.csv"', 'sorce = "clicks.csv"'), at='sorce =',
      absent=("required key is missing",)),  # one misspelling, one message
    C("unknown_data_key", 3, "unknown key", "did you mean 'missing'", key="data.mising",
      edits=S('missing = "error"', 'mising = "error"'), at="mising"),
    C("unknown_model_table", 3, "unknown key", "did you mean 'priors'", key="model.prior",
      edits=S("[model.priors]", "[model.prior]"), at="[model.prior]"),
    C("unknown_fit_key", 3, "unknown key", "did you mean 'chains'", key="fit.chain",
      edits=S("chains = 2", "chain = 2"), at="chain = 2"),
    C("unknown_population_key", 3, "unknown key", "did you mean 'weight'", key="population.weights",
      edits=S('weight = "count"', 'weights = "count"'), at="weights ="),
    C("unknown_estimand_key", 3, "unknown key", "did you mean 'scale'", key="estimands.lift.scales",
      edits=S('scale = "ratio"', 'scales = "ratio"'), at="scales =", absent=("remove it; remove it",)),
    C("unknown_report_key", 3, "unknown key", "did you mean 'ci_prob'", key="report.ci_prb",
      edits=S("ci_prob = 0.9", "ci_prb = 0.9"), at="ci_prb"),
    C("unknown_join_key", 3, "unknown key", "did you mean 'columns'", key="join[0].column",
      edits=S("[report]", '[[join]]\nsource = "regions.csv"\non = { region = "region" }\ncolumn = ["urban"]\n\n'
              "[report]"), at="column = "),

    # ---- wrong types
    C("type_chains_fraction", 3, "must be a whole number (it has a fractional part)", "(got 2.5)", key="fit.chains", edits=S("chains = 2", "chains = 2.5"),
      at="chains = 2.5"),
    C("type_draws_word", 3, "must be a whole number", "(got 'many')", key="fit.draws", edits=S("draws = 200", 'draws = "many"'),
      at="draws ="),
    C("type_by_not_a_list", 3, "list", "(got 'market')", key="estimands.by_market.by",
      edits=S('by = ["market"]', 'by = "market"'), at='by = "market"'),
    C("type_levels_not_a_list", 3, "list", "(got 'control')", key="model.levels.treatment",
      edits=S('levels.treatment = ["control", "treatment"]', 'levels.treatment = "control"'),
      at="levels.treatment"),
    C("type_ci_prob_percent_string", 3, "number", "(got '90%')", key="report.ci_prob",
      edits=S("ci_prob = 0.9", 'ci_prob = "90%"'), at="ci_prob"),
    C("type_name_number", 3, "must be text, in quotes", "(got 42)", key="name", edits=S('name = "ab-catalogue"', "name = 42"),
      at="name = 42"),
    C("type_margin_share_word", 3, "number", "(got 'half')", key="population.margins.gender.female", base="margins",
      edits=S("female = 0.5", 'female = "half"'), at="gender = "),
    C("type_rope_three_numbers", 3, "2 items", key="estimands.lift.rope",
      edits=S("rope = [0.98, 1.02]", "rope = [0.98, 1.0, 1.02]"), at="rope ="),
    C("type_prior_number", 3, 'a prior is a string like "Normal(0, 1)"', key="model.priors.Intercept",
      edits=S('Intercept = "Normal(0, 1.5)"', "Intercept = 0"), at="Intercept = 0"),

    # ---- out-of-range numbers
    C("range_draws_zero", 3, "greater than 0", "(got 0)", key="fit.draws", edits=S("draws = 200", "draws = 0"),
      at="draws = 0"),
    C("range_chains_negative", 3, "greater than 0", "(got -1)", key="fit.chains",
      edits=S("chains = 2", "chains = -1"), at="chains = -1"),
    C("range_tune_negative", 3, "must be at least 0", "(got -100)", key="fit.tune",
      edits=S("tune = 200", "tune = -100"), at="tune = -100"),
    C("range_target_accept_above_1", 3, "less than 1", "(got 1.5)", key="fit.target_accept",
      edits=S("target_accept = 0.9", "target_accept = 1.5"), at="target_accept"),
    C("range_ci_prob_as_percent", 3, "less than 1", "(got 95)", key="report.ci_prob",
      edits=S("ci_prob = 0.9", "ci_prob = 95"), at="ci_prob = 95"),
    C("range_seed_negative", 3, "must be at least 0", "(got -1)", key="fit.seed",
      edits=S("seed = 1", "seed = -1"), at="seed = -1"),

    # ---- values outside an allowed set
    C("enum_family_capitalised", 3, "did you mean 'bernoulli'", "(got 'Bernoulli')", key="model.family",
      edits=S('family = "bernoulli"', 'family = "Bernoulli"'), at="family ="),
    C("enum_family_unknown", 3, "not one of the allowed values", "'bernoulli'", "'gaussian'", key="model.family",
      edits=S('family = "bernoulli"', 'family = "logistic"'), at="family ="),
    C("enum_sampler", 3, "did you mean 'nutpie'", key="fit.sampler",
      edits=S('sampler = "nutpie"', 'sampler = "nutpy"'), at="sampler ="),
    C("enum_mass_matrix", 3, "did you mean 'low_rank'", key="fit.mass_matrix",
      edits=S('sampler = "nutpie"', 'sampler = "nutpie"\nmass_matrix = "lowrank"'), at="mass_matrix ="),
    C("parameterization_unknown_term", 3, "'1|gendr' is not a group term of the formula",
      "did you mean '1|gender'", key='model.parameterization."1|gendr"',
      edits=S('levels.treatment = ["control", "treatment"]',
              'levels.treatment = ["control", "treatment"]\nparameterization = { "1|gendr" = "centered" }'),
      at="parameterization ="),
    C("parameterization_term_spaced", 3, "'1 | region' is not a group term", 'write it as the term is named: "1|region"',
      edits=S('levels.treatment = ["control", "treatment"]',
              'levels.treatment = ["control", "treatment"]\nparameterization = { "1 | region" = "centered" }'),
      at="parameterization ="),
    C("parameterization_bad_value_in_table", 3, "is not one of the allowed values", "got 'centred'",
      "did you mean 'centered'", key='model.parameterization."1|region"',
      edits=S('levels.treatment = ["control", "treatment"]',
              'levels.treatment = ["control", "treatment"]\nparameterization = { "1|region" = "centred" }'),
      at="parameterization =", absent=("dict[", "literal[", "valid dictionary")),
    C("parameterization_weight_one", 3, "less than 1", "(got 1)",
      'for the ends write "noncentered" (0) or "centered" (1)', key='model.parameterization."1|region"',
      edits=S('levels.treatment = ["control", "treatment"]',
              'levels.treatment = ["control", "treatment"]\nparameterization = { "1|region" = 1 }'),
      at="parameterization =", absent=("centring weight\"", "literal")),
    C("parameterization_weight_negative", 3, "greater than 0", "(got -0.2)", key='model.parameterization."1|region"',
      edits=S('levels.treatment = ["control", "treatment"]',
              'levels.treatment = ["control", "treatment"]\nparameterization = { "1|region" = -0.2 }'),
      at="parameterization ="),
    C("parameterization_weight_of_a_fixed_sd", 3, "a centring weight needs a prior on the sd of '1|gender'",
      "a fixed sd leaves nothing to reparameterize", key='model.parameterization."1|gender"',
      edits=(S(PRIOR_G, '"1|gender" = "Normal(0, 0.5)"'),
             S('levels.treatment = ["control", "treatment"]',
               'levels.treatment = ["control", "treatment"]\nparameterization = { "1|gender" = 0.5 }')),
      at="parameterization ="),
    C("parameterization_weight_of_a_slope", 3, "a centring weight is for a group intercept (1|...); "
      "'treatment|gender' has slopes", 'set "centered" or "noncentered" instead',
      key='model.parameterization."treatment|gender"',
      edits=(S("(1 | gender)", "(treatment | gender)"), S(PRIOR_G, ""),
             S('levels.treatment = ["control", "treatment"]',
               'levels.treatment = ["control", "treatment"]\nparameterization = { "treatment|gender" = 0.5 }')),
      at="parameterization ="),
    C("parameterization_of_a_structured_term", 3, "'1|region' has a rw1 structure (model.structure.region)",
      "set model.structure.region = \"iid\"", key='model.parameterization."1|region"',
      edits=S('levels.treatment = ["control", "treatment"]',
              'levels.treatment = ["control", "treatment"]\nstructure.region = "rw1"\n'
              'parameterization = { "1|region" = "centered" }'),
      at="parameterization ="),
    C("variant_parameterization_unknown_term", 3, "'1|gendr' is not a group term of the formula",
      "did you mean '1|gender'", key='variants.cen (model.parameterization."1|gendr")',
      edits=S('[report]', '[variants.cen]\n"model.parameterization" = { "1|gendr" = "centered" }\n\n[report]'),
      at='"model.parameterization" ='),
    C("variant_drops_a_predictor_the_estimands_set", 3, "'treatment' is not a predictor in the formula",
      key="variants.no_arm (estimands.click_rate.at.treatment)",
      edits=S('[report]', '[variants.no_arm]\n"model.formula" = "clicked ~ age_band + (1 | gender) + (1 | region)"'
                          '\n"model.levels" = {}\n"model.priors" = { "1|gender" = "Normal(0, HalfNormal(0.5))" }'
                          '\n\n[report]'),
      at="[variants.no_arm]"),
    C("variant_drops_a_term_with_a_prior", 3, "'1|region' is not a term of the model",
      key='variants.no_region (model.priors."1|region")',
      edits=S('[report]', '[variants.no_region]\n"model.formula" = "clicked ~ treatment + age_band + (1 | gender)"'
                          '\n\n[report]'),
      at="[variants.no_region]"),
    C("estimand_named_like_a_branch", 3, "is not one of the allowed values", "got 'odds'",
      key='estimands."every term".scale',
      edits=S('[estimands.click_rate]', '[estimands."every term"]\nat = { treatment = ["control"] }\nscale = "odds"\n\n'
              '[estimands.click_rate]'), at='scale = "odds"'),
    C("parameterization_bad_value", 3, "is not one of the allowed values", "did you mean 'noncentered'",
      key="model.parameterization",
      edits=S('levels.treatment = ["control", "treatment"]',
              'levels.treatment = ["control", "treatment"]\nparameterization = "non-centered"'),
      at="parameterization =", absent=("dict[", "literal[", "valid dictionary")),
    C("enum_ci_kind_hpd", 3, "did you mean 'hdi'", key="report.ci_kind",
      edits=S('ci_kind = "eti"', 'ci_kind = "hpd"'), at="ci_kind ="),
    C("enum_scale", 3, "did you mean 'odds_ratio'", key="estimands.lift.scale",
      edits=S('scale = "ratio"', 'scale = "odds-ratio"'), at="scale ="),
    C("enum_missing", 3, "'drop'", "'error'", "(got 'ignore')", key="data.missing",
      edits=S('missing = "error"', 'missing = "ignore"'), at="missing ="),
    C("enum_new_levels", 3, "'sample'", "'error'", "(got 'skip')", key="population.new_levels",
      edits=S('new_levels = "sample"', 'new_levels = "skip"'), at="new_levels ="),
    C("enum_joint", 3, "did you mean 'rake'", key="population.joint", base="margins",
      edits=S('joint = "independent"', 'joint = "raking"'), at="joint ="),

    # ---- missing required keys
    C("missing_formula", 3, "required key is missing", "formula", key="model.formula",
      edits=S(f'formula = "{FORMULA}"\n', ""), at="[model]"),
    C("missing_family", 3, "required key is missing", key="model.family",
      edits=S('family = "bernoulli"\n', ""), at="[model]"),
    C("missing_data_source", 3, "required key is missing", key="data.source",
      edits=S('source = "clicks.csv"\n', ""), at="[data]"),
    C("missing_name", 3, "required key is missing", key="name", edits=S('name = "ab-catalogue"\n', "")),
    C("missing_estimands", 3, "required key is missing", "add at least one [estimands.NAME] table", key="estimands",
      base="margins",
      edits=S("[estimands.lift]\n" + CONTRAST + '\nscale = "difference"\n', "")),
    C("population_neither_source_nor_margins", 3, "either `source`", "or `margins`", key="population",
      edits=S('source = "population.csv"\n', ""), at="[population]"),
    C("population_source_and_margins", 3, "not both", key="population",
      edits=S('new_levels = "sample"', 'new_levels = "sample"\nmargins = { gender = { female = 0.5, male = 0.5 } }'),
      at="[population]"),

    # ---- priors
    C("prior_unknown_distribution", 3, "unknown distribution 'Normall'", "did you mean 'Normal'",
      key="model.priors.treatment", edits=S('treatment = "Normal(0, 1)"', 'treatment = "Normall(0, 1)"'),
      at='treatment = "Normall'),
    C("prior_lowercase_distribution", 3, "unknown distribution 'normal'", "did you mean 'Normal'",
      key="model.priors.Intercept", edits=S('"Normal(0, 1.5)"', '"normal(0, 1.5)"'), at="Intercept ="),
    C("prior_bad_parameter_name", 3, "no parameter 'sigam'", "did you mean 'sigma'", key='model.priors."1|region"',
      edits=S(PRIOR_R, PRIOR_R.replace("mu = 0, sigma", "mu = 0, sigam")), at='"1|region"'),
    C("prior_negative_scale", 3, "must be positive", "-1", key="model.priors.treatment",
      edits=S('treatment = "Normal(0, 1)"', 'treatment = "Normal(0, -1)"'), at='treatment = "Normal(0, -1)"'),
    C("prior_negative_hyperprior_scale", 3, "must be positive", key='model.priors."1|gender"',
      edits=S(PRIOR_G, PRIOR_G.replace("0.5", "-0.5")), at='"1|gender"'),
    C("prior_unclosed_parenthesis", 3, "missing ')'", key='model.priors."1|gender"',
      edits=S(PRIOR_G, '"1|gender" = "Normal(0, HalfNormal(0.5)"'), at='"1|gender"'),
    C("prior_extra_parenthesis", 3, "unexpected ')'", key="model.priors.treatment",
      edits=S('treatment = "Normal(0, 1)"', 'treatment = "Normal(0, 1))"'), at='treatment = "Normal(0, 1))"'),
    C("prior_too_many_parameters", 3, "Normal takes 2 parameter(s): mu, sigma", key="model.priors.treatment",
      edits=S('treatment = "Normal(0, 1)"', 'treatment = "Normal(0, 1, 2)"'), at='treatment = "Normal(0, 1, 2)"'),
    C("prior_missing_parameter", 3, "Normal needs sigma", key="model.priors.treatment",
      edits=S('treatment = "Normal(0, 1)"', 'treatment = "Normal(0)"'), at='treatment = "Normal(0)"'),
    C("prior_for_term_not_in_model", 3, "'treatmnt' is not a term of the model", "did you mean 'treatment'",
      key="model.priors.treatmnt", edits=S('treatment = "Normal(0, 1)"', 'treatmnt = "Normal(0, 1)"'),
      at="treatmnt ="),
    C("prior_for_group_term_written_with_spaces", 3, "is not a term of the model", "did you mean '1|gender'",
      key='model.priors."1 | gender"', edits=S(PRIOR_G, PRIOR_G.replace("1|gender", "1 | gender")),
      at='"1 | gender"'),
    C("prior_group_sd_not_positive", 3, "positive", key='model.priors."1|gender"',
      edits=S(PRIOR_G, '"1|gender" = "Normal(0, Normal(0, 1))"'), at='"1|gender"'),
    C("prior_code_injection", 3, "unexpected character", key="model.priors.treatment",
      edits=S('treatment = "Normal(0, 1)"', "treatment = \"__import__('os').system('ls')\""),
      at='treatment = "__import__'),

    # ---- formulas
    C("formula_without_tilde", 3, "exactly one '~'", key="model.formula",
      edits=F_('"clicked treatment + (1 | gender)"'), at="formula ="),
    C("formula_unbalanced_parenthesis", 3, "does not parse", key="model.formula", marked="(",
      edits=F_('"clicked ~ treatment + (1 | gender"'), at="formula ="),
    C("formula_trailing_plus", 3, "does not parse", key="model.formula", marked="+",
      edits=F_('"clicked ~ treatment +"'), at="formula ="),
    C("formula_equals_instead_of_tilde", 3, "'=' is not allowed", "use '~'", key="model.formula", marked="=",
      edits=F_('"clicked = treatment + (1 | gender)"'), at="formula ="),
    C("formula_no_response", 3, "no response", key="model.formula",
      edits=F_('"~ treatment + (1 | gender)"'), at="formula ="),
    C("formula_dunder_import", 3, "'__import__' is not allowed", key="model.formula", marked="__import__",
      edits=F_("\"clicked ~ treatment + __import__('os').system('rm -rf ~')\""), at="formula ="),
    C("formula_attribute_access", 3, "attribute access is not allowed", key="model.formula", marked=".",
      edits=F_("\"clicked ~ treatment + os.system('ls')\""), at="formula ="),
    C("formula_eval", 3, "the function 'eval' is not allowed", key="model.formula", marked="eval",
      edits=F_("\"clicked ~ treatment + eval('1')\""), at="formula ="),
    C("formula_open", 3, "the function 'open' is not allowed", key="model.formula", marked="open",
      edits=F_("\"clicked ~ open('/etc/passwd') + treatment\""), at="formula ="),
    C("formula_lambda", 3, "the Python keyword 'lambda' is not allowed", key="model.formula", marked="lambda",
      edits=F_('"clicked ~ treatment + (lambda: 0)()"'), at="formula ="),
    C("formula_subscript", 3, "subscripts is not allowed", key="model.formula", marked="[",
      edits=F_('"clicked ~ treatment + age_band[0]"'), at="formula ="),
    C("formula_semicolon_statement", 3, "statements", key="model.formula", marked=";",
      edits=F_('"clicked ~ treatment; import os"'), at="formula ="),
    C("formula_r_style_factor", 3, "the function 'factor' is not allowed", "C(region)", key="model.formula",
      marked="factor", edits=F_('"clicked ~ treatment + factor(region)"'), at="formula =",
      absent=("expected one of",)),
    C("formula_misspelled_transform", 3, "the function 'sacle' is not allowed", "did you mean 'scale'",
      key="model.formula", marked="sacle", edits=F_('"clicked ~ treatment + sacle(user) + (1 | gender)"'),
      at="formula ="),

    # ---- columns missing in the sample
    C("sample_response_misspelled", 4, "response 'click' is not a column of the sample", "did you mean 'clicked'",
      key="model.formula", edits=F_(f'"{FORMULA.replace("clicked", "click")}"'), at="formula ="),
    C("sample_predictor_misspelled", 4, "predictor 'age_bnad' is not a column of the sample",
      "did you mean 'age_band'", key="model.formula", edits=F_(f'"{FORMULA.replace("age_band", "age_bnad")}"'),
      at="formula ="),
    C("sample_column_dropped_from_file", 4, "predictor 'region' is not a column of the sample", key="model.formula",
      edits=D(lambda df: df.drop(columns="region")), at="formula ="),
    C("sample_rename_of_absent_column", 4, "column 'Region' does not exist", "did you mean 'region'",
      key="data.rename", edits=S('missing = "error"', 'missing = "error"\nrename = { Region = "area" }'),
      at="rename ="),
    C("sample_weights_column_absent", 4, "'weight' is not a column of the sample", key="data.weights",
      edits=S('missing = "error"', 'missing = "error"\nweights = "weight"'), at="weights ="),

    # ---- columns missing in the population
    C("population_weight_misspelled", 4, "weight column 'counts' is not in the population table",
      "did you mean 'count'", key="population.weight", edits=S('weight = "count"', 'weight = "counts"'),
      at="weight ="),
    C("population_lacks_model_variable", 4, "the model uses 'age_band', which the population lacks",
      key="population.source", edits=P(lambda df: df.drop(columns="age_band")), at='source = "population.csv"',
      absent=("this estimand does not set",)),
    C("population_lacks_model_variable_one_estimand_sets", 4,
      "the model uses 'age_band', which the population lacks (the population table population.csv has no column "
      "'age_band'), and estimand(s) by_market, lift do not set it", "or set it in those estimands",
      key="population.source", edits=(P(lambda df: df.drop(columns="age_band")),
                                      S('at = { treatment = ["control", "treatment"] }',
                                        'at = { treatment = ["control", "treatment"], age_band = ["18-34"] }')),
      at='source = "population.csv"'),
    C("population_lacks_by_variable", 4, "'market'", "population", key="estimands.by_market.by",
      edits=P(lambda df: df.drop(columns="market")), at="by ="),
    C("population_file_missing", 4, "file not found", key="population.source",
      edits=S('source = "population.csv"', 'source = "populaton.csv"'), at='source = "populaton.csv"'),

    # ---- estimands
    C("estimand_contrast_one_level", 3, "needs two different levels", key="estimands.lift",
      edits=S(CONTRAST, 'contrast = { treatment = ["treatment"] }'), at="[estimands.lift]"),
    C("estimand_contrast_same_level_twice", 3, "needs two different levels", key="estimands.lift",
      edits=S(CONTRAST, 'contrast = { treatment = ["treatment", "treatment"] }'), at="[estimands.lift]"),
    C("estimand_contrast_two_variables", 3, "one variable", key="estimands.lift",
      edits=S(CONTRAST, 'contrast = { treatment = ["treatment", "control"], gender = ["female", "male"] }'),
      at="[estimands.lift]"),
    C("estimand_at_unknown_level", 3, "level 'treatmnet' of 'treatment' does not occur in the sample",
      "did you mean 'treatment'", key="estimands.click_rate.at.treatment",
      edits=S(AT_RATE, 'at = { treatment = ["control", "treatmnet"] }'), at='"treatmnet"'),
    C("estimand_contrast_unknown_level", 3, "level 'Treatment' of 'treatment' does not occur in the sample",
      "did you mean 'treatment'", key="estimands.lift.contrast.treatment",
      edits=S(CONTRAST, 'contrast = { treatment = ["Treatment", "control"] }'), at="contrast ="),
    C("estimand_contrast_population_level_typo", 3, "level 'mle' of 'gender'", "did you mean 'male'",
      key="estimands.lift.contrast.gender",
      edits=S(CONTRAST + '\nscale = "ratio"\nrope = [0.98, 1.02]',
              'at = { treatment = ["treatment"] }\ncontrast = { gender = ["female", "mle"] }\nscale = "ratio"'),
      at="contrast ="),
    C("estimand_at_unknown_variable", 3, "'treatmnt' is not a predictor in the formula", "did you mean 'treatment'",
      key="estimands.click_rate.at.treatmnt",
      edits=S(AT_RATE, 'at = { treatmnt = ["control", "treatment"] }'), at="treatmnt"),
    C("estimand_at_empty_list", 3, "`at.treatment` lists no level", key="estimands.click_rate",
      edits=S(AT_RATE, "at = { treatment = [] }"), at="[estimands.click_rate]"),
    C("estimand_at_and_contrast_same_variable", 3, "both in `contrast` and in `at`", key="estimands.lift",
      edits=S(CONTRAST, CONTRAST + '\nat = { treatment = ["control"] }'), at="[estimands.lift]"),
    C("estimand_by_misspelled", 3, "'markt' is not a population variable", "did you mean 'market'",
      key="estimands.by_market.by", edits=S('by = ["market"]', 'by = ["markt"]'), at="by ="),
    C("estimand_by_treatment_arm", 3, "`treatment` is both in `by` and in `at`", "remove it from one",
      key="estimands.by_market", edits=S('by = ["market"]', 'by = ["treatment"]'), at="[estimands.by_market]"),
    C("estimand_by_repeated", 3, "`by` names 'market' more than once", "list each variable once",
      key="estimands.by_market", edits=S('by = ["market"]', 'by = ["market", "market"]'), at="[estimands.by_market]"),
    C("estimand_exclude_unknown_term", 3, "'1|regon' is not a term of the model", "did you mean '1|region'",
      key="estimands.lift.exclude", edits=S('exclude = ["1|region"]', 'exclude = ["1|regon"]'), at="exclude ="),
    C("estimand_exclude_formula_spelling", 3, "'(1 | region)' is not a term of the model", "did you mean '1|region'",
      key="estimands.lift.exclude", edits=S('exclude = ["1|region"]', 'exclude = ["(1 | region)"]'),
      at="exclude ="),
    C("estimand_rope_without_contrast", 3, "`rope` applies to a `contrast`", key="estimands.click_rate",
      edits=S(AT_RATE, AT_RATE + "\nrope = [-0.01, 0.01]"), at="[estimands.click_rate]"),
    C("estimand_rope_reversed", 3, "low < high", "[1.02, 0.98]", key="estimands.lift",
      edits=S("rope = [0.98, 1.02]", "rope = [1.02, 0.98]"), at="[estimands.lift]"),
    C("estimand_rope_in_other_units", 3, "`rope` [-0.02, 0.02] does not contain 1, the ratio of no difference",
      "e.g. [0.98, 1.02]", key="estimands.lift", edits=S("rope = [0.98, 1.02]", "rope = [-0.02, 0.02]"),
      at="[estimands.lift]"),
    C("estimand_odds_ratio_gaussian", 3, "odds_ratio needs a probability", "gaussian", key="estimands.lift.scale",
      edits=(S('family = "bernoulli"', 'family = "gaussian"'), S('scale = "ratio"', 'scale = "odds_ratio"')),
      at="scale ="),

    # ---- population tables and margins
    C("population_negative_weight", 4, "negative", "-5", key="population.weight",
      edits=P(at_row("count", 2, -5)), at="weight ="),
    C("population_missing_weight", 4, "missing", key="population.weight",
      edits=P(at_row("count", 3, np.nan)), at="weight ="),
    C("population_weight_na_text", 4, "are missing (rows [1], the header not counted", 'missing = "drop"',
      key="population.weight", edits=P(at_row("count", 0, "n/a")), at="weight ="),
    C("population_weight_not_a_number", 4, "are not a number (rows [2], the header not counted: 'many')",
      key="population.weight", edits=P(at_row("count", 1, "many")), at="weight =", absent=('missing = "drop"',)),
    C("population_weights_sum_to_zero", 4, "the weights in 'count' sum to zero", key="population.weight",
      edits=P(lambda df: df.assign(count=0)), at="weight ="),
    C("population_missing_value_in_model_column", 4, "missing values in population column(s) (age_band: 1)",
      'missing = "drop"', key="population.missing", edits=P(at_row("age_band", 5, np.nan)), at="[population]"),
    C("population_common_level_absent_from_sample", 4, "population level(s) ['35–54'] of 'age_band' are not in "
      "the sample", "did you mean '35-54'", key="population",
      edits=P(lambda df: df.replace({"age_band": {"35-54": "35–54"}})), at="[population]"),
    C("population_new_level_with_new_levels_error", 4, "absent from the sample: central", key="population.new_levels",
      edits=(S('new_levels = "sample"', 'new_levels = "error"'),
             P(lambda df: pd.concat([df, df[df.region == "north"].assign(region="central")], ignore_index=True))),
      at="new_levels ="),
    C("margins_new_level_with_new_levels_error", 4, "absent from the sample: other", key="population.new_levels",
      base="margins", edits=(S('joint = "independent"', 'joint = "independent"\nnew_levels = "error"'),
                             S("female = 0.5, male = 0.5", "female = 0.45, male = 0.45, other = 0.1")),
      at="new_levels ="),
    C("margins_shares_do_not_sum_to_1", 4, "shares must sum to 1 (they sum to 1.1)", key="population.margins.gender",
      base="margins", edits=S("female = 0.5, male = 0.5", "female = 0.5, male = 0.6"), at="gender ="),
    C("margins_negative_share", 4, "non-negative", key="population.margins.gender", base="margins",
      edits=S("female = 0.5, male = 0.5", "female = 1.5, male = -0.5"), at="gender ="),
    C("margins_zero_total", 4, "sum to zero", key="population.margins.gender", base="margins",
      edits=S("female = 0.5, male = 0.5", "female = 0, male = 0"), at="gender ="),
    C("margins_unknown_variable", 4, "'gendr' is neither a model predictor nor a `by` variable",
      "did you mean 'gender'", key="population.margins.gendr", base="margins",
      edits=S("gender = { female", "gendr = { female"), at="gendr ="),
    C("margins_common_level_absent_from_sample", 4, "'35-45'", "did you mean '35-54'",
      key="population.margins.age_band", base="margins", edits=S('"35-54" = 0.4', '"35-45" = 0.4'),
      at="age_band ="),
    C("margins_rake_level_absent_from_sample", 4, "no sample rows", key="population.margins.age_band",
      base="margins", edits=(S('joint = "independent"', 'joint = "rake"'),
                             S('age_band = { "18-34" = 0.3, "35-54" = 0.4, "55+" = 0.3 }',
                               'age_band = { "18-34" = 0.3, "35-54" = 0.4, "55+" = 0.2, "75+" = 0.1 }')),
      at="age_band ="),

    # ---- sample data
    C("data_missing_values_with_missing_error", 4, "missing values in model columns (clicked: 2)",
      'missing = "drop"', key="data.missing",
      edits=D(lambda df: at_row("clicked", 9, np.nan)(at_row("clicked", 4, np.nan)(df)))),
    C("data_missing_values_line_of_missing_key", 4, "missing values in model columns", key="data.missing",
      edits=D(at_row("age_band", 4, np.nan)), at='missing = "error"'),
    C("data_bernoulli_response_yes_no", 4, "a bernoulli response must be 0/1", "'clicked'", "recode",
      key="model.formula", edits=D(lambda df: df.assign(clicked=df.clicked.map({1: "yes", 0: "no"}))),
      at="formula ="),
    C("data_bernoulli_response_count", 4, "a bernoulli response must be 0/1", "'2'", key="model.formula",
      edits=D(at_row("clicked", 0, 2)), at="formula ="),
    C("data_binomial_successes_exceed_trials", 4, "successes 'clicks' exceed trials 'visits' in 1 rows",
      key="model.formula", base="binomial",
      edits=D(lambda df: at_row("clicks", 0, int(df.visits[0]) + 3)(df)), at="formula ="),
    C("data_binomial_negative_trials", 4, "'visits' must hold non-negative whole numbers", key="model.formula",
      base="binomial", edits=D(at_row("visits", 1, -4)), at="formula ="),
    C("binomial_without_p_response", 3, "p(successes, trials)", key="model.formula",
      edits=S('family = "bernoulli"', 'family = "binomial"'), at="formula ="),
    C("p_response_with_bernoulli", 3, "binomial", key="model.family", base="binomial",
      edits=S('family = "binomial"', 'family = "bernoulli"'), at="family =",
      absent=("a bernoulli response must be 0/1",)),
    C("data_recode_unknown_level", 4, "'ctrl'", "did you mean 'control'", key="data.recode.treatment",
      edits=S('missing = "error"', 'missing = "error"\nrecode.treatment = { ctrl = "control" }'),
      at="recode.treatment"),
    C("data_levels_misspelled", 4, "'contrl'", "did you mean 'control'", key="model.levels.treatment",
      edits=S('levels.treatment = ["control", "treatment"]', 'levels.treatment = ["contrl", "treatment"]'),
      at="levels.treatment"),
    C("data_file_missing", 4, "file not found", "click.csv", key="data.source",
      edits=S('source = "clicks.csv"', 'source = "click.csv"'), at='source = "click.csv"'),
    C("join_column_misspelled", 4, "column 'densty' is not in regions.csv", "did you mean 'density'",
      key="join[0].columns",
      edits=(S("[report]", '[[join]]\nsource = "regions.csv"\non = { region = "region" }\n'
                           'columns = ["urban", "densty"]\n\n[report]'),
             F_(f'"{FORMULA.replace("age_band +", "age_band + urban +")}"'),
             F("regions.csv", "region,urban,density\nnorth,0.7,1\nsouth,0.5,2\neast,0.6,3\nwest,0.4,4\n")),
      absent=("is not a column of the sample", "mrp_rows")),
    C("join_key_without_match", 4, "1 key(s) of the population have no match in regions.csv: west",
      key="join[0].on",
      edits=(S("[report]", '[[join]]\nsource = "regions.csv"\non = { region = "region" }\ncolumns = ["urban"]\n\n'
                           "[report]"),
             F_(f'"{FORMULA.replace("age_band +", "age_band + urban +")}"'),
             F("regions.csv", "region,urban\nnorth,0.7\nsouth,0.5\neast,0.6\n")),
      absent=('missing = "drop"', "missing values in population")),
    C("data_file_semicolons", 4, "its columns are separated by semicolons, not by commas", key="data.source",
      edits=F("clicks.csv", "user;gender;treatment;clicked;age_band;region\n1;female;control;0;18-34;north\n")),
    C("data_file_empty", 4, "cannot read clicks.csv", key="data.source", edits=F("clicks.csv", ""),
      at='source = "clicks.csv"'),
    C("data_unsupported_extension", 4, "unsupported file type '.xlsx'", ".csv", key="data.source",
      edits=(S('source = "clicks.csv"', 'source = "clicks.xlsx"'), F("clicks.xlsx", "PK\x03\x04 not really")),
      at='source = "clicks.xlsx"'),
    C("data_csv_saved_as_parquet", 4, "cannot read clicks.parquet", key="data.source",
      edits=(S('source = "clicks.csv"', 'source = "clicks.parquet"'), F("clicks.parquet", "user,gender\n1,female\n")),
      at='source = "clicks.parquet"'),
    C("duckdb_unknown_table", 4, "the query failed", "clickz", key="data.query", base="duckdb",
      edits=S("FROM clicks", "FROM clickz"), at="query ="),
    C("duckdb_sql_syntax_error", 4, "the query failed", "syntax error", key="data.query", base="duckdb",
      edits=S("SELECT * FROM clicks", "SELEC * FROM clicks"), at="query ="),
    C("duckdb_without_query", 4, "needs `query`", key="data.source", base="duckdb",
      edits=S('query = "SELECT * FROM clicks"\n', ""), at="source ="),
    C("csv_query_names_the_file_not_source", 4, "the query failed", "clicks", "table `source`", key="data.query",
      base="csv_query", edits=S("FROM source", "FROM clicks"), at="query ="),

    # ---- extends
    C("extends_cycle", 3, "`extends` makes a cycle", "spec.toml -> base.toml -> spec.toml", key="extends",
      edits=(S('name = "ab-catalogue"', 'extends = "base.toml"\nname = "ab-catalogue"'),
             F("base.toml", 'extends = "spec.toml"\nname = "base"\n')), at=("base.toml", "extends")),
    C("extends_self", 3, "`extends` makes a cycle", key="extends",
      edits=S('name = "ab-catalogue"', 'extends = "spec.toml"\nname = "ab-catalogue"'), at="extends ="),
    C("extends_missing_base", 3, "the spec it extends does not exist", "common.toml", key="extends",
      edits=S('name = "ab-catalogue"', 'extends = "common.toml"\nname = "ab-catalogue"'), at="extends ="),
    C("extends_not_a_path", 3, "must be a path to another spec", key="extends",
      edits=S('name = "ab-catalogue"', 'extends = true\nname = "ab-catalogue"'), at="extends ="),
    C("extends_base_has_syntax_error", 3, "TOML syntax error",
      edits=(S('name = "ab-catalogue"', 'extends = "base.toml"\nname = "ab-catalogue"'),
             F("base.toml", '[fit]\ndraws = 100\nchains = \n')), at=("base.toml", "chains =")),
    C("extends_base_has_unknown_key", 3, "unknown key", "did you mean 'draws'", key="fit.draw",
      edits=(S('name = "ab-catalogue"', 'extends = "base.toml"\nname = "ab-catalogue"'),
             F("base.toml", '# shared settings\n[fit]\ndraw = 100\n')), at=("base.toml", "draw = 100")),

    # ---- --set overrides
    C("set_bad_type", 3, "fit.draws", "(got 'lots')", "--set", args=("--set", "fit.draws=lots")),
    C("set_without_equals", 2, "KEY=VALUE", "fit.draws", args=("--set", "fit.draws")),
    C("set_unknown_key", 3, "unknown key", "did you mean 'draws'", key="fit.draw", args=("--set", "fit.draw=100")),
    C("set_misspelled_family", 3, "did you mean 'bernoulli'", key="model.family",
      args=("--set", "model.family=bernouli")),
    C("set_inside_a_value", 2, "cannot set a key inside a value that is not a table", key="--set",
      args=("--set", "name.first=x")),
    C("set_option_misspelled", 2, "No such option", args=("--sett", "fit.draws=100")),
    C("set_option_without_value", 2, "requires an argument", args=("--set",)),

    # ---- usage
    C("usage_no_spec_argument", 2, "Missing argument", spec_name=""),
    C("usage_spec_file_not_found", 3, "spec file not found", spec_name="nope.toml"),

    # ---- several problems at once
    C("multi_spec_keys_all_reported", 3, "model.family", "did you mean 'bernoulli'", "fit.draws", "greater than 0",
      "report.ci_kind", "did you mean 'hdi'", "fit.chain", "did you mean 'chains'",
      edits=(S('family = "bernoulli"', 'family = "bernouli"'), S("draws = 200", "draws = 0"),
             S('ci_kind = "eti"', 'ci_kind = "hpd"'), S("chains = 2", "chain = 2")), at="draws = 0"),
    C("multi_spec_and_formula_all_reported", 3, "fit.draws", "greater than 0", "the function 'eval' is not allowed",
      edits=(S("draws = 200", "draws = 0"), F_("\"clicked ~ treatment + eval('1')\"")), at="draws = 0"),
    C("multi_prior_and_estimand_all_reported", 3, "'treatmnt' is not a term of the model",
      "odds_ratio needs a probability",
      edits=(S('treatment = "Normal(0, 1)"', 'treatmnt = "Normal(0, 1)"'),
             S('family = "bernoulli"', 'family = "gaussian"'),
             S('scale = "ratio"', 'scale = "odds_ratio"')), at="treatmnt ="),
    C("multi_formula_injections_all_marked", 3, "'__import__' is not allowed", "attribute access",
      "the function 'system' is not allowed", "the function 'eval' is not allowed", key="model.formula",
      marked="eval", edits=F_("\"clicked ~ __import__('os').system('ls') + eval('1')\""), at="formula ="),
    C("multi_sample_columns_all_reported", 4, "response 'click' is not a column", "predictor 'age_bnad' is not",
      "predictor 'gendr' is not", key="model.formula",
      edits=F_('"click ~ treatment + age_bnad + gendr + (1 | gender) + (1 | region)"'), at="formula ="),
    C("multi_estimands_all_reported", 3, "level 'treatmnet'", "'markt' is not a population variable",
      "'1|regon' is not a term",
      edits=(S(AT_RATE, 'at = { treatment = ["control", "treatmnet"] }'), S('by = ["market"]', 'by = ["markt"]'),
             S('exclude = ["1|region"]', 'exclude = ["1|regon"]')), at='"treatmnet"'),
    C("multi_population_all_reported", 4, "population.weight", "negative", "missing values in population column(s)",
      edits=P(lambda df: at_row("age_band", 5, np.nan)(at_row("count", 2, -5)(df))), at="weight ="),
    C("multi_margins_all_reported", 4, "shares must sum to 1", "'gendr' is neither",
      base="margins", edits=(S("female = 0.5, male = 0.5", "female = 0.5, male = 0.6"),
                             S('age_band = { "18-34"', 'gendr = { female = 0.5, male = 0.5 }\nage_band = { "18-34"')),
      at="gender ="),
]


# --------------------------------------------------------------------------- running a case


def _apply(case: Case, folder: Path, valid: Path) -> None:
    for f in valid.iterdir():
        shutil.copy(f, folder / f.name)
    text = textwrap.dedent(BASES[case.base]).lstrip()
    data_file = folder / DATA_FILE[case.base]
    for e in case.edits:
        if e.kind == "spec":
            assert e.a in text, f"{case.id}: {e.a!r} is not in the {case.base} spec"
            text = text.replace(e.a, e.b, 1)
        elif e.kind == "data":
            e.a(pd.read_csv(data_file)).to_csv(data_file, index=False)
        elif e.kind == "pop":
            e.a(pd.read_csv(folder / "population.csv")).to_csv(folder / "population.csv", index=False)
        elif e.kind == "file":
            (folder / e.a).write_text(e.b)
    (folder / "spec.toml").write_text(text)


def _line(folder: Path, where) -> tuple[Path, int]:
    name, needle = where if isinstance(where, tuple) else ("spec.toml", where)
    path = folder / name
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return path, i
    raise AssertionError(f"{needle!r} is not in {name}")


def _assert_marked(stderr: str, part: str) -> None:
    """Some reprinted formula line has ^^^ exactly under ``part``."""
    lines = stderr.splitlines()
    for above, below in zip(lines, lines[1:]):
        body = below.rstrip()
        if body.strip() and set(body.strip()) == {"^"}:
            start = len(body) - len(body.lstrip())
            if above[start:len(body)] == part:
                return
    raise AssertionError(f"{part!r} is not marked with ^ in:\n{stderr}")


def _params():
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def test_catalogue_is_large_and_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 45
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("base", [
    pytest.param(b, marks=[pytest.mark.xfail(strict=True, reason=BROKEN_BASES[b])] if b in BROKEN_BASES else [])
    for b in sorted(BASES)])
def test_valid_bases_pass_check(base, tmp_path, valid_dir):
    """Each mutation starts from a valid analysis: the problem is the mutation's."""
    _apply(Case("valid", 0, (), base=base), tmp_path, valid_dir)
    r = runner.invoke(app, ["check", str((tmp_path / "spec.toml").resolve())])
    assert r.exit_code == 0, r.output
    assert "is valid" in r.stderr


@pytest.mark.parametrize("case", _params())
def test_broken_input(case: Case, tmp_path, valid_dir):
    folder = tmp_path.resolve()
    _apply(case, folder, valid_dir)
    argv = ["check"]
    if case.spec_name:
        argv.append(str(folder / case.spec_name))
    r = runner.invoke(app, argv + list(case.args))
    out, err = r.output, r.stderr
    assert "Traceback" not in out and "internal error" not in out, out
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == case.code, f"exit {r.exit_code}, expected {case.code}:\n{err}"
    for fragment in case.expect:
        assert fragment in err, f"{fragment!r} missing from:\n{err}"
    for fragment in case.absent:
        assert fragment not in err, f"{fragment!r} should not be in:\n{err}"
    if case.key:
        assert re.search(rf"(^|: ){re.escape(case.key)}: ", err, re.M), f"key {case.key!r} missing from:\n{err}"
    if case.at:
        path, line = _line(folder, case.at)
        prefix = f"{path}:{line}: " + (f"{case.key}: " if case.key else "")
        assert prefix in err, f"{prefix!r} missing from:\n{err}"
    elif case.code in (3, 4) and case.spec_name and not case.args:
        assert f"{folder / case.spec_name}:" in err, err  # at least the file
    if case.marked:
        _assert_marked(err, case.marked)
