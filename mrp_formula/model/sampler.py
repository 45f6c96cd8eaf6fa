"""Builds the Bambi model of a fit plan and samples it: the only module that imports bambi and
pymc. Predicting from the posterior is :mod:`mrp_formula.predict`'s, which needs neither."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings

import numpy as np
import pandas as pd

from mrp_formula.errors import FitError, Problem, SpecError
from mrp_formula.spec.formula import FormulaInfo, call_in_namespace
from mrp_formula.spec.tree import LoadedSpec

from mrp_formula.model.plan import (  # noqa: F401 (Fit, versions: as before the split)
    AUXILIARY, Fit, FitPlan, SUCCESSES, TRIALS, Dist, versions,
)

log = logging.getLogger("mrp_formula")



def _bmb_prior(prior: Dist, noncentered: bool | None = None, **extra):
    import bambi as bmb

    params = {k: (_bmb_prior(v) if isinstance(v, Dist) else np.asarray(v, dtype=float) if isinstance(v, tuple) else v)
              for k, v in prior.params}
    if noncentered is not None:
        params["noncentered"] = noncentered
    return bmb.Prior(prior.name, **params, **extra)


def bambi_priors(plan: FitPlan) -> dict:
    """The plan's priors as Bambi's ``priors`` argument: every term and family parameter."""
    priors = {}
    for tp in plan.priors:
        extra = {}
        if tp.role == "group":
            extra["noncentered"] = plan.parameterization.get(tp.term) == "noncentered"
        if tp.term == "threshold" and tp.source == "default":
            import pymc as pm

            extra["transform"] = pm.distributions.transforms.ordered
        priors[tp.term] = _bmb_prior(tp.prior, **extra)
    return priors


def build_model(loaded: LoadedSpec, info: FormulaInfo, plan: FitPlan):
    """The Bambi model with the plan's priors (all of them explicit: Bambi scales nothing)."""
    import bambi as bmb

    spec = loaded.spec.model
    priors = bambi_priors(plan)
    # Bambi refuses a group prior without a hyperprior, but N(0, sd) effects with a fixed sd are a
    # legal model: build with a placeholder, then set the fixed prior on the term itself.
    fixed = {tp.term: priors[tp.term] for tp in plan.priors if tp.role == "group"
             and not any(isinstance(v, Dist) for _, v in tp.prior.params)}
    for name in fixed:
        priors[name] = bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfNormal", sigma=1.0))
    try:
        with warnings.catch_warnings(), _quiet_loggers():
            warnings.simplefilter("ignore")
            # Bambi evaluates the formula in its caller's frame: call it from one holding only the allowlist
            model = call_in_namespace(bmb.Model, plan.formula, plan.data, family=plan.family, priors=priors,
                                      link=spec.link, dropna=False, auto_scale=False)
            terms = model.parameters[model.family.likelihood.parent].group_specific_terms
            for name, prior in fixed.items():
                terms[name]._prior = prior  # the setter would refuse it (see above)
            return model
    except Exception as exc:
        raise SpecError(Problem(f"Bambi cannot build this model: {exc}", key="model", file=str(loaded.path),
                                line=loaded.line("model"),
                                hint="check the formula, family, link and priors")) from None


@contextlib.contextmanager
def _quiet_loggers():
    saved = {}
    for name in ("pymc", "bambi", "pytensor"):
        lg = logging.getLogger(name)
        saved[name] = (lg.level, list(lg.handlers))
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, (level, _) in saved.items():
            logging.getLogger(name).setLevel(level)


# ----------------------------------------------------------------------------- frozen priors (mrp recover --truth prior)

IMPROPER = ("Flat", "HalfFlat")


def frozen_priors(model) -> dict:
    """Every prior of a Bambi model as resolved on its data, as copies that Bambi will not rescale.

    Bambi scales its default priors to the data (the intercept and slopes of a gaussian model
    to the outcome's mean and sd, the gaussian sigma to the outcome's sd, ...), and whatever
    :func:`build_model` gives a group term by default may do so too. Simulation-based calibration
    needs one fixed prior for the truths and every refit: these copies, handed to
    :func:`set_frozen_priors` of a model of other outcomes, give it exactly these priors.
    Keys are Bambi's names (``Intercept``, ``x``, ``1|g``, ``sigma``, ``alpha``, ``threshold``);
    the priors of a distributional component other than the parent are a nested dict.
    """
    import copy

    from bambi import Prior

    def frozen(prior):
        prior = copy.deepcopy(prior)
        if isinstance(prior, Prior):
            prior.auto_scale = False
            for v in prior.args.values():
                if isinstance(v, Prior):
                    v.auto_scale = False
        return prior

    parent = model.family.likelihood.parent
    out: dict = {}
    components = model.parameters if hasattr(type(model), "parameters") else model.components
    for cname, comp in components.items():
        terms = getattr(comp, "terms", None)
        if terms is None:  # a constant component: sigma, alpha, threshold
            out[cname] = frozen(comp.prior)
            continue
        priors = {t: frozen(term.prior) for t, term in terms.items() if getattr(term, "prior", None) is not None}
        if cname == parent:
            out.update(priors)
        else:
            out[cname] = priors
    return out


def describe_priors(priors: dict) -> dict[str, str]:
    """``{name: "Normal(mu: 0.0, sigma: 1.5)"}``, nested components as ``component.term``."""
    out = {}
    for name, prior in priors.items():
        if isinstance(prior, dict):
            out.update({f"{name}.{t}": str(p) for t, p in describe_priors(prior).items()})
        else:
            out[name] = " ".join(str(prior).split())
    return out


def improper_priors(priors: dict) -> list[str]:
    """Names whose prior (or a hyperprior of it) is improper, so that it cannot be sampled."""
    from bambi import Prior

    bad = []
    for name, prior in priors.items():
        if isinstance(prior, dict):
            bad += [f"{name}.{t}" for t in improper_priors(prior)]
        elif isinstance(prior, Prior) and (prior.name in IMPROPER or any(
                isinstance(v, Prior) and v.name in IMPROPER for v in prior.args.values())):
            bad.append(name)
    return bad


def set_frozen_priors(model, priors: dict, parameterization: dict[str, str]) -> None:
    """Give ``model`` exactly ``priors`` (from :func:`frozen_priors`), keeping its own
    parameterization of each group term (``FitPlan.parameterization``)."""
    import copy

    from bambi import Prior

    priors = copy.deepcopy(priors)
    for name, prior in priors.items():
        if name in parameterization and isinstance(prior, Prior):
            prior.noncentered = parameterization[name] == "noncentered"
    with warnings.catch_warnings(), _quiet_loggers():
        warnings.simplefilter("ignore")
        model.set_priors(priors=priors)


# ----------------------------------------------------------------------------- fitting
def fit(model, loaded: LoadedSpec, *, mass_matrix: str = "diagonal", progress: bool = False) -> Fit:
    """Sample the posterior; progress and sampler logs go to stderr, never stdout."""
    f = loaded.spec.fit
    start = time.perf_counter()
    # the tuning draws are kept only to count their gradient evaluations (then dropped)
    kwargs = dict(draws=f.draws, tune=f.tune, chains=f.chains, random_seed=f.seed,
                  progressbar=bool(progress and sys.stderr.isatty()), discard_tuned_samples=False)
    cores = _cores(f.chains)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), _quiet_loggers(), _exact_math(), \
                _one_thread_each():
            warnings.simplefilter("ignore")
            if f.sampler == "nutpie" and mass_matrix == "low_rank":
                kwargs["nuts"] = {"low_rank_modified_mass_matrix": True}
            dt = model.fit(inference_method=f.sampler, cores=cores,
                           target_accept=f.target_accept, **kwargs)
            dt = _with_work_counted(dt, seconds=time.perf_counter() - start, cores=cores)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise FitError(Problem(f"the {f.sampler} sampler failed: {type(exc).__name__}: {exc}", key="fit.sampler",
                               file=str(loaded.path), line=loaded.line("fit"),
                               hint="try sampler = \"pymc\", stronger priors, or a simpler model")) from None
    return Fit(posterior=dt, seconds=time.perf_counter() - start, sampler=f.sampler)


WORK_ATTRS = ("mrp_gradients_tuning", "mrp_gradients_draws", "mrp_sampling_seconds", "mrp_fit_seconds",
              "mrp_parallel_chains")


def _with_work_counted(dt, *, seconds: float, cores: int):
    """The posterior without its tuning groups, with the work of the fit in the attributes of its
    ``sample_stats`` (they travel with it into the fit cache and posterior.nc): gradient
    evaluations (leapfrog steps) while tuning and while drawing, summed over chains; the
    sampler's own wall time (without building and compiling) and the whole fit's; the number of
    chains run at once. :func:`mrp_formula.checks.efficiency.efficiency` reads them."""
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
                         "mrp_fit_seconds": float(seconds), "mrp_parallel_chains": int(cores)})
        dt["sample_stats"] = ds
    return dt


@contextlib.contextmanager
def _one_thread_each():
    """One BLAS/OpenMP thread per sampling thread: the chains already fill the cores (more threads
    would only compete for them), and the arithmetic of a gradient does not depend on how many
    threads the machine offers."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@contextlib.contextmanager
def _exact_math():
    """Compile the model's numba code (nutpie) without fastmath. With fastmath, functions loaded
    from PyTensor's compile cache and freshly compiled ones round differently (measured: posterior
    means of the same spec, data and seed differ at 1e-7 between a first run and later ones), so a
    result would depend on the state of the cache. Numba keys its cache by the flag."""
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=False):
        yield


def _cores(chains: int) -> int:
    """Chains run in parallel on the machine's cores (PyMC's default is cpu_count // 2)."""
    from mrp_formula.system import cpu_count

    return max(1, min(chains, cpu_count()))


# ----------------------------------------------------------------------------- prior draws (mrp prior, mrp recover)


def sample_prior(model, *, draws: int, seed: int):
    """Draws of the model's parameters from their priors, shaped like a posterior.

    Returns a DataTree whose ``"posterior"`` group holds the prior draws (one chain, ``draws``
    draws) of every free parameter and deterministic that has no observation dimension, so it
    can be handed to :class:`~mrp_formula.predict.CellPredictor` as if it were a posterior. The response is not
    simulated (it would cost memory for nothing). Priors the spec does not give are Bambi's
    defaults, which Bambi scales to the data.
    """
    import xarray as xr

    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), _quiet_loggers(), _exact_math():
            warnings.simplefilter("ignore")
            if not model.built:
                model.build()
            pm_model = model.backend.model
            observed = {v.name for v in pm_model.observed_RVs}
            names = []
            for v in pm_model.unobserved_RVs:
                name = v.name
                dims = pm_model.named_vars_to_dims.get(name) or ()
                if name in observed or name.endswith("_offset") or "__obs__" in dims:
                    continue
                names.append(name)
            dt = model.prior_predictive(draws=int(draws), var_names=names, random_seed=int(seed))
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise FitError(Problem(f"cannot sample the prior: {type(exc).__name__}: {exc}", key="model.priors",
                               hint="check the priors of the model")) from None
    prior = _uncenter_intercept(model, dt["prior"].to_dataset())
    return xr.DataTree.from_dict({"posterior": prior})


def _uncenter_intercept(model, draws):
    """The intercept of the uncentred predictors, as Bambi reports it for a posterior.

    Bambi samples the intercept of mean-centred common predictors and shifts it back only in
    ``fit`` (``backend._clean_results``); prior draws come out still centred, and handed to
    :class:`~mrp_formula.predict.CellPredictor` (which uses the raw design) they would imply other rates than the
    model. The same shift is applied here: ``Intercept - mean(X) @ coefficients``.
    """
    from bambi.utils import get_aliased_name

    if not getattr(model, "center_predictors", False):
        return draws
    draws = draws.copy()
    resp_dims = tuple(model.response_term.coords) if model.response_term.coords else ()
    for component in model.backend.distributional_components.values():
        comp = component.component
        X = component.design_matrix_without_intercept
        if not comp.intercept_term or not comp.common_terms or X is None:
            continue
        name = get_aliased_name(comp.intercept_term)
        dims = ("chain", "draw") + tuple(d for d in resp_dims if d in draws[name].dims)
        stacked = draws.stack(samples=dims)
        coefs = np.vstack([np.atleast_2d(stacked[get_aliased_name(t)].values) for t in comp.common_terms.values()])
        shift = np.asarray(X, dtype=float).mean(0) @ coefs
        shape = tuple(draws.sizes[d] for d in dims)
        draws[name] = draws[name].transpose(*dims) - shift.reshape(shape)
    return draws


# ----------------------------------------------------------------------------- log-likelihood (mrp compare)


def pointwise_log_likelihood(model, posterior, data: pd.DataFrame | None = None):
    """Log-likelihood of every fitted row (or binomial cell, when the fit is aggregated) per draw.

    Returns an ``xarray.DataArray`` with dims (chain, draw, __obs__), in the order of the data
    handed to Bambi (``FitPlan.data``), or of ``data`` (rows of it, e.g. its distinct rows, with
    the response) when given; ``posterior`` is left as it was. On aggregated cells the values are
    binomial log-probabilities of whole cells, not of rows.
    """
    if data is not None:
        data = data.reset_index(drop=True)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), _quiet_loggers(), _exact_math():
            warnings.simplefilter("ignore")
            dt = model.compute_log_likelihood(posterior, data=data, inplace=False)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise FitError(Problem(f"cannot compute the pointwise log-likelihood: {type(exc).__name__}: {exc}",
                               key="model", hint="the model comparison needs it; please report this")) from None
    ds = dt["log_likelihood"].to_dataset()
    name = next(iter(ds.data_vars))
    da = ds[name]
    extra = [d for d in da.dims if d not in ("chain", "draw", "__obs__")]
    if extra:  # one value per observation: a multivariate response sums over its components
        da = da.sum(extra)
    return da.transpose("chain", "draw", "__obs__")
