"""BYM2 against iid state effects on the US states (the primer's census cells and the state
contiguity table): small states borrow from their neighbours.

The truth is not drawn from either model: a state's effect on the logit scale is its
standardised Kerry 2004 vote share (a real, spatially smooth quantity; the model is not given
it), plus an age effect. Each replicate polls ``--n`` people in proportion to the census cells
(so small states get a handful, AK and HI often none), fits ``y ~ (1|age) + (1|state)`` with
``state = "iid"`` and with ``state = { kind = "bym2", adjacency = ... }``, and compares the
poststratified state estimates with the true state shares. Writes docs/structured_states.png.

    PYTHONPATH=$PWD python benchmarks/structured_states.py --reps 3 [--folder DIR]

The folder keeps the last replicate's data and both specs (``bym2.toml`` is the spec of the
`mrp recover` check in docs/structured-priors.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula import steps

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "mrp_primer" / "data"
AGE = np.array([-0.3, -0.1, 0.1, 0.3])
SPEC = '''
name = "states-{kind}"
[data]
source = "sample.csv"
[model]
formula = "y ~ (1|age) + (1|state)"
family = "bernoulli"
structure = {{ state = {structure} }}
[fit]
draws = {draws}
tune = {draws}
chains = 2
seed = {seed}
[population]
source = "population.csv"
weight = "n"
[estimands.by_state]
by = ["state"]
[report]
ci_prob = 0.9
'''
STRUCTURES = {"iid": '"iid"', "bym2": f'{{ kind = "bym2", adjacency = "{DATA / "state_neighbours.csv"}" }}'}


def population() -> pd.DataFrame:
    cells = pd.read_csv(DATA / "poststratification_2000.csv")
    pop = cells.groupby(["cstate", "cage_cat"], as_index=False)["_freq"].sum()
    return pop.rename(columns={"cstate": "state", "cage_cat": "age", "_freq": "n"})


def state_effects() -> pd.Series:
    st = pd.read_csv(DATA / "state_level_update.csv").set_index("sstate")["kerry_04"]
    return (st - st.mean()) / st.std()


def truth(pop: pd.DataFrame) -> pd.Series:
    eta = state_effects().reindex(pop["state"]).to_numpy() + AGE[pop["age"].to_numpy() - 1]
    p = 1 / (1 + np.exp(-eta))
    return (pop["n"] * p).groupby(pop["state"]).sum() / pop["n"].groupby(pop["state"]).sum()


def poll(rng, pop: pd.DataFrame, n: int) -> pd.DataFrame:
    idx = rng.choice(len(pop), size=n, p=(pop["n"] / pop["n"].sum()).to_numpy())
    cells = pop.iloc[idx]
    eta = state_effects().reindex(cells["state"]).to_numpy() + AGE[cells["age"].to_numpy() - 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "age": cells["age"].to_numpy(), "state": cells["state"].to_numpy()})


def fit(folder: Path, kind: str, seed: int, draws: int) -> pd.DataFrame:
    path = folder / f"{kind}.toml"
    path.write_text(SPEC.format(kind=kind, structure=STRUCTURES[kind], seed=seed, draws=draws))
    plan = steps.plan(path)
    fitted = steps.posterior(plan, [folder / "cache"], cache=False)
    return steps.estimate(plan, fitted.fit.posterior).table.set_index("state")[["mean", "lower", "upper"]]


def run(folder: Path, reps: int, n: int, draws: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pop = population()
    pop.to_csv(folder / "population.csv", index=False)
    true = truth(pop)
    out = []
    for r in range(reps):
        sample = poll(rng, pop, n)
        sample.to_csv(folder / "sample.csv", index=False)
        size = sample["state"].value_counts().reindex(true.index, fill_value=0)
        for kind in ("iid", "bym2"):
            t = fit(folder, kind, seed + r, draws)
            out.append(t.assign(kind=kind, rep=r, truth=true.reindex(t.index).to_numpy(),
                                n=size.reindex(t.index).to_numpy()))
    return pd.concat(out).reset_index()


def summary(res: pd.DataFrame, small: int) -> pd.DataFrame:
    res = res.assign(err=res["mean"] - res["truth"],
                     covered=(res["lower"] <= res["truth"]) & (res["truth"] <= res["upper"]),
                     group=np.where(res["n"] <= small, f"states with <= {small} respondents", "other states"))
    return res.groupby(["group", "kind"]).agg(
        states=("state", "size"), rmse=("err", lambda e: float(np.sqrt(np.mean(e ** 2)))),
        coverage_90=("covered", "mean"), mean_width=("upper", "size"))


def figure(res: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, marker in (("iid", "o"), ("bym2", "s")):
        t = res[res["kind"] == kind]
        ax.scatter(t["n"], (t["mean"] - t["truth"]).abs(), s=14, marker=marker, alpha=0.6, label=f'state = "{kind}"')
    ax.set_xscale("symlog", linthresh=5)
    ax.set_xlabel("respondents in the state (symlog)")
    ax.set_ylabel("|estimate - truth|")
    ax.set_title("State estimates: BYM2 against iid, by the state's sample size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/mrp_states"))
    ap.add_argument("--figure", default="docs/structured_states.png")
    args = ap.parse_args()
    res = run(args.folder, args.reps, args.n, args.draws)
    res = res.assign(abs_err=(res["mean"] - res["truth"]).abs())
    print(summary(res, args.small).drop(columns="mean_width").to_string(float_format=lambda v: f"{v:.4f}"))
    figure(res, Path(args.figure))


if __name__ == "__main__":
    main()
