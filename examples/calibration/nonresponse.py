"""Simulate a survey with outcome-related nonresponse, and the known state shares to calibrate to.

A population of 12 states x 4 age bands x 2 sexes (96 cells, 2,000 to 40,000 people each) has a
true P(y = 1) per cell from state, age and sex effects on the log-odds scale. 6,000 people are
asked, in proportion to the cells' sizes; a person with y = 1 answers with probability 0.25 and
one with y = 0 with 0.10, in every cell alike: the respondents over-represent y = 1 everywhere
(odds 2.5 times too high), which no weighting by state, age or sex can correct. The true share
of every state (an election result, a registered count) is known and written to results.csv.

    python examples/calibration/nonresponse.py [--seed 3] [--out DIR]

writes sample.csv (one row per respondent), population.csv (the cells and their sizes N),
results.csv (state, share) and truth.csv (the true share of every cell) into DIR (default:
this folder). `calibrated.toml` fits `y ~ sex + (1 | age) + (1 | state)` and calibrates to
results.csv; docs/spec-language.md and this folder's README give the numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
STATES = [f"s{i:02d}" for i in range(12)]
AGES = ["18-29", "30-44", "45-64", "65+"]


def nonresponse_survey(seed: int = 3, n_asked: int = 6000, respond=(0.10, 0.25)):
    """(sample rows, population cells with N and the true share ``p``, the true share per state):
    a person with y = 1 responds with probability ``respond[1]``, one with y = 0 with ``respond[0]``."""
    rng = np.random.default_rng(seed)
    state_eff = rng.normal(0, 0.5, len(STATES))
    age_eff = np.array([-0.6, -0.2, 0.2, 0.6])
    rows = []
    for i, s in enumerate(STATES):
        for j, a in enumerate(AGES):
            for sex, sx in (("f", 0.15), ("m", -0.15)):
                n = int(rng.integers(2_000, 40_000))
                p = 1 / (1 + np.exp(-(-0.4 + state_eff[i] + age_eff[j] + sx)))
                rows.append({"state": s, "age": a, "sex": sex, "N": n, "p": p})
    pop = pd.DataFrame(rows)
    truth_state = true_means(pop, ["state"])
    cell = rng.choice(len(pop), n_asked, p=(pop.N / pop.N.sum()).to_numpy())
    y = rng.random(n_asked) < pop.p.to_numpy()[cell]
    responds = rng.random(n_asked) < np.where(y, respond[1], respond[0])
    sample = pop.iloc[cell[responds]][["state", "age", "sex"]].reset_index(drop=True)
    sample["y"] = y[responds].astype(int)
    return sample, pop, truth_state


def true_means(pop: pd.DataFrame, by: list[str]) -> pd.Series:
    """The true population share of y = 1 per group of ``by``."""
    w = pop.assign(w=pop.N * pop.p)
    return w.groupby(by).w.sum() / w.groupby(by).N.sum()


def write(folder: Path, seed: int = 3) -> None:
    sample, pop, truth_state = nonresponse_survey(seed)
    sample.to_csv(folder / "sample.csv", index=False)
    pop.drop(columns="p").to_csv(folder / "population.csv", index=False)
    pop.round({"p": 6}).to_csv(folder / "truth.csv", index=False)
    truth_state.round(6).rename("share").rename_axis("state").reset_index().to_csv(folder / "results.csv",
                                                                                    index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    write(a.out, a.seed)


if __name__ == "__main__":
    main()
