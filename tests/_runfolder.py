"""A synthetic run folder, written the way ``pipeline.run`` writes one, without sampling: the
report and ``mrp diff`` tests read it (tests/test_report_html.py, tests/test_diff.py,
tests/test_report_browser.py)."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

STATES = [f"{i:02d}" for i in range(1, 52)]  # FIPS-like codes: leading zeros must survive the round trip

SPEC = """
#:schema ../mrp_formula/mrp-spec.schema.json
name = "synthetic"
description = "A run folder made up for the tests"

[data]
source = "sample.csv"

[model]
formula = "y ~ treatment + (1 | state)"
family = "bernoulli"

[population]
source = "pop.csv"
weight = "n"

[estimands.rate]
at = { treatment = ["control", "treatment"] }

[estimands.lift]
contrast = { treatment = ["treatment", "control"] }
scale = "ratio"
rope = [0.98, 1.02]

[estimands.support]
by = ["state"]

[report]
ci_prob = 0.9
ci_kind = "eti"
"""

MANIFEST = {
    "mrp_formula": "0.1.0",
    "name": "synthetic",
    "spec": {"path": "/somewhere/synthetic.toml", "sha256": "ab" * 32, "overrides": []},
    "inputs": {"data": {"path": "/somewhere/sample.csv", "sha256": "cd" * 32},
               "population": {"path": "/somewhere/pop.csv", "sha256": "ef" * 32}},
    "seed": 7,
    "sampler": {"name": "nutpie", "draws": 250, "tune": 250, "chains": 4, "target_accept": 0.9,
                "mass_matrix": "diagonal", "mass_matrix_reason": "thin data"},
    "model": {"formula": "y ~ treatment + (1 | state)", "fitted_formula": "p(s, t) ~ treatment + (1 | state)",
              "family": "binomial", "aggregated": True, "rows_in": 5000, "cells_fitted": 102,
              "parameterization": {"1|state": "noncentered"}},
    "tables": {"sample_rows_in": 5000, "sample_rows_used": 5000, "dropped_missing": {}, "population_rows": 102,
               "population_columns": ["treatment", "state"], "population_cells": 102},
    "new_levels": {"state": ["50", "51"]},
    "new_level_weight_share": {"state": 0.012},
    "versions": {"python": "3.12.1", "numpy": "2.0"},
    "diagnostics": {"divergences": 0, "max_rhat": 1.004, "min_ess_bulk": 900.0, "min_ess_tail": 800.0,
                    "estimand_max_rhat": 1.002, "estimand_min_ess_bulk": 950.0, "bfmi_min": 0.8,
                    "treedepth_hits": 0, "worst_parameters": {"Intercept": [1.004, 900.0]}, "failed": []},
    "notes": ["fitting 102 binomial cells instead of 5000 rows (same likelihood)"],
    "fit_cache": {"key": "0123", "reused": False},
    "coverage": {"cells_without_sample": 4, "cells": 102, "weight_without_sample": 0.012,
                 "new_level_share": {"state": 0.012}, "n_units": 5000.0, "effective_n": 4000.0,
                 "design_effect": 1.25},
    "warnings": [],
    "timings_seconds": {"prepare": 1.0, "fit": 10.0, "poststratify": 0.5, "checks": 0.2, "total": 12.0},
}


def state_means(seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return dict(zip(STATES, np.round(rng.uniform(0.15, 0.6, len(STATES)), 4)))


def _summary(x: np.ndarray, ci: float = 0.9) -> dict:
    lo, hi = np.quantile(x, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return {"mean": float(x.mean()), "median": float(np.median(x)), "sd": float(x.std(ddof=1)),
            "lower": float(lo), "upper": float(hi), "ci_prob": ci, "ci_kind": "eti"}


def make_run(folder: Path, *, seed: int = 0, chains: int = 4, draws: int = 250, control: float = 0.05,
             treatment: float = 0.075, states: dict[str, float] | None = None, state_sd: float = 0.03,
             manifest: dict | None = None, spec: str = SPEC, posterior: bool = True, overrides=()) -> Path:
    """Write a run folder: rate (2 rows), lift (a ratio contrast), support by 51 states. ``manifest``
    entries replace the defaults' top-level keys (``diagnostics`` merges key by key)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = chains * draws
    states = state_means(seed) if states is None else states
    a = rng.normal(treatment, 0.006, n)
    b = rng.normal(control, 0.005, n)
    blocks = [("rate", {"treatment": "control"}, b, ""), ("rate", {"treatment": "treatment"}, a, ""),
              ("lift", {"treatment": "treatment vs control"}, a / b, "ratio")]
    blocks += [("support", {"state": s}, rng.normal(m, state_sd, n), "") for s, m in states.items()]
    rows, long = [], []
    chain, draw = np.repeat(np.arange(chains), draws), np.tile(np.arange(draws), chains)
    for est, labels, x, scale in blocks:
        rec = {"estimand": est, "treatment": labels.get("treatment"), "state": labels.get("state"), "scale": scale}
        rec.update(_summary(x))
        rec["p_above_null"] = float(np.mean(x > 1)) if scale else np.nan
        rec["p_in_rope"] = float(np.mean((x >= 0.98) & (x <= 1.02))) if scale else np.nan
        if scale:
            rec.update(first="treatment", second="control")
            rec.update(chance_to_win=float(np.mean(a > b)), expected_loss_first=float(np.mean(np.maximum(b - a, 0))),
                       expected_loss_second=float(np.mean(np.maximum(a - b, 0))))
        rec["raw"] = float(rec["mean"] * 1.1)
        rec["weighted"] = float(rec["mean"] * 0.95)
        if est == "support" and labels["state"] in ("50", "51"):
            rec["raw"] = rec["weighted"] = np.nan  # no sample in these states
        rec["ess_bulk"] = 950.0
        rec["r_hat"] = 1.001
        rows.append(rec)
        long.append(pd.DataFrame({"chain": chain, "draw": draw, "estimand": est,
                                  "treatment": labels.get("treatment"), "state": labels.get("state"), "value": x}))
    table = pd.DataFrame(rows)
    cols = ["estimand", "treatment", "state", "scale", "first", "second", "mean", "median", "sd", "lower", "upper",
            "ci_prob", "ci_kind",
            "p_above_null", "p_in_rope", "chance_to_win", "expected_loss_first", "expected_loss_second", "raw",
            "weighted", "ess_bulk", "r_hat"]
    table[cols].to_csv(folder / "estimands.csv", index=False)
    pd.concat(long, ignore_index=True).to_parquet(folder / "estimand_draws.parquet", index=False)
    ppc = [{"variable": "treatment", "level": lv, "units": 2500.0, "observed": p, "predicted": p, "lower": p - 0.01,
            "upper": p + 0.01, "inside": True} for lv, p in (("control", control), ("treatment", treatment))]
    ppc += [{"variable": "state", "level": s, "units": 100.0, "observed": m + (0.2 if s == "07" else 0.0),
             "predicted": m, "lower": m - 0.08, "upper": m + 0.08, "inside": s != "07"}
            for s, m in states.items() if s not in ("50", "51")]
    pd.DataFrame(ppc).to_csv(folder / "ppc.csv", index=False)
    m = copy.deepcopy(MANIFEST)
    m["sampler"].update(draws=draws, chains=chains)
    m["spec"]["overrides"] = list(overrides)
    for k, v in (manifest or {}).items():
        if k == "diagnostics":
            m["diagnostics"].update(v)
        else:
            m[k] = v
    (folder / "manifest.json").write_text(json.dumps(m, indent=2))
    text = textwrap.dedent(spec).lstrip() + "".join(f"\n# applied with --set: {o}" for o in overrides)
    (folder / "spec.toml").write_text(text)
    if posterior:
        write_posterior(folder / "posterior.nc", chains, draws, seed)
    return folder


def write_posterior(path: Path, chains: int, draws: int, seed: int) -> None:
    import xarray as xr

    rng = np.random.default_rng(seed)
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    post = xr.Dataset({"Intercept": (("chain", "draw"), rng.normal(-2.5, 0.1, (chains, draws))),
                       "treatment": (("chain", "draw"), rng.normal(0.4, 0.1, (chains, draws))),
                       "1|state_sigma": (("chain", "draw"), np.abs(rng.normal(0.5, 0.05, (chains, draws)))),
                       "1|state": (("chain", "draw", "state__factor_dim"),
                                   rng.normal(0, 0.5, (chains, draws, len(STATES))))},
                      coords={**coords, "state__factor_dim": STATES})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((chains, draws), bool)),
                        "energy": (("chain", "draw"), rng.normal(0, 1, (chains, draws)))}, coords=coords)
    xr.DataTree.from_dict({"posterior": post, "sample_stats": stats}).to_netcdf(path, engine="h5netcdf")
