"""Running nutpie: the settings of a fit, the seed, the sampler's run and the work it did. One
place, used by a fit through Bambi (:mod:`mrp_formula.model.sampler`) and by a fit of a reused
model (:mod:`mrp_formula.model.reuse`), so that both hand nutpie the same arguments and count the
same work. Imports neither Bambi nor PyMC, and nutpie only without ArviZ (:func:`import_nutpie`)."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import time
import types

import numpy as np

def import_nutpie():
    """``nutpie``, imported without importing ArviZ.

    nutpie's sampling module imports ArviZ at its top (2-3 s: arviz-plots brings matplotlib's
    pyplot) to turn a finished trace into a DataTree; the raw trace (``return_raw_trace``) needs
    none of it. While nutpie is imported, ``arviz`` is a placeholder whose attributes import the
    real ArviZ on first use, so nutpie's conversion still works whenever it is called; the
    placeholder is then taken out of ``sys.modules``, and the next ``import arviz`` is the real one.
    """
    if "nutpie" in sys.modules or "arviz" in sys.modules:
        import nutpie

        return nutpie
    placeholder = types.ModuleType("arviz")

    def real(name):
        return getattr(importlib.import_module("arviz"), name)

    placeholder.__getattr__ = real
    sys.modules["arviz"] = placeholder
    try:
        import nutpie
    finally:
        if sys.modules.get("arviz") is placeholder:
            del sys.modules["arviz"]
    return nutpie


def chain_seed(seed: int, chains: int) -> int:
    """The seed nutpie takes: ``pm.sample``'s for the first chain (one generator per chain spawned
    from the spec's seed; ``pymc.util.get_random_generator`` of an int is ``default_rng``)."""
    return int(np.random.default_rng(seed).spawn(chains)[0].integers(2**30))


def sample_kwargs(f, *, cores: int, mass_matrix: str, callback) -> dict:
    """``nutpie.sample``'s arguments for the spec's ``[fit]``: warm-up kept (its leapfrog steps
    are counted, then it is dropped), the raw trace returned (no ArviZ)."""
    kwargs = dict(draws=f.draws, tune=max(f.tune, 1), chains=f.chains, cores=cores, seed=chain_seed(f.seed, f.chains),
                  save_warmup=True, store_unconstrained=False, progress_bar=False, progress_callback=callback,
                  target_accept=f.target_accept, blocking=False, return_raw_trace=True)
    if mass_matrix == "low_rank":
        kwargs["adaptation"] = "low_rank"
    return kwargs


class Trace:
    """nutpie's raw trace, readable more than once (nutpie's hands its arrow batches out once)."""

    def __init__(self, raw):
        self._batches = raw.get_arrow_trace()

    def get_arrow_trace(self):
        return self._batches

    def is_zarr(self) -> bool:
        return False

    def is_arrow(self) -> bool:
        return True


def run(nutpie, compiled, kwargs: dict):
    """Sample: ``(Trace, the sampler, seconds)``. An interrupt or an error cancels the sampler and
    is raised: what the chains drew so far is not the fit the spec asks for (``nutpie.sample``
    would return it, and a run would summarise and cache it as if it were)."""
    start = time.time()
    sampler = nutpie.sample(compiled, **kwargs)
    try:
        raw = sampler.wait()
    except BaseException:
        sampler.cancel()
        raise
    return Trace(raw), sampler, time.time() - start


def settings_json(sampler) -> str | None:
    """The sampler's settings as nutpie writes them into ``sample_stats``' attributes."""
    settings = getattr(sampler, "_settings", None)
    return json.dumps(settings.as_dict()) if settings is not None else None


def cores(chains: int) -> int:
    """Chains run in parallel on the machine's cores (PyMC's default is cpu_count // 2)."""
    from mrp_formula.system import cpu_count

    return max(1, min(chains, cpu_count()))


@contextlib.contextmanager
def one_thread_each():
    """One BLAS/OpenMP thread per sampling thread: the chains already fill the cores (more threads
    would only compete for them), and the arithmetic of a gradient does not depend on how many
    threads the machine offers."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def forward_progress(on_progress):
    """nutpie's ``progress_callback`` that hands each snapshot of the chains to ``on_progress`` as
    :class:`mrp_formula.progress.ChainState`; an error in the display is swallowed: progress never
    costs a fit."""
    from mrp_formula.progress import ChainState

    def update(chain_progresses) -> None:
        try:
            on_progress(tuple(ChainState(chain=i, finished=int(cp.finished_draws), total=int(cp.total_draws),
                                         divergences=int(cp.divergences), tuning=bool(cp.tuning),
                                         started=bool(cp.started))
                              for i, cp in enumerate(chain_progresses)))
        except Exception:  # noqa: BLE001 - a display, never the fit
            pass

    return update


def with_work_counted(dt, *, seconds: float, cores: int, compile_cache: str = "", model_reuse: str = ""):
    """The posterior without its tuning groups, with the work of the fit in the attributes of its
    ``sample_stats`` (they travel with it into the fit cache and posterior.nc): gradient
    evaluations (leapfrog steps) while tuning and while drawing, summed over chains; the
    sampler's own wall time (without building and compiling) and the whole fit's; the number of
    chains run at once; what the compile cache did (:mod:`mrp_formula.model.compiled`) and what
    became of the model's recipe (:mod:`mrp_formula.model.reuse`).
    :func:`mrp_formula.checks.efficiency.efficiency` reads them."""
    def steps(group: str) -> int:
        if group not in dt.children or "n_steps" not in dt[group].data_vars:
            return -1
        return int(np.asarray(dt[group]["n_steps"].values, dtype=np.int64).sum())

    tuning, drawing = steps("warmup_sample_stats"), steps("sample_stats")
    sampling = dt["posterior"].attrs.get("sampling_time")
    for group in [g for g in dt.children if g.startswith("warmup_")]:
        del dt[group]
    if "sample_stats" in dt.children:
        ds = dt["sample_stats"].to_dataset()
        ds.attrs.update({"mrp_gradients_tuning": tuning, "mrp_gradients_draws": drawing,
                         "mrp_sampling_seconds": float(sampling) if sampling is not None else -1.0,
                         "mrp_fit_seconds": float(seconds), "mrp_parallel_chains": int(cores),
                         "mrp_compile_cache": compile_cache, "mrp_model_reuse": model_reuse})
        dt["sample_stats"] = ds
    return dt
