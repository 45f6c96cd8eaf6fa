"""The measured cases, each run in a fresh interpreter by ``measure.run_case``:

    python -m benchmarks.cases '{"case": "mrp_fit", "spec": ..., "result": PATH, "t_launch": ...}'

writes the case's own numbers (timings inside the process, peak RSS, posterior diagnostics,
estimates) as JSON to ``result``. The parent adds wall time, CPU time and the process tree's peak.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.data import ARMS, FORMULA, SEED
from benchmarks.measure import (cpu_seconds, estimand_ess, intercept_group_corr, posterior_diagnostics, vm_hwm_mb,
                                vm_rss_mb)


def _quiet() -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("pymc", "bambi", "pytensor", "arviz", "nutpie"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _estimates(p_control, p_treatment) -> dict:
    import numpy as np

    lift = p_treatment - p_control
    return {"control": float(np.mean(p_control)), "treatment": float(np.mean(p_treatment)),
            "lift": float(np.mean(lift)), "lift_sd": float(np.std(lift))}


def case_mrp_fit(p: dict) -> dict:
    """mrp_formula.run on a fresh fit (refit=True); the fit call itself is wrapped for CPU time."""
    t_import = time.time()
    _quiet()
    import mrp_formula
    from mrp_formula.model import sampler as model_mod

    imported = time.time()
    cpu = {}
    real_fit = model_mod.fit

    def timed_fit(*args, **kwargs):
        c0 = cpu_seconds()
        out = real_fit(*args, **kwargs)
        cpu["fit"] = cpu_seconds() - c0
        return out

    model_mod.fit = timed_fit
    res = mrp_formula.run(p["spec"], out=p["run_dir"], refit=True, overrides=p.get("overrides", ()))
    done = time.time()
    peak = vm_hwm_mb()
    t = res.manifest["timings_seconds"]
    est = res.estimands.set_index("estimand")
    cr = res.estimands[res.estimands["estimand"] == "click_rate"]
    out = {"e2e_seconds": done - p["t_launch"], "import_seconds": imported - t_import,
           "run_seconds": done - imported, "fit_seconds": t["fit"], "fit_cpu_seconds": cpu.get("fit"),
           "prepare_seconds": t["prepare"], "poststratify_seconds": t["poststratify"],
           "checks_seconds": t["checks"], "total_seconds": t["total"], "peak_rss_mb_self": peak,
           "cells_fitted": res.manifest["model"]["cells_fitted"], "rows": res.manifest["model"]["rows_in"],
           "parameterization": res.manifest["model"]["parameterization"],
           "mass_matrix": res.manifest["sampler"].get("mass_matrix", "diagonal"),
           "sampler_settings": res.manifest["sampler"],
           "estimates": {"control": float(cr.iloc[0]["mean"]), "treatment": float(cr.iloc[1]["mean"]),
                         "lift": float(est.loc["lift", "mean"]), "lift_sd": float(est.loc["lift", "sd"])}}
    out.update(posterior_diagnostics(res.posterior))
    try:  # for the report's note on the ridge; a fit without these terms just has none
        out["intercept_group_corr"] = intercept_group_corr(res.posterior["posterior"])
    except KeyError:
        out["intercept_group_corr"] = None
    d = res.draws
    arrays = {}
    for (name, arm), g in d.groupby(["estimand", "treatment"]):
        g = g.sort_values(["chain", "draw"])
        arrays[f"{name}[{arm}]"] = g["value"].to_numpy().reshape(g["chain"].nunique(), -1)
    out.update(estimand_ess(arrays))
    return out


def case_bambi_fit(p: dict) -> dict:
    """Plain Bambi on the rows: defaults except the sampler, then predict + weighted mean."""
    t_import = time.time()
    _quiet()
    import bambi as bmb
    import pandas as pd

    imported = time.time()
    df = pd.read_parquet(p["sample"])
    pop = pd.read_parquet(p["population"])
    read = time.time()
    model = bmb.Model(FORMULA, df, family="bernoulli")
    built = time.time()
    c0 = cpu_seconds()
    idata = model.fit(inference_method=p["sampler"], random_seed=SEED, progressbar=False)
    fitted = time.time()
    fit_cpu = cpu_seconds() - c0
    w = pop["N"].to_numpy(dtype=float)
    means = {}
    for arm in ARMS:
        pred = model.predict(idata, kind="response_params", data=pop.assign(treatment=arm), inplace=False)
        pr = pred["posterior"]["p"].transpose("chain", "draw", "__obs__").to_numpy()
        means[arm] = (pr * w).sum(axis=-1) / w.sum()  # (chains, draws)
    done = time.time()
    peak = vm_hwm_mb()
    ess_est = estimand_ess({"click_rate[control]": means["control"], "click_rate[treatment]": means["treatment"],
                            "lift[treatment vs control]": means["treatment"] - means["control"]})
    means = {k: v.ravel() for k, v in means.items()}
    out = {"e2e_seconds": done - p["t_launch"], "import_seconds": imported - t_import,
           "read_seconds": read - imported, "build_seconds": built - read, "fit_seconds": fitted - built,
           "fit_cpu_seconds": fit_cpu, "poststratify_seconds": done - fitted, "peak_rss_mb_self": peak,
           "rows": len(df), "estimates": _estimates(means["control"], means["treatment"])}
    out.update(posterior_diagnostics(idata))
    out.update(ess_est)
    return out


def _load_fitted(spec: str, run_dir: str):
    """The plan of the spec, its Bambi model and the posterior saved by an earlier run."""
    import arviz as az
    from mrp_formula.model import sampler as model_mod
    from mrp_formula.commands.check import check

    plan = check(spec)
    bmodel = model_mod.build_model(plan.loaded, plan.info, plan.fit_plan)
    posterior = az.from_netcdf(Path(run_dir) / "posterior.nc").load()
    return plan, bmodel, posterior


def case_mrp_poststrat(p: dict) -> dict:
    """mrp_formula.poststrat.sums.poststratify with the real CellPredictor over m population rows."""
    t0 = time.time()
    _quiet()
    import pandas as pd
    from mrp_formula.poststrat import estimands as est_mod
    from mrp_formula.data.population import WEIGHT
    from mrp_formula.poststrat.sums import DEFAULT_BLOCK, poststratify
    from mrp_formula.predict.cells import predictor as make_predictor

    plan, bmodel, posterior = _load_fitted(p["spec"], p["run_dir"])
    pop = pd.read_parquet(p["population"], columns=["gender", "age", "region", "N"])
    cells = pop.rename(columns={"N": WEIGHT})
    cells[WEIGHT] = cells[WEIGHT].astype(float)
    del pop
    rss_before = vm_rss_mb()
    hwm_before = vm_hwm_mb()
    setup = time.time()
    predictor = make_predictor(plan.fit_plan, plan.loaded.spec.model.link, posterior, plan.tables, plan.info,
                               seed=plan.loaded.spec.fit.seed)
    pieces = est_mod.plan(plan.loaded.spec.estimands, ("gender", "age", "region"))
    t1 = time.time()
    reduced = poststratify(cells, predictor, est_mod.requests(pieces), n_samples=predictor.n_samples)
    t2 = time.time()
    peak = vm_hwm_mb()
    vals = {dict(r.scenario.settings).get("treatment"): v.values[:, 0] for r, v in reduced.items()}
    return {"cells": len(cells), "draws": predictor.n_samples, "block": DEFAULT_BLOCK,
            "setup_seconds": setup - t0, "predictor_seconds": t1 - setup, "poststratify_seconds": t2 - t1,
            "seconds": t2 - setup, "rss_before_mb": rss_before, "peak_before_mb": hwm_before,
            "peak_rss_mb_self": peak, "estimates": _estimates(vals["control"], vals["treatment"])}


def case_bambi_predict(p: dict) -> dict:
    """Bambi's predict(kind="response_params") on the same table and the same posterior."""
    t0 = time.time()
    _quiet()
    import pandas as pd

    plan, bmodel, posterior = _load_fitted(p["spec"], p["run_dir"])
    pop = pd.read_parquet(p["population"], columns=["gender", "age", "region", "N"])
    w = pop["N"].to_numpy(dtype=float)
    rss_before = vm_rss_mb()
    hwm_before = vm_hwm_mb()
    setup = time.time()
    means = {}
    try:
        for arm in ARMS:
            pred = bmodel.predict(posterior, kind="response_params", data=pop.assign(treatment=arm), inplace=False)
            pr = pred["posterior"]["p"].transpose("chain", "draw", "__obs__").to_numpy()
            means[arm] = (pr * w).sum(axis=-1).ravel() / w.sum()
            del pred, pr
    except MemoryError as exc:
        return {"cells": len(pop), "status": "oom", "error": f"MemoryError: {exc}"[:300],
                "seconds_until_oom": time.time() - setup, "setup_seconds": setup - t0,
                "rss_before_mb": rss_before, "peak_rss_mb_self": vm_hwm_mb()}
    t2 = time.time()
    n = int(posterior["posterior"].sizes["chain"] * posterior["posterior"].sizes["draw"])
    return {"cells": len(pop), "draws": n, "status": "ok", "setup_seconds": setup - t0,
            "seconds": t2 - setup, "poststratify_seconds": t2 - setup, "rss_before_mb": rss_before,
            "peak_before_mb": hwm_before, "peak_rss_mb_self": vm_hwm_mb(),
            "estimates": _estimates(means["control"], means["treatment"])}


def case_mrp_run_cached(p: dict) -> dict:
    """A full mrp_formula.run whose fit is cached: the population table is read and collapsed,
    then poststratified."""
    t_import = time.time()
    _quiet()
    import mrp_formula

    imported = time.time()
    res = mrp_formula.run(p["spec"], out=p["run_dir"])
    done = time.time()
    t = res.manifest["timings_seconds"]
    est = res.estimands.set_index("estimand")
    return {"e2e_seconds": done - p["t_launch"], "import_seconds": imported - t_import,
            "prepare_seconds": t["prepare"], "poststratify_seconds": t["poststratify"],
            "checks_seconds": t["checks"], "total_seconds": t["total"],
            "population_rows": res.manifest["tables"].get("population_rows"),
            "population_cells": res.manifest["tables"].get("population_cells"),
            "fit_reused": res.manifest["fit_cache"]["reused"], "peak_rss_mb_self": vm_hwm_mb(),
            "lift": float(est.loc["lift", "mean"])}


CASES = {"mrp_fit": case_mrp_fit, "bambi_fit": case_bambi_fit, "mrp_poststrat": case_mrp_poststrat,
         "bambi_predict": case_bambi_predict, "mrp_run_cached": case_mrp_run_cached}


def _real_mrp_cases() -> dict:  # benchmarks/bench_mrp.py's cases (imported late: no cycle)
    from benchmarks.cases_mrp import MRP_CASES

    return MRP_CASES


CASES.update(_real_mrp_cases())


def child_main(arg: str) -> None:
    p = json.loads(arg)
    try:
        result = CASES[p["case"]](p)
        result.setdefault("status", "ok")
    except MemoryError as exc:
        result = {"status": "oom", "error": f"MemoryError: {exc}"[:300]}
    except Exception as exc:  # reported in the table, with the log file
        import traceback

        traceback.print_exc()
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["peak_rss_mb_self_end"] = vm_hwm_mb()
    Path(p["result"]).write_text(json.dumps(result, default=float))


if __name__ == "__main__":
    child_main(sys.argv[1])
