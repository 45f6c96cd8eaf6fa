"""Tables -> model -> posterior. The only module that imports bambi and pymc.

It plans the fit (on unique binomial cells when the family allows it, and the
parameterization of each group term), builds the Bambi model and samples. Predicting from
the posterior is :mod:`mrp_formula.predict`'s, which needs neither Bambi nor PyMC.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mrp_formula.errors import FitError, Problem, SpecError
from mrp_formula.formula import FormulaInfo, with_response
from mrp_formula.predict import TRANSFORMS
from mrp_formula.priors import PriorSpec
from mrp_formula.spec import LoadedSpec
from mrp_formula.tables import Tables, factor_keys

SUCCESSES, TRIALS = "mrp_successes", "mrp_trials"
log = logging.getLogger("mrp_formula")


@dataclass(frozen=True)
class FitPlan:
    """What will be fitted: the data frame handed to Bambi and the formula it gets."""

    data: pd.DataFrame
    formula: str
    family: str
    aggregated: bool
    rows_in: int
    cells: int
    parameterization: dict[str, str] = field(default_factory=dict)  # group term -> centered|noncentered
    parameterization_reason: dict[str, str] = field(default_factory=dict)
    mass_matrix: str = "diagonal"  # nutpie's: low_rank | diagonal
    mass_matrix_reason: str = ""


def plan_fit(loaded: LoadedSpec, info: FormulaInfo, tables: Tables) -> FitPlan:
    """Decide on aggregation and the parameterization of each group term."""
    spec = loaded.spec.model
    sample = tables.sample
    family, formula = spec.family, info.text
    aggregated = False
    data = sample
    weights = tables.weights
    if spec.family in ("bernoulli", "binomial") and (spec.aggregate != "never" or weights):
        data, aggregated = aggregate_cells(sample, info, spec.family, weights=weights,
                                           force=spec.aggregate == "always" or bool(weights))
        if aggregated:
            family, formula = "binomial", with_response(info, f"p({SUCCESSES}, {TRIALS})")
    fit = loaded.spec.fit
    needed = spec.parameterization == "auto" or fit.mass_matrix == "auto"
    info_by_term = information(data, info, family, aggregated) if needed else {}
    param, reason = choose_parameterization(info, spec.parameterization, info_by_term)
    mass, mass_reason = choose_mass_matrix(fit.mass_matrix, fit.sampler, info_by_term)
    return FitPlan(data=data, formula=formula, family=family, aggregated=aggregated,
                   rows_in=int(tables.stats.get("sample_rows_used", len(sample))), cells=len(data), parameterization=param,
                   parameterization_reason=reason, mass_matrix=mass, mass_matrix_reason=mass_reason)


def aggregate_cells(sample: pd.DataFrame, info: FormulaInfo, family: str, *, weights: str | None = None,
                    force: bool = False):
    """Collapse rows with identical predictors into binomial cells (exact for the likelihood).

    Frequency weights count a row that many times: they multiply its successes and trials.
    """
    keys = list(info.rhs_vars)
    y = sample[info.response_vars[0]].astype(float)
    if family == "bernoulli":
        trials = pd.Series(1.0, index=sample.index)
    else:
        trials = sample[info.response_vars[1]].astype(float)
    if weights:
        w = sample[weights].astype(float)
        y, trials = y * w, trials * w
    frame = sample[keys].assign(**{SUCCESSES: y, TRIALS: trials})
    if not keys:
        cells = pd.DataFrame({SUCCESSES: [y.sum()], TRIALS: [trials.sum()]})
    else:
        cells = frame.groupby(keys, observed=True, sort=True)[[SUCCESSES, TRIALS]].sum().reset_index()
    if not force and len(cells) > 0.5 * len(sample):
        return sample, False
    cells[SUCCESSES] = cells[SUCCESSES].round().astype("int64")
    cells[TRIALS] = cells[TRIALS].round().astype("int64")
    for k in keys:  # keep the categorical dtypes (level order) of the sample
        if isinstance(sample[k].dtype, pd.CategoricalDtype):
            cells[k] = pd.Categorical(cells[k], categories=sample[k].cat.categories, ordered=True)
    return cells, True


INFORMATION_CENTRED = 500  # median information per level from which a group term is centred


def information(data, info, family, aggregated) -> dict[str, float]:
    """Median Fisher information per level of each group term (binary outcomes: n p (1 - p);
    others: rows per level). A level's effect has a posterior sd of about 1/sqrt(information)."""
    out = {}
    for g in info.group_terms:
        keys = factor_keys(data, g.factor_vars)
        if family == "binomial":
            y = data[SUCCESSES] if aggregated else data[info.response_vars[0]]
            n = data[TRIALS] if aggregated else data[info.response_vars[1]]
            pbar = float(y.sum() / max(n.sum(), 1))
            per_level = n.groupby(keys.values).sum() * pbar * (1 - pbar)
        elif family == "bernoulli":
            y = data[info.response_vars[0]].astype(float)
            pbar = float(y.mean())
            per_level = pd.Series(1.0, index=data.index).groupby(keys.values).sum() * pbar * (1 - pbar)
        else:
            per_level = pd.Series(1.0, index=data.index).groupby(keys.values).sum()
        out[g.name] = float(per_level.median()) if len(per_level) else 0.0
    return out


def choose_parameterization(info, setting: str, info_by_term: dict[str, float]):
    """Centred when the data pin down each level's effect well (``info_by_term``, from
    :func:`information`); non-centred when data are thin."""
    choice, reason = {}, {}
    for g in info.group_terms:
        if setting != "auto":
            choice[g.name], reason[g.name] = setting, "set in model.parameterization"
            continue
        info_median = info_by_term[g.name]
        # Below a posterior sd of ~0.05 the likelihood dominates the prior and the centred form mixes better.
        centred = info_median >= INFORMATION_CENTRED
        choice[g.name] = "centered" if centred else "noncentered"
        reason[g.name] = (f"median information per level {info_median:.0f} "
                          f"{'>=' if centred else '<'} {INFORMATION_CENTRED}")
    return choice, reason


def choose_mass_matrix(setting: str, sampler: str, info_by_term: dict[str, float]) -> tuple[str, str]:
    """Low-rank when the data pin down the group effects: then the intercept and the group effects
    trade off along a narrow ridge that a diagonal mass matrix cannot follow (measured: min ESS
    40 -> 2,664 at 1e7 rows). Diagonal otherwise: on thin, hierarchical data the low-rank
    adaptation can leave a chain stuck (measured on the MRP primer: R-hat 1.67)."""
    if sampler != "nutpie":
        return "diagonal", f"the {sampler} sampler adapts a diagonal mass matrix"
    if setting != "auto":
        return setting, "set in fit.mass_matrix"
    most = max(info_by_term.values(), default=0.0)
    if most >= INFORMATION_CENTRED:
        return "low_rank", f"a group term has median information per level {most:.0f} >= {INFORMATION_CENTRED}"
    return "diagonal", f"every group term has median information per level < {INFORMATION_CENTRED}"


# ----------------------------------------------------------------------------- building


def _bmb_prior(prior: PriorSpec, noncentered: bool | None = None):
    import bambi as bmb

    params = {k: (_bmb_prior(v) if isinstance(v, PriorSpec) else v) for k, v in prior.params}
    if noncentered is not None:
        params["noncentered"] = noncentered
    return bmb.Prior(prior.dist, **params)


def build_model(loaded: LoadedSpec, info: FormulaInfo, plan: FitPlan):
    """The Bambi model; prior names are checked here, against the model's own terms."""
    import bambi as bmb

    spec = loaded.spec.model
    priors = {}
    group_names = {g.name for g in info.group_terms}
    for name, prior in spec.priors.items():
        nc = None
        if name in group_names:
            nc = plan.parameterization.get(name) == "noncentered"
        priors[name] = _bmb_prior(prior, nc)
    for g in info.group_terms:
        if g.name not in priors:
            nc = plan.parameterization.get(g.name) == "noncentered"
            priors[g.name] = bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1.0), noncentered=nc)
    family = plan.family
    try:
        with warnings.catch_warnings(), _quiet_loggers():
            warnings.simplefilter("ignore")
            return bmb.Model(plan.formula, plan.data, family=family, priors=priors, link=spec.link,
                             extra_namespace=dict(TRANSFORMS), dropna=False)
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


@dataclass(frozen=True)
class Fit:
    posterior: object  # xarray.DataTree
    seconds: float
    sampler: str


def fit(model, loaded: LoadedSpec, *, mass_matrix: str = "diagonal", progress: bool = False) -> Fit:
    """Sample the posterior; progress and sampler logs go to stderr, never stdout."""
    f = loaded.spec.fit
    start = time.perf_counter()
    kwargs = dict(draws=f.draws, tune=f.tune, chains=f.chains, random_seed=f.seed,
                  progressbar=bool(progress and sys.stderr.isatty()))
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), _quiet_loggers(), _exact_math():
            warnings.simplefilter("ignore")
            if f.sampler == "vi":
                approx = model.fit(inference_method="vi", random_seed=f.seed)
                dt = approx.sample(f.draws * f.chains, random_seed=f.seed)
            else:
                if f.sampler == "nutpie" and mass_matrix == "low_rank":
                    kwargs["nuts"] = {"low_rank_modified_mass_matrix": True}
                dt = model.fit(inference_method=f.sampler, cores=_cores(f.chains),
                               target_accept=f.target_accept, **kwargs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise FitError(Problem(f"the {f.sampler} sampler failed: {type(exc).__name__}: {exc}", key="fit.sampler",
                               file=str(loaded.path), line=loaded.line("fit"),
                               hint="try sampler = \"pymc\", stronger priors, or a simpler model")) from None
    return Fit(posterior=dt, seconds=time.perf_counter() - start, sampler=f.sampler)


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
    return max(1, min(chains, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def versions() -> dict[str, str]:
    """Versions of the stack, read from the installed packages' metadata (nothing is imported)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("bambi", "pymc", "pytensor", "arviz", "formulae", "numpy", "pandas", "nutpie"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - nutpie is optional
            pass
    return out


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
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), _quiet_loggers():
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
