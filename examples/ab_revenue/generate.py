"""Simulate a revenue A/B test: revenue per user, zero for most users, skewed among payers.

A user converts (pays anything) with probability 0.08 under control and 0.09 under the
treatment, on both platforms; a payer's revenue is lognormal with log-mean 3.0 on mobile and 3.5
on desktop, plus 0.25 under the treatment, and log-sd 1.0. The sample is 75% mobile; the
population of users is 50/50. So the true mean revenue per user is conversion x exp(log-mean +
1/2) averaged over the population's platforms:

    control    0.08 e^3.5 (0.5 + 0.5 e^0.5)  = 3.5085...
    treatment  control x (0.09 / 0.08) e^0.25 = 5.0683...
    lift       (0.09 / 0.08) e^0.25           = 1.4445...

(``truth()`` computes them for any settings; the README shows them.)

    python examples/ab_revenue/generate.py [--n 10000] [--mobile-share 0.75] [--seed 2026] [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SETTINGS = dict(conversion=0.08, conversion_treatment=0.09, log_mean=3.0, desktop=0.5, treatment=0.25, log_sd=1.0)


def simulate(n: int = 10_000, mobile_share: float = 0.75, seed: int = 2026, **settings) -> pd.DataFrame:
    s = {**SETTINGS, **settings}
    rng = np.random.default_rng(seed)
    platform = np.where(rng.random(n) < mobile_share, "mobile", "desktop")
    arm = np.where(rng.random(n) < 0.5, "treatment", "control")
    log_mean = s["log_mean"] + s["desktop"] * (platform == "desktop") + s["treatment"] * (arm == "treatment")
    paid = rng.random(n) < np.where(arm == "treatment", s["conversion_treatment"], s["conversion"])
    revenue = np.where(paid, np.round(np.exp(rng.normal(log_mean, s["log_sd"])), 2), 0.0)
    revenue = np.where(paid, np.maximum(revenue, 0.01), 0.0)  # a payer pays at least a cent
    return pd.DataFrame({"user": np.arange(1, n + 1), "platform": platform, "arm": arm, "revenue": revenue})


def truth(desktop_pop: float = 0.5, **settings) -> dict:
    """True mean revenue per user in each arm over the population (and per platform), the lift
    (a ratio) and the conversion of each arm."""
    s = {**SETTINGS, **settings}
    conversion = {"control": s["conversion"], "treatment": s["conversion_treatment"]}
    shift = {"control": 0.0, "treatment": s["treatment"]}
    out: dict = {}
    for arm in ("control", "treatment"):
        for platform, extra in (("mobile", 0.0), ("desktop", s["desktop"])):
            out[(arm, platform)] = float(conversion[arm] * np.exp(s["log_mean"] + extra + shift[arm]
                                                                  + s["log_sd"] ** 2 / 2))
        out[arm] = (1 - desktop_pop) * out[(arm, "mobile")] + desktop_pop * out[(arm, "desktop")]
    out["lift"] = out["treatment"] / out["control"]
    out["conversion"] = conversion
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--mobile-share", type=float, default=0.75)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=HERE / "revenue.csv")
    ap.add_argument("--if-missing", action="store_true", help="do nothing when the output exists")
    a = ap.parse_args()
    if a.if_missing and a.out.exists():
        return
    df = simulate(a.n, a.mobile_share, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(a.out)
    print(f"wrote {len(df)} rows to {a.out}")


if __name__ == "__main__":
    main()
