#!/usr/bin/env python
"""The geometry levers of issue 11 on the MRP primer: one fit per call, printed as one line.

    .venv/bin/python benchmarks/geometry_primer.py MODE SEED ADAPT [CHAINS DRAWS TUNE]

MODE is how the seven group intercepts are built:

- ``shipped``: as mrp-formula builds them (``model.plan``: centred, partial or non-centred);
- ``binary``: centred from ``INFORMATION_CENTRED`` on, non-centred below (the choice before the
  partial form), which every mode below starts from;
- ``zsn_c``: sum-to-zero effects (PyMC's ``ZeroSumNormal``), centred where the binary choice
  centres, non-centred elsewhere; ``zsn_all_c``: every term centred sum-to-zero;
  ``zsn_all_nc``: every term non-centred sum-to-zero;
- ``c:TERM,TERM``: the binary choice with these terms centred as well (e.g. ``c:1|age:edu``);
- ``p:TERM=W,TERM=W``: the binary choice with these terms partially non-centred (Papaspiliopoulos,
  Roberts & Skold 2007): ``offset ~ N(0, sigma**W)``, effects ``sigma**(1 - W) * offset``; W = 1 is
  centred, W = 0 non-centred (e.g. ``p:1|region=0.5``);
- ``pw:I0``: every term partially non-centred with W = I / (I + I0), I its median information per
  level (``model.plan.information``): the Gaussian optimum I s^2 / (1 + I s^2) of that paper with
  the effects' sd s taken as 1 / sqrt(I0).

ADAPT is nutpie's mass matrix: ``diag`` or ``low_rank``. SEED goes to ``nutpie.sample`` as it is
(``mrp run`` derives nutpie's seed from ``fit.seed`` through PyMC, so the same number is not the
same chains). The line gives the sampling seconds, gradient evaluations (all, and while tuning),
leapfrog steps per draw, divergences, the largest R-hat, the three smallest bulk ESS of the
parameters and the smallest per 1,000 gradient evaluations. Set CORES to limit nutpie's threads,
TARGET for another target_accept than 0.95, BACKEND for PyTensor's JAX backend (``jax`` with JAX's
own gradient, ``jax/pytensor`` with PyTensor's; where JAX is installed), DATA for the data as inputs
of the compiled function rather than constants (``inputs``, or ``inputs_static`` keeping their
shapes), SAMPLER for nutpie's other sampler (``mclmc``), NUTS to a JSON object of further settings of
``nutpie.sample`` (e.g. ``{"trajectory_kind": "Microcanonical"}``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRIMER = Path(__file__).resolve().parents[1] / "examples" / "mrp_primer" / "primer.toml"


def main(argv: list[str]) -> None:
    mode, seed, adapt = argv[0], int(argv[1]), argv[2]
    chains, draws, tune = (int(x) for x in (argv[3:6] if len(argv) > 3 else (4, 1000, 1000)))
    print(fit(mode, seed, adapt, chains, draws, tune)[1], flush=True)


def fit(mode: str, seed: int, adapt: str, chains: int, draws: int, tune: int):
    """(posterior dataset, the line) of one fit of the primer built as ``mode`` says."""
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    import arviz as az
    import nutpie
    import pymc as pm
    import pytensor
    from bambi.backend import model_components
    from bambi.backend.terms import GroupSpecificTerm

    from mrp_formula import steps
    from mrp_formula.model import sampler
    from mrp_formula.model.plan import INFORMATION_CENTRED, information

    plan = steps.plan(PRIMER)
    fp = plan.fit_plan
    by_term = information(fp.data, plan.info, fp.family, fp.aggregated)
    # every mode but "shipped" starts from the binary rule (centred from INFORMATION_CENTRED on)
    shipped = {t: "centered" if i >= INFORMATION_CENTRED else "noncentered" for t, i in by_term.items()}
    if mode != "shipped":
        fp = replace(fp, parameterization=shipped, centring={})
    if mode.startswith("pw:"):
        i0 = float(mode[3:])
        mode = "p:" + ",".join(f"{t}={i / (i + i0):.3f}" for t, i in by_term.items())
        print(mode, flush=True)

    class Term(GroupSpecificTerm):
        def build(self, spec):
            if mode == "binary":
                return super().build(spec)
            if mode.startswith("c:"):
                centred = self.name in mode[2:].split(",") or shipped[self.name] == "centered"
                self.term.prior.noncentered = not centred
                return super().build(spec)
            name, dims = self.name, list(self.coords)
            if mode.startswith("p:"):
                weights = {k: float(w) for k, w in (kv.split("=") for kv in mode[2:].split(","))}
                if name not in weights:
                    self.term.prior.noncentered = shipped[name] != "centered"
                    return super().build(spec)
                w = weights[name]
                sigma = self.build_distribution(self.term.prior.args["sigma"], label=f"{name}_sigma")
                offset = pm.Normal(f"{name}_offset", mu=0.0, sigma=sigma ** w, dims=dims)
                return pm.Deterministic(name, offset * sigma ** (1.0 - w), dims=dims)
            sigma = self.build_distribution(self.term.prior.args["sigma"], label=f"{name}_sigma")
            centred = {"zsn_all_c": True, "zsn_all_nc": False}.get(mode, shipped[name] == "centered")
            if centred:
                return pm.ZeroSumNormal(name, sigma=sigma, dims=dims)
            offset = pm.ZeroSumNormal(f"{name}_offset", sigma=1.0, dims=dims)
            return pm.Deterministic(name, offset * sigma, dims=dims)

    base = model_components.GroupSpecificTerm
    if mode != "shipped":  # mrp-formula's own build otherwise
        model_components.GroupSpecificTerm = Term
    try:
        model = sampler.build_model(plan.loaded, plan.info, fp)
        model.build()
    finally:
        model_components.GroupSpecificTerm = base
    if os.environ.get("DATA"):  # "inputs" or "inputs_static": the data as inputs of the graph, not constants
        _data_as_inputs(model.backend.model, static=os.environ["DATA"] == "inputs_static")
    backend = os.environ.get("BACKEND", "numba")  # "jax" or "jax/pytensor": PyTensor's JAX backend
    with pytensor.config.change_flags(numba__fastmath=False):
        compiled = nutpie.compile_pymc_model(model.backend.model, backend=backend.split("/")[0],
                                             gradient_backend=(backend.split("/") + ["jax"])[1]
                                             if backend.startswith("jax") else "pytensor")
    kwargs = {"adaptation": "low_rank"} if adapt == "low_rank" else {}
    if os.environ.get("CORES"):
        kwargs["cores"] = int(os.environ["CORES"])
    _with_settings(json.loads(os.environ.get("NUTS", "{}")))  # e.g. NUTS='{"trajectory_kind": "Microcanonical"}'
    target = float(os.environ.get("TARGET", "0.95"))
    t0 = time.perf_counter()
    if os.environ.get("SAMPLER"):  # "mclmc": nutpie's microcanonical Langevin sampler
        kwargs["sampler"] = os.environ["SAMPLER"]
    tr = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed, target_accept=target,
                       progress_bar=False, **kwargs)
    seconds = time.perf_counter() - t0
    post = tr["posterior"].to_dataset()
    stats, warm = tr["sample_stats"].to_dataset(), tr["warmup_sample_stats"].to_dataset()
    tuning = int(warm["n_steps"].sum())
    grads = int(stats["n_steps"].sum()) + tuning
    names = [v for v in post.data_vars if not v.endswith("_offset") and "__obs__" not in post[v].dims]
    ess, rhat = az.ess(post[names], method="bulk"), az.rhat(post[names])
    worst = sorted((float(ess[v].min()), v) for v in names)[:3]
    return post, (f"{mode} seed={seed} {adapt} {chains}x{draws} tune={tune}: sampling {seconds:.1f} s, {grads} gradients "
          f"({tuning} tuning), {int(stats['n_steps'].sum()) / (chains * draws):.1f} steps/draw, "
          f"{int(stats['diverging'].sum())} divergences, max R-hat {max(float(rhat[v].max()) for v in names):.3f}, "
          f"smallest ESS {', '.join(f'{v} {e:.0f}' for e, v in worst)}, "
          f"{worst[0][0] / grads * 1000:.2f} per 1,000 gradients")


def _data_as_inputs(model, static: bool) -> None:
    """Make the model's log density take its data (every constant of 50 or more values: the cells'
    index vectors, design columns, successes and trials) as shared variables, which nutpie passes
    to the compiled function at each call, instead of constants compiled into it: what a compile
    cache keyed by the model's structure alone would need. ``static`` keeps their shapes in the
    graph (a new sample would need the same number of cells)."""
    import numpy as np
    import pytensor
    from pytensor.graph.basic import Constant, ancestors
    from pytensor.graph.replace import graph_replace

    logp = model.logp

    def with_inputs(*args, **kwargs):
        out = logp(*args, **kwargs)
        data = [v for v in ancestors([out]) if isinstance(v, Constant) and getattr(v.data, "size", 0) >= 50]
        print(f"{len(data)} constants made inputs: " + ", ".join(f"{c.data.dtype}{c.data.shape}" for c in data),
              flush=True)
        return graph_replace(out, {c: pytensor.shared(np.asarray(c.data), shape=c.data.shape if static
                                                      else (None,) * c.ndim) for c in data}, strict=False)

    model.logp = with_inputs


def _merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra``'s values put in, nested dictionaries merged key by key."""
    return {k: _merged(v, extra[k]) if isinstance(v, dict) and isinstance(extra.get(k), dict) else extra.get(k, v)
            for k, v in base.items()} | {k: v for k, v in extra.items() if k not in base}


def _with_settings(extra: dict) -> None:
    """Make ``nutpie.sample`` start from NUTS settings with ``extra`` set (settings that its keywords
    do not reach, such as ``trajectory_kind``)."""
    import types

    if not extra:
        return
    ns = sys.modules["nutpie.sample"]  # the module (``nutpie.sample`` the attribute is the function)
    lib = ns._lib

    def made(make):
        def settings(seed):
            s = make(seed)
            s.update_settings(_merged(s.as_dict()["settings"], extra))
            return s
        return settings

    kinds = types.SimpleNamespace(LowRank=made(lib.PyNutsSettings.LowRank), Diag=made(lib.PyNutsSettings.Diag),
                                  Flow=lib.PyNutsSettings.Flow)
    ns._lib = types.SimpleNamespace(**{n: getattr(lib, n) for n in dir(lib) if not n.startswith("__")})
    ns._lib.PyNutsSettings = kinds


if __name__ == "__main__":
    main(sys.argv[1:])
