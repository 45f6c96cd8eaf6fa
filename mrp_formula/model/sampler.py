"""Builds the Bambi model of a fit plan and samples it: the only module that imports bambi and
pymc. Predicting from the posterior is :mod:`mrp_formula.predict`'s, which needs neither."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time
import warnings

import numpy as np
import pandas as pd

from mrp_formula.errors import FitError, Problem, SpecError
from mrp_formula.model import nuts
from mrp_formula.model.compiled import CompileRecord, cached_wrappers
from mrp_formula.spec.families import FAMILIES
from mrp_formula.predict.cells import COMPONENT_LINK
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


def _links(plan: FitPlan, link: str):
    """Bambi's ``link``: the parent's, and logit for each auxiliary parameter with a formula."""
    if not plan.formulas:
        return link
    # "mu": the parent of every family with psi (bambi/defaults/families.py)
    return {"mu": link, **{name: COMPONENT_LINK for name, _ in plan.formulas}}


def bambi_priors(plan: FitPlan) -> dict:
    """The plan's priors as Bambi's ``priors`` argument: every term and family parameter."""
    priors = {}
    for tp in plan.priors:
        extra = {}
        if tp.role == "group":
            extra["noncentered"] = plan.parameterization.get(tp.key, "noncentered") == "noncentered"
        if tp.term == "threshold" and tp.source == "default":
            import pymc as pm

            extra["transform"] = pm.distributions.transforms.ordered
        if sampled_in_prior_units(plan.family, tp):
            extra["transform"] = prior_scaled()
        if tp.component:  # a term of an auxiliary parameter's formula: Bambi's nested priors
            priors.setdefault(tp.component, {})[tp.term] = _bmb_prior(tp.prior, **extra)
        else:
            priors[tp.term] = _bmb_prior(tp.prior, **extra)
    return priors


def sampled_in_prior_units(family: str, tp) -> bool:
    """Whether the sampler moves this intercept or slope in units of its prior: a Normal with
    fixed mu and sigma (not for a categorical response: Bambi hands its priors on as arrays, one
    per category)."""
    return (tp.role in ("intercept", "common") and _normal_with_fixed_scale(tp.prior)
            and FAMILIES[family].categories != "categorical")


def _normal_with_fixed_scale(prior: Dist) -> bool:
    """A Normal prior with fixed numbers for mu and sigma, other than N(0, 1) (a slope already in
    units of its prior needs no change of variables)."""
    params = dict(prior.params)
    if prior.name != "Normal" or set(params) != {"mu", "sigma"} or any(isinstance(v, Dist) for v in params.values()):
        return False
    return bool(np.any(np.asarray(params["mu"], dtype=float) != 0) or np.any(np.asarray(params["sigma"], dtype=float) != 1))


@functools.cache
def prior_scaled():
    """The transform that hands the sampler a slope in units of its Normal prior's sd.

    A slope of a predictor on a large scale (a state's percentage of evangelicals, income in
    dollars) has a prior sd of 1 / sd(x), often 0.01-0.1, and a posterior sd smaller still. The
    sampler starts every chain at a jitter of U(-1, 1) around the prior's centre in the space it
    moves in: on the slope's own scale that is 10-100 prior sds out, and the chain can spend its
    tuning there or never come back (the primer: one chain in four stuck at some seeds). With
    ``x = mu + sigma * v`` it moves ``v``, whose prior is N(0, 1): the start is within a prior sd
    and the first steps are on the right scale. The model is the same (a change of variables with
    a constant Jacobian); the posterior is of ``x``, as before."""
    import pytensor.tensor as pt
    from pymc.logprob.transforms import Transform

    class PriorScaled(Transform):
        name = "prior_scaled"
        ndim_supp = 0

        def forward(self, value, *inputs):
            mu, sigma = inputs[-2:]
            return (value - mu) / sigma

        def backward(self, value, *inputs):
            mu, sigma = inputs[-2:]
            return mu + value * sigma

        def log_jac_det(self, value, *inputs):
            return pt.zeros_like(value) + pt.log(inputs[-1])

    return PriorScaled()


def build_model(loaded: LoadedSpec, info: FormulaInfo, plan: FitPlan):
    """The Bambi model with the plan's priors (all of them explicit: Bambi scales nothing)."""
    import bambi as bmb

    spec = loaded.spec.model
    priors = bambi_priors(plan)
    if plan.structures or plan.centring:
        _install_structure_hook()
    # Bambi refuses a group prior without a hyperprior, but N(0, sd) effects with a fixed sd are a
    # legal model: build with a placeholder, then set the fixed prior on the term itself.
    fixed = {tp.term: priors[tp.term] for tp in plan.priors if tp.role == "group" and not tp.component
             and not any(isinstance(v, Dist) for _, v in tp.prior.params)}
    for name in fixed:
        priors[name] = bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfNormal", sigma=1.0))
    try:
        with warnings.catch_warnings(), _quiet_loggers():
            warnings.simplefilter("ignore")
            # Bambi evaluates the formula in its caller's frame: call it from one holding only the allowlist
            formula = plan.formula
            if plan.formulas:  # Bambi's distributional formula: "psi ~ x" beside the response's
                formula = bmb.Formula(plan.formula, *(f"{name} ~ {rhs}" for name, rhs in plan.formulas))
            model = call_in_namespace(bmb.Model, formula, plan.data, family=plan.family, priors=priors,
                                      link=_links(plan, spec.link or FAMILIES[plan.family].link), dropna=False,
                                      auto_scale=False)
            terms = model.parameters[model.family.likelihood.parent].group_specific_terms
            for name, prior in fixed.items():
                terms[name]._prior = prior  # the setter would refuse it (see above)
            model._mrp_structures = {sp.term: sp for sp in plan.structures}  # read by the hook below
            model._mrp_centring = dict(plan.centring)  # and this
            return model
    except Exception as exc:
        raise SpecError(Problem(f"Bambi cannot build this model: {exc}", key="model", file=str(loaded.path),
                                line=loaded.line("model"),
                                hint="check the formula, family, link and priors")) from None


# ----------------------------------------------------------------------------- structured priors


def _install_structure_hook() -> None:
    """Let Bambi build every group term as before, except those of ``model.structure`` and the
    partially non-centred ones (``FitPlan.centring``).

    Bambi builds each group term's effects in ``GroupSpecificTerm.build`` (called from
    ``DistributionalComponent.build_group_specific_terms``, which then adds ``coef[group_index]``
    to the linear predictor). The subclass installed here builds a structured or partial term's
    effects instead, when the Bambi model carries a plan for it (``model._mrp_structures``,
    ``model._mrp_centring``, set by :func:`build_model`); any other term, and any model without
    plans, is built by Bambi's own code. The hook stays installed, so a model rebuilt by Bambi
    (after ``set_priors``) keeps its structure.
    """
    from bambi.backend import model_components
    from bambi.backend.terms import GroupSpecificTerm

    if getattr(model_components.GroupSpecificTerm, "mrp_structured", False):
        return

    class StructuredGroupTerm(GroupSpecificTerm):
        mrp_structured = True

        def build(self, spec):
            sp = getattr(spec, "_mrp_structures", {}).get(self.name)
            if sp is not None:
                return _build_structured(self, sp)
            w = getattr(spec, "_mrp_centring", {}).get(self.name)
            if w is not None:
                return _build_partial(self, w)
            return super().build(spec)

    model_components.GroupSpecificTerm = StructuredGroupTerm


def _build_partial(term, w: float):
    """The effects of a partially non-centred group intercept (Papaspiliopoulos, Roberts & Skold
    2007): ``{term}_offset ~ Normal(0, sd ** w)`` and ``{term} = sd ** (1 - w) * {term}_offset``, so
    the effects are Normal(0, sd) as Bambi's centred (w = 1) and non-centred (w = 0) forms make them;
    the names and dims are Bambi's non-centred ones (``model.plan.partial_centring`` says which
    terms)."""
    import pymc as pm

    name, dims = term.name, list(term.coords)
    prior = term.term.prior
    key = term.term.hyperprior_alias.get("sigma", "sigma")
    sigma = term.build_distribution(prior.args["sigma"], label=f"{name}_{key}")
    offset = pm.Normal(f"{name}_offset", mu=0.0, sigma=sigma ** w, dims=dims)
    return pm.Deterministic(name, offset * sigma ** (1.0 - w), dims=dims)


def _build_structured(term, sp):
    """The effects of a structured group intercept, inside the model's context.

    ``{term}_structured`` (dims ``{term}__structured_dim``: every level of the plan, sample and
    population) is what prediction reads; ``{term}`` (Bambi's factor dim: the sample's levels) is
    what Bambi's own linear predictor, predictions and log-likelihood use. The parameterization is
    non-centred: standard normal ``{term}_offset`` times the covariance factor and the scale.
    """
    import pymc as pm
    import pytensor.tensor as pt
    from bambi import Prior

    from mrp_formula.model.structure import linear_trend

    name = term.name
    prior = term.term.prior
    sd = prior.args["sigma"]
    sigma = term.build_distribution(sd, label=f"{name}_sigma") if isinstance(sd, Prior) else float(sd)
    model = pm.modelcontext(None)
    n = len(sp.levels)
    if sp.dim not in model.coords:
        model.add_coords({sp.dim: list(sp.levels)})
    if sp.kind == "ar1":
        rho = pm.Uniform(f"{name}_rho", lower=-1.0, upper=1.0)
        z = pm.Normal(f"{name}_offset", mu=0.0, sigma=1.0, shape=n)
        k = np.arange(n)
        diff = k[:, None] - k[None, :]
        lower = diff >= 0
        M = pt.switch(lower, rho ** np.clip(diff, 0, None).astype(float), 0.0)
        first = pt.concatenate([pt.reshape(1.0 / pt.sqrt(1.0 - rho ** 2), (1,)), pt.ones(n - 1)])
        effects = sigma * pt.dot(M * first[None, :], z)
    else:
        A = np.asarray(sp.factor_matrix, dtype=float)
        z = pm.Normal(f"{name}_offset", mu=0.0, sigma=1.0, shape=A.shape[1])
        phi = pt.dot(A, z)
        if sp.kind == "bym2":
            rho = pm.Beta(f"{name}_rho", alpha=0.5, beta=0.5)
            v = pm.Normal(f"{name}_iid_offset", mu=0.0, sigma=1.0, shape=n)
            effects = sigma * (pt.sqrt(1.0 - rho) * v + pt.sqrt(rho) * phi)
        else:
            effects = sigma * phi
            if sp.kind == "rw2":
                slope = pm.Normal(f"{name}_trend", mu=0.0, sigma=sp.trend_sd)
                effects = effects + slope * linear_trend(n)
    full = pm.Deterministic(sp.variable, effects, dims=sp.dim)
    (factor_dim, labels), = ((d, v) for d, v in term.coords.items() if d.endswith("__factor_dim"))
    index = {lv: i for i, lv in enumerate(sp.levels)}
    pos = np.array([index[str(lv)] for lv in labels], dtype=np.int64)
    return pm.Deterministic(name, full[pos], dims=factor_dim)


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
            out[name] = " ".join(str(_without_prior_scaling(prior)).split())
    return out


def _without_prior_scaling(prior):
    """The prior as the user knows it: the sampler's change of variables (:func:`prior_scaled`)
    is not part of it."""
    args = getattr(prior, "args", None)
    if not isinstance(args, dict) or getattr(args.get("transform"), "name", None) != prior_scaled().name:
        return prior
    import copy

    prior = copy.copy(prior)
    prior.args = {k: v for k, v in args.items() if k != "transform"}
    return prior


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
def fit(model, loaded: LoadedSpec, *, mass_matrix: str = "diagonal", progress: bool = False,
        on_progress=None, keep=None) -> Fit:
    """Sample the posterior; progress and sampler logs go to stderr, never stdout.

    ``on_progress`` (nutpie only) is called from the sampler's thread with a tuple of
    :class:`mrp_formula.progress.ChainState`, about ten times a second; it then replaces the
    library's own progress bar. ``keep`` (nutpie only): ``keep(recipe, proof) -> note``, the store
    of the model's :class:`~mrp_formula.model.reuse.Recipe` (``RecipeStore.keep`` of its key), so
    that the next fit of this model samples without Bambi."""
    f = loaded.spec.fit
    start = time.perf_counter()
    forward = on_progress is not None and f.sampler == "nutpie"
    bar = bool(progress and sys.stderr.isatty() and not forward)
    cores = nuts.cores(f.chains)
    compiled = CompileRecord()
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), _quiet_loggers(), _exact_math(), \
                nuts.one_thread_each():
            warnings.simplefilter("ignore")
            reused = ""
            if f.sampler == "nutpie":
                with cached_wrappers(compiled):
                    dt, reused = _sample_nutpie(model, f, cores=cores, mass_matrix=mass_matrix, progressbar=bar,
                                                on_progress=on_progress if forward else None, compiled=compiled,
                                                keep=keep)
            else:
                # the tuning draws are kept only to count their gradient evaluations (then dropped)
                dt = model.fit(inference_method=f.sampler, cores=cores, target_accept=f.target_accept,
                               draws=f.draws, tune=f.tune, chains=f.chains, random_seed=f.seed,
                               progressbar=bar, discard_tuned_samples=False)
            dt = nuts.with_work_counted(dt, seconds=time.perf_counter() - start, cores=cores,
                                        compile_cache=compiled.status if f.sampler == "nutpie" else "",
                                        model_reuse=reused)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise FitError(Problem(f"the {f.sampler} sampler failed: {type(exc).__name__}: {exc}", key="fit.sampler",
                               file=str(loaded.path), line=loaded.line("fit"),
                               hint="try sampler = \"pymc\", stronger priors, or a simpler model")) from None
    return Fit(posterior=dt, seconds=time.perf_counter() - start, sampler=f.sampler)


def _sample_nutpie(model, f, *, cores: int, mass_matrix: str, progressbar: bool, on_progress, compiled: CompileRecord,
                   keep=None):
    """Sample the built Bambi model with nutpie, straight from its PyMC model: ``(posterior, what
    became of its recipe)``.

    This is what ``model.fit(inference_method="nutpie")`` does, less one step: ``pm.sample`` first
    assigns step methods, which builds a gradient graph only to find that NUTS fits, and throws it
    away (about 1 s on the primer; nutpie builds its own). Everything else is theirs: the variables
    Bambi samples, PyMC's seed for the first chain (the one nutpie takes), nutpie's compile and
    sampler, PyMC's additions to the result, Bambi's clean-up of it. The draws are the same bit for
    bit (``tests/model/test_sampler.py``). The tuning draws are kept only to count their gradient
    evaluations (then dropped). With ``keep``, the model's recipe is written and proven on this
    fit (:func:`_keep_recipe`)."""
    from pymc.backends.arviz import patch_nutpie_idata
    from pymc.progress_bar import NutpieProgressBarManager
    from pymc.util import get_default_varnames

    nutpie = nuts.import_nutpie()
    if not model.built:
        model.build()
    backend, pm_model = model.backend, model.backend.model
    likelihood = set(backend.spec.family.likelihood.params)
    names = [v.name for v in get_default_varnames(pm_model.unobserved_value_vars, include_transformed=False)
             if not (v.name in likelihood and pm_model.named_vars.get(v.name) in pm_model.deterministics)]
    model_c = nutpie.compile_pymc_model(pm_model, var_names=names, backend="numba")
    seeds: list = []
    if keep is not None:
        model_c = _asking(model_c, seeds)
    bar = NutpieProgressBarManager(chains=f.chains, draws=f.draws, progressbar=progressbar)
    callback = nuts.forward_progress(on_progress) if on_progress is not None else bar.update
    with bar:
        raw, run, seconds = nuts.run(nutpie, model_c, nuts.sample_kwargs(f, cores=cores, mass_matrix=mass_matrix,
                                                                         callback=callback))
    run._return_raw_trace = False
    dt = run._extract(raw)  # nutpie's own DataTree of the raw trace
    patch_nutpie_idata(dt, pm_model, sampling_time=seconds)
    backend.fit = True
    dt = backend._clean_results(dt, omit_offsets=True, include_response_params=False)
    if keep is None:
        return dt, ""
    return dt, _keep_recipe(keep, model, model_c, compiled, dt, raw, nuts.settings_json(run), seconds, seeds)


def _asking(model_c, seeds: list):
    """nutpie's compiled model whose initial point function notes the seeds it is asked for."""
    import dataclasses

    inner = model_c.initial_point_func

    def point(seed):
        seeds.append(seed)
        return inner(seed)

    return dataclasses.replace(model_c, initial_point_func=point)


def _keep_recipe(keep, model, model_c, compiled: CompileRecord, dt, raw, settings, seconds, seeds) -> str:
    """Write the model's recipe (:mod:`mrp_formula.model.reuse`) and keep it if it proves itself
    on this fit: its layout of the raw trace equals Bambi's posterior, its initial points PyMC's.
    Never fails the fit: the note says what happened."""
    from mrp_formula.model import reuse

    if compiled.status not in ("loaded", "compiled") or len(compiled.keys) != 2:
        return f"not recorded: the callbacks are {compiled.status}"
    if not seeds:
        return "not recorded: the sampler asked for no initial point"
    try:
        recipe = _recipe(model, model_c, compiled, dt, seeds[0])
    except Exception as exc:  # noqa: BLE001 - the fit stands; only the reuse is lost
        return f"not recorded: {type(exc).__name__}: {exc}"[:300]
    point = model_c.initial_point_func

    def proof(read_back) -> list[str]:
        wrong = reuse.differences(dt, reuse.assemble(read_back, raw, settings, seconds))
        mine = reuse.initial_point(read_back)
        for s in [*dict.fromkeys(seeds), 0, 1, 2**63 + 11]:
            if not np.array_equal(mine(s), point(s)):
                wrong.append(f"the initial point of seed {s} differs from PyMC's")
                break
        return wrong

    try:
        return keep(recipe, proof)
    except Exception as exc:  # noqa: BLE001 - e.g. a read-only cache: the fit stands
        return f"not recorded: {type(exc).__name__}: {exc}"[:300]


def _recipe(model, model_c, compiled: CompileRecord, dt, seed):
    """The recipe of a compiled model: nutpie's variables, PyMC's initial point (the support
    point, and where each variable's jitter comes from), Bambi's intercept shifts and layout."""
    from pymc.initial_point import make_initial_point_fn

    from mrp_formula.model import reuse

    names, slices, shapes = model_c.shape_info
    starts = tuple(int(s.start or 0) for s in slices)
    stops = tuple(int(s.stop) for s in slices)
    shapes = tuple(tuple(int(x) for x in s) for s in shapes)
    n_dim = int(model_c.n_dim)
    n_free = next(i for i, b in enumerate(stops) if b == n_dim) + 1
    support = make_initial_point_fn(model=model.backend.model, jitter_rvs=set(), return_transformed=True)(0)
    base = np.empty(n_dim, dtype="float64")
    for name, a, b in zip(names[:n_free], starts, stops):
        base[a:b] = np.asarray(support[name], dtype="float64").ravel()
    jitter = reuse.find_jitter(base, starts[:n_free], stops[:n_free], shapes[:n_free], model_c.initial_point_func, seed)
    return reuse.Recipe(
        callbacks=tuple(compiled.keys), folder=compiled.folder, n_dim=n_dim, n_expanded=int(model_c.n_expanded), names=tuple(names), starts=starts,
        stops=stops, shapes=shapes, dims={k: list(v) for k, v in (model_c.dims or {}).items()},
        coords={k: list(v) for k, v in (model_c._coords or {}).items()},
        reparameterized=tuple(model_c.reparameterized_names or ()), jitter=jitter, base=base, shifts=_shifts(model),
        template=reuse.template_of(dt))


def _shifts(model) -> tuple:
    """Bambi's intercept shifts for mean-centred common predictors (``_clean_results``)."""
    from bambi.utils import get_aliased_name

    from mrp_formula.model.reuse import Shift

    if not model.center_predictors:
        return ()
    out = []
    rc = model.response_term.coords
    for component in model.backend.distributional_components.values():
        bc = component.component
        if bc.intercept_term and bc.common_terms:
            out.append(Shift(name=get_aliased_name(bc.intercept_term),
                             terms=tuple(get_aliased_name(t) for t in bc.common_terms.values()),
                             xmean=np.asarray(component.design_matrix_without_intercept.mean(0)),
                             response_dims=tuple(rc) if rc else (),
                             response_levels=len(list(rc.values())[0]) if rc else 0))
    return tuple(out)


@contextlib.contextmanager
def _exact_math():
    """Compile the model's numba code (nutpie) without fastmath. With fastmath, functions loaded
    from PyTensor's compile cache and freshly compiled ones round differently (measured: posterior
    means of the same spec, data and seed differ at 1e-7 between a first run and later ones), so a
    result would depend on the state of the cache. Numba keys its cache by the flag."""
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=False):
        yield


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
