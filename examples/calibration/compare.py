"""Run `calibrated.toml` and compare its estimates, and those of the same posterior without
calibration, with the simulated truth (`truth.csv`): the numbers of README.md and
docs/spec-language.md.

    python examples/calibration/compare.py [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.commands.run import run
from mrp_formula.steps import estimate
from mrp_formula.steps import plan as plan_of

HERE = Path(__file__).resolve().parent


def true_means(truth: pd.DataFrame, by: list[str]) -> pd.Series:
    w = truth.assign(w=truth.N * truth.p)
    if not by:
        return pd.Series([w.w.sum() / w.N.sum()])
    return w.groupby(by).w.sum() / w.groupby(by).N.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs") / "calibrated-survey")
    a = ap.parse_args()
    spec = HERE / "calibrated.toml"
    r = run(spec, out=a.out)
    plain = estimate(plan_of(spec), r.posterior, calibrate=False).table
    truth = pd.read_csv(HERE / "truth.csv")
    for name, by in (("overall", []), ("by_age", ["age"]), ("by_state_age", ["state", "age"])):
        want = true_means(truth, by)
        for label, table in (("uncalibrated", plain), ("calibrated", r.estimands)):
            rows = table[table.estimand == name]
            got = rows.set_index(by) if by else rows.reset_index(drop=True)
            t = want.loc[got.index] if by else want
            err = got["mean"] - t
            inside = int(((got.lower <= t) & (t <= got.upper)).sum())
            print(f"{name:13s} {label:12s} RMSE {np.sqrt((err ** 2).mean()):.4f}  truth inside the interval "
                  f"{inside} of {len(got)}")
    f, m = truth[truth.sex == "f"], truth[truth.sex == "m"]
    gap = (f.N * f.p).sum() / f.N.sum() - (m.N * m.p).sum() / m.N.sum()
    for label, table in (("uncalibrated", plain), ("calibrated", r.estimands)):
        row = table[table.estimand == "sex_gap"].iloc[0]
        print(f"sex_gap       {label:12s} {row['mean']:.4f} [{row['lower']:.4f}, {row['upper']:.4f}]  truth {gap:.4f}")
    cal = pd.read_csv(a.out / "calibration.csv")
    print(cal[["state", "known", "uncalibrated", "shift_mean", "shift_sd"]].round(3).to_string(index=False))
    print("calibration:", r.manifest["calibrate"])


if __name__ == "__main__":
    main()
