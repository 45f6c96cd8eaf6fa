"""`mrp init`: a starter spec from a template, and the example data it reads.

Templates: ``ab`` (an A/B test on a 0/1 outcome, population margins), ``survey`` (a survey
poststratified to a cell table with counts), ``margins`` (the same survey when only the
population's margins are known) and ``continuous`` (an A/B test on a continuous metric). Each
spec passes ``mrp check`` on the data written beside it (simulated with a fixed seed; replace it
with yours). A data file that exists is never overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.spec.schema import STARTER, schema_ref, write_text_atomic

SURVEY_HEAD = """\
#:schema {schema}
# A starter spec for a survey: edit it, then `mrp check {file}` and `mrp run {file}`.
# Every key is described in docs/spec.md, and on hover in editors that read the line above.
name = {name}
description = "Support by region, poststratified to the population{population_words}"

[data]
source = "survey.csv"                        # one row per respondent; paths are relative to this file

[model]
formula = "yes ~ age + (1 | region)"         # a partially pooled effect per region
family = "bernoulli"
levels.age = ["18-34", "35-54", "55+"]

[fit]
draws = 1000
chains = 4
seed = 2026
"""

SURVEY_CELLS = """
[population]                                 # the cell table: one row per region x age, with its count
source = "cells.csv"
weight = "count"

[estimands.support]                          # the population share answering yes
[estimands.support_by_region]
by = ["region"]

[report]
ci_prob = 0.9
"""

SURVEY_MARGINS = """
[population.margins]                         # only the margins are known: the joint assumes independence
region = { north = 0.3, south = 0.25, east = 0.2, west = 0.25 }
age = { "18-34" = 0.3, "35-54" = 0.35, "55+" = 0.35 }

[estimands.support]                          # the population share answering yes
[estimands.support_by_region]
by = ["region"]

[report]
ci_prob = 0.9
"""

CONTINUOUS = """\
#:schema {schema}
# A starter spec for an A/B test on a continuous metric: edit it, then `mrp check {file}` and `mrp run {file}`.
# Every key is described in docs/spec.md, and on hover in editors that read the line above.
name = {name}
description = "Revenue per visitor by arm, standardised to the population's country mix"

[data]
source = "revenue.csv"                       # one row per visitor; paths are relative to this file

[model]
formula = "revenue ~ arm + (1 | country)"
family = "gaussian"                          # the estimands are means in the outcome's units
levels.arm = ["A", "B"]                      # first level is the reference

[fit]
draws = 1000
chains = 4
seed = 2026

[population.margins]
country = { de = 0.4, fr = 0.35, it = 0.25 }

[estimands.revenue]                          # mean revenue per visitor under each arm
at = { arm = ["A", "B"] }

[estimands.uplift]
contrast = { arm = ["B", "A"] }              # B minus A, in the outcome's units
scale = "difference"
rope = [-0.1, 0.1]

[report]
ci_prob = 0.94
"""


@dataclass(frozen=True)
class Template:
    name: str
    what: str
    text: str  # with {schema}, {file} and {name}
    data: tuple[str, ...]  # the files it reads, written beside it


TEMPLATES = {
    "ab": Template("ab", "an A/B test on a 0/1 outcome (clicks), the population given by its margins", STARTER,
                   ("clicks.csv",)),
    "survey": Template("survey", "a survey poststratified to a cell table with counts (region x age)",
                       SURVEY_HEAD.replace("{population_words}", "'s region x age cells") + SURVEY_CELLS,
                       ("survey.csv", "cells.csv")),
    "margins": Template("margins", "the same survey when only the population's margins are known",
                        SURVEY_HEAD.replace("{population_words}", "'s region and age margins, taken as independent")
                        + SURVEY_MARGINS, ("survey.csv",)),
    "continuous": Template("continuous", "an A/B test on a continuous metric (revenue per visitor)", CONTINUOUS,
                           ("revenue.csv",)),
}


def example_data(name: str, seed: int = 2026) -> pd.DataFrame:
    """The simulated example table ``name`` (a file a template reads), with a fixed seed."""
    rng = np.random.default_rng(seed)
    if name == "clicks.csv":  # as examples/ab_click/generate.py: women click more, the sample is 75% women
        n = 2000
        gender = np.where(rng.random(n) < 0.75, "female", "male")
        treatment = np.where(rng.random(n) < 0.5, "treatment", "control")
        p = np.where(gender == "female", 0.075, 0.025) * np.where(treatment == "treatment", 1.5, 1.0)
        return pd.DataFrame({"user": np.arange(n), "gender": gender, "treatment": treatment,
                             "clicked": (rng.random(n) < p).astype(int)})
    regions, ages = ["north", "south", "east", "west"], ["18-34", "35-54", "55+"]
    if name == "survey.csv":
        n = 1500
        region = rng.choice(regions, size=n, p=[0.4, 0.3, 0.2, 0.1])
        age = rng.choice(ages, size=n, p=[0.5, 0.3, 0.2])  # the young over-represented
        eta = (-0.2 + pd.Series(region).map({"north": 0.3, "south": -0.2, "east": 0.1, "west": -0.4}).to_numpy()
               + pd.Series(age).map({"18-34": 0.5, "35-54": 0.0, "55+": -0.5}).to_numpy())
        return pd.DataFrame({"region": region, "age": age, "yes": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)})
    if name == "cells.csv":
        return pd.DataFrame([(r, a, int(rng.integers(20_000, 90_000))) for r in regions for a in ages],
                            columns=["region", "age", "count"])
    if name == "revenue.csv":
        n = 1200
        country = rng.choice(["de", "fr", "it"], size=n, p=[0.6, 0.25, 0.15])
        arm = np.where(rng.random(n) < 0.5, "B", "A")
        mean = 5.0 + pd.Series(country).map({"de": 0.5, "fr": 0.0, "it": -0.5}).to_numpy() + np.where(arm == "B", 0.3, 0)
        return pd.DataFrame({"country": country, "arm": arm, "revenue": np.round(rng.normal(mean, 2.0), 2)})
    raise KeyError(name)


@dataclass(frozen=True)
class Written:
    spec: Path
    data: tuple[Path, ...]  # example data written
    kept: tuple[Path, ...]  # data files that existed and were left alone


def init(file, template: str = "ab") -> Written:
    """Write the spec ``file`` from ``template`` and the example data it reads (beside it)."""
    t = TEMPLATES[template]
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (t.text.replace("{schema}", schema_ref(path)).replace("{file}", path.name)
            .replace("{name}", json.dumps(path.name.split(".")[0] or "analysis")))
    write_text_atomic(path, text)
    written, kept = [], []
    for name in t.data:
        target = path.parent / name
        if target.exists():
            kept.append(target)
            continue
        write_text_atomic(target, example_data(name).to_csv(index=False))
        written.append(target)
    return Written(spec=path, data=tuple(written), kept=tuple(kept))
