"""The real-MRP cases (benchmarks/bench_mrp.py), each run in a fresh interpreter by
``measure.run_case`` like those of ``cases.py``: the MRP primer through mrp-formula and through
plain Bambi on the same aggregated cells, a refit of a small A/B spec against Bambi + nutpie on
the same cells, the cost of one gradient against a hand-fused reference, and a CCES-scale
simulated MRP.
"""

from __future__ import annotations

import time

from benchmarks.measure import cpu_seconds, estimand_ess, posterior_diagnostics, vm_hwm_mb


def _quiet() -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("pymc", "bambi", "pytensor", "arviz", "nutpie"):
        logging.getLogger(name).setLevel(logging.ERROR)


def case_mrp_spec(p: dict) -> dict:
    """``mrp_formula.run(spec, refit=True)``: end to end from interpreter start, the run's timings,
    diagnostics and efficiency, peak memory after each step, and the estimates of ``by``."""
    t_import = time.time()
    _quiet()
    import mrp_formula
    from mrp_formula import steps

    imported = time.time()
    peaks = {"import": vm_hwm_mb()}
    real_posterior = steps.posterior

    def posterior(*args, **kwargs):  # peak memory of the fit step
        peaks["prepare"] = vm_hwm_mb()
        out = real_posterior(*args, **kwargs)
        peaks["fit"] = vm_hwm_mb()
        return out

    steps.posterior = posterior
    import mrp_formula.commands.run as run_mod

    run_mod.posterior = posterior
    res = mrp_formula.run(p["spec"], out=p["run_dir"], refit=True, overrides=tuple(p.get("overrides", ())))
    done = time.time()
    peaks["end"] = vm_hwm_mb()
    m = res.manifest
    est = res.estimands
    out = {"e2e_seconds": done - p["t_launch"], "import_seconds": imported - t_import,
           "timings": m["timings_seconds"], "diagnostics": {k: v for k, v in m["diagnostics"].items()
                                                            if k != "worst_parameters"},
           "efficiency": m.get("efficiency"), "parameterization": m["model"]["parameterization"],
           "mass_matrix": m["sampler"].get("mass_matrix"), "cells_fitted": m["model"]["cells_fitted"],
           "rows": m["model"]["rows_in"], "peak_rss_mb_by_step": peaks}
    by = p.get("by")
    if by:
        rows = est[est["estimand"] == p["estimand"]]
        out["estimates"] = {str(k): [float(a), float(s), float(e)] for k, a, s, e in
                            zip(rows[by], rows["mean"], rows["sd"], rows["ess_bulk"])}
    out.update({f"min_ess_param_{k}": v for k, v in posterior_diagnostics(res.posterior).items()
                if k in ("min_ess_bulk", "min_ess_param")})
    return out


def case_bambi_cells(p: dict) -> dict:
    """Plain Bambi by hand on aggregated cells (a parquet file written beforehand): Bambi's default
    priors, ``model.fit`` with the given sampler, then the population-weighted mean of ``by``."""
    t_import = time.time()
    _quiet()
    import bambi as bmb
    import numpy as np
    import pandas as pd

    imported = time.time()
    peaks = {"import": vm_hwm_mb()}
    cells = pd.read_parquet(p["cells"])
    for c in p.get("categorical", []):
        cells[c] = cells[c].astype(str)
    model = bmb.Model(p["formula"], cells, family="binomial")
    built = time.time()
    c0 = cpu_seconds()
    idata = model.fit(inference_method=p["sampler"], draws=p["draws"], tune=p["tune"], chains=p["chains"],
                      target_accept=p["target_accept"], random_seed=p.get("seed", 1), progressbar=False,
                      cores=min(p["chains"], 2))
    fitted = time.time()
    fit_cpu = cpu_seconds() - c0
    peaks["fit"] = vm_hwm_mb()
    out = {"import_seconds": imported - t_import, "build_seconds": built - imported, "fit_seconds": fitted - built,
           "fit_cpu_seconds": fit_cpu, "cells": len(cells)}
    if p.get("population"):
        pop = pd.read_parquet(p["population"])
        for c in p.get("categorical", []):
            pop[c] = pop[c].astype(str)
        w = pop[p["weight"]].to_numpy(dtype=float)
        pr = _predict_in_chunks(model, idata, pop, p.get("predict_draws", 100))
        by = pop[p["by"]].to_numpy() if p.get("by") else np.zeros(len(pop))
        arrays = {}
        for level in pd.unique(by):
            sel = by == level
            arrays[str(level)] = (pr[..., sel] * w[sel]).sum(-1) / w[sel].sum()
        out["estimates"] = {k: [float(v.mean()), float(v.std())] for k, v in arrays.items()}
        out.update(estimand_ess(arrays))
        del out["estimand_ess"]
    done = time.time()
    peaks["end"] = vm_hwm_mb()
    out["poststratify_seconds"] = done - fitted
    out["e2e_seconds"] = done - p["t_launch"]
    out["peak_rss_mb_by_step"] = peaks
    diag = posterior_diagnostics(idata)
    out.update({k: diag[k] for k in ("min_ess_bulk", "min_ess_param", "divergences", "mean_steps_per_draw")})
    return out


def _predict_in_chunks(model, idata, pop, draws_per_chunk: int):
    """(chain, draw, cell) probabilities of the population's cells, predicted ``draws_per_chunk``
    draws at a time: at CCES scale (4,000 draws x 12,000 cells) Bambi's ``predict`` in one call
    outgrew the machine's 23 GB and was killed (twice); 100 draws at a time peaked at 4 GB."""
    import numpy as np

    post = idata["posterior"]
    n = post.sizes["draw"]
    parts = []
    for start in range(0, n, draws_per_chunk):
        chunk = idata.copy()
        chunk["posterior"] = post.isel(draw=slice(start, start + draws_per_chunk))
        pred = model.predict(chunk, kind="response_params", data=pop, inplace=False, sample_new_groups=True)
        parts.append(pred["posterior"]["p"].transpose("chain", "draw", "__obs__").to_numpy())
    return np.concatenate(parts, axis=1)


def case_gradient_cost(p: dict) -> dict:
    """Microseconds per log-density-and-gradient evaluation on the primer's cells: the model as
    mrp-formula compiles it (the PyTensor function nutpie calls, numba backend, called from Python: a few us of call overhead included) against the same
    log density written by hand, in numpy and as one fused numba loop."""
    _quiet()
    import numpy as np

    from mrp_formula import steps
    from mrp_formula.model import sampler

    plan = steps.plan(p["spec"])
    model = sampler.build_model(plan.loaded, plan.info, plan.fit_plan)
    model.build()
    import nutpie
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=False):
        compiled = nutpie.compile_pymc_model(model.backend.model)
    point = np.asarray(compiled.initial_point_func(0), dtype=float).ravel()[: compiled.n_dim]
    evals = int(p.get("evals", 3000))
    fn = compiled.logp_func  # PyTensor's compiled logp-and-gradient function (numba), as nutpie calls it
    fn.trust_input = True  # skip the input checks: closer to what the sampler pays per call

    def timeit(f, reps):
        f()
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        return (time.perf_counter() - t0) / reps * 1e6

    model_us = timeit(lambda: fn(point), evals)

    # the hand-written log density: binomial-logit cells, fixed slopes, non-centred group intercepts
    fp = plan.fit_plan
    d = fp.data
    y = d["mrp_successes"].to_numpy(float)
    n = d["mrp_trials"].to_numpy(float)
    X = np.column_stack([np.ones(len(d))] + [d[c].to_numpy(float) for c in p["numeric"]])
    groups = [term.factor_vars for term in plan.info.group_terms]
    idx = []
    for vars_ in groups:
        key = d[list(vars_)].astype(str).agg(":".join, axis=1)
        codes, _ = np.unique(key.to_numpy(), return_inverse=True)
        idx.append(_)
    sizes = np.array([i.max() + 1 for i in idx])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    G = np.column_stack([i + o for i, o in zip(idx, offsets)]).astype(np.int64)  # one gather of all effects
    term_of = np.repeat(np.arange(len(sizes)), sizes)
    k, m, t = X.shape[1], int(sizes.sum()), len(sizes)
    rng = np.random.default_rng(0)
    beta, z, log_tau = rng.normal(0, 0.3, k), rng.normal(0, 1, m), rng.normal(-1, 0.3, t)

    def logp_numpy(beta, z, log_tau):
        tau = np.exp(log_tau)
        u = z * tau[term_of]
        eta = X @ beta + u[G].sum(1)
        mu = 1 / (1 + np.exp(-eta))
        lp = float(np.sum(y * eta - n * np.logaddexp(0, eta)) - 0.5 * z @ z - 0.5 * np.sum(tau ** 2) + log_tau.sum())
        r = y - n * mu
        g_beta = X.T @ r
        g_u = np.bincount(G.ravel(), weights=np.repeat(r, G.shape[1]), minlength=m)
        g_z = g_u * tau[term_of] - z
        g_logtau = np.bincount(term_of, weights=g_u * z, minlength=t) * tau - tau ** 2 + 1
        return lp, g_beta, g_z, g_logtau

    numpy_us = timeit(lambda: logp_numpy(beta, z, log_tau), max(evals // 3, 200))
    out = {"cells": len(d), "parameters": int(compiled.n_dim), "hand_parameters": k + m + t,
           "model_us": model_us, "numpy_us": numpy_us}
    try:
        import numba

        # as tight as scalar code goes: one exp shared by the softplus and the sigmoid, one log1p,
        # scratch arrays made once, one pass over the cells (no SVML: this llvmlite has no
        # vectorised exp and log1p, so the element-wise math is scalar libm calls)
        @numba.njit(cache=False, fastmath=False)
        def logp_fused(beta, z, log_tau, X, G, y, n, term_of, out_g, u, g_u, tau):
            for b in range(tau.size):
                tau[b] = np.exp(log_tau[b])
            for a in range(z.size):
                u[a] = z[a] * tau[term_of[a]]
                g_u[a] = 0.0
            out_g[:] = 0.0
            lp = 0.0
            for i in range(y.size):
                eta = 0.0
                for j in range(X.shape[1]):
                    eta += X[i, j] * beta[j]
                for j in range(G.shape[1]):
                    eta += u[G[i, j]]
                e = np.exp(-abs(eta))
                lp += y[i] * eta - n[i] * (max(eta, 0.0) + np.log1p(e))
                r = y[i] - n[i] * ((1.0 if eta >= 0.0 else e) / (1.0 + e))
                for j in range(X.shape[1]):
                    out_g[j] += X[i, j] * r
                for j in range(G.shape[1]):
                    g_u[G[i, j]] += r
            kk = beta.size
            for a in range(z.size):
                lp -= 0.5 * z[a] * z[a]
                out_g[kk + a] = g_u[a] * tau[term_of[a]] - z[a]
                out_g[kk + z.size + term_of[a]] += g_u[a] * z[a] * tau[term_of[a]]
            for b in range(tau.size):
                lp += -0.5 * tau[b] * tau[b] + log_tau[b]
                out_g[kk + z.size + b] += -tau[b] * tau[b] + 1.0
            return lp

        # the floor of that loop: its element-wise math alone (softplus and sigmoid of every cell)
        @numba.njit(cache=False, fastmath=False)
        def elementwise(eta, y, n, r):
            lp = 0.0
            for i in range(eta.size):
                e = np.exp(-abs(eta[i]))
                lp += y[i] * eta[i] - n[i] * (max(eta[i], 0.0) + np.log1p(e))
                r[i] = y[i] - n[i] * ((1.0 if eta[i] >= 0.0 else e) / (1.0 + e))
            return lp

        grad, scratch = np.zeros(k + m + t), (np.zeros(m), np.zeros(m), np.zeros(t))
        lp = logp_fused(beta, z, log_tau, X, G, y, n, term_of, grad, *scratch)
        ref = logp_numpy(beta, z, log_tau)
        out["fused_matches_numpy"] = bool(np.isclose(lp, ref[0]) and np.allclose(
            grad, np.concatenate([ref[1], ref[2], ref[3]])))
        out["fused_us"] = timeit(lambda: logp_fused(beta, z, log_tau, X, G, y, n, term_of, grad, *scratch), evals)
        eta0, r0 = X @ beta + (z * np.exp(log_tau)[term_of])[G].sum(1), np.zeros(len(y))
        out["elementwise_us"] = timeit(lambda: elementwise(eta0, y, n, r0), evals)
    except ImportError:  # pragma: no cover
        out["fused_us"] = None
    best = min(v for v in (out["numpy_us"], out.get("fused_us")) if v)
    out["model_over_fused"] = out["model_us"] / best
    return out


MRP_CASES = {"mrp_spec": case_mrp_spec, "bambi_cells": case_bambi_cells, "gradient_cost": case_gradient_cost}
