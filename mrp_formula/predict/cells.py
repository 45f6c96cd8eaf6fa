"""Posterior draws -> the expected outcome of population cells, per draw, and its weighted sums.

The fitted model is seen through a :class:`Design`, built with formulae alone exactly as Bambi
builds it for the fit (same formula, data, transforms and calls), so that a cached posterior is
used without importing Bambi or PyMC. :class:`CellPredictor` computes predictions from the
posterior directly: population levels the sample lacks get their own draws from the fitted group
distribution, the same draws in every chunk and every counterfactual.

How ``weighted_sums`` is fast (every family with one expected value per cell; categorical and
cumulative take the plain route of ``predict`` then sum): each term of the linear predictor is a small table of per-draw
values, one row per level of a group factor or per distinct row of the common design, gathered
for a micro-block of about 2**17 values (1 MB, so every pass stays in cache). A family whose
expected outcome is not the inverse link itself (the lognormal's exp(mu + sigma^2 / 2), a
hurdle's psi times its conditional mean) applies its record's ``mean`` to each finished block,
with its auxiliary parameters per draw (a block is cells x draws); a parameter with a formula of
its own (``model.formulas.psi``) is predicted per cell and draw by a sub-predictor of its terms,
for each block. For the logit and
log links the tables are exponentiated once, so the per-value work is products and, for logit,
one reciprocal: ``p = 1 / (1 + exp(-a) exp(-b) ...)``. Micro-blocks are reduced to weighted sums
per group at once and spread over threads in fixed tasks, so the arithmetic and its order do not
depend on the number of threads. A task's sums are added to the running totals in task order;
poststratification hands chunks of whole tasks (``sum_unit``) in a canonical cell order and the
totals of the chunk before, so the sums do not depend on the chunk size or the row order either.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mrp_formula.spec.families import FAMILIES
from mrp_formula.errors import FitError, Problem
from mrp_formula.spec.formula import FormulaInfo, GroupTerm, environment, formulae
from mrp_formula.poststrat.sums import PLAIN_UNIT, Scenario, plain_weighted_sums
from mrp_formula.spec.tree import dotted
from mrp_formula.spec.levels import canon_series
from mrp_formula.data.canonical import factor_keys
from mrp_formula.data.tables import Tables

EPS = np.finfo(np.float64).eps
STRUCTURED_SUFFIX = "_structured"  # model.structure.StructurePlan.variable: effects of every level

def _unit(x):
    """Keep probabilities inside (0, 1), as Bambi's inverse links do."""
    return np.clip(x, EPS, 1 - EPS)


def _inv_probit(eta):
    from scipy import special

    return _unit(0.5 + 0.5 * special.erf(eta / 2**0.5))


def _inv_logit(eta):
    from scipy import special

    return _unit(special.expit(eta))


# Inverse links by name (Bambi's names and definitions).
LINKINV = {
    "identity": lambda eta: eta,
    "log": np.exp,
    "logit": _inv_logit,
    "probit": _inv_probit,
    "cloglog": lambda eta: _unit(1 - np.exp(-np.exp(eta))),
    "inverse": lambda eta: 1 / eta,
    "inverse_squared": lambda eta: 1 / np.sqrt(eta),
}
DEFAULT_LINK = {name: f.link for name, f in FAMILIES.items()}  # Bambi's default links (spec/families.py)
# Derivatives of the inverse links by the linear predictor (what calibration's Newton steps need).
LINKINV_SLOPE = {
    "identity": lambda eta: np.ones_like(eta),
    "log": np.exp,
    "logit": lambda eta: _inv_logit(eta) * (1 - _inv_logit(eta)),
    "probit": lambda eta: np.exp(-0.5 * eta * eta) / np.sqrt(2 * np.pi),
}
# Links whose inverse is a product of per-term factors: exp(sign * eta) = prod exp(sign * term).
_PRODUCT_SIGN = {"logit": -1.0, "log": 1.0}

MICRO_BLOCK = 2**17  # values of one (cells x draws) micro-block: 1 MB of float64
BLOCKS_PER_TASK = 32  # micro-blocks per thread task (fixed, so results do not depend on threads)
TABLE_MAX = 2**22  # largest per-draw table of distinct common-design rows (32 MB)


# ----------------------------------------------------------------------------- the fitted design


@dataclass(frozen=True)
class Design:
    """What predicting needs of the fitted model, built without Bambi."""

    family: str  # Bambi's family of the fit (binomial for aggregated cells)
    link: str
    common: object | None  # formulae CommonEffectsMatrix of the fitted data
    group: Mapping[str, object]  # group term name -> formulae GroupEffectsTerm
    response_name: str
    response_levels: tuple[str, ...] | None  # categorical and cumulative responses


def design_matrices(data: pd.DataFrame, formula: str, family: str):
    """formulae's design matrices of ``data``, made by the same calls as ``bambi.Model``."""
    fm = formulae()

    text = data.select_dtypes("object").columns  # Bambi turns object columns into categories
    if len(text):
        data = data.copy()
        data[list(text)] = data[list(text)].apply(lambda x: x.astype("category"))
    if family == "cumulative":  # Bambi adds the intercept, then drops it (the cutpoints take its place)
        dm = fm.design_matrices(formula + " + 1", data, "error", environment())
        dm.common.terms.pop("Intercept")
        sl = dm.common.slices.pop("Intercept")
        dm.common.design_matrix = np.delete(dm.common.design_matrix, sl, axis=1)
        # the other terms' columns move up by the intercept's width (Bambi's own removal leaves
        # the slices as they were, since it reads each term's own data; predicting reads the slices)
        width = sl.stop - sl.start
        for name, s in list(dm.common.slices.items()):
            if s.start >= sl.stop:
                dm.common.slices[name] = slice(s.start - width, s.stop - width)
    else:
        dm = fm.design_matrices(formula, data, "error", environment())
    return dm


def design(data: pd.DataFrame, formula: str, family: str, link: str | None) -> Design:
    """The design matrices of the fit, made by the same formulae calls as ``bambi.Model``."""
    return design_of(design_matrices(data, formula, family), family, link)


def design_of(dm, family: str, link: str | None) -> Design:
    """The :class:`Design` of formulae's design matrices ``dm`` (from :func:`design_matrices`)."""
    link = link or DEFAULT_LINK[family]
    levels = None
    if FAMILIES[family].has_categories:
        levels = tuple(str(x) for x in dm.response.levels)
    return Design(family=family, link=link, common=dm.common, group=dict(dm.group.terms) if dm.group else {},
                  response_name=dm.response.name, response_levels=levels)


# ----------------------------------------------------------------------------- terms of a chunk


@dataclass(frozen=True)
class _Gather:
    """A term given as a table of per-draw values (rows x S) and the row of every cell."""

    table: np.ndarray  # C-contiguous (rows, S), already in the combining space
    rows: np.ndarray  # (n,) int64

    def write(self, out, a, e):
        np.take(self.table, self.rows[a:e], axis=0, out=out)


@dataclass(frozen=True)
class _Direct:
    """A term computed per micro-block: ``x @ coef`` or ``coef[rows] * x``, then into the
    combining space."""

    x: np.ndarray  # (n, c)
    coef: np.ndarray  # (c, S), or (L, S) with rows
    rows: np.ndarray | None
    sign: float | None  # exp(sign * value) for product links, None for sums

    def write(self, out, a, e):
        if self.rows is None:
            np.matmul(self.x[a:e], self.coef, out=out)
        else:
            np.take(self.coef, self.rows[a:e], axis=0, out=out)
            np.multiply(out, self.x[a:e, :1], out=out)
        if self.sign is not None:
            if self.sign != 1.0:
                np.multiply(out, self.sign, out=out)
            np.exp(out, out=out)


def predictor(plan, link: str | None, posterior, tables: Tables, info: FormulaInfo, *, seed: int,
              threads: int | None = None) -> "CellPredictor":
    """The predictor of a fit planned as ``plan`` (``model.FitPlan``) with this posterior."""
    made = getattr(plan, "design", None)  # the plan's, when it made the fit's design already
    if made is None or made.link != (link or DEFAULT_LINK[plan.family]):
        made = design(plan.data, plan.formula, plan.family, link)
    priors = getattr(plan, "priors", ())
    components = {name: component(plan.data, name, rhs) for name, rhs in getattr(plan, "formulas", ())}
    return CellPredictor(made, posterior, tables, info, seed=seed, threads=threads,
                         fixed_sd=fixed_group_sd(tp for tp in priors if not getattr(tp, "component", "")),
                         components=components,
                         component_sd={name: fixed_group_sd(tp.within(name) for tp in priors if tp.component == name)
                                       for name in components})


COMPONENT_LINK = "logit"  # the link of a modelled psi (Bambi's default for a probability)


def component(data: pd.DataFrame, name: str, rhs: str) -> tuple[Design, FormulaInfo]:
    """The design and description of an auxiliary parameter's own formula (``model.formulas``):
    ``name ~ rhs`` on the fitted data, made by the same formulae calls as Bambi's."""
    from mrp_formula.spec.formula import describe

    text = f"{name} ~ {rhs}"
    info = describe(text, key=dotted(("model", "formulas", name)))
    fm = formulae()

    typed = data.copy()
    objects = typed.select_dtypes("object").columns
    if len(objects):
        typed[list(objects)] = typed[list(objects)].apply(lambda x: x.astype("category"))
    dm = fm.design_matrices(rhs, typed, "error", environment())
    made = Design(family="bernoulli", link=COMPONENT_LINK, common=dm.common,
                  group=dict(dm.group.terms) if dm.group else {}, response_name=name, response_levels=None)
    return made, info


def component_posterior(post, name: str, info: FormulaInfo):
    """The variables of component ``name`` (Bambi's ``psi_Intercept``, ``psi_1|g``, ``psi_1|g_sigma``)
    under their plain term names, as a posterior of their own."""
    wanted = set(info.prior_names) | {f"{g.name}_sigma" for g in info.group_terms} | \
        {f"{g.name}{STRUCTURED_SUFFIX}" for g in info.group_terms}
    prefix = f"{name}_"
    keep = {v: v[len(prefix):] for v in post.data_vars if v.startswith(prefix) and v[len(prefix):] in wanted}
    missing = [n for n in info.prior_names if f"{prefix}{n}" not in post]
    if missing:
        raise FitError(f"the posterior has no {', '.join(prefix + n for n in missing)} of the formula of {name}")
    return {"posterior": post[list(keep)].rename(keep)}


def fixed_group_sd(priors) -> dict[str, np.ndarray]:
    """Group terms whose prior fixes the sd of their effects to a number (``Normal(0, 0.5)``): the
    posterior has no draws of it, new levels are drawn with this sd. One value, or one per column
    of the term's predictor."""
    out = {}
    for tp in priors:
        sd = tp.prior.param("sigma") if tp.role == "group" else None
        if isinstance(sd, (int, float, tuple)):
            out[tp.term] = np.atleast_1d(np.asarray(sd, dtype=float))
    return out


class CellPredictor:
    """Expected outcome of population cells for every posterior draw.

    ``predict(cells)`` is (S, n) for one-parameter outcomes; for categorical and cumulative
    families it is (S, n, K) with one probability per category (``categories``), and for
    cumulative one more column: the expected category value ("mean"). ``weighted_sums`` is
    what poststratification calls: the cell-weighted sums of the predictions per group.
    """

    def __init__(self, design: Design, posterior, tables: Tables, info: FormulaInfo, *, seed: int,
                 threads: int | None = None, fixed_sd: Mapping[str, np.ndarray] | None = None,
                 components: Mapping[str, tuple[Design, FormulaInfo]] | None = None,
                 component_sd: Mapping[str, Mapping[str, np.ndarray]] | None = None):
        self._design = design
        self._fixed_sd = dict(fixed_sd or {})
        self._family = design.family
        self._link = design.link
        self._tables = tables
        self._info = info
        post = posterior["posterior"]
        post = post.to_dataset() if hasattr(post, "to_dataset") else post
        self.n_chains = post.sizes["chain"]
        self.n_draws = post.sizes["draw"]
        self.n_samples = self.n_chains * self.n_draws
        self._post = post
        self.categories: tuple[str, ...] | None = None
        self._resp_dim = None
        self._threshold = None
        self._record = FAMILIES[self._family]
        # auxiliary parameters with a formula of their own (model.formulas): a predictor each, on
        # the logit scale, whose new levels are drawn from a stream of their own
        self.components: dict[str, CellPredictor] = {}
        for k, (name, (made, cinfo)) in enumerate(sorted((components or {}).items())):
            self.components[name] = CellPredictor(
                made, component_posterior(post, name, cinfo), tables, cinfo, seed=seed + 104729 * (k + 1),
                threads=1, fixed_sd=(component_sd or {}).get(name))
        # the family's other auxiliary parameters per draw (S,), when its expected outcome needs them
        self.auxiliary = {name: self._per_draw(name) for name in self._record.auxiliary
                          if (self._record.mean is not None or self._record.variance is not None)
                          and name not in self.components}
        if FAMILIES[self._family].has_categories:
            levels = list(design.response_levels)
            self.categories = tuple(levels) + (("mean",) if self._family == "cumulative" else ())
            self._values = _category_values(levels)
            if self._family == "categorical":
                self._resp_dim = f"{design.response_name}_reduced_dim"
            else:
                self._threshold = post["threshold"].to_numpy().reshape(self.n_samples, -1)
        else:
            self._linkinv = LINKINV[self._link]
        self._common_slices = dict(design.common.slices) if design.common is not None else {}
        self._n_common = sum(sl.stop - sl.start for sl in self._common_slices.values())
        self._group_terms = {g.name: g for g in info.group_terms}
        self._beta = {name: self._flat(name) for name in self._common_slices}
        rng = np.random.default_rng([seed, 7919])
        self._u: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
        for g in info.group_terms:
            self._u[g.name] = self._group_draws(g, rng)
        self.fast = FAMILIES[self._family].fast_sums
        self._sign = _PRODUCT_SIGN.get(self._link) if self.fast else None
        self._level_tables: dict[tuple[str, int], np.ndarray] = {}  # group draws in the combining space
        self._threads = threads or _usable_cpus()
        self._local = threading.local()
        self._offset: tuple[str, dict[str, int], np.ndarray] | None = None  # see with_offset
        self._terms_cache: dict | None = None  # see reusing_terms

    def with_offset(self, by: str, levels: Sequence[str], delta: np.ndarray) -> "CellPredictor":
        """This predictor with ``delta[:, j]`` (S, L) added to the linear predictor of every cell
        whose population level of ``by`` is ``levels[j]`` (calibration's shift). The level is
        the cell's own, also where an estimand sets ``by`` to another level (``at``)."""
        if not self.fast:
            raise FitError(f"a linear-predictor offset needs a one-parameter family, not {self._family}")
        out = copy.copy(self)
        delta = np.asarray(delta, dtype=float)
        out._offset = (by, {str(lv): j for j, lv in enumerate(levels)}, delta)
        out._offset_table = out._to_space(np.ascontiguousarray(delta.T))
        out._local = threading.local()
        return out

    def reusing_terms(self) -> "CellPredictor":
        """A copy (shared by its ``with_offset`` copies) that keeps the terms of every chunk it
        sums, for repeated passes over the same cells with different offsets (calibration's
        Newton steps): the design is evaluated once instead of once per pass. Holds about as
        much memory as the population's index arrays; drop it when done."""
        out = copy.copy(self)
        out._terms_cache = {}
        out._local = threading.local()
        return out

    def _offset_rows(self, cells: pd.DataFrame) -> np.ndarray:
        by, index, _ = self._offset
        codes, uniques = pd.factorize(cells[by], use_na_sentinel=False)  # canonical text per distinct value
        known = canon_series(pd.Series(np.asarray(uniques, dtype=object))).map(index)
        if known.isna().any():
            missing = sorted(str(u) for u, k in zip(uniques, known) if pd.isna(k))
            raise FitError(f"no calibration shift for level(s) {missing[:5]} of '{by}'")
        return known.to_numpy(dtype=np.int64)[codes]

    # ------------------------------------------------------------------ draws

    def _per_draw(self, name: str) -> np.ndarray:
        """Draws (S,) of a scalar family parameter (sigma, psi, ...), chains then draws."""
        if name not in self._post:
            raise FitError(f"the posterior has no '{name}' of the {self._family} family")
        da = self._post[name].transpose("chain", "draw", ...)
        values = np.asarray(da, dtype=float).reshape(self.n_samples, -1)
        if values.shape[1] != 1:
            raise FitError(f"'{name}' of the {self._family} family has {values.shape[1]} values per draw: it is "
                           "predicted with one value per draw only")
        return values[:, 0]

    def _flat(self, name: str) -> np.ndarray:
        """Draws of a common term as (S, columns, R); R is 1, or K-1 for a categorical response."""
        da = self._post[name]
        resp = [d for d in da.dims if d == self._resp_dim]
        others = [d for d in da.dims if d not in ("chain", "draw", *resp)]
        da = da.transpose("chain", "draw", *others, *resp)
        r = da.sizes[resp[0]] if resp else 1
        return da.to_numpy().reshape(self.n_samples, -1, r)

    def _group_draws(self, g: GroupTerm, rng) -> tuple[np.ndarray, dict[str, int]]:
        """Draws (S, k, R, L + new) of a group term; new population levels drawn from N(0, sigma).

        A structured term (``model.structure``) has the effect of every level, sample and
        population, in ``{term}_structured``: a level without sample takes its effect from there."""
        structured = f"{g.name}{STRUCTURED_SUFFIX}"
        if structured in self._post:
            da = self._post[structured]
            factor_dim = f"{g.name}__structured_dim"
        else:
            da = self._post[g.name]
            factor_dim = [d for d in da.dims if d.endswith("__factor_dim")][0]
        resp = [d for d in da.dims if d == self._resp_dim]
        others = [d for d in da.dims if d not in ("chain", "draw", factor_dim, *resp)]
        da = da.transpose("chain", "draw", *others, *resp, factor_dim)
        labels = [str(x) for x in da.coords[factor_dim].to_numpy()]
        r = da.sizes[resp[0]] if resp else 1
        u = da.to_numpy().reshape(self.n_samples, -1, r, len(labels))
        index = {lab: i for i, lab in enumerate(labels)}
        new = [lv for lv in self._tables.new_levels.get(g.factor, ()) if lv not in index]
        if new:
            if f"{g.name}_sigma" in self._post:
                sd = self._post[f"{g.name}_sigma"]
                sd_resp = [d for d in sd.dims if d == self._resp_dim]
                sd_other = [d for d in sd.dims if d not in ("chain", "draw", *sd_resp)]
                sd = sd.transpose("chain", "draw", *sd_other, *sd_resp).to_numpy()
                sd = sd.reshape(self.n_samples, -1 if sd_other else 1, r if sd_resp else 1)
            elif g.name in self._fixed_sd:  # the prior fixes the sd: the posterior has no draws of it
                sd = self._fixed_sd[g.name].reshape(1, -1, 1)
            else:
                raise FitError(Problem(
                    f"cannot draw effects for the new level(s) {new[:5]} of '{g.factor}': the posterior has no "
                    f"'{g.name}_sigma' and the prior of '{g.name}' fixes no sd", key=dotted(("model", "priors", g.name)),
                    hint="give the group term a prior such as \"Normal(0, HalfNormal(1))\", or add the levels "
                         "to the sample"))
            sd = np.broadcast_to(sd, u.shape[:3])
            extra = rng.standard_normal(u.shape[:3] + (len(new),)) * sd[..., None]
            u = np.concatenate([u, extra], axis=3)
            for j, lv in enumerate(new):
                index[lv] = len(labels) + j
        return u, index

    def _level_rows(self, cells: pd.DataFrame, g: GroupTerm) -> np.ndarray:
        _, index = self._u[g.name]
        keys = factor_keys(cells, g.factor_vars)
        idx = keys.map(index)
        if idx.isna().any():
            missing = sorted(set(keys[idx.isna()]))
            raise FitError(f"no draws for level(s) {missing[:5]} of '{g.factor}'")
        return idx.to_numpy(dtype=np.int64)

    def _slopes(self, cells: pd.DataFrame, name: str, n: int) -> np.ndarray:
        xi = np.asarray(self._design.group[name].expr.eval_new_data(cells), dtype=float)
        return xi.reshape(n, -1)

    def _common_matrix(self, cells: pd.DataFrame) -> np.ndarray:
        return np.asarray(self._design.common.evaluate_new_data(cells).design_matrix, dtype=float)

    # ------------------------------------------------------------------ plain prediction

    def linear_predictor(self, cells: pd.DataFrame, exclude=()) -> np.ndarray:
        """(S, n, R): R = 1, or K-1 for a categorical response."""
        cells = self._typed(cells)
        n = len(cells)
        r = next(iter(self._beta.values())).shape[2] if self._beta else \
            (next(iter(self._u.values()))[0].shape[2] if self._u else 1)
        eta = np.zeros((self.n_samples, n, r))
        if self._common_slices:
            X = self._common_matrix(cells)
            for name, slc in self._common_slices.items():
                if name in exclude:
                    continue
                eta += np.einsum("scr,nc->snr", self._beta[name], X[:, slc], optimize=True)
        for name, g in self._group_terms.items():
            if name in exclude:
                continue
            u, _ = self._u[name]
            idx = self._level_rows(cells, g)
            if g.expr_vars:
                xi = self._slopes(cells, name, n)
                for k in range(xi.shape[1]):
                    eta += u[:, k, :, idx].transpose(1, 0, 2) * xi[None, :, k, None]
            else:
                eta += u[:, 0, :, idx].transpose(1, 0, 2)
        return eta

    def predict(self, cells: pd.DataFrame, exclude=(), *, slope: bool = False,
                offset_from: pd.DataFrame | None = None, parent: bool = False) -> np.ndarray:
        """Expected outcome on the response scale: (S, n), or (S, n, K) per category. With
        ``slope``, its derivative by the linear predictor (families whose expected outcome is the
        inverse link: calibration refuses the others). With ``parent`` the family's parent
        parameter instead (the inverse link of the linear predictor, what its simulator takes; the
        lognormal's mean of log(y), a hurdle's mean of its non-zero part). The offset
        (``with_offset``) is looked up by the levels of ``offset_from`` (default ``cells``)."""
        eta = self.linear_predictor(cells, exclude)
        if self._offset is not None:
            rows = self._offset_rows(cells if offset_from is None else offset_from)
            eta = eta + self._offset[2][:, rows][:, :, None]
        if slope:
            return np.asarray(LINKINV_SLOPE[self._link](eta[:, :, 0]), dtype=float)
        if self._family == "categorical":
            full = np.concatenate([np.zeros(eta.shape[:2] + (1,)), eta], axis=2)
            full -= full.max(axis=2, keepdims=True)
            p = np.exp(full)
            return p / p.sum(axis=2, keepdims=True)
        if self._family == "cumulative":
            cdf = np.asarray(LINKINV[self._link](self._threshold[:, None, :] - eta[:, :, :1]), dtype=float)
            p = np.diff(cdf, axis=2, prepend=0.0, append=1.0)
            mean = p @ self._values
            return np.concatenate([p, mean[..., None]], axis=2)
        m = np.asarray(self._linkinv(eta[:, :, 0]), dtype=float)
        if parent or self._record.mean is None:
            return m
        return self._record.mean(m, self.aux_of(cells, exclude))

    def aux_of(self, cells: pd.DataFrame, exclude=()) -> dict[str, np.ndarray]:
        """The auxiliary parameters of ``cells``, broadcastable to (S, n): one value per draw, or
        (S, n) for those with a formula of their own (the inverse logit of its linear predictor;
        ``exclude`` leaves out its terms of those names too)."""
        out = {k: v[:, None] for k, v in self.auxiliary.items()}
        for name, sub in self.components.items():
            out[name] = sub.predict(cells, exclude)
        return out

    def variance(self, cells: pd.DataFrame, exclude=()) -> np.ndarray:
        """(S, n): the variance of one outcome of each cell, for families whose record gives it."""
        m = self.predict(cells, exclude, parent=True)
        return self._record.variance(m, self.aux_of(cells, exclude))

    def _typed(self, cells: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for var in self._info.rhs_vars:
            v = self._tables.variables[var]
            if var not in cells:  # only used by excluded terms: any valid value will do
                col = pd.Series([v.levels[0] if v.categorical else 0.0] * len(cells))
            else:
                col = cells[var]
            if v.categorical and var in self._info.common_vars:
                out[var] = pd.Categorical(col.astype(str), categories=list(v.levels), ordered=True)
            elif v.categorical:
                out[var] = col.astype(str).to_numpy()
            else:
                out[var] = col.to_numpy(dtype=float)
        return pd.DataFrame(out, index=range(len(cells)))

    # ------------------------------------------------------------------ weighted sums

    def row_cost(self, n_scenarios: int = 1) -> int:
        """Values held per cell of a chunk by ``weighted_sums`` (what bounds a chunk's memory)."""
        if not self.fast:  # one scenario's (draws x cells) predictions at a time
            return self.n_samples * (len(self.categories) if self.categories else 1)
        width = self._n_common + sum(u.shape[1] for u, _ in self._u.values())
        return max(1, n_scenarios) * (width + len(self._u) + 4) + 8  # designs, row indices, typed frames

    def sum_unit(self) -> int:
        """Cells summed as one unit (a task): chunks of whole units give the same sums, bit for
        bit, whatever their size."""
        if not self.fast:
            return PLAIN_UNIT
        return BLOCKS_PER_TASK * max(1, MICRO_BLOCK // self.n_samples)

    def weighted_sums(self, cells: pd.DataFrame, weights: np.ndarray, scenarios: Sequence[Scenario],
                      groupings: Sequence[tuple[np.ndarray, int]], needs: Sequence[Sequence[int]], *,
                      into=None):
        """``out[s][g]``: (S, G) sums over cells of weight x prediction per group of grouping
        ``g`` (codes, number of groups), under scenario ``s``, for every ``g`` in ``needs[s]``;
        added onto ``into`` (the result for the chunk before) when given."""
        if not self.fast:
            return plain_weighted_sums(self.predict, cells, weights, scenarios, groupings, needs, into=into)
        if not scenarios:
            return []
        n = len(cells)
        key = None
        if self._terms_cache is not None:  # the chunk by its cells (poststratify keeps their index)
            key = (n, tuple(scenarios), hash(np.asarray(cells.index).tobytes()),
                   tuple(hash(np.asarray(c).tobytes()) for c, _ in groupings))
        order = np.lexsort([c for c, _ in reversed(groupings)]) if groupings else np.arange(n)
        cells = cells.iloc[order].reset_index(drop=True)
        weights = np.ascontiguousarray(weights[order], dtype=float)
        codes = [np.ascontiguousarray(c[order]) for c, _ in groupings]
        terms = self._cached_terms(cells, scenarios, key)
        shared = [t for t in terms[0] if all(any(t is u for u in ts) for ts in terms[1:])]
        own = [[t for t in ts if not any(t is u for u in shared)] for ts in terms]
        b = max(1, MICRO_BLOCK // self.n_samples)
        starts = list(range(0, n, b))
        tasks = [starts[i:i + BLOCKS_PER_TASK] for i in range(0, len(starts), BLOCKS_PER_TASK)]
        job = _Job(cells=cells, weights=weights, codes=codes, sizes=[g for _, g in groupings], needs=needs,
                   scenarios=scenarios, shared=shared, own=own, block=b, n=n)
        if into is not None:  # the running totals, (S, G) views of (G, S) arrays
            out = [{g: into[s][g].T for g in need} for s, need in enumerate(needs)]
        else:
            out = [{g: np.zeros((job.sizes[g], self.n_samples)) for g in need} for need in needs]
        if self._threads > 1 and len(tasks) > 1:
            with ThreadPoolExecutor(self._threads) as pool:
                parts = pool.map(lambda t: self._run_task(job, t), tasks)
                for part in parts:  # in task order: the same sums whatever the number of threads
                    self._redo(job, out, _add_part(out, part))
        else:
            for t in tasks:
                part = self._run_task(job, t)
                self._redo(job, out, _add_part(out, part))
        return [{g: out[s][g].T for g in need} for s, need in enumerate(needs)]

    def _redo(self, job: "_Job", out, redo) -> None:
        """Blocks whose product form over- or underflowed: the plain way, here (in the main
        thread), right after their task's sums."""
        for s, a, e in redo:
            sc = job.scenarios[s]
            cells = job.cells.iloc[a:e]
            cells = cells.assign(**dict(sc.settings)) if sc.settings else cells
            values = np.ascontiguousarray(self.predict(cells, sc.exclude, slope=sc.slope,
                                                       offset_from=job.cells.iloc[a:e]).T)
            for g in job.needs[s]:
                _reduce(out[s][g], values, job.weights[a:e], job.codes[g][a:e])

    def _cached_terms(self, cells: pd.DataFrame, scenarios: Sequence[Scenario], key) -> list[list]:
        """``_chunk_terms``, from the cache of ``reusing_terms`` when this chunk was seen (the
        offset's term is made anew: its values change from pass to pass)."""
        if key is None:
            return self._chunk_terms(cells, scenarios)
        if key not in self._terms_cache:
            self._terms_cache[key] = self._chunk_terms(cells, scenarios, offset=False)
        terms = self._terms_cache[key]
        if self._offset is None:
            return terms
        offset = _Gather(table=self._offset_table, rows=self._offset_rows(cells))
        return [ts + [offset] for ts in terms]

    def _chunk_terms(self, cells: pd.DataFrame, scenarios: Sequence[Scenario], *, offset: bool = True) -> list[list]:
        """The terms of every scenario's linear predictor; a term that a scenario leaves
        unchanged is the same object in every scenario (computed once per micro-block)."""
        made: dict = {}
        out = []
        for sc in scenarios:
            settings = dict(sc.settings)
            frame = self._typed(cells.assign(**settings) if settings else cells)
            terms = []
            common = tuple(nm for nm in self._common_slices if nm not in sc.exclude)
            if common:
                key = ("common", common, _relevant(settings, self._info.common_vars))
                if key not in made:
                    made[key] = self._common_term(frame, common)
                terms.append(made[key])
            for name, g in self._group_terms.items():
                if name in sc.exclude:
                    continue
                key = (name, _relevant(settings, g.factor_vars + g.expr_vars))
                if key not in made:
                    made[key] = self._group_term(frame, g)
                terms.extend(made[key])
            if offset and self._offset is not None:  # the cell's own level, whatever the scenario sets
                if "offset" not in made:
                    made["offset"] = _Gather(table=self._offset_table, rows=self._offset_rows(cells))
                terms.append(made["offset"])
            out.append(terms)
        return out

    def _common_term(self, frame: pd.DataFrame, names: tuple[str, ...]):
        X = self._common_matrix(frame)
        cols = np.concatenate([np.arange(X.shape[1])[self._common_slices[nm]] for nm in names])
        X = np.ascontiguousarray(X[:, cols])
        coef = np.concatenate([self._beta[nm][:, :, 0] for nm in names], axis=1).T  # (c, S)
        coef = np.ascontiguousarray(coef)
        rows, uniq = _distinct_rows(X)
        if len(uniq) * self.n_samples <= TABLE_MAX and len(uniq) <= max(1, len(X) // 4):
            return _Gather(table=self._to_space(uniq @ coef), rows=rows)
        return _Direct(x=X, coef=coef, rows=None, sign=self._sign)

    def _group_term(self, frame: pd.DataFrame, g: GroupTerm) -> list:
        u, _ = self._u[g.name]
        rows = self._level_rows(frame, g)
        if not g.expr_vars:
            return [_Gather(table=self._group_table(g.name, 0), rows=rows)]
        xi = self._slopes(frame, g.name, len(frame))
        terms = []
        for k in range(xi.shape[1]):
            draws = np.ascontiguousarray(u[:, k, 0, :].T)  # (L, S)
            x = xi[:, k]
            pair, first = _distinct_rows(np.column_stack([rows, x]))
            if len(first) * self.n_samples <= TABLE_MAX and len(first) <= max(1, len(x) // 4):
                table = draws[first[:, 0].astype(np.int64)] * first[:, 1:2]
                terms.append(_Gather(table=self._to_space(table), rows=pair))
            else:
                terms.append(_Direct(x=np.ascontiguousarray(x[:, None]), coef=draws, rows=rows, sign=self._sign))
        return terms

    def _group_table(self, name: str, k: int) -> np.ndarray:
        key = (name, k)
        if key not in self._level_tables:
            u, _ = self._u[name]
            self._level_tables[key] = self._to_space(np.ascontiguousarray(u[:, k, 0, :].T))
        return self._level_tables[key]

    def _to_space(self, values: np.ndarray) -> np.ndarray:
        """Values of the linear predictor -> the space terms are combined in."""
        values = np.ascontiguousarray(values, dtype=float)
        if self._sign is None:
            return values
        with np.errstate(over="ignore"):  # inf is right: it makes p exactly 0 (or exp(eta) inf)
            return np.exp(self._sign * values)

    def _buffers(self, b: int):
        loc = self._local
        if getattr(loc, "shape", None) != (b, self.n_samples):
            loc.shape = (b, self.n_samples)
            loc.bufs = [np.empty((b, self.n_samples)) for _ in range(3)]
        return loc.bufs

    def _run_task(self, job: "_Job", starts: list[int]):
        with np.errstate(over="ignore", invalid="ignore"):  # inf * 0 is caught and redone
            return self._run_blocks(job, starts)

    def _run_blocks(self, job: "_Job", starts: list[int]):
        """Sums of one task's micro-blocks, for the groups its cells touch: ``(touched, sums, redo)``
        with ``touched[g]`` the group codes, ``sums[s][g]`` (len(touched[g]), S), and ``redo``
        the blocks (scenario, start, end) left to the plain way."""
        S = self.n_samples
        base_buf, acc_buf, tmp_buf = self._buffers(job.block)
        lo, hi = starts[0], min(starts[-1] + job.block, job.n)
        touched = {g: np.unique(job.codes[g][lo:hi]) for need in job.needs for g in need}
        local = {g: np.searchsorted(t, job.codes[g][lo:hi]) for g, t in touched.items()}
        sums = [{g: np.zeros((len(touched[g]), S)) for g in need} for need in job.needs]
        redo = []
        combine = np.multiply if self._sign is not None else np.add
        for a in starts:
            e = min(a + job.block, job.n)
            m = e - a
            base, acc, tmp = base_buf[:m], acc_buf[:m], tmp_buf[:m]
            if job.shared:
                _accumulate(job.shared, base, tmp, a, e, combine)
            for s, need in enumerate(job.needs):
                if not need:
                    continue
                if job.shared and job.own[s]:
                    np.copyto(acc, base)
                    for t in job.own[s]:
                        t.write(tmp, a, e)
                        combine(acc, tmp, out=acc)
                elif job.shared:
                    np.copyto(acc, base)
                elif job.own[s]:
                    _accumulate(job.own[s], acc, tmp, a, e, combine)
                else:
                    acc.fill(1.0 if self._sign is not None else 0.0)
                if not self._finish(acc, job.scenarios[s].slope, self._block_aux(job, s, a, e)):
                    redo.append((s, a, e))
                    continue
                w = job.weights[a:e]
                for g in need:
                    _reduce(sums[s][g], acc, w, local[g][a - lo:e - lo])
        return touched, sums, redo

    def _block_aux(self, job: "_Job", s: int, a: int, e: int):
        """The auxiliary parameters of block ``a:e`` under scenario ``s``, as (cells, S) or (S,)."""
        if not self.components:
            return self.auxiliary
        sc = job.scenarios[s]
        cells = job.cells.iloc[a:e]
        cells = cells.assign(**dict(sc.settings)) if sc.settings else cells
        out = dict(self.auxiliary)
        for name, sub in self.components.items():
            out[name] = np.ascontiguousarray(sub.predict(cells, sc.exclude).T)
        return out

    def _finish(self, acc: np.ndarray, slope: bool = False, aux=None) -> bool:
        """The combined terms -> the expected outcome (with ``slope``, its derivative by the
        linear predictor), in place; False when the product form over- or underflowed (inf * 0,
        or inf * a subnormal) and the block must be redone."""
        if self._link == "logit":  # acc = exp(-eta): p = 1 / (1 + acc)
            np.add(acc, 1.0, out=acc)
            np.reciprocal(acc, out=acc)
            if not acc.min() > 0.0:  # nan, or p = 0 from an infinite product
                return False
            np.minimum(acc, 1 - EPS, out=acc)  # as Bambi's inverse logit keeps p below 1
            if slope:  # p (1 - p)
                np.multiply(acc, 1.0 - acc, out=acc)
                return True
        elif self._link == "log":
            if not (np.isfinite(acc.max()) and np.isfinite(acc.min())):
                return False
            if slope:  # d exp(eta) / d eta = exp(eta)
                return True
        elif slope:
            acc[:] = LINKINV_SLOPE[self._link](acc)
            return True
        elif self._sign is None and self._link != "identity":
            acc[:] = self._linkinv(acc)
        if self._record.mean is not None:  # the family's expected outcome: acc is (cells, S)
            acc[:] = self._record.mean(acc, self.auxiliary if aux is None else aux)
            return bool(np.isfinite(acc.max()) and np.isfinite(acc.min()))
        return True


@dataclass(frozen=True)
class _Job:
    cells: pd.DataFrame
    weights: np.ndarray
    codes: list
    sizes: list
    needs: Sequence[Sequence[int]]
    scenarios: Sequence[Scenario]
    shared: list
    own: list
    block: int
    n: int


def _add_part(out, part) -> list:
    """Add a task's sums over the groups it touched; return its blocks left to redo."""
    touched, sums, redo = part
    for s, by_g in enumerate(sums):
        for g, values in by_g.items():
            out[s][g][touched[g]] += values
    return redo


def _accumulate(terms, acc, tmp, a, e, combine) -> None:
    terms[0].write(acc, a, e)
    for t in terms[1:]:
        t.write(tmp, a, e)
        combine(acc, tmp, out=acc)


def _reduce(out: np.ndarray, values: np.ndarray, w: np.ndarray, codes: np.ndarray) -> None:
    """out[g] += sum of w * values over the rows of group g (rows sorted by group, mostly)."""
    if codes[0] == codes[-1] and (len(codes) < 3 or (codes == codes[0]).all()):
        out[codes[0]] += w @ values
        return
    cut = np.flatnonzero(np.diff(codes)) + 1
    if len(cut) < 8:
        for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(codes)]):
            out[codes[lo]] += w[lo:hi] @ values[lo:hi]
        return
    groups, inv = np.unique(codes, return_inverse=True)
    dense = np.zeros((len(groups), len(codes)))
    dense[inv, np.arange(len(codes))] = w
    out[groups] += dense @ values


def _distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of the distinct table for every row of X, the distinct rows)."""
    if X.shape[1] == 0:
        return np.zeros(len(X), dtype=np.int64), X[:1]
    codes, uniq = pd.MultiIndex.from_arrays([X[:, j] for j in range(X.shape[1])]).factorize()
    first = np.asarray(uniq.to_list(), dtype=float).reshape(len(uniq), X.shape[1])
    return codes.astype(np.int64), first


def _relevant(settings: dict, variables) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in settings.items() if k in variables))


def _category_values(levels) -> np.ndarray:
    """Numeric category values for the mean category: the levels themselves when numeric, else 1..K."""
    try:
        return np.array([float(x) for x in levels])
    except ValueError:
        return np.arange(1, len(levels) + 1, dtype=float)


def _usable_cpus() -> int:
    from mrp_formula.system import cpu_count

    return cpu_count()
