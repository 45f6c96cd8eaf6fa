"""A spec's model and its posterior, the way ``pipeline.run`` gets them: the prepared plan, then
the posterior from the fit cache when the model part of the spec and the fitted data are
unchanged, else sampled (and stored in the cache); the Bambi model is built only to sample.

Commands other than ``run`` that need fitted specs (``mrp compare``) call these instead of
repeating the steps; ``pipeline.run`` could delegate to them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class Fitted:
    """A posterior and where it came from."""

    fit: object  # model.Fit
    key: str  # the fit-cache key
    reused: bool  # True when it came from the cache
    note: str  # the cache's message ("" when nothing worth saying)


def prepared_plan(path, overrides=()):
    """The checked spec with its prepared tables and fit plan (``pipeline.Plan``)."""
    from mrp_formula.model import sampler as model_mod
    from mrp_formula.pipeline import Plan, _spec_checks
    from mrp_formula.spec.tree import load_spec
    from mrp_formula.data.tables import prepare

    loaded = load_spec(path, tuple(overrides))
    info = _spec_checks(loaded)
    tables = prepare(loaded, info)
    fit_plan = model_mod.plan_fit(loaded, info, tables)
    return Plan(loaded=loaded, info=info, tables=tables, fit_plan=fit_plan)


def plan_and_model(path, overrides=()):
    """The prepared plan and the Bambi model."""
    from mrp_formula.model import sampler as model_mod

    plan = prepared_plan(path, overrides)
    return plan, model_mod.build_model(plan.loaded, plan.info, plan.fit_plan)


def fit_or_reuse(plan, bmodel, cache_roots: Sequence[Path], *, refit: bool = False, cache: bool = True,
                 progress: bool = False) -> Fitted:
    """The posterior of ``plan``: from the first cache in ``cache_roots`` that holds a matching fit,
    else sampled and stored in ``cache_roots[0]``. ``refit`` samples anyway; ``cache=False``
    neither reads nor writes the cache. ``bmodel`` (the Bambi model) is built here when it is
    None and a fit is needed, so a cached run never imports Bambi or PyMC."""
    from mrp_formula.model import sampler as model_mod
    from mrp_formula.model.cache import FitCache, fit_key

    key = fit_key(plan, model_mod.versions())
    caches = [FitCache(Path(r)) for r in dict.fromkeys(Path(r) for r in cache_roots)]
    why = ""  # why a cached entry was not used, when there was one
    if cache and not refit:
        for fc in caches:
            posterior, note = fc.load(key)
            if posterior is not None:
                fit = model_mod.Fit(posterior=posterior, seconds=0.0, sampler=plan.loaded.spec.fit.sampler)
                return Fitted(fit=fit, key=key, reused=True, note=note)
            if note != "no cached fit" and not why:
                why = note
    if bmodel is None:
        bmodel = model_mod.build_model(plan.loaded, plan.info, plan.fit_plan)
    fit = model_mod.fit(bmodel, plan.loaded, mass_matrix=plan.fit_plan.mass_matrix, progress=progress)
    if cache and caches:
        caches[0].store(key, fit.posterior, fit.seconds)
    return Fitted(fit=fit, key=key, reused=False, note=why)
