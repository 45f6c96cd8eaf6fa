#!/usr/bin/env python
"""Benchmark: the same A/B model through mrp-formula and through plain Bambi.

    .venv/bin/python benchmarks/bench_ab.py            # full run (about 30 min), writes docs/benchmarks.md
    .venv/bin/python benchmarks/bench_ab.py --quick    # small sizes only (about 2 min), writes
                                                       # benchmarks/out/benchmarks-quick.md
    .venv/bin/python benchmarks/bench_ab.py --report-only   # re-write the markdown from the saved JSON

Model: ``clicked ~ treatment*gender + (1|age) + (1|region)``, bernoulli, 2 x 2 x 6 x 50 cells.
The data are simulated with a fixed seed from known effects; the sample over-represents women,
the young and some regions, so MRP has something to correct.

Every measured case runs in a fresh subprocess (this script with ``--case``), so imports,
compilation and peak memory are those of a cold process. Peak memory is the larger of the
child's ``ru_maxrss`` (from ``os.wait4``) and the sum of RSS over the child's process tree sampled
every 0.1 s. Generated data, run folders, logs and the raw JSON go to ``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
LOGS = OUT / "logs"  # "logs-quick" with --quick
SEED = 20260424

FORMULA = "clicked ~ treatment*gender + (1|age) + (1|region)"
GENDERS = ["female", "male"]
ARMS = ["control", "treatment"]
AGES = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
REGIONS = [f"r{i:02d}" for i in range(1, 51)]

FULL = dict(fit_sizes=[1_000, 10_000, 100_000, 1_000_000, 10_000_000],
            bambi_sizes=[1_000, 10_000, 100_000, 1_000_000],
            pop_sizes=[10_000, 100_000, 1_000_000], reruns=3)
QUICK = dict(fit_sizes=[1_000, 10_000], bambi_sizes=[1_000], pop_sizes=[10_000], reruns=1)
DEFAULT_BUDGET = 600.0  # seconds: Bambi sizes predicted to take longer are skipped
MEM_LIMIT_GB = 8.0  # RLIMIT_AS of the prediction cases (mrp and Bambi alike)
BIG_LIMIT_GB = 16.0  # one more try of Bambi's predict at the smallest population, to see what it needs


# =============================================================================== simulation


def truth():
    """True effects (logit scale), fixed by the seed."""
    import numpy as np

    rng = np.random.default_rng([SEED, 1])
    return {
        "Intercept": -2.9,  # female, control, average age and region: about 5 %
        "treatment": 0.35,
        "gender": -0.40,  # male vs female
        "treatment:gender": 0.15,
        "age": np.array([0.45, 0.25, 0.05, -0.10, -0.25, -0.40]),
        "region": rng.normal(0.0, 0.35, len(REGIONS)),
    }


def _compositions():
    """Shares of the levels in the sample and in the population: they differ on purpose."""
    import numpy as np

    rng = np.random.default_rng([SEED, 2])
    return {
        "sample": {"gender": np.array([0.70, 0.30]),
                   "age": np.array([0.30, 0.28, 0.18, 0.12, 0.08, 0.04]),
                   "region": rng.dirichlet(np.ones(len(REGIONS)))},
        "population": {"gender": np.array([0.49, 0.51]),
                       "age": np.array([0.12, 0.17, 0.17, 0.16, 0.17, 0.21]),
                       "region": rng.dirichlet(np.full(len(REGIONS), 5.0))},
    }


def _prob(t, arm, gender, age, region):
    """Click probability from level indices (numpy arrays)."""
    import numpy as np

    eta = (t["Intercept"] + t["treatment"] * arm + t["gender"] * gender + t["treatment:gender"] * arm * gender
           + t["age"][age] + t["region"][region])
    return 1.0 / (1.0 + np.exp(-eta))


def write_sample(n: int, path: Path) -> None:
    """n rows of (user, treatment, gender, age, region, clicked); every level occurs at least once."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t, comp = truth(), _compositions()["sample"]
    rng = np.random.default_rng([SEED, 3, n])
    arm = (rng.random(n) < 0.5).astype(np.int8)
    gender = rng.choice(2, n, p=comp["gender"]).astype(np.int8)
    age = rng.choice(len(AGES), n, p=comp["age"]).astype(np.int8)
    region = rng.choice(len(REGIONS), n, p=comp["region"]).astype(np.int16)
    region[: len(REGIONS)] = np.arange(len(REGIONS))  # so that plain Bambi sees every level
    age[: len(AGES)] = np.arange(len(AGES))
    gender[:2], arm[:4] = [0, 1], [0, 1, 0, 1]
    clicked = (rng.random(n) < _prob(t, arm, gender, age, region)).astype(np.int8)

    def strings(idx, levels):
        return pa.DictionaryArray.from_arrays(pa.array(idx, type=pa.int32()), pa.array(levels)).cast(pa.string())

    table = pa.table({"user": pa.array(np.arange(1, n + 1)), "treatment": strings(arm, ARMS),
                      "gender": strings(gender, GENDERS), "age": strings(age, AGES),
                      "region": strings(region, REGIONS), "clicked": pa.array(clicked)})
    pq.write_table(table, path)


def population_cells():
    """The 2 x 6 x 50 population cells (treatment is set by the estimands) with counts."""
    import numpy as np
    import pandas as pd

    comp = _compositions()["population"]
    g, a, r = np.meshgrid(np.arange(2), np.arange(len(AGES)), np.arange(len(REGIONS)), indexing="ij")
    g, a, r = g.ravel(), a.ravel(), r.ravel()
    n = np.round(10_000_000 * comp["gender"][g] * comp["age"][a] * comp["region"][r]).astype(np.int64)
    return pd.DataFrame({"gender": np.array(GENDERS)[g], "age": np.array(AGES)[a],
                         "region": np.array(REGIONS)[r], "N": n}), (g, a, r)


def true_estimands() -> dict:
    import numpy as np

    t = truth()
    pop, (g, a, r) = population_cells()
    w = pop["N"].to_numpy(dtype=float)
    c = float(np.average(_prob(t, 0, g, a, r), weights=w))
    tr = float(np.average(_prob(t, 1, g, a, r), weights=w))
    return {"control": c, "treatment": tr, "lift": tr - c}


def write_big_population(m: int, path: Path) -> None:
    """m population rows: the model variables plus columns the model does not use (a district
    id, a household type, an income band), so every row is a distinct cell of the table."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    comp = _compositions()["population"]
    rng = np.random.default_rng([SEED, 4, m])
    g = rng.choice(2, m, p=comp["gender"])
    a = rng.choice(len(AGES), m, p=comp["age"])
    r = rng.choice(len(REGIONS), m, p=comp["region"])

    def strings(idx, levels):
        return pa.DictionaryArray.from_arrays(pa.array(idx, type=pa.int32()), pa.array(levels)).cast(pa.string())

    hh = ["single", "couple", "family", "shared"]
    inc = [f"q{i}" for i in range(1, 6)]
    table = pa.table({"district": pa.array([f"d{i:08d}" for i in range(m)]),
                      "gender": strings(g, GENDERS), "age": strings(a, AGES), "region": strings(r, REGIONS),
                      "household": strings(rng.integers(0, 4, m), hh),
                      "income": strings(rng.integers(0, 5, m), inc),
                      "N": pa.array(rng.integers(1, 200, m))})
    pq.write_table(table, path)


def write_spec(path: Path, sample: Path, population: Path, name: str) -> None:
    text = f'''# generated by benchmarks/bench_ab.py
name = "{name}"

[data]
source = "{os.path.relpath(sample, path.parent)}"

[model]
formula = "{FORMULA}"
family = "bernoulli"
levels.treatment = ["control", "treatment"]
levels.gender = ["female", "male"]

[fit]
draws = 1000
tune = 1000
chains = 4
seed = {SEED}

[population]
source = "{os.path.relpath(population, path.parent)}"
weight = "N"

[estimands.click_rate]
at = {{ treatment = ["control", "treatment"] }}

[estimands.lift]
contrast = {{ treatment = ["treatment", "control"] }}

[report]
plots = false
'''
    path.write_text(text)


# =============================================================================== helpers (children)


def _proc_status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux), in MB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _vm_hwm_mb() -> float:
    """Peak RSS of this process so far, in MB."""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vm_rss_mb() -> float:
    rss = _proc_status_mb("VmRSS")
    return rss if rss is not None else float("nan")


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime


def _quiet() -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("pymc", "bambi", "pytensor", "arviz", "nutpie"):
        logging.getLogger(name).setLevel(logging.ERROR)


def posterior_diagnostics(dt) -> dict:
    """Minimum bulk ESS over every element of every parameter, max R-hat, divergences."""
    import arviz as az
    import numpy as np

    post = dt["posterior"].to_dataset()
    ess, rhat = {}, {}
    for v in post.data_vars:
        da = post[v]
        if "__obs__" in da.dims:
            continue
        ess[v] = float(np.min(np.asarray(az.ess(da, method="bulk"))))
        rhat[v] = float(np.max(np.asarray(az.rhat(da))))
    stats = dt["sample_stats"] if "sample_stats" in dt.children else None
    div = int(np.asarray(stats["diverging"]).sum()) if stats is not None else None
    steps = float(np.asarray(stats["n_steps"]).mean()) if stats is not None and "n_steps" in stats else None
    worst = min(ess, key=ess.get)
    return {"min_ess_bulk": ess[worst], "min_ess_param": worst, "max_rhat": max(rhat.values()),
            "divergences": div, "chains": int(post.sizes["chain"]), "draws": int(post.sizes["draw"]),
            "mean_steps_per_draw": steps, "ess_by_param": ess}


def estimand_ess(arrays: dict) -> dict:
    """Bulk ESS of per-draw estimands given as (chains, draws) arrays; the minimum and each."""
    import arviz as az
    import numpy as np

    each = {k: float(az.ess(np.asarray(v, dtype=float), method="bulk")) for k, v in arrays.items()}
    return {"estimand_min_ess": min(each.values()), "estimand_ess": each}


def _estimates(p_control, p_treatment) -> dict:
    import numpy as np

    lift = p_treatment - p_control
    return {"control": float(np.mean(p_control)), "treatment": float(np.mean(p_treatment)),
            "lift": float(np.mean(lift)), "lift_sd": float(np.std(lift))}


# =============================================================================== cases (children)


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
        c0 = _cpu_seconds()
        out = real_fit(*args, **kwargs)
        cpu["fit"] = _cpu_seconds() - c0
        return out

    model_mod.fit = timed_fit
    res = mrp_formula.run(p["spec"], out=p["run_dir"], refit=True, overrides=p.get("overrides", ()))
    done = time.time()
    peak = _vm_hwm_mb()
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
           "estimates": {"control": float(cr.iloc[0]["mean"]), "treatment": float(cr.iloc[1]["mean"]),
                         "lift": float(est.loc["lift", "mean"]), "lift_sd": float(est.loc["lift", "sd"])}}
    out.update(posterior_diagnostics(res.posterior))
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
    c0 = _cpu_seconds()
    idata = model.fit(inference_method=p["sampler"], random_seed=SEED, progressbar=False)
    fitted = time.time()
    fit_cpu = _cpu_seconds() - c0
    w = pop["N"].to_numpy(dtype=float)
    means = {}
    for arm in ARMS:
        pred = model.predict(idata, kind="response_params", data=pop.assign(treatment=arm), inplace=False)
        pr = pred["posterior"]["p"].transpose("chain", "draw", "__obs__").to_numpy()
        means[arm] = (pr * w).sum(axis=-1) / w.sum()  # (chains, draws)
    done = time.time()
    peak = _vm_hwm_mb()
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
    from mrp_formula.pipeline import check

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
    rss_before = _vm_rss_mb()
    hwm_before = _vm_hwm_mb()
    setup = time.time()
    predictor = make_predictor(plan.fit_plan, plan.loaded.spec.model.link, posterior, plan.tables, plan.info,
                               seed=plan.loaded.spec.fit.seed)
    pieces = est_mod.plan(plan.loaded.spec.estimands, ("gender", "age", "region"))
    t1 = time.time()
    reduced = poststratify(cells, predictor, est_mod.requests(pieces), n_samples=predictor.n_samples)
    t2 = time.time()
    peak = _vm_hwm_mb()
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
    rss_before = _vm_rss_mb()
    hwm_before = _vm_hwm_mb()
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
                "rss_before_mb": rss_before, "peak_rss_mb_self": _vm_hwm_mb()}
    t2 = time.time()
    n = int(posterior["posterior"].sizes["chain"] * posterior["posterior"].sizes["draw"])
    return {"cells": len(pop), "draws": n, "status": "ok", "setup_seconds": setup - t0,
            "seconds": t2 - setup, "poststratify_seconds": t2 - setup, "rss_before_mb": rss_before,
            "peak_before_mb": hwm_before, "peak_rss_mb_self": _vm_hwm_mb(),
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
            "fit_reused": res.manifest["fit_cache"]["reused"], "peak_rss_mb_self": _vm_hwm_mb(),
            "lift": float(est.loc["lift", "mean"])}


CASES = {"mrp_fit": case_mrp_fit, "bambi_fit": case_bambi_fit, "mrp_poststrat": case_mrp_poststrat,
         "bambi_predict": case_bambi_predict, "mrp_run_cached": case_mrp_run_cached}


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
    result["peak_rss_mb_self_end"] = _vm_hwm_mb()
    Path(p["result"]).write_text(json.dumps(result, default=float))


# =============================================================================== running cases (parent)


def _tree_rss_mb(pid: int) -> float:
    """Sum of VmRSS over a process and its descendants (Linux /proc)."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        q = stack.pop()
        if q in seen:
            continue
        seen.add(q)
        try:
            for line in Path(f"/proc/{q}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                    break
            for task in Path(f"/proc/{q}/task").iterdir():
                kids = (task / "children").read_text().split()
                stack.extend(int(k) for k in kids)
        except (OSError, ValueError):
            continue
    return total


def run_case(params: dict, *, timeout: float, mem_limit_gb: float | None = None, label: str) -> dict:
    """Run one case in a fresh interpreter; wall time, peak memory and the case's own numbers."""
    logs = LOGS
    logs.mkdir(parents=True, exist_ok=True)
    result_path = logs / f"{label}.json"
    result_path.unlink(missing_ok=True)
    params = dict(params, result=str(result_path))
    limit = int(mem_limit_gb * 1024 ** 3) if mem_limit_gb else None

    def preexec():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    load0 = os.getloadavg()[0]
    log = open(logs / f"{label}.log", "w")
    params["t_launch"] = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(params)],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec, env=env, cwd=str(ROOT))
    peak_tree, timed_out, status, ru = 0.0, False, 0, None
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak_tree = max(peak_tree, _tree_rss_mb(proc.pid))
        if time.perf_counter() - start > timeout and not timed_out:
            timed_out = True
            proc.kill()
        time.sleep(0.1)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    out = {}
    if result_path.exists():
        out = json.loads(result_path.read_text())
    elif timed_out:
        out = {"status": "timeout", "error": f"stopped after {timeout:.0f} s"}
    else:
        tail = (logs / f"{label}.log").read_text()[-400:]
        killed = proc.returncode < 0
        oom = "MemoryError" in tail or "std::bad_alloc" in tail or "Cannot allocate memory" in tail
        out = {"status": "oom" if (oom or (killed and limit)) else "error",
               "error": f"exit code {proc.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"}
    out["wall_seconds"] = wall
    out["cpu_seconds"] = (ru.ru_utime + ru.ru_stime) if ru else None
    out["peak_rss_mb_wait4"] = ru.ru_maxrss / 1024 if ru else None
    out["peak_rss_mb_tree"] = peak_tree
    out["peak_rss_mb"] = max(x for x in (out.get("peak_rss_mb_wait4") or 0, peak_tree) if x is not None)
    out["load_before"] = load0
    out["load_after"] = os.getloadavg()[0]
    out["mem_limit_gb"] = mem_limit_gb
    out["label"] = label
    print(f"  {label}: {out.get('status')} in {wall:.1f} s, peak {out['peak_rss_mb']:.0f} MB"
          + (f" ({out.get('error')})" if out.get("status") != "ok" else ""), flush=True)
    return out


def predict_seconds(points: list[tuple[int, float]], n: int) -> float | None:
    """Time at n rows from the measured ones: a fixed cost plus a cost per row (the two largest
    measured sizes); with one point, proportional to n (a pessimistic guess)."""
    if not points:
        return None
    pts = sorted(points)
    if len(pts) == 1:
        n1, t1 = pts[0]
        return t1 * n / n1
    (n1, t1), (n2, t2) = pts[-2], pts[-1]
    slope = (t2 - t1) / (n2 - n1)
    if slope <= 0:
        return t2 * n / n2
    return t2 + slope * (n - n2)


def run_cli(args: list[str], label: str) -> dict:
    """`.venv/bin/mrp ...` as a subprocess: wall time includes interpreter start and imports."""
    exe = Path(sys.executable).parent / "mrp"
    logs = LOGS
    start = time.perf_counter()
    proc = subprocess.run([str(exe), *args], cwd=str(ROOT), capture_output=True, text=True)
    wall = time.perf_counter() - start
    (logs / f"{label}.log").write_text(proc.stderr)
    out = {"label": label, "wall_seconds": wall, "exit_code": proc.returncode, "args": args}
    try:
        doc = json.loads(proc.stdout)
        out["ok"] = doc.get("ok")
        out["estimands"] = [r.get("estimand") for r in doc.get("estimands", [])]
    except json.JSONDecodeError:
        out["ok"] = False
    print(f"  {label}: exit {proc.returncode} in {wall:.1f} s", flush=True)
    return out


# =============================================================================== orchestration


def generate(cfg: dict) -> dict:
    data = OUT / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {"samples": {}, "big_pops": {}}
    t0 = time.perf_counter()
    for n in sorted(set(cfg["fit_sizes"]) | set(cfg["bambi_sizes"])):
        path = data / f"sample_{n}.parquet"
        write_sample(n, path)
        files["samples"][n] = path
    pop, _ = population_cells()
    files["population"] = data / "population_cells.parquet"
    pop.to_parquet(files["population"], index=False)
    for m in cfg["pop_sizes"]:
        path = data / f"population_{m}.parquet"
        write_big_population(m, path)
        files["big_pops"][m] = path
    print(f"generated data in {time.perf_counter() - t0:.1f} s", flush=True)
    return files


def _mem_available_gb() -> float:
    try:
        return int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                        if line.startswith("MemAvailable"))) / 1024 ** 2
    except (OSError, StopIteration):
        return 0.0


def package_files() -> dict:
    """sha256 of every source file of mrp_formula: to tell whether the package changed during the run."""
    import hashlib

    pkg = ROOT / "mrp_formula"
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in sorted(pkg.glob("*.py"))}


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in
                                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        info["mem_total_gb"] = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                                        if line.startswith("MemTotal"))) / 1024 ** 2
    except (OSError, StopIteration):
        pass
    try:
        from importlib.metadata import version

        info["versions"] = {p: version(p) for p in ("bambi", "pymc", "nutpie", "arviz", "numpy", "pandas",
                                                     "duckdb", "pytensor")}
    except Exception:
        pass
    return info


def orchestrate(args) -> dict:
    global LOGS
    cfg = QUICK if args.quick else FULL
    LOGS = OUT / ("logs-quick" if args.quick else "logs")
    budget = args.budget
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"quick": args.quick, "budget_seconds": budget, "mem_limit_gb": MEM_LIMIT_GB, "config": cfg,
               "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "truth": true_estimands(),
               "mrp_fit": [], "bambi_fit": {"nutpie": [], "pymc": []}, "skipped": [],
               "poststrat": {"mrp": [], "bambi": [], "run": []}, "rerun": [], "package_start": package_files()}
    save = lambda: (OUT / ("results-quick.json" if args.quick else "results.json")).write_text(
        json.dumps(results, indent=1, default=str))
    files = generate(cfg)
    specs = OUT / ("specs-quick" if args.quick else "specs")
    specs.mkdir(exist_ok=True)
    runs = OUT / ("runs-quick" if args.quick else "runs")

    # --- mrp-formula fits
    print("mrp-formula fits", flush=True)
    for n in cfg["fit_sizes"]:
        spec = specs / f"ab_{n}.toml"
        write_spec(spec, files["samples"][n], files["population"], f"bench-ab-{n}")
        r = run_case({"case": "mrp_fit", "spec": str(spec), "run_dir": str(runs / f"mrp_{n}")},
                     timeout=3 * budget, label=f"mrp_fit_{n}")
        r["n"] = n
        results["mrp_fit"].append(r)
        save()
    # the same fits with the mass matrix forced diagonal, where "auto" chose low-rank
    for n in [n for n in cfg["fit_sizes"] if n >= 100_000][::2]:
        r = run_case({"case": "mrp_fit", "spec": str(specs / f"ab_{n}.toml"), "run_dir": str(runs / f"mrp_{n}_diagonal"),
                      "overrides": ['fit.mass_matrix="diagonal"']}, timeout=3 * budget, label=f"mrp_fit_{n}_diagonal")
        r["n"] = n
        results.setdefault("mrp_fit_diagonal", []).append(r)
        save()

    # --- plain Bambi fits, capped by the time budget
    for sampler in ("nutpie", "pymc"):
        if sampler == "pymc" and args.no_pymc:
            results["skipped"].append({"what": "bambi pymc", "why": "--no-pymc"})
            continue
        print(f"plain Bambi fits ({sampler})", flush=True)
        points = []
        for n in cfg["bambi_sizes"]:
            guess = predict_seconds(points, n)
            if guess is not None and guess > budget:
                results["bambi_fit"][sampler].append({"n": n, "status": "skipped", "predicted_seconds": guess})
                print(f"  bambi_{sampler}_{n}: skipped (predicted {guess:.0f} s > budget {budget:.0f} s)", flush=True)
                continue
            r = run_case({"case": "bambi_fit", "sampler": sampler, "sample": str(files["samples"][n]),
                          "population": str(files["population"])}, timeout=2 * budget,
                         label=f"bambi_{sampler}_{n}")
            r["n"] = n
            r["predicted_seconds"] = guess
            results["bambi_fit"][sampler].append(r)
            if r.get("status") == "ok":
                points.append((n, r["wall_seconds"]))
            save()

    # --- poststratification of big populations with 4,000 draws
    base_n = 100_000 if 100_000 in cfg["fit_sizes"] else max(cfg["fit_sizes"])
    base_spec, base_run = specs / f"ab_{base_n}.toml", runs / f"mrp_{base_n}"
    results["poststrat_posterior"] = f"mrp fit on {base_n:,} rows"
    results["base_n"] = base_n
    print(f"poststratification (posterior of the {base_n}-row fit)", flush=True)
    for m in cfg["pop_sizes"]:
        common = {"spec": str(base_spec), "run_dir": str(base_run), "population": str(files["big_pops"][m])}
        r = run_case(dict(common, case="mrp_poststrat"), timeout=3 * budget, mem_limit_gb=MEM_LIMIT_GB,
                     label=f"poststrat_mrp_{m}")
        r["m"] = m
        results["poststrat"]["mrp"].append(r)
        r = run_case(dict(common, case="bambi_predict"), timeout=2 * budget, mem_limit_gb=MEM_LIMIT_GB,
                     label=f"poststrat_bambi_{m}")
        r["m"] = m
        results["poststrat"]["bambi"].append(r)
        if (r.get("status") == "oom" and m == min(cfg["pop_sizes"]) and not args.quick
                and _mem_available_gb() > BIG_LIMIT_GB + 2):
            # how much Bambi really needs at the smallest size: once more with a higher limit
            r = run_case(dict(common, case="bambi_predict"), timeout=2 * budget, mem_limit_gb=BIG_LIMIT_GB,
                         label=f"poststrat_bambi_{m}_{BIG_LIMIT_GB:.0f}gb")
            r["m"] = m
            results["poststrat"]["bambi_big_limit"] = r
        spec = specs / f"ab_{base_n}_pop_{m}.toml"
        write_spec(spec, files["samples"][base_n], files["big_pops"][m], f"bench-ab-{base_n}-pop-{m}")
        r = run_case({"case": "mrp_run_cached", "spec": str(spec), "run_dir": str(runs / f"mrp_{base_n}_pop_{m}")},
                     timeout=3 * budget, mem_limit_gb=MEM_LIMIT_GB, label=f"poststrat_run_{m}")
        r["m"] = m
        results["poststrat"]["run"].append(r)
        save()

    # --- a re-run whose estimands changed, fit cached: the CLI, so imports count
    print("cached re-runs (mrp run --set ...)", flush=True)
    changes = [['estimands.lift.scale="ratio"'],
               ['estimands.lift_by_gender={contrast={treatment=["treatment","control"]}, by=["gender"]}'],
               ['estimands.rate_by_age={at={treatment=["control","treatment"]}, by=["age"]}']]
    changes = changes[: cfg["reruns"]]
    if not args.quick:  # for information: the same with the default report.plots = true
        changes.append(['estimands.lift.scale="difference"', "report.plots=true"])
    for i, sets in enumerate(changes):
        cli = ["run", str(base_spec), "--out", str(runs / f"mrp_{base_n}_rerun"), "--json", "--no-progress"]
        for s in sets:
            cli += ["--set", s]
        r = run_cli(cli, label=f"rerun_{i + 1}")
        man = runs / f"mrp_{base_n}_rerun" / "manifest.json"
        if man.exists():
            m = json.loads(man.read_text())
            r["fit_reused"] = m.get("fit_cache", {}).get("reused")
            r["timings"] = m.get("timings_seconds")
        r["change"] = sets
        results["rerun"].append(r)
        save()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    results["package_end"] = package_files()
    save()
    return results


# =============================================================================== report


def _f(x, digits=1, unit=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}{unit}"


def _mb(x):
    return "–" if x is None else (f"{x / 1024:,.2f} GB" if x >= 1024 else f"{x:,.0f} MB")


def _code(name: str) -> str:
    """A term name as code inside a markdown table cell (a bare | would end the cell)."""
    return "`" + name.replace("|", "\\|") + "`"


def _n(n):
    return f"1e{int(round(math.log10(n)))}" if n and 10 ** round(math.log10(n)) == n else f"{n:,}"


def _status(r):
    s = r.get("status")
    if s == "ok":
        return None
    if s == "skipped":
        return f"skipped: predicted {r['predicted_seconds'] / 60:,.0f} min > budget"
    if s == "oom":
        return f"out of memory ({r.get('mem_limit_gb') or MEM_LIMIT_GB:.0f} GB address-space limit)"
    return f"{s}: {r.get('error', '')}"


def verdicts(res: dict) -> list[tuple[str, str, str]]:
    """(target, measured, holds?) for the issue's five targets."""
    out = []
    mrp = {r["n"]: r for r in res["mrp_fit"] if r.get("status") == "ok"}
    bn = {r["n"]: r for r in res["bambi_fit"]["nutpie"] if r.get("status") == "ok"}
    bp = {r["n"]: r for r in res["bambi_fit"]["pymc"] if r.get("status") == "ok"}

    def yes(ok):
        return "**holds**" if ok else "**does not hold**"

    n = 100_000
    if n in mrp and (n in bn or n in bp):
        parts, oks = [], []
        for name, b in (("Bambi + nutpie", bn), ("Bambi + PyMC NUTS (default)", bp)):
            if n in b:
                ratio = b[n]["fit_seconds"] / mrp[n]["e2e_seconds"]
                oks.append(ratio >= 20)
                parts.append(f"{name}: fit {b[n]['fit_seconds']:.1f} s / mrp end to end "
                             f"{mrp[n]['e2e_seconds']:.1f} s = **{ratio:.1f}x**")
        names = [nm for nm, b in (("against Bambi + nutpie", bn), ("against Bambi's default sampler", bp))
                 if n in b]
        verdict = "; ".join(f"{yes(ok)} {nm}" for ok, nm in zip(oks, names))
        out.append(("`mrp run` end to end at 1e5 rows >= 20x faster than the row-level Bambi fit (mrp-formula: a "
                    "fresh process running `mrp_formula.run`, imports included; Bambi: the `fit` call alone)",
                    "; ".join(parts), verdict))
    else:
        out.append(("`mrp run` at 1e5 rows >= 20x faster than the Bambi fit", "not measured (no 1e5 run)", "n/a"))
    if 1_000 in mrp and 1_000_000 in mrp:
        a, b = mrp[1_000]["fit_seconds"], mrp[1_000_000]["fit_seconds"]
        e1, e2 = mrp[1_000]["e2e_seconds"], mrp[1_000_000]["e2e_seconds"]
        out.append(("fit time at 1e6 rows within 2x of 1e3",
                    f"fit {b:.1f} s vs {a:.1f} s = **{b / a:.2f}x** (fit CPU time "
                    f"{mrp[1_000_000]['fit_cpu_seconds']:.1f} s vs {mrp[1_000]['fit_cpu_seconds']:.1f} s = "
                    f"{mrp[1_000_000]['fit_cpu_seconds'] / mrp[1_000]['fit_cpu_seconds']:.2f}x; end to end "
                    f"{e2:.1f} s vs {e1:.1f} s = {e2 / e1:.2f}x)", yes(b / a <= 2)))
    else:
        out.append(("fit time at 1e6 rows within 2x of 1e3", "not measured", "n/a"))
    rows = []
    for n in sorted(mrp):
        if n < 100_000:
            continue
        m_rate = mrp[n]["min_ess_bulk"] / mrp[n]["fit_seconds"]
        for name, b in (("Bambi + PyMC NUTS (default)", bp), ("Bambi + nutpie", bn)):
            if n in b:
                b_rate = b[n]["min_ess_bulk"] / b[n]["fit_seconds"]
                rows.append((name, n, m_rate, b_rate, m_rate / b_rate))
    if rows:
        txt = "; ".join(f"{_n(n)} rows vs {name}: {m:.1f} / {b:.2f} ESS/s = **{r:.1f}x** "
                        f"({'holds' if r >= 3 else 'does not hold'})" for name, n, m, b, r in rows)
        default = [r for name, *_, r in rows if "default" in name]
        holds = all(r >= 3 for r in default) if default else all(r >= 3 for *_, r in rows)
        basis = "against Bambi's default sampler" if default else "no default-sampler run; against Bambi + nutpie"
        big = [r for k, r in sorted(mrp.items()) if k >= 100_000]
        txt += (". mrp-formula alone: " + "; ".join(
            f"{_n(r['n'])}: min ESS {r['min_ess_bulk']:.0f} ({_code(r['min_ess_param'])}), "
            f"{r['min_ess_bulk'] / r['fit_seconds']:.1f} ESS/s, max R-hat {r['max_rhat']:.3f}" for r in big))
        out.append(("min bulk ESS/s at N >= 1e5 >= 3x Bambi's default", txt,
                    f"{yes(holds)} at 1e5 ({basis}); no Bambi run above 1e5 to compare with"))
    else:
        out.append(("min bulk ESS/s at N >= 1e5 >= 3x Bambi's default", "no Bambi run at N >= 1e5", "n/a"))
    ps = {r["m"]: r for r in res["poststrat"]["mrp"]}
    run = {r["m"]: r for r in res["poststrat"]["run"]}
    m = 1_000_000
    if m in run and run[m].get("status") == "ok":
        r = run[m]
        ok = r["e2e_seconds"] < 60 and r["peak_rss_mb"] < 1.5 * 1024
        out.append(("1e6-cell population, 4,000 draws: < 60 s and < 1.5 GB peak — (a) as `mrp run` does it "
                    "(read the table, collapse it to the model's variables, poststratify; fit cached)",
                    f"{r['e2e_seconds']:.1f} s end to end, of which prepare {r['prepare_seconds']:.1f} s and "
                    f"poststratify {r['poststratify_seconds']:.2f} s ({r['population_rows']:,} rows -> "
                    f"{r['population_cells']:,} cells); peak RSS {_mb(r['peak_rss_mb'])}", yes(ok)))
    if m in ps and ps[m].get("status") == "ok":
        r = ps[m]
        ok = r["poststratify_seconds"] < 60 and r["peak_rss_mb"] < 1.5 * 1024
        out.append(("(b) the same, but as 1e6 *distinct* cells: `poststratify` + `CellPredictor` on every row "
                    "(what a model with 1e6 distinct cells would cost)",
                    f"{r['poststratify_seconds']:.1f} s (+ {r['predictor_seconds']:.2f} s to set up the "
                    f"predictor), peak RSS {_mb(r['peak_rss_mb'])} (process total; {_mb(r['rss_before_mb'])} "
                    "before poststratifying)", yes(ok)))
    elif m in ps:
        out.append(("(b) 1e6 distinct cells through `poststratify`", _status(ps[m]), "**does not hold**"))
    if m not in ps and m not in run:
        out.append(("1e6-cell population poststratified in < 60 s, < 1.5 GB", "not measured", "n/a"))
    rr = [r for r in res["rerun"] if r.get("exit_code") == 0 and "report.plots=true" not in r["change"]]
    if rr:
        times = ", ".join(f"{r['wall_seconds']:.1f} s" for r in rr)
        ok = all(r["wall_seconds"] < 5 and r.get("fit_reused") for r in rr)
        out.append(("cached re-run (estimands changed) < 5 s end to end", f"{times} (fit reused: "
                    f"{', '.join(str(r.get('fit_reused')) for r in rr)})", yes(ok)))
    else:
        out.append(("cached re-run < 5 s", "failed or not measured", "n/a"))
    return out


def _all_cases(res: dict) -> list[dict]:
    out = list(res["mrp_fit"]) + list(res.get("mrp_fit_diagonal", []))
    for v in res["bambi_fit"].values():
        out += [r for r in v if "wall_seconds" in r]
    for k, v in res["poststrat"].items():
        out += v if isinstance(v, list) else [v]
    return out


def _ridge_text(res: dict, sizes: list[int]) -> str:
    """Posterior correlation of the intercept with the mean group effects, from the saved run folders."""
    try:
        import arviz as az
        import numpy as np

        parts = []
        for n in sizes:
            runs = OUT / ("runs-quick" if res.get("quick") else "runs")
            post = az.from_netcdf(runs / f"mrp_{n}" / "posterior.nc")["posterior"]
            icpt = post["Intercept"].values.ravel()
            total = sum(post[v].values.reshape(icpt.size, -1).mean(axis=1) for v in ("1|age", "1|region"))
            parts.append(f"{np.corrcoef(icpt, total)[0, 1]:+.3f} at {_n(n)}")
        return (" (posterior correlation of `Intercept` with the mean age effect + mean region effect: "
                + ", ".join(parts) + ")")
    except Exception:  # run folders gone: say nothing
        return ""


def observations(res: dict) -> list[str]:
    out = []
    loads = [r["load_before"] for r in _all_cases(res) if r.get("load_before") is not None]
    if loads:
        out.append(f"The 1-minute load average before the cases (it includes the benchmark's own previous case) "
                   f"ranged from {min(loads):.1f} to {max(loads):.1f} on {res['machine'].get('cpus')} cores; other "
                   "people's processes were running too, so wall times (and ESS/s) are noisier than on an idle "
                   "machine. The CPU-time columns are less affected.")
    mrp = {r["n"]: r for r in res["mrp_fit"] if r.get("status") == "ok"}
    if mrp:
        share = [r["fit_seconds"] / r["e2e_seconds"] for r in mrp.values()]
        cells = sorted({r["cells_fitted"] for r in mrp.values()})
        out.append(f"mrp-formula fits {cells[0]:,}–{cells[-1]:,} binomial cells whatever the number of rows, so its "
                   f"time hardly grows with N; the fit call (mostly nutpie's model compilation, then sampling) is "
                   f"{min(share):.0%}–{max(share):.0%} of the end-to-end time.")
    big = [r for k, r in sorted(mrp.items()) if k >= 100_000]
    if big and mrp.get(min(mrp)):
        small = mrp[min(mrp)]
        txt = "; ".join(f"{_n(r['n'])}: min ESS {r['min_ess_bulk']:.0f} (`{r['min_ess_param']}`), R-hat "
                        f"{r['max_rhat']:.3f}, {r['mean_steps_per_draw']:.0f} leapfrog steps/draw, estimand ESS "
                        f"{r['estimand_min_ess']:,.0f}" for r in big)
        diag_big = [r for r in big if r.get("mass_matrix", "diagonal") == "diagonal"]
        if diag_big:  # a diagonal mass matrix at large N: the ridge shows in the parameters
            line = (f"Mixing of the model parameters gets worse as N grows (at {_n(small['n'])}: min ESS "
                    f"{small['min_ess_bulk']:.0f}, {small['mean_steps_per_draw']:.0f} steps/draw; {txt}): with "
                    "more data each cell's rate is pinned down while the intercept and the group effects still trade "
                    "off against each other, a long narrow ridge for NUTS" + _ridge_text(res, [small["n"], big[-1]["n"]])
                    + ". The estimands, which are what an MRP run reports, keep a high ESS; mrp-formula's own "
                    "diagnostics say so in the run's warnings.")
        else:
            low = [r for r in mrp.values() if r.get("mass_matrix") == "low_rank"]
            first = min(r["n"] for r in low) if low else big[0]["n"]
            line = ("With more data each cell's rate is pinned down while the intercept and the group effects still "
                    "trade off against each other, a long narrow ridge for NUTS" + _ridge_text(res, [small["n"], big[-1]["n"]])
                    + f". From {_n(first)} rows on, a group term's median information per level is >= 500, so "
                    "`fit.mass_matrix = \"auto\"` takes nutpie's low-rank mass matrix, which learns that ridge, and "
                    f"mixing does not degrade with N (at {_n(small['n'])}, diagonal: min ESS "
                    f"{small['min_ess_bulk']:.0f}, {small['mean_steps_per_draw']:.0f} steps/draw; low-rank: {txt}).")
            diag_rows = [r for r in res.get("mrp_fit_diagonal", []) if r.get("status") == "ok"]
            if diag_rows:
                line += (" The same fits with `fit.mass_matrix = \"diagonal\"`: " + "; ".join(
                    f"{_n(r['n'])}: min ESS {r['min_ess_bulk']:.0f} (`{r['min_ess_param']}`), R-hat "
                    f"{r['max_rhat']:.3f}, {r['mean_steps_per_draw']:.0f} leapfrog steps/draw, fit "
                    f"{r['fit_seconds']:.1f} s, estimand ESS {r['estimand_min_ess']:,.0f}" for r in diag_rows) + ".")
        b5 = [(name, r) for name, rows in (("Bambi + nutpie", res["bambi_fit"]["nutpie"]),
                                          ("Bambi + PyMC NUTS", res["bambi_fit"]["pymc"]))
              for r in rows if r.get("status") == "ok" and r["n"] == big[0]["n"]]
        if b5:
            line += " Plain Bambi at the same N: " + "; ".join(
                f"{name} min ESS {r['min_ess_bulk']:.0f}, R-hat {r['max_rhat']:.3f}, "
                f"{r['mean_steps_per_draw']:.0f} steps/draw" for name, r in b5) + "."
        out.append(line)
    t = res["truth"]
    ests = [(f"mrp {_n(r['n'])}", r["estimates"]["lift"], r["estimates"]["lift_sd"]) for r in mrp.values()]
    for s_, rows in res["bambi_fit"].items():
        ests += [(f"Bambi/{s_} {_n(r['n'])}", r["estimates"]["lift"], r["estimates"]["lift_sd"])
                 for r in rows if r.get("status") == "ok"]
    if ests:
        z = [abs(e - t["lift"]) / sd for _, e, sd in ests if sd]
        diffs = []
        for s_, rows in res["bambi_fit"].items():
            for r in rows:
                if r.get("status") == "ok" and r["n"] in mrp:
                    diffs.append(abs(r["estimates"]["lift"] - mrp[r["n"]]["estimates"]["lift"])
                                 / mrp[r["n"]]["estimates"]["lift_sd"])
        out.append(f"Sanity check: every posterior mean of the lift is within {max(z):.1f} posterior sd of the truth "
                   f"({t['lift']:.4f})" + (f"; at the same N, mrp-formula's and plain Bambi's posterior means of the "
                                          f"lift differ by at most {max(diffs):.2f} posterior sd" if diffs else "")
                   + ".")
    ps = [r for r in res["poststrat"]["mrp"] if r.get("status") == "ok"]
    if ps:
        per = [r["poststratify_seconds"] / (r["draws"] * r["cells"] * 2) * 1e9 for r in ps]
        out.append(f"mrp-formula's chunked poststratification costs {min(per):.0f}–{max(per):.0f} ns per draw x cell x "
                   "scenario (2 scenarios here: control and treatment) in `CellPredictor.weighted_sums` (per-term "
                   "tables of exponentiated draws gathered for cache-sized micro-blocks, multiplied, one reciprocal, "
                   "reduced at once, on both cores), so its time is linear in the number of rows it is given. Its "
                   "memory stays flat (a chunk's design columns and one micro-block per thread). A full `mrp run` "
                   "never hands it the raw table: the "
                   "population is first collapsed to the distinct combinations of the model's (and `by`) "
                   "variables, 600 here, which is why the cached full run over the same table is fast.")
    b = [r for r in res["poststrat"]["bambi"] if r.get("status") == "ok"]
    big = res["poststrat"].get("bambi_big_limit")
    if big and big.get("status") == "ok":
        out.append(f"With a {big['mem_limit_gb']:.0f} GB address-space limit instead of {MEM_LIMIT_GB:.0f} GB, Bambi's "
                   f"predict on {big['m']:,} cells finished in {big['seconds']:.1f} s with a peak of "
                   f"{_mb(big['peak_rss_mb'])}; it agrees with mrp-formula's poststratification (lift "
                   f"{big['estimates']['lift']:.5f}). Bambi builds the whole (draws x cells) linear predictor at once "
                   "(`xr.dot` for the common terms, a pydata-`sparse` product for the group terms) and then the "
                   f"response with `apply_ufunc`, so several (draws x cells) float64 arrays (4,000 x {big['m']:,} = "
                   f"{4000 * big['m'] * 8 / 1e6:,.0f} MB each) and the sparse product's intermediates are alive at "
                   "once.")
    elif big:
        out.append(f"Bambi's predict at {big['m']:,} cells failed even with a {big['mem_limit_gb']:.0f} GB limit "
                   f"({_status(big)}).")
    for r in b:
        out.append(f"Bambi's predict on {r['cells']:,} cells: {r['seconds']:.1f} s, peak {_mb(r['peak_rss_mb'])}.")
    rr = [r for r in res["rerun"] if r.get("timings")]
    if rr:
        r = rr[0]
        tm = r["timings"]
        out.append(f"Cached re-run, first change: {r['wall_seconds']:.1f} s in all; the manifest's timings: "
                   f"prepare {tm.get('prepare', 0):.1f} s (spec, reading and collapsing the sample; a cached run "
                   f"imports neither bambi, pymc nor arviz), poststratify "
                   f"{tm.get('poststratify', 0):.2f} s, checks {tm.get('checks', 0):.2f} s, run total "
                   f"{tm.get('total', 0):.1f} s; the remaining {r['wall_seconds'] - tm.get('total', 0):.1f} s are "
                   "interpreter start-up, the CLI's own imports and printing.")
    return out


def write_report(res: dict, path: Path) -> None:
    m = res["machine"]
    L = []
    L.append("# Benchmarks: mrp-formula vs plain Bambi on one A/B model")
    L.append("")
    L.append(f"Generated by `{'.venv/bin/python benchmarks/bench_ab.py --quick' if res['quick'] else 'make bench'}`"
             f" (`benchmarks/bench_ab.py`), {res['started']} – {res.get('finished', 'unfinished')}. "
             "Every number below comes from that one run; nothing was tuned after the fact.")
    L.append("")
    L.append(f"**Machine:** {m.get('cpus')} cores ({m.get('cpu_model', '?')}), "
             f"{m.get('mem_total_gb', 0):.0f} GB RAM, Python {m.get('python')}; "
             + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
             + ". The machine is shared: other people's processes were running during the benchmark "
             "(the 1-minute load average before each case is in the raw JSON, "
             f"`benchmarks/out/results{'-quick' if res['quick'] else ''}.json`), so wall times are noisy, "
             "and with 2 cores anything that runs chains in parallel competes with them.")
    L.append("")
    start, end = res.get("package_start"), res.get("package_end")
    if start and end and start != end:
        changed = sorted(k for k in set(start) | set(end) if start.get(k) != end.get(k))
        L.append(f"**Warning: the package's source changed while this benchmark ran** ({', '.join(changed)}), so "
                 "later cases may have run other code than earlier ones.")
        L.append("")
    L.append("## Set-up")
    L.append("")
    L.append(f"* Model: `{FORMULA}`, bernoulli; 2 x 2 x 6 x 50 = 2,400 predictor cells. Data simulated with "
             f"a fixed seed ({SEED}) from known effects (treatment +0.35, male -0.40, interaction +0.15 on the "
             "logit scale, 6 age effects, 50 region effects drawn from N(0, 0.35)). The sample is 70 % women, "
             "skewed young and towards some regions; the population (600 gender x age x region cells, "
             "10 M people) is 51 % men and older.")
    t = res["truth"]
    L.append(f"* True population click rates: control {t['control']:.4f}, treatment {t['treatment']:.4f}, "
             f"lift (difference) {t['lift']:.4f}.")
    L.append("* **mrp-formula**: a generated spec (`benchmarks/out/specs/`) run with `mrp_formula.run(spec, "
             "refit=True)`: DuckDB reads the Parquet sample as counted distinct rows, the model is fitted on "
             "binomial cells with nutpie (4 chains x 1,000 draws after 1,000 tuning steps, target_accept 0.9, "
             "the mass matrix chosen by `fit.mass_matrix = \"auto\"` (see the table by step), chains on 2 cores), "
             "then poststratified (estimands: click rate per arm and the lift) and the "
             "run folder written (`report.plots = false`: neither side draws plots). Priors are mrp-formula's defaults (Bambi's for common terms, "
             "Normal(0, HalfNormal(1)) for group terms).")
    L.append("* **Plain Bambi**: `bmb.Model(formula, rows, family=\"bernoulli\").fit(inference_method=...)` on "
             "the row-level data with Bambi's defaults otherwise: 1,000 draws, 1,000 tuning steps, "
             "**2 chains, 1 core** (PyMC's defaults on this 2-core machine: `cores = cpu_count // 2`), "
             "target_accept 0.8, Bambi's default priors. Then `model.predict(idata, "
             "kind=\"response_params\", data=population, inplace=False)` for each arm and the weighted mean per "
             "draw in numpy. Two variants: `inference_method=\"nutpie\"` and Bambi's default "
             "`inference_method=\"pymc\"` (PyMC's NUTS).")
    L.append(f"* Each case runs in a fresh Python process. *End to end* is from launching the process to "
             "having the estimates (imports, reading, building, compiling, sampling, predicting; for "
             "mrp-formula also writing the run folder). *Fit* is the wall time of the fit call (model "
             "compilation + tuning + sampling). *Peak memory* is the peak RSS of the process (the larger of "
             "`ru_maxrss` from `wait4` and the process tree's RSS sampled every 0.1 s); it includes the "
             "interpreter and the imported libraries (about 0.3–0.5 GB). "
             f"Bambi sizes whose predicted time (fixed cost + cost per row, from the two largest measured "
             f"sizes) exceeded the budget of {res['budget_seconds'] / 60:.0f} minutes were skipped.")
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured | verdict |")
    L.append("| --- | --- | --- |")
    for target, measured, verdict in verdicts(res):
        L.append(f"| {target} | {measured} | {verdict} |")
    L.append("")

    L.append("## Fitting: wall time, peak memory, sampling efficiency")
    L.append("")
    L.append("min ESS = the smallest bulk ESS over every element of every model parameter (`az.ess`, "
             "method bulk); ESS/s divides it by the fit wall time; ESS/CPU-s by the CPU time (user + system) "
             "of the fit, which corrects for mrp-formula using both cores. Leapfrog steps/draw = mean `n_steps` "
             "of the kept draws (the cost of one draw in gradient evaluations). Estimand min ESS = the smallest "
             "bulk ESS of the per-draw click rates and lift (what an MRP analysis reports).")
    L.append("")
    L.append("| rows | tool | end to end | fit | fit CPU | peak memory | fitted rows/cells | chains | min ESS (param) | "
             "ESS/s | ESS/CPU-s | max R-hat | divergences | leapfrog steps/draw | estimand min ESS | lift (sd) |")
    L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: "
             "| --- |")
    sizes = sorted({r["n"] for r in res["mrp_fit"]} | {r["n"] for v in res["bambi_fit"].values() for r in v})
    tools = [("mrp-formula (nutpie, cells)", res["mrp_fit"]), ("Bambi + nutpie (rows)", res["bambi_fit"]["nutpie"]),
             ("Bambi + PyMC NUTS (rows, default)", res["bambi_fit"]["pymc"])]
    for n in sizes:
        for name, rows in tools:
            r = next((x for x in rows if x["n"] == n), None)
            if r is None:
                continue
            st = _status(r)
            if st:
                L.append(f"| {_n(n)} | {name} | {st} | | | | | | | | | | | | | |")
                continue
            rate = r["min_ess_bulk"] / r["fit_seconds"]
            cpu = r["min_ess_bulk"] / r["fit_cpu_seconds"] if r.get("fit_cpu_seconds") else None
            e = r["estimates"]
            L.append(f"| {_n(n)} | {name} | {_f(r['e2e_seconds'])} s | {_f(r['fit_seconds'])} s | "
                     f"{_f(r.get('fit_cpu_seconds'))} s | {_mb(r['peak_rss_mb'])} | {r.get('cells_fitted', r.get('rows')):,} | {r['chains']} | "
                     f"{r['min_ess_bulk']:,.0f} ({_code(r['min_ess_param'])}) | {_f(rate)} | {_f(cpu)} | "
                     f"{r['max_rhat']:.3f} | {r['divergences']} | {_f(r.get('mean_steps_per_draw'))} | "
                     f"{_f(r.get('estimand_min_ess'), 0)} | {e['lift']:.4f} ({e['lift_sd']:.4f}) |")
    L.append("")
    L.append(f"(truth: lift {t['lift']:.4f})")
    L.append("")
    mrp_ok = [r for r in res["mrp_fit"] if r.get("status") == "ok"]
    if mrp_ok:
        L.append("mrp-formula's time by step (seconds; from the run's manifest, plus the import time):")
        L.append("")
        L.append("| rows | import | prepare (read + collapse) | fit (build + compile + sample) | poststratify | "
                 "checks | run total | parameterization | mass matrix |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for r in mrp_ok:
            par = ", ".join(f"{_code(k)}: {v}" for k, v in r["parameterization"].items())
            L.append(f"| {_n(r['n'])} | {_f(r['import_seconds'])} | {_f(r['prepare_seconds'])} | "
                     f"{_f(r['fit_seconds'])} | {_f(r['poststratify_seconds'])} | {_f(r['checks_seconds'])} | "
                     f"{_f(r['total_seconds'])} | {par} | {r.get('mass_matrix', 'diagonal').replace('_', '-')} |")
        L.append("")
    b_ok = [r for v in res["bambi_fit"].values() for r in v if r.get("status") == "ok"]
    if b_ok:
        L.append("Plain Bambi's time by step (seconds):")
        L.append("")
        L.append("| rows | sampler | import | read | build | fit | predict + weighted mean |")
        L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        for s, rows in res["bambi_fit"].items():
            for r in rows:
                if r.get("status") == "ok":
                    L.append(f"| {_n(r['n'])} | {s} | {_f(r['import_seconds'])} | {_f(r['read_seconds'])} | "
                             f"{_f(r['build_seconds'])} | {_f(r['fit_seconds'])} | {_f(r['poststratify_seconds'])} |")
        L.append("")

    L.append("## Poststratification of big populations (4,000 draws)")
    L.append("")
    L.append(f"Posterior: the {res.get('poststrat_posterior', '?')} above (4 chains x 1,000 draws). The population "
             "tables have the model's variables plus columns the model does not use (a district id, household "
             "type, income band), one row per district, so each row is a distinct cell of the table. "
             "Two scenarios per cell (control, treatment), as the spec's estimands need. "
             f"Both prediction cases run under an address-space limit (`RLIMIT_AS`) of {MEM_LIMIT_GB:.0f} GB.")
    L.append("")
    L.append("* **mrp poststratify**: `mrp_formula.poststrat.poststratify` over the rows as given (no collapse) "
             "with the real `CellPredictor` (its `weighted_sums`) and the default block "
             "(`DEFAULT_BLOCK` = 1e7 values held per chunk).")
    L.append("* **Bambi predict**: `model.predict(posterior, kind=\"response_params\", data=table, "
             "inplace=False)` per arm on the same Bambi model (the aggregated one mrp-formula fitted) and the same "
             "posterior, then the weighted mean per draw in numpy.")
    L.append("* **mrp run (cached fit)**: a full `mrp_formula.run` of a spec whose `population.source` is the "
             "big table: it reads it, collapses it to the model's variables (≤ 600 cells) and poststratifies; "
             "the fit comes from the cache.")
    L.append("")
    L.append("| population rows | method | time | peak memory | memory before the step | lift |")
    L.append("| ---: | --- | ---: | ---: | ---: | --- |")
    for m_ in res["config"]["pop_sizes"]:
        big = res["poststrat"].get("bambi_big_limit")
        for name, key in (("mrp poststratify (chunked)", "mrp"), ("Bambi predict", "bambi"),
                          ("Bambi predict, {lim:.0f} GB limit (what it really needs)", "big"),
                          ("mrp run, cached fit (collapse + poststratify)", "run")):
            if key == "big":
                if not big or big["m"] != m_:
                    continue
                name = name.format(lim=big["mem_limit_gb"])
                r = big
            else:
                r = next((x for x in res["poststrat"][key] if x["m"] == m_), None)
            if r is None:
                continue
            st = _status(r)
            if st:
                extra = f" after {r['seconds_until_oom']:.1f} s" if r.get("seconds_until_oom") else ""
                L.append(f"| {_n(m_)} | {name} | {st}{extra} | {_mb(r.get('peak_rss_mb'))} | "
                         f"{_mb(r.get('rss_before_mb'))} | |")
                continue
            if key == "run":
                time_txt = (f"{_f(r['e2e_seconds'])} s end to end (prepare {_f(r['prepare_seconds'])} s, "
                            f"poststratify {_f(r['poststratify_seconds'], 2)} s; "
                            f"{r['population_rows']:,} rows -> {r['population_cells']:,} cells)")
                L.append(f"| {_n(m_)} | {name} | {time_txt} | {_mb(r['peak_rss_mb'])} | | {r['lift']:.4f} |")
            else:
                time_txt = f"{_f(r['poststratify_seconds'])} s"
                if key == "mrp":
                    time_txt += f" (+ {_f(r['predictor_seconds'], 2)} s predictor set-up)"
                L.append(f"| {_n(m_)} | {name} | {time_txt} | {_mb(r['peak_rss_mb'])} | "
                         f"{_mb(r.get('rss_before_mb'))} | {r['estimates']['lift']:.4f} |")
    L.append("")
    L.append("\"Memory before the step\" is the process RSS after imports, the plan, the posterior and the "
             "table were loaded; peak memory is the whole process's peak.")
    L.append("")

    L.append("## Re-run with changed estimands (fit cached)")
    L.append("")
    L.append("`.venv/bin/mrp run SPEC --out DIR --json --no-progress --set ...` as a subprocess, so interpreter "
             f"start-up and imports count; the spec is the {_n(res.get('base_n', 100_000))}-row one, whose fit "
             "the earlier run cached.")
    L.append("")
    L.append("The generated specs set `report.plots = false`; the last row (if present) turns the default "
             "plots back on, for information, and is not part of the target.")
    L.append("")
    L.append("| change | wall time | fit reused | exit code | run total (manifest) |")
    L.append("| --- | ---: | --- | ---: | ---: |")
    for r in res["rerun"]:
        tot = (r.get("timings") or {}).get("total")
        L.append(f"| `--set {' '.join(r['change'])}` | {_f(r['wall_seconds'])} s | {r.get('fit_reused')} | "
                 f"{r['exit_code']} | {_f(tot)} s |")
    L.append("")
    if res.get("skipped"):
        L.append("Skipped: " + "; ".join(f"{s['what']} ({s['why']})" for s in res["skipped"]))
        L.append("")
    L.append("## Observations (computed from this run's results)")
    L.append("")
    for note in observations(res):
        L.append(f"* {note}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + "\n")
    print(f"wrote {path}", flush=True)


# =============================================================================== main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only (a few minutes)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                    help="seconds; Bambi sizes predicted to take longer are skipped (default %(default)s)")
    ap.add_argument("--no-pymc", action="store_true", help="skip the Bambi + PyMC-NUTS variant")
    ap.add_argument("--report", type=Path, default=None,
                    help="markdown output (default docs/benchmarks.md, or benchmarks/out/benchmarks-quick.md "
                         "with --quick)")
    ap.add_argument("--report-only", action="store_true", help="re-write the markdown from the saved JSON")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        child_main(args.case)
        return
    report = args.report or (OUT / "benchmarks-quick.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    if args.report_only:
        res = json.loads((OUT / ("results-quick.json" if args.quick else "results.json")).read_text())
    else:
        res = orchestrate(args)
    write_report(res, report)


if __name__ == "__main__":
    main()
