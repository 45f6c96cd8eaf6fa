"""How much work the fit took for what it gave: effective draws per second and per gradient
evaluation, leapfrog steps per draw, time per gradient. Pure, over the posterior DataTree (the
counts the sampler module put in ``sample_stats``' attributes) and the run's diagnostics.
"""

from __future__ import annotations

import math

import numpy as np


def _num(v) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def efficiency(dt, min_ess_parameters: float, min_ess_estimands: float) -> dict:
    """The ``efficiency`` block of the manifest (every value null when the posterior does not
    carry the counts, e.g. a fit cached by an older version).

    - ``gradient_evaluations``: leapfrog steps of every chain, tuning and drawing (each is one
      evaluation of the log density and its gradient);
    - ``leapfrog_steps_per_draw``: mean over the kept draws;
    - ``seconds_per_gradient``: the sampler's wall time (building and compiling excluded) times
      the chains run at once, over the gradient evaluations: the cost of one evaluation on one core;
    - ``ess_per_second`` / ``ess_per_1000_gradients``: the smallest bulk ESS of the parameters and
      of the estimands over the whole fit's wall time (building and compiling included) and per
      thousand gradient evaluations;
    - ``compile_cache``: what became of the sampler's compiled functions: ``loaded`` from the
      compile cache, ``compiled`` (and stored for the next fit of the same model), or
      ``not cached: <why>`` (null: not nutpie, or a fit cached by an earlier version);
    - ``model_reuse``: ``reused`` (sampled from the model's recipe, without Bambi and PyMC:
      :mod:`mrp_formula.model.reuse`), ``recorded`` (this fit wrote the recipe the next fit of
      the model reuses), ``not recorded: <why>``, or null (no fit cache, not nutpie).
    """
    stats = dt["sample_stats"] if "sample_stats" in dt.children else None
    attrs = dict(stats.attrs) if stats is not None else {}
    tuning, drawing = attrs.get("mrp_gradients_tuning", -1), attrs.get("mrp_gradients_draws", -1)
    sampling, fit_s = attrs.get("mrp_sampling_seconds", -1.0), attrs.get("mrp_fit_seconds", -1.0)
    parallel = attrs.get("mrp_parallel_chains", 0)
    steps_per_draw = None
    if stats is not None and "n_steps" in stats.data_vars:
        steps_per_draw = float(np.asarray(stats["n_steps"].values, dtype=float).mean())
    known = tuning >= 0 and drawing >= 0
    grads = int(tuning + drawing) if known else None
    chains = dt["posterior"].to_dataset().sizes.get("chain", 1)
    per_grad = (sampling * min(parallel, chains) / grads if known and grads and sampling > 0 and parallel > 0
                else None)
    out = {"gradient_evaluations": grads, "gradient_evaluations_tuning": int(tuning) if known else None,
           "leapfrog_steps_per_draw": _num(steps_per_draw), "sampling_seconds": _num(sampling) if sampling > 0 else None,
           "fit_seconds": _num(fit_s) if fit_s > 0 else None, "parallel_chains": int(parallel) if parallel else None,
           "seconds_per_gradient": _num(per_grad), "compile_cache": attrs.get("mrp_compile_cache") or None,
           "model_reuse": attrs.get("mrp_model_reuse") or None}
    for key, ess in (("parameters", min_ess_parameters), ("estimands", min_ess_estimands)):
        ok = ess is not None and math.isfinite(ess)
        out[f"ess_per_second_{key}"] = _num(ess / fit_s) if ok and fit_s > 0 else None
        out[f"ess_per_1000_gradients_{key}"] = _num(1000 * ess / grads) if ok and grads else None
    return out


def summary_line(eff: dict) -> str:
    """One sentence for the terminal and the report ("" when nothing is known)."""
    if eff.get("gradient_evaluations") is None:
        return ""
    parts = [f"{eff['gradient_evaluations']:,} gradient evaluations"]
    if eff.get("leapfrog_steps_per_draw") is not None:
        parts.append(f"{eff['leapfrog_steps_per_draw']:.1f} leapfrog steps per draw")
    if eff.get("seconds_per_gradient") is not None:
        parts.append(f"{eff['seconds_per_gradient'] * 1e6:.0f} us per gradient")
    for key in ("parameters", "estimands"):
        s, g = eff.get(f"ess_per_second_{key}"), eff.get(f"ess_per_1000_gradients_{key}")
        if s is not None:
            parts.append(f"min ESS of the {key} {s:.0f}/s ({g:.2f} per 1,000 gradients)")
    return "fit efficiency: " + ", ".join(parts)
