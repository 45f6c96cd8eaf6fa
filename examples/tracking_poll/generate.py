"""Simulate a weekly tracking poll: approval with a smooth trend and a shock, over 20 weeks.

Approval on the logit scale is a slow rise (a sine over the 20 weeks) with a shock: from week 12
on, 0.5 lower (a scandal), recovering by a third. Each week about 70 people answer (week 15 none:
the poll was not fielded), and the sample over-represents the old, who approve more, so the raw
weekly share is biased. The population (the same every week) is 4 age bands x 2 genders.

    python examples/tracking_poll/generate.py [--seed 14] [--out DIR]

writes poll.csv (one row per respondent), population.csv (week x age x gender cells with their
counts) and truth.csv (the true poststratified approval per week).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WEEKS = 20
AGES = ("18-34", "35-49", "50-64", "65+")
AGE_EFFECT = np.array([-0.5, -0.15, 0.15, 0.5])
AGE_POP = np.array([0.30, 0.25, 0.25, 0.20])
AGE_SAMPLE = np.array([0.12, 0.20, 0.30, 0.38])  # the old answer more
GENDER_EFFECT = {"female": 0.15, "male": -0.15}


def week_effect() -> np.ndarray:
    w = np.arange(1, WEEKS + 1)
    trend = 0.35 * np.sin((w - 1) / (WEEKS - 1) * np.pi) - 0.1
    shock = np.where(w >= 12, -0.5 * (1 - (1 / 3) * np.clip((w - 12) / 6, 0, 1)), 0.0)
    return trend + shock


def population() -> pd.DataFrame:
    rows = [(w, a, g, round(1_000_000 * AGE_POP[i] * 0.5)) for w in range(1, WEEKS + 1)
            for i, a in enumerate(AGES) for g in GENDER_EFFECT]
    return pd.DataFrame(rows, columns=["week", "age", "gender", "count"])


def truth() -> pd.DataFrame:
    pop = population()
    eta = (week_effect()[pop["week"].to_numpy() - 1] + AGE_EFFECT[pop["age"].map(AGES.index).to_numpy()]
           + pop["gender"].map(GENDER_EFFECT).to_numpy())
    p = 1 / (1 + np.exp(-eta))
    share = (pop["count"] * p).groupby(pop["week"]).sum() / pop["count"].groupby(pop["week"]).sum()
    return pd.DataFrame({"week": share.index, "approval": share.to_numpy()})


def simulate(seed: int = 14, per_week: int = 70) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for w in range(1, WEEKS + 1):
        if w == 15:
            continue
        n = int(rng.poisson(per_week))
        age = rng.choice(len(AGES), size=n, p=AGE_SAMPLE)
        gender = rng.choice(list(GENDER_EFFECT), size=n)
        eta = week_effect()[w - 1] + AGE_EFFECT[age] + np.array([GENDER_EFFECT[g] for g in gender])
        approve = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
        frames.append(pd.DataFrame({"week": w, "age": np.array(AGES)[age], "gender": gender, "approve": approve}))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    simulate(args.seed).to_csv(args.out / "poll.csv", index=False)
    population().to_csv(args.out / "population.csv", index=False)
    truth().to_csv(args.out / "truth.csv", index=False, float_format="%.6f")


if __name__ == "__main__":
    main()
