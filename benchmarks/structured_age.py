"""Structured priors for ordered groups (Gao, Kennedy, Simpson & Gelman 2021), as a simulation:
a smooth age effect over 12 ordered bands, thin and unequal cells, one band without respondents.
Each replicate draws a sample, fits the same model with ``age = "iid"`` and ``age = "rw1"``, and
compares the poststratified age-band estimates with the population truth (error and coverage of
the 90% intervals). Writes docs/structured_age.png and prints the numbers in docs/structured-priors.md.

    PYTHONPATH=$PWD python benchmarks/structured_age.py --reps 6
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula import steps

BANDS = 12
EDU = 4
SPEC = '''
name = "age-{kind}"
[data]
source = "sample.csv"
[model]
formula = "y ~ (1|age) + (1|edu)"
family = "bernoulli"
structure = {{ age = "{kind}" }}
[fit]
draws = {draws}
tune = {draws}
chains = 2
seed = {seed}
[population]
source = "pop.csv"
weight = "n"
[estimands.by_age]
by = ["age"]
[report]
ci_prob = 0.9
'''


def truth_effects() -> np.ndarray:
    """A smooth, non-monotone age effect on the logit scale (a rise, a plateau, a fall)."""
    x = np.linspace(0, 1, BANDS)
    return 1.1 * np.sin(2.6 * x) - 0.9 * x ** 2 - 0.3


def population(rng) -> pd.DataFrame:
    rows = [(a, e, float(rng.integers(500, 2000))) for a in range(1, BANDS + 1) for e in range(1, EDU + 1)]
    return pd.DataFrame(rows, columns=["age", "edu", "n"])


def true_by_age(pop: pd.DataFrame) -> pd.Series:
    edu = np.array([-0.4, -0.1, 0.2, 0.5])
    eta = truth_effects()[pop["age"].to_numpy() - 1] + edu[pop["edu"].to_numpy() - 1]
    p = 1 / (1 + np.exp(-eta))
    return (pop["n"] * p).groupby(pop["age"]).sum() / pop["n"].groupby(pop["age"]).sum()


def sample(rng, pop: pd.DataFrame, n: int) -> pd.DataFrame:
    edu = np.array([-0.4, -0.1, 0.2, 0.5])
    share = np.where(pop["age"] % 3 == 0, 0.25, 1.0) * pop["n"]  # every third band is under-sampled
    share = np.where(pop["age"] == 7, 0.0, share)  # and band 7 has no respondents
    idx = rng.choice(len(pop), size=n, p=share / share.sum())
    cells = pop.iloc[idx]
    eta = truth_effects()[cells["age"].to_numpy() - 1] + edu[cells["edu"].to_numpy() - 1]
    y = rng.random(n) < 1 / (1 + np.exp(-np.asarray(eta)))
    return pd.DataFrame({"y": y.astype(int), "age": cells["age"].to_numpy(), "edu": cells["edu"].to_numpy()})


def fit(folder: Path, kind: str, seed: int, draws: int) -> pd.DataFrame:
    path = folder / f"{kind}.toml"
    path.write_text(SPEC.format(kind=kind, seed=seed, draws=draws))
    plan = steps.plan(path)
    fitted = steps.posterior(plan, [folder / "cache"], cache=False)
    table = steps.estimate(plan, fitted.fit.posterior).table
    table = table.assign(age=table["age"].astype(int)).set_index("age").sort_index()
    return table[["mean", "lower", "upper"]]


def run(reps: int, n: int, draws: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    pop = population(rng)
    truth = true_by_age(pop)
    results = []
    for r in range(reps):
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            pop.to_csv(folder / "pop.csv", index=False)
            sample(rng, pop, n).to_csv(folder / "sample.csv", index=False)
            for kind in ("iid", "rw1"):
                t = fit(folder, kind, seed + r, draws)
                results.append(t.assign(kind=kind, rep=r, truth=truth.reindex(t.index).to_numpy()))
    return pd.concat(results).reset_index(), truth


def summary(res: pd.DataFrame) -> pd.DataFrame:
    res = res.assign(err=res["mean"] - res["truth"], covered=(res["lower"] <= res["truth"]) & (res["truth"] <= res["upper"]),
                     width=res["upper"] - res["lower"])
    return res.groupby("kind").agg(rmse=("err", lambda e: float(np.sqrt(np.mean(e ** 2)))),
                                   mean_abs_error=("err", lambda e: float(np.mean(np.abs(e)))),
                                   coverage_90=("covered", "mean"), mean_width=("width", "mean"))


def figure(res: pd.DataFrame, truth: pd.Series, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[1].sharey(axes[0])
    first = res[res["rep"] == 0]
    err = res.assign(abs_err=(res["mean"] - res["truth"]).abs()).pivot_table(index="age", columns="kind",
                                                                               values="abs_err")
    for kind, marker in (("iid", "o"), ("rw1", "s")):
        axes[2].plot(err.index, err[kind], marker=marker, label=f'age = "{kind}"')
    axes[2].set_title(f"mean |estimate - truth| over {res['rep'].nunique()} replicates")
    axes[2].set_xlabel("age band")
    axes[2].legend(fontsize=8)
    for ax, kind in zip(axes, ("iid", "rw1")):
        t = first[first["kind"] == kind]
        ax.fill_between(t["age"], t["lower"], t["upper"], alpha=0.25, label="90% interval")
        ax.plot(t["age"], t["mean"], "o-", label="estimate")
        ax.plot(truth.index, truth.to_numpy(), "k--", label="truth")
        ax.axvline(7, color="grey", lw=0.5)
        ax.set_title(f'age = "{kind}" (replicate 1; band 7 has no sample)')
        ax.set_xlabel("age band")
    axes[0].set_ylabel("population share (poststratified)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--figure", default="docs/structured_age.png")
    args = ap.parse_args()
    res, truth = run(args.reps, args.n, args.draws)
    print(summary(res).to_string(float_format=lambda v: f"{v:.4f}"))
    by_band = res.assign(abs_err=(res["mean"] - res["truth"]).abs()).pivot_table(index="age", columns="kind",
                                                                                    values="abs_err")
    print(by_band.to_string(float_format=lambda v: f"{v:.4f}"))
    figure(res, truth, Path(args.figure))


if __name__ == "__main__":
    main()
