"""Helpers of the calibration tests (tests/poststrat/test_calibrate.py, tests/commands/
test_calibrate_run.py): made-up posterior draws shaped as Bambi's, and a simulated survey with
outcome-related nonresponse."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr


def made_up_posterior(dsg, n_chains=2, n_draws=20, seed=5, scale=0.7):
    """Draws named and shaped as Bambi names and shapes them (no sampling)."""
    rng = np.random.default_rng(seed)
    data, coords = {}, {}
    for name, sl in dsg.common.slices.items():
        width = sl.stop - sl.start
        dims = ("chain", "draw") + ((f"{name}_dim",) if width > 1 else ())
        shape = (n_chains, n_draws) + ((width,) if width > 1 else ())
        data[name] = (dims, rng.normal(0, scale, shape))
    for name, term in dsg.group.items():
        groups = [str(g) for g in term.groups]
        k = term.data.shape[1] // len(groups)
        fdim = f"{name.split('|')[1]}__factor_dim"
        coords[fdim] = groups
        dims = ("chain", "draw") + ((f"{name}__expr_dim",) if k > 1 else ()) + (fdim,)
        shape = (n_chains, n_draws) + ((k,) if k > 1 else ()) + (len(groups),)
        data[name] = (dims, rng.normal(0, scale, shape))
        sd_dims = ("chain", "draw") + ((f"{name}__expr_dim",) if k > 1 else ())
        data[f"{name}_sigma"] = (sd_dims, np.abs(rng.normal(0.5, 0.1, shape[:-1])))
    ds = xr.Dataset({k: xr.Variable(*v) for k, v in data.items()})
    return xr.DataTree.from_dict({"posterior": ds.assign_coords(coords)})


STATES = [f"s{i:02d}" for i in range(12)]
AGES = ["18-29", "30-44", "45-64", "65+"]


def nonresponse_survey(seed: int = 3, n_asked: int = 6000, respond=(0.10, 0.25)):
    """A population of states x age x sex with a true P(y = 1) per cell, and a survey in which a
    person with y = 1 responds with probability ``respond[1]`` and one with y = 0 with
    ``respond[0]`` (outcome-related nonresponse, the same in every cell). Returns (sample rows,
    population cells with N and the true share ``p``, the true share per state)."""
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
    truth_state = pop.assign(w=pop.N * pop.p).groupby("state").w.sum() / pop.groupby("state").N.sum()
    # asked: people drawn in proportion to N; y from the truth; response depends on y
    cell = rng.choice(len(pop), n_asked, p=(pop.N / pop.N.sum()).to_numpy())
    y = rng.random(n_asked) < pop.p.to_numpy()[cell]
    responds = rng.random(n_asked) < np.where(y, respond[1], respond[0])
    sample = pop.iloc[cell[responds]][["state", "age", "sex"]].reset_index(drop=True)
    sample["y"] = y[responds].astype(int)
    return sample, pop, truth_state


def write_nonresponse_case(folder: Path, *, draws: int = 150, tune: int = 300, calibrate: bool = True,
                           seed: int = 3) -> Path:
    """The survey of :func:`nonresponse_survey` as files and a spec (calibrated to the true state
    shares when ``calibrate``); returns the spec's path."""
    sample, pop, truth_state = nonresponse_survey(seed)
    sample.to_csv(folder / "sample.csv", index=False)
    pop.drop(columns="p").to_csv(folder / "population.csv", index=False)
    truth_state.rename("share").rename_axis("state").reset_index().to_csv(folder / "results.csv", index=False)
    spec = folder / ("calibrated.toml" if calibrate else "plain.toml")
    spec.write_text(textwrap.dedent(f"""
        name = "{spec.stem}"
        [data]
        source = "sample.csv"
        [model]
        formula = "y ~ sex + (1 | age) + (1 | state)"
        family = "bernoulli"
        [fit]
        draws = {draws}
        tune = {tune}
        chains = 2
        seed = 11
        [population]
        source = "population.csv"
        weight = "N"
        [estimands.by_age]
        by = ["age"]
        [estimands.by_state_age]
        by = ["state", "age"]
        [estimands.sex_gap]
        contrast = {{ sex = ["f", "m"] }}
        [report]
        plots = false
        """) + ("""
        [calibrate]
        by = "state"
        source = "results.csv"
        column = "share"
        """ if calibrate else ""))
    return spec


def true_means(pop: pd.DataFrame, by: list[str]) -> pd.Series:
    w = pop.assign(w=pop.N * pop.p)
    return w.groupby(by).w.sum() / w.groupby(by).N.sum()
