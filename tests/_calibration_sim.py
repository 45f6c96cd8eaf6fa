"""Helpers of the calibration tests (tests/poststrat/test_calibrate.py, tests/commands/
test_calibrate_run.py): made-up posterior draws shaped as Bambi's, and the simulated survey with
outcome-related nonresponse of examples/calibration/nonresponse.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
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


def _example():
    """examples/calibration/nonresponse.py, the simulation the example's files come from."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "calibration" / "nonresponse.py"
    spec = importlib.util.spec_from_file_location("calibration_nonresponse", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_EX = _example()
nonresponse_survey = _EX.nonresponse_survey
true_means = _EX.true_means


def write_nonresponse_case(folder: Path, *, draws: int = 150, tune: int = 300, calibrate: bool = True,
                           seed: int = 3) -> Path:
    """The survey of :func:`nonresponse_survey` as files and a spec (calibrated to the true state
    shares when ``calibrate``); returns the spec's path."""
    _EX.write(folder, seed)
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
        [estimands.by_state]
        by = ["state"]
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
