"""Simulate the seed's A/B test: a click log whose sample is 75% female.

Men click with probability 0.025 and women with 0.075 under control; the treatment
multiplies both by 1.5. With a 50/50 population the true click rates are 0.05 (control)
and 0.075 (treatment), and the lift is 1.5.

    python examples/ab_click/generate.py [--n 1000] [--female-share 0.75] [--seed 2026] [--out PATH]
    python examples/ab_click/generate.py --truth-vs runs/ab-click   # the truth beside a run's estimates
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def simulate(n: int = 1000, female_share: float = 0.75, p_male: float = 0.025, p_female: float = 0.075,
             lift: float = 1.5, treated_share: float = 0.5, seed: int = 2026) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gender = np.where(rng.random(n) < female_share, "female", "male")
    treatment = np.where(rng.random(n) < treated_share, "treatment", "control")
    p = np.where(gender == "female", p_female, p_male) * np.where(treatment == "treatment", lift, 1.0)
    clicked = (rng.random(n) < p).astype(int)
    return pd.DataFrame({"user": np.arange(1, n + 1), "gender": gender, "treatment": treatment,
                         "clicked": clicked})


def truth(p_male: float = 0.025, p_female: float = 0.075, lift: float = 1.5, female_pop: float = 0.5) -> dict:
    control = female_pop * p_female + (1 - female_pop) * p_male
    return {"control": control, "treatment": control * lift, "lift": lift}


def truth_vs(run_dir: Path, **params) -> list[str]:
    """Lines comparing each estimand row of a run of specs/ab_click.toml with the simulated truth."""
    t = truth(**params)
    est = pd.read_csv(Path(run_dir) / "estimands.csv")
    out = [f"{'estimand':<28} {'truth':>8} {'mean':>8}  {'interval':<32} covered"]
    for _, r in est.iterrows():
        key = "lift" if r["estimand"] == "lift" else str(r.get("treatment"))
        if key not in t:
            continue
        label = f"{r['estimand']} [{r['treatment']}]" if r["estimand"] != "lift" else "lift (treatment / control)"
        covered = "yes" if r["lower"] <= t[key] <= r["upper"] else "NO"
        interval = f"{r['lower']:.4g} to {r['upper']:.4g} ({r['ci_prob']:.0%} {str(r['ci_kind']).upper()})"
        out.append(f"{label:<28} {t[key]:>8.4g} {r['mean']:>8.4g}  {interval:<32} {covered}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--female-share", type=float, default=0.75)
    ap.add_argument("--p-male", type=float, default=0.025)
    ap.add_argument("--p-female", type=float, default=0.075)
    ap.add_argument("--lift", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=HERE / "clicks.csv")
    ap.add_argument("--if-missing", action="store_true", help="do nothing when the output exists")
    ap.add_argument("--truth-vs", type=Path, metavar="RUN_DIR",
                    help="print the simulated truth beside the estimates of a run folder, and write nothing")
    a = ap.parse_args()
    if a.truth_vs:
        print("\n".join(truth_vs(a.truth_vs, p_male=a.p_male, p_female=a.p_female, lift=a.lift)))
        return
    if a.if_missing and a.out.exists():
        return
    df = simulate(a.n, a.female_share, a.p_male, a.p_female, a.lift, seed=a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(a.out)
    print(f"wrote {len(df)} rows to {a.out}")


if __name__ == "__main__":
    main()
