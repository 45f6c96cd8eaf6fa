"""Simulation-based check of the whole pipeline: does it recover estimands it is given?

For each replicate r (``mrp recover SPEC --replicates K``):

1. pick true parameters: one draw of the prior (``truth="prior"``, the default: simulation-based
   calibration) or one draw of the posterior of a first fit of the spec (``truth="posterior"``:
   a recovery check);
2. simulate outcomes for the same sample rows from those parameters, with the family's own
   observation noise (every family: a gaussian draw includes its sigma, a negative binomial one
   its alpha, a hurdle one its psi and the noise of its non-zero part; the simulators of
   spec/families.py take the parent parameter per row and the draw's auxiliary parameters);
3. compute the true population estimands from that single draw, with the same
   poststratification and estimand code as ``run``, on a one-draw posterior;
4. refit the same spec on the simulated data, poststratify and summarise as ``run`` does;
5. compare: is the truth inside the reported interval, and where does it rank among the
   posterior draws?

Only with prior truths is the pipeline's calibration guaranteed (Talts et al. 2018): over the
replicates the truth is covered in Binomial(K, ci_prob) of them and its ranks are uniform. Both
are tested then, for every estimand row, at a family-wise level of ``STUDY_ALPHA`` over all the
tests of the study (Bonferroni), and a run that passes is "calibrated". The priors must be
proper, and the same in every replicate: Bambi's defaults (and any default of the spec) are
scaled to the data, so they are computed once on the real data and frozen for the truths and
every refit (:func:`mrp_formula.model.frozen_priors`). Posterior truths are not calibrated
even for a correct pipeline (the refit starts again from the prior); their coverage and ranks
are reported as a descriptive recovery check, without a verdict.

The truth is computed with ``poststrat.poststratify`` as bound when this module is imported,
the refit looks it up at call time like any caller of the pipeline. A test can so substitute a
broken poststratification into the pipeline under test while the truth stays correct. A bug
written into the poststratification or prediction code itself acts on the truth and on the
estimate alike, and no simulation study can see it (tests/test_poststrat.py checks that code
against hand computations).

Every number is a function of the spec, the content of the data and the seed: the sample and the
population are put in a canonical order (sorted by all their columns) before anything is
simulated or fitted, so neither the order in which rows are read nor the file layout matters;
replicates run in worker processes (``jobs``), and every random number of replicate r comes
from ``numpy.random.default_rng([seed, r])``, so results do not depend on ``jobs`` or on K.
Nothing here imports bambi or pymc: the model is reached through :mod:`mrp_formula.model`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mrp_formula.poststrat import estimands as est_mod
from mrp_formula.poststrat import sums as poststrat
from mrp_formula.notes import Note, interval_name
from mrp_formula.spec.families import FAMILIES
from mrp_formula.errors import FitError, Problem, SpecError, UsageError
from mrp_formula.output.files import check_out, sha256_text, staged_dir, write_json, write_table
from mrp_formula.output.manifest import manifest, sampler_entry
from mrp_formula.checks.diagnostics import fit_diagnostics
from mrp_formula.model import sampler as model_mod
from mrp_formula.model.plan import plan_fit
from mrp_formula.predict.cells import predictor as make_predictor
from mrp_formula.steps import Plan, estimate
from mrp_formula.system import cpu_count
from mrp_formula.model.cache import CACHE_DIR
from mrp_formula.spec.tree import load_spec
from mrp_formula.steps import build, default_out, out_origin, posterior as posterior_of, plan as plan_of
from mrp_formula.output.plots import panel_grid

SUPPORTED = tuple(name for name, f in FAMILIES.items() if f.simulate is not None or f.has_categories)
TRUTHS = ("prior", "posterior")
DEFAULT_TRUTH = "prior"
KIND = {"prior": "calibration (SBC)", "posterior": "recovery check"}
STUDY_ALPHA = 0.05  # family-wise error rate of all the tests of a calibration study (Bonferroni)
BAND = 0.95  # default probability of coverage_band
RANK_DRAWS = 100  # the truth is ranked among this many evenly thinned posterior draws
PRIOR_POOL = 1000  # prior draws sampled at once; replicate r takes draw r (K <= pool)

# The reference implementation for the truth (see the module docstring).
_REFERENCE_POSTSTRATIFY = poststrat.poststratify


@dataclass(frozen=True)
class RecoveryResult:
    """What ``recover`` found; the CLI prints it, nothing here prints."""

    summary: pd.DataFrame  # recovery.csv: one row per estimand row
    replicates: pd.DataFrame  # recovery_replicates.csv: one row per replicate x estimand row
    out: Path
    notes: tuple[str, ...]
    coverage_off: tuple[str, ...]  # labels of the estimand rows whose coverage is off (prior truths only)
    ranks_off: tuple[str, ...]  # labels whose ranks are not uniform (prior truths only)
    failed: tuple[str, ...]  # "replicate r: message" for replicates that could not be fitted
    seconds: float
    manifest: dict = field(default_factory=dict)
    truth: str = DEFAULT_TRUTH  # where the true parameters came from: "prior" or "posterior"
    underpowered: bool = False  # too few replicates for a pass to mean anything (no verdict then)

    @property
    def kind(self) -> str:
        """"calibration (SBC)" (prior truths) or "recovery check" (posterior truths)."""
        return KIND[self.truth]

    @property
    def ok(self) -> bool:
        """No test failed and no replicate failed (a recovery check has no tests)."""
        return not self.coverage_off and not self.ranks_off and not self.failed

    @property
    def calibrated(self) -> bool | None:
        """True for a calibration study (prior truths) that passed every test with every replicate
        fitted, False when it did not; None for a recovery check, which cannot tell, and for a study
        that passed with too few replicates for a pass to mean anything (:func:`underpowered`)."""
        return self.ok if self.truth == "prior" and not (self.ok and self.underpowered) else None


# ----------------------------------------------------------------------------- statistics


def coverage_band(k: int, prob: float, level: float = BAND) -> tuple[int, int]:
    """Counts [lo, hi] that a calibrated pipeline reaches with probability >= ``level``:
    covered ~ Binomial(k, prob)."""
    from scipy.stats import binom

    a = (1 - level) / 2
    return int(binom.ppf(a, k, prob)), int(binom.ppf(1 - a, k, prob))


def underpowered(k: int, prob: float, rows: int) -> bool:
    """Whether a study of ``k`` replicates (``rows`` estimand rows, Bonferroni over their tests)
    would pass intervals that cover two thirds of their nominal probability or less: then a pass
    says nothing, and the run gives no verdict."""
    lo, _ = coverage_band(k, prob, level=1 - single_test_level(rows))
    return lo <= 2 / 3 * prob * k


def coverage_p(covered: int, k: int, prob: float) -> float:
    """Equal-tailed exact p-value of a coverage count: 2 min(P(X <= covered), P(X >= covered)),
    X ~ Binomial(k, prob), at most 1. A count outside ``coverage_band(k, prob, 1 - a)`` has p <= a."""
    from scipy.stats import binom

    return float(min(1.0, 2 * min(binom.cdf(covered, k, prob), binom.sf(covered - 1, k, prob))))


def single_test_level(n_rows: int, alpha: float = STUDY_ALPHA) -> float:
    """Level of each single test of a calibration study of ``n_rows`` estimand rows: two tests per
    row (coverage and ranks), Bonferroni, so that the chance that any test of a calibrated
    pipeline fails is at most ``alpha``."""
    return alpha / (2 * max(1, n_rows))


def rank_bins(k: int) -> int:
    """Bins of the rank histogram: about five expected replicates per bin, 2 to 20 bins."""
    return int(max(2, min(20, k // 5)))


def rank_bin_probs(n_ranks: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges over the ranks 0..n_ranks and the probability of each bin under uniform ranks."""
    edges = np.linspace(0, n_ranks + 1, bins + 1)
    probs = np.histogram(np.arange(n_ranks + 1), bins=edges)[0] / (n_ranks + 1)
    return edges, probs


def rank_uniformity(ranks: np.ndarray, n_ranks: int, bins: int) -> tuple[float, float]:
    """Chi-square statistic and p-value of binned ranks (0..n_ranks) against uniform."""
    from scipy.stats import chisquare

    ranks = np.asarray(ranks, dtype=float)
    if len(ranks) < 2:
        return math.nan, math.nan
    edges, probs = rank_bin_probs(n_ranks, bins)
    counts = np.histogram(ranks, bins=edges)[0]
    res = chisquare(counts, probs * len(ranks))
    return float(res.statistic), float(res.pvalue)


def truth_rank(draws: np.ndarray, truth: float, n_ranks: int, rng: np.random.Generator) -> tuple[int, int]:
    """Rank of ``truth`` among ``n_ranks`` evenly thinned draws (ties broken at random)."""
    s = len(draws)
    n = min(n_ranks, s)
    thinned = draws[np.unique(np.linspace(0, s - 1, n).round().astype(int))]
    below = int(np.sum(thinned < truth))
    ties = int(np.sum(thinned == truth))
    return below + (int(rng.integers(ties + 1)) if ties else 0), len(thinned)


def replicate_rng(seed: int, replicate: int) -> np.random.Generator:
    """The random numbers of one replicate: a function of the spec seed and the index only."""
    return np.random.default_rng([int(seed), int(replicate)])


# ----------------------------------------------------------------------------- canonical order


def canonical_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows sorted by all columns (categories in their level order, numbers by value, anything
    else by its text), index reset: the same frame for any order of the same rows."""
    if frame.empty or not len(frame.columns):
        return frame.reset_index(drop=True)

    def key(col: pd.Series):
        if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_numeric_dtype(col) \
                or pd.api.types.is_bool_dtype(col):
            return col
        return col.astype(str)

    return frame.sort_values(list(frame.columns), key=key, kind="mergesort", ignore_index=True)


def canonical_tables(tables):
    """``Tables`` with the sample and the population in canonical order (see :func:`canonical_rows`):
    what recover simulates, fits and poststratifies, whatever order the rows were read in."""
    return dataclasses.replace(tables, sample=canonical_rows(tables.sample),
                               population=canonical_rows(tables.population))


# ----------------------------------------------------------------------------- simulation


def one_draw(post, chain: int, draw: int):
    """A single posterior (or prior) draw as a Dataset with chain and draw dimensions of size 1."""
    return post.isel(chain=[chain], draw=[draw]).assign_coords(chain=[0], draw=[0])


def simulate_outcomes(family: str, mu: np.ndarray, sample: pd.DataFrame, response_vars, rng,
                      sigma: float | None = None, weights: str | None = None,
                      alpha: float | None = None, aux: dict | None = None) -> pd.DataFrame:
    """The sample with its response replaced by draws given the expected outcome ``mu`` per row
    ((n,), or (n, K) category probabilities for categorical and cumulative; further columns,
    such as cumulative's expected value, are ignored), with the family's observation noise:
    gaussian N(mu, ``sigma``), negative binomial with mean mu and variance mu + mu^2 / ``alpha``;
    the other families' parameters by name in ``aux`` (``{"sigma": .., "psi": ..}``), with ``mu``
    their parent parameter (``CellPredictor.predict(..., parent=True)``; see spec/families.py).

    With frequency ``weights`` (a column: each row stands for that many identical observations,
    bernoulli and binomial only) the observations are simulated too: a bernoulli row of weight
    w becomes a row of k ones and a row of w - k zeros, k ~ Binomial(w, mu); a binomial row of
    n trials becomes one row of k ~ Binomial(w n, mu) successes in w n trials, weight 1 (the
    same likelihood; weighted binary models are always fitted on aggregated cells).
    """
    sample = sample.copy()
    y = response_vars[0]
    if weights:
        w = sample[weights].to_numpy(dtype="int64")
        if FAMILIES[family].response == "binary":
            k = rng.binomial(w, np.clip(mu, 0.0, 1.0))
            ones = sample.assign(**{y: 1, weights: k})
            zeros = sample.assign(**{y: 0, weights: w - k})
            out = pd.concat([ones, zeros], ignore_index=True)
            out[y] = out[y].astype("int64")
            return out[out[weights] > 0].reset_index(drop=True)
        if FAMILIES[family].response == "proportion":
            n = sample[response_vars[1]].to_numpy(dtype="int64") * w
            sample[y] = rng.binomial(n, np.clip(mu, 0.0, 1.0)).astype("int64")
            sample[response_vars[1]] = n
            sample[weights] = 1
            return sample
        raise SpecError(f"frequency weights are not supported for the {family} family")
    fam = FAMILIES[family]
    if fam.simulate is not None:  # the family's own simulator (spec/families.py)
        given = {"sigma": sigma, "alpha": alpha, **(aux or {})}
        missing = [a for a in fam.auxiliary if given.get(a) is None]
        if missing:
            raise FitError(f"a {family} simulation needs {', '.join(missing)}")
        aux = {a: given[a] for a in fam.auxiliary}
        trials = (sample[response_vars[1]].to_numpy(dtype="int64") if fam.response == "proportion"
                  else np.ones(len(mu), dtype="int64"))
        sample[y] = fam.simulate(np.asarray(mu, dtype=float), trials, aux, rng)
    elif fam.has_categories:
        col = sample[y]
        if not isinstance(col.dtype, pd.CategoricalDtype):
            raise FitError(f"the {family} response must be categorical to be simulated")
        levels = col.cat.categories
        p = np.asarray(mu, dtype=float)[:, : len(levels)]
        cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
        u = rng.random(len(p))
        codes = np.minimum((cdf < u[:, None]).sum(axis=1), len(levels) - 1)
        sample[y] = pd.Categorical.from_codes(codes, categories=levels, ordered=col.cat.ordered)
    else:  # pragma: no cover - checked before
        raise SpecError(f"cannot simulate the {family} family")
    return sample


def expected_by_row(predictor, sample: pd.DataFrame, keys, *, parent: bool = False) -> np.ndarray:
    """Expected outcome of every sample row under a one-draw predictor (with ``parent``: the
    family's parent parameter, what its simulator takes), computed once per distinct combination
    of the predictors."""
    keys = list(keys)
    if parent:
        predictor = _Parent(predictor)
    if not keys:
        return np.repeat(predictor.predict(sample.iloc[:1])[0, 0], len(sample))
    codes = sample.groupby(keys, observed=True, sort=False, dropna=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(sample))).groupby(codes).first().to_numpy()
    unique = sample.iloc[first][keys].reset_index(drop=True)
    return predictor.predict(unique)[0][codes]


class _Parent:
    """A predictor's parent parameter seen as its prediction."""

    def __init__(self, predictor):
        self._p = predictor

    def predict(self, cells, exclude=()):
        return self._p.predict(cells, exclude, parent=True)


def _estimand_draws(predictor, tables, spec, poststratify_fn):
    """Poststratify a predictor and assemble the estimand draws, as ``pipeline.run`` does."""
    pieces = est_mod.plan(spec.estimands, tables.population_vars)
    reduced = poststratify_fn(tables.population, predictor, est_mod.requests(pieces),
                              n_samples=predictor.n_samples)
    return est_mod.assemble(pieces, reduced, n_chains=predictor.n_chains, n_draws=predictor.n_draws,
                            group_columns=est_mod.group_columns(spec.estimands),
                            categories=predictor.categories)


@dataclass(frozen=True)
class _Context:
    """What every replicate needs; sent once to each worker process."""

    loaded: object  # LoadedSpec
    info: object  # FormulaInfo
    tables: object  # Tables
    fit_plan: object  # FitPlan of the original data (the truth's predictor is built on it)
    priors: dict | None = None  # frozen priors of every refit (prior truths), or None (the spec's, as run)


@dataclass(frozen=True)
class _Task:
    replicate: int
    truth: object  # xarray.Dataset with one draw (chain=1, draw=1)
    predictor_seed: int
    fit_seed: int
    sim_seed: int


_WORKER: dict = {}


def _init_worker(ctx: _Context) -> None:
    sys.stdout = sys.stderr  # nothing from a worker may reach a --json stdout
    warnings.simplefilter("ignore")
    _WORKER.clear()
    _WORKER["ctx"] = ctx


def run_replicate(ctx: _Context, task: _Task) -> dict:
    """Simulate, compute the truth, refit and compare: one replicate. Never raises for a failed
    fit; the error is returned instead."""

    t0 = time.perf_counter()
    loaded, info, tables = ctx.loaded, ctx.info, ctx.tables
    spec = loaded.spec
    family = spec.model.family
    try:
        # truth: one draw, the sample's outcomes simulated from it, its population estimands
        truth_pred = make_predictor(ctx.fit_plan, spec.model.link, {"posterior": task.truth}, tables, info,
                                    seed=task.predictor_seed)
        fam = FAMILIES[family]
        mu = expected_by_row(truth_pred, tables.sample, info.rhs_vars, parent=fam.mean is not None)
        aux = ({a: _scalar(task.truth, a) for a in fam.auxiliary if a not in truth_pred.components}
               if fam.simulate is not None else {})
        for name in truth_pred.components:  # model.formulas: one value per row (its cell's)
            aux[name] = expected_by_row(_Component(truth_pred, name), tables.sample, info.rhs_vars)
        rng = np.random.default_rng(task.sim_seed)
        sim_sample = simulate_outcomes(family, mu, tables.sample, info.response_vars, rng,
                                       weights=getattr(tables, "weights", None), aux=aux)
        truth_ed = _estimand_draws(truth_pred, tables, spec, _REFERENCE_POSTSTRATIFY)

        # the pipeline under test: the same spec refitted on the simulated outcomes
        sim_tables = dataclasses.replace(tables, sample=sim_sample)
        fit_spec = spec.fit.model_copy(update={"seed": task.fit_seed})
        loaded_r = loaded.model_copy(update={"spec": spec.model_copy(update={"fit": fit_spec})})
        plan_r = plan_fit(loaded_r, info, sim_tables)
        model_r = model_mod.build_model(loaded_r, info, plan_r)
        if ctx.priors is not None:  # the truths' own priors, not ones rescaled to the simulated data
            model_mod.set_frozen_priors(model_r, ctx.priors, plan_r.parameterization)
        fitted = model_mod.fit(model_r, loaded_r, mass_matrix=plan_r.mass_matrix, progress=False)
        est = estimate(Plan(loaded=loaded_r, info=info, tables=sim_tables, fit_plan=plan_r), fitted.posterior)
        pred, ed, table = est.predictor, est.draws, est.table
        diag = fit_diagnostics(fitted.posterior, ed.draws, pred.n_chains, pred.n_draws)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return {"replicate": task.replicate, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    if not _key_rows(ed.rows).astype(str).equals(_key_rows(truth_ed.rows).astype(str)):
        return {"replicate": task.replicate, "error": "the refit's estimand rows differ from the truth's"}

    rank_rng = np.random.default_rng([task.sim_seed, 1])
    rows = []
    for i in range(len(ed.rows)):
        truth = float(truth_ed.draws[i, 0])
        t = table.iloc[i]
        rank, n_ranked = truth_rank(ed.draws[i], truth, RANK_DRAWS, rank_rng)
        rows.append({"replicate": task.replicate, "row": i, "truth": truth, "mean": float(t["mean"]),
                     "median": float(t["median"]), "lower": float(t["lower"]), "upper": float(t["upper"]),
                     "sd": float(t["sd"]), "covered": bool(t["lower"] <= truth <= t["upper"]), "rank": rank, "rank_draws": n_ranked,
                     "error": float(t["mean"]) - truth, "ess_bulk": float(t["ess_bulk"]),
                     "r_hat": float(t["r_hat"]), "divergences": int(diag.divergences),
                     "fit_seed": task.fit_seed, "fit_seconds": round(fitted.seconds, 3)})
    return {"replicate": task.replicate, "rows": rows, "estimand_rows": _key_rows(ed.rows),
            "seconds": time.perf_counter() - t0}


class _Component:
    """The prediction of an auxiliary parameter with its own formula (``model.formulas``)."""

    def __init__(self, predictor, name: str):
        self._p = predictor.components[name]

    def predict(self, cells, exclude=()):
        return self._p.predict(cells, exclude)


def _scalar(draw, name: str) -> float:
    """A scalar parameter of a one-draw Dataset (sigma, alpha)."""
    if name not in draw:
        raise FitError(f"the parameter draws have no '{name}'")
    return float(np.asarray(draw[name]).reshape(-1)[0])


def _key_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """What identifies an estimand row: estimand, group columns and scale (later columns, such as
    decision numbers computed from the draws, are not part of it)."""
    cols = list(rows.columns)
    return rows[cols[: cols.index("scale") + 1]] if "scale" in cols else rows


# ----------------------------------------------------------------------------- the study


def default_jobs() -> int:

    return max(1, min(2, cpu_count()))


def row_label(row: pd.Series) -> str:
    """``click_rate[treatment=control]``: the estimand and its non-empty group columns."""
    parts = [f"{c}={row[c]}" for c in row.index
             if c not in ("estimand", "scale") and row[c] is not None and not (isinstance(row[c], float) and math.isnan(row[c]))]
    return f"{row['estimand']}[{', '.join(parts)}]" if parts else str(row["estimand"])


def recover(path, *, replicates: int, out=None, overrides=(), jobs: int | None = None,
            truth: str | None = None, source: str | None = None, cache: bool = True,
            into_existing: bool = False, scheduler: str | None = None,
            on_replicate: Callable[[int, int, int, float, str | None], None] | None = None) -> RecoveryResult:
    """Run the simulation study and write ``recovery.csv``, ``recovery_replicates.csv`` and
    ``rank_histogram.png`` (plus ``manifest.json``) atomically into ``out``
    (default ``runs/<name>/recovery``).

    ``truth`` is ``"prior"`` (default: simulation-based calibration, with tests) or
    ``"posterior"`` (a descriptive recovery check); ``source`` is its former name.
    ``on_replicate(done, total, replicate, seconds, error)`` is called as replicates finish.
    ``jobs`` worker processes of a local Dask cluster run the replicates (1: in this process),
    or the workers of the Dask ``scheduler`` at an address (``tcp://HOST:PORT``); the results do
    not depend on which.
    """

    t0 = time.perf_counter()
    if truth is not None and source is not None and truth != source:
        raise UsageError(Problem(f"--truth {truth} and --source {source} disagree",
                                 hint="--source is the former name of --truth; give only --truth"))
    truth = truth if truth is not None else (source if source is not None else DEFAULT_TRUTH)
    if truth not in TRUTHS:
        raise UsageError(Problem(f"unknown truth source '{truth}'",
                                 hint="use --truth prior (calibration) or --truth posterior (recovery check)"))
    if replicates < 2:
        raise UsageError(Problem("a recovery study needs at least 2 replicates", got=str(replicates),
                                 hint="e.g. --replicates 20"))
    if truth == "prior" and replicates > PRIOR_POOL:
        raise UsageError(Problem(f"--truth prior supports at most {PRIOR_POOL} replicates", got=str(replicates)))
    if scheduler is not None and jobs is not None:
        raise UsageError(Problem("--workers starts a local cluster; --scheduler uses an existing one",
                                 key="--workers", hint="give one of them"))
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise UsageError(Problem("--jobs must be at least 1", got=str(jobs)))

    loaded = load_spec(path, tuple(overrides))
    spec = loaded.spec
    family = spec.model.family
    if family not in SUPPORTED:
        raise SpecError(Problem(f"recovery simulates {', '.join(SUPPORTED)} outcomes, not {family}",
                                key="model.family", file=str(loaded.path), line=loaded.line("model", "family")))
    base = plan_of(path, overrides, loaded=loaded)
    info = base.info
    # the same rows in the same order, however they were read: simulation and fits depend on it
    tables = canonical_tables(base.tables)
    fit_plan = plan_fit(loaded, info, tables)
    plan = dataclasses.replace(base, tables=tables, fit_plan=fit_plan)
    bmodel = build(plan)
    out_dir = Path(out) if out else default_out(loaded) / "recovery"
    origin = out_origin(loaded, out)
    check_out(out_dir, into_existing=into_existing, origin=origin)  # before any sampling
    timings = {"prepare": time.perf_counter() - t0}
    notes: list[str] = []
    if base.targets is not None:
        notes.append(Note("recover.calibrate_left_out",
                          f"[calibrate] is left out: the study simulates, refits and poststratifies without the "
                          f"known means of '{base.targets.by}', so it checks the model and the poststratification, "
                          f"not the calibration (in a run the estimands of each level of '{base.targets.by}' are "
                          f"fixed to its known mean)", "warning"))

    # the true parameters: draws of the prior, or of a first fit's posterior
    t1 = time.perf_counter()
    seed = spec.fit.seed
    frozen = None
    priors_used: dict[str, dict[str, str]] = {}
    if truth == "prior":
        frozen = model_mod.frozen_priors(bmodel)
        improper = model_mod.improper_priors(frozen)
        if improper:
            raise SpecError(Problem(
                f"simulation-based calibration draws the true parameters from the priors, and the prior of "
                f"{', '.join(repr(n) for n in improper)} is improper (Flat or HalfFlat)", key="model.priors",
                file=str(loaded.path), line=loaded.line("model", "priors") or loaded.line("model"),
                hint="give a proper prior, e.g. \"Normal(0, 2)\", or use --truth posterior for a recovery check"))
        given = set(spec.model.priors)
        for name, text in model_mod.describe_priors(frozen).items():
            priors_used[name] = {"prior": text, "from": "spec" if name in given else "default"}
        defaults = [f"{n}: {d['prior']}" for n, d in priors_used.items() if d["from"] == "default"]
        pool = model_mod.sample_prior(bmodel, draws=PRIOR_POOL, seed=seed)["posterior"].to_dataset()
        notes.append(f"{KIND[truth]}: true parameters are draws of the prior, and every refit uses that same "
                     f"prior; coverage and rank uniformity are tested")
        if defaults:
            notes.append("priors the spec does not set were computed once on the real data (Bambi's defaults, "
                         "scaled to it) and kept fixed for the truths and every refit: " + "; ".join(defaults))
    else:
        cache_root = (out_dir.resolve().parent if out else default_out(loaded).resolve().parent) / CACHE_DIR
        fitted = posterior_of(plan, [cache_root], model=bmodel, cache=cache)
        posterior, reused = fitted.fit.posterior, fitted.reused
        pool = posterior["posterior"].to_dataset()
        notes.append(f"{KIND[truth]}: true parameters are draws of the posterior of a first fit"
                     f"{' (cached)' if reused else ''}. This is not a calibration test: even a correct pipeline "
                     f"need not cover these truths at the nominal rate, nor rank them uniformly, so coverage and "
                     f"ranks are shown without a verdict; --truth prior tests calibration")
    timings["truth_draws"] = time.perf_counter() - t1
    n_chains, n_draws = pool.sizes["chain"], pool.sizes["draw"]

    tasks = []
    for r in range(replicates):
        rng = replicate_rng(seed, r)
        if truth == "posterior":
            flat = int(rng.integers(n_chains * n_draws))
            c, d = divmod(flat, n_draws)
        else:
            c, d = 0, r
        tasks.append(_Task(replicate=r, truth=one_draw(pool, c, d),
                           predictor_seed=int(rng.integers(2**31 - 1)), fit_seed=int(rng.integers(2**31 - 1)),
                           sim_seed=int(rng.integers(2**31 - 1))))
    ctx = _Context(loaded=loaded, info=info, tables=tables, fit_plan=fit_plan, priors=frozen)

    # the replicates
    t2 = time.perf_counter()
    remote = _Remote(spec=str(loaded.path), spec_text=loaded.text, overrides=tuple(overrides),
                     priors=frozen)
    results = _run_all(ctx, tasks, jobs, on_replicate, scheduler=scheduler, remote=remote)
    timings["replicates"] = time.perf_counter() - t2

    failed = tuple(f"replicate {res['replicate']}: {res['error']}" for res in results if "error" in res)
    good = [res for res in results if "error" not in res]
    if not good:
        raise FitError(Problem(f"all {replicates} replicates failed; the first: {failed[0]}",
                               key="fit", file=str(loaded.path), line=loaded.line("fit")))
    est_rows = good[0]["estimand_rows"].reset_index(drop=True)
    labels = [row_label(est_rows.iloc[i]) for i in range(len(est_rows))]
    reps = pd.DataFrame([row for res in good for row in res["rows"]])
    reps = reps.sort_values(["replicate", "row"]).reset_index(drop=True)
    keys = est_rows.drop(columns=["scale"]).assign(label=labels)
    keys.insert(0, "row", range(len(keys)))
    reps = keys.merge(reps, on="row", how="right")
    reps.insert(0, "replicate", reps.pop("replicate"))
    reps.insert(1, "truth_from", truth)

    summary, cov_off, ranks_off, row_notes = summarise_study(reps, keys, spec.report.ci_prob, spec.report.ci_kind,
                                                        truth)
    notes += row_notes
    if failed:
        notes.append(Note("recover.failed", f"{len(failed)} of {replicates} replicates failed and are left out (the first: {failed[0]}); "
                     f"failures are part of what the study found, and leaving them out can hide a bias", "warning"))
    n_div = int(reps.groupby("replicate")["divergences"].first().gt(0).sum())
    if n_div:
        notes.append(f"{n_div} of {len(good)} refits had divergent transitions (column divergences of "
                     f"recovery_replicates.csv); coverage and ranks show whether they matter for the estimands")
    low_ess = reps.loc[reps["ess_bulk"] < min(RANK_DRAWS, reps["rank_draws"].max()), "replicate"].nunique()
    if low_ess:
        notes.append(f"{low_ess} refit(s) have an estimand ESS below the {RANK_DRAWS} draws the truth is ranked "
                     f"among: correlated draws can bend the rank histogram; raise fit.draws")
    calibrated = (not cov_off and not ranks_off and not failed) if truth == "prior" else None
    weak = truth == "prior" and underpowered(len(good), spec.report.ci_prob, len(keys))
    if calibrated and weak:
        lo, hi = coverage_band(len(good), spec.report.ci_prob, level=1 - single_test_level(len(keys)))
        needed = next(n for n in range(len(good) + 1, 10_000)
                      if not underpowered(n, spec.report.ci_prob, len(keys)))
        notes.append(Note("recover.underpowered",
                          f"verdict: none: with {len(good)} replicates any count of {lo}-{hi} covered would have "
                          f"passed, so intervals that cover {lo / len(good):.0%} of the time would pass for "
                          f"{100 * spec.report.ci_prob:.3g}% ones: the study cannot tell a calibrated pipeline from a "
                          f"badly miscalibrated one; run at least {needed} replicates (--replicates {needed})",
                          "warning"))
        calibrated = None
    elif truth == "prior" and calibrated:
        lo, hi = coverage_band(len(good), spec.report.ci_prob, level=1 - single_test_level(len(keys)))
        notes.append(f"verdict: calibrated ({len(good)} replicates; every coverage count and rank test passed at "
                     f"a family-wise level of {STUDY_ALPHA:.0%}, Bonferroni over {2 * len(keys)} tests; any count "
                     f"of {lo}-{hi} covered would have passed, so more replicates make the check sharper)")
    elif truth == "prior":
        notes.append(Note("recover.not_calibrated", f"verdict: NOT calibrated ({'; '.join(_why_not(cov_off, ranks_off, failed))})", "warning"))

    timings["total"] = time.perf_counter() - t0
    level = single_test_level(len(keys))
    sections = {
        "truth": truth, "kind": KIND[truth], "calibrated": calibrated,
        "replicates": replicates, "replicates_used": len(good), "jobs": None if scheduler else jobs,
        "scheduler": scheduler or ("local" if jobs > 1 else "in-process"), "seed": seed,
        "family": family,
        "sampler": sampler_entry(loaded),
        "ci_prob": spec.report.ci_prob, "ci_kind": spec.report.ci_kind,
        "tests": ({"family_wise_alpha": STUDY_ALPHA, "adjustment": "bonferroni", "tests": 2 * len(keys),
                   "level_per_test": level, "coverage": "exact binomial, equal tails",
                   "ranks": "chi-square over rank_bins bins"} if truth == "prior" else None),
        "rank_draws": RANK_DRAWS, "rank_bins": rank_bins(len(good)),
        "priors": priors_used or None,
        "coverage_off": list(cov_off), "ranks_off": list(ranks_off), "failed": list(failed),
    }
    manifest_ = manifest(loaded, sections, overrides=overrides, notes=notes, timings=timings)
    with staged_dir(out_dir, into_existing=into_existing, origin=origin) as tmp:
        write_table(summary, tmp / "recovery.csv")
        write_table(reps, tmp / "recovery_replicates.csv")
        plot_rank_histogram(reps, summary, tmp / "rank_histogram.png",
                            title=f"{spec.name}, {KIND[truth]} with {truth} truths: rank of the truth among "
                                  f"{int(reps['rank_draws'].max())} thinned posterior draws, {len(good)} replicates")
        write_json(manifest_, tmp / "manifest.json")
    return RecoveryResult(summary=summary, replicates=reps, out=out_dir, notes=tuple(notes),
                          coverage_off=cov_off, ranks_off=ranks_off, failed=failed,
                          seconds=timings["total"], manifest=manifest_, truth=truth, underpowered=weak)


def _why_not(cov_off, ranks_off, failed) -> list[str]:
    out = []
    if cov_off:
        out.append(f"coverage is off for {', '.join(cov_off)}")
    if ranks_off:
        out.append(f"ranks are not uniform for {', '.join(ranks_off)}")
    if failed:
        out.append(f"{len(failed)} replicate(s) failed")
    return out


def _run_all(ctx: _Context, tasks: list[_Task], jobs: int, on_replicate, *, scheduler: str | None = None,
             remote: "_Remote | None" = None) -> list[dict]:
    results = []
    total = len(tasks)
    if jobs == 1 and scheduler is None:
        _init_worker_inline(ctx)
        for task in tasks:
            res = run_replicate(ctx, task)
            results.append(res)
            if on_replicate:
                on_replicate(len(results), total, task.replicate, res.get("seconds", 0.0), res.get("error"))
        return results
    from mrp_formula.commands.scheduler import Scheduler

    items = [dataclasses.replace(remote, task=t) for t in tasks]
    done = [0]

    def event(e) -> None:
        if e.kind == "started":
            return
        done[0] += 1
        res = e.result if e.kind == "done" else {"error": e.error}
        if on_replicate:
            on_replicate(done[0], total, tasks[e.index].replicate, res.get("seconds", 0.0), res.get("error"))

    with Scheduler(workers=None if scheduler else min(jobs, total), address=scheduler) as sched:
        out = sched.run(remote_replicate, items, on_event=event)
    for task, res in zip(tasks, out):
        if isinstance(res, BaseException):  # the workers kept dying on it
            res = {"replicate": task.replicate, "error": f"{type(res).__name__}: {res}".splitlines()[0]}
        results.append(res)
    return sorted(results, key=lambda res: res["replicate"])


@dataclass(frozen=True)
class _Remote:
    """One replicate for a Dask worker: the spec's text as the client read it, with its path (the
    folder its relative paths start from; the worker plans it itself, as the client did: the same
    canonical tables and fit plan), the frozen priors and the task."""

    spec: str
    spec_text: str
    overrides: tuple[str, ...]
    priors: dict | None
    task: _Task | None = None


def remote_replicate(item: _Remote) -> dict:
    """On a worker: the context of the spec (built once per process), then the replicate."""
    key = (item.spec, sha256_text(item.spec_text), item.overrides)
    if _WORKER.get("key") != key:
        loaded = load_spec(item.spec, item.overrides, text=item.spec_text)
        base = plan_of(item.spec, item.overrides, loaded=loaded)
        tables = canonical_tables(base.tables)
        ctx = _Context(loaded=loaded, info=base.info, tables=tables, fit_plan=plan_fit(loaded, base.info, tables))
        _init_worker(ctx)
        _WORKER["key"] = key
    ctx = dataclasses.replace(_WORKER["ctx"], priors=item.priors)
    return run_replicate(ctx, item.task)


def _init_worker_inline(ctx: _Context) -> None:
    """The in-process path (jobs=1) shares the worker's model cache but keeps stdout."""
    if _WORKER.get("ctx") is not ctx:
        _WORKER.clear()
        _WORKER["ctx"] = ctx


def summarise_study(reps: pd.DataFrame, keys: pd.DataFrame, ci_prob: float, ci_kind: str, truth: str = "prior"):
    """One row per estimand row. With prior truths coverage and ranks are tested, each at
    :func:`single_test_level` (Bonferroni over two tests per row); with posterior truths the same
    numbers are descriptive and the verdict columns are empty."""
    rows, cov_off, ranks_off, notes = [], [], [], []
    tested = truth == "prior"
    level = single_test_level(len(keys))
    for _, key in keys.iterrows():
        d = reps[reps["row"] == key["row"]]
        k = len(d)
        covered = int(d["covered"].sum())
        n_ranks = int(d["rank_draws"].max())
        bins = rank_bins(k)
        chi2, p = rank_uniformity(d["rank"].to_numpy(), n_ranks, bins)
        mean_u = float(((d["rank"] + 0.5) / (d["rank_draws"] + 1)).mean())
        rec = key.to_dict()
        rec.update(truth_from=truth, kind=KIND[truth], replicates=k, ci_prob=ci_prob, ci_kind=ci_kind,
                   covered=covered, coverage=covered / k, coverage_p=coverage_p(covered, k, ci_prob))
        if tested:
            lo, hi = coverage_band(k, ci_prob, level=1 - level)
            rec.update(band_level=1 - level, band_lower=lo / k, band_upper=hi / k, coverage_ok=lo <= covered <= hi)
        else:
            rec.update(band_level=math.nan, band_lower=math.nan, band_upper=math.nan, coverage_ok=None)
        sd = d["sd"] if "sd" in d else pd.Series(np.nan, index=d.index)
        rec.update(mean_truth=float(d["truth"].mean()), mean_error=float(d["error"].mean()),
                   mean_abs_error=float(d["error"].abs().mean()),
                   rmse=float(np.sqrt((d["error"] ** 2).mean())),
                   mean_width=float((d["upper"] - d["lower"]).mean()),
                   mean_error_sd=float((d["error"] / sd.where(sd > 0)).mean()),
                   rank_draws=n_ranks, rank_bins=bins, mean_rank=mean_u, rank_chi2=chi2, rank_p=p,
                   rank_alpha=level if tested else math.nan,
                   ranks_ok=(not (p < level)) if tested else None)
        rows.append(rec)
        label = key["label"]
        if not tested:
            notes.append(f"{label}: {covered}/{k} = {covered / k:.0%} of the {interval_name(ci_prob, ci_kind)} "
                         f"intervals hold the posterior-drawn truth (mean error {rec['mean_error']:+.4g}, "
                         f"{rec['mean_error_sd']:+.2f} posterior sd; rank p = {p:.2g}); descriptive, no verdict")
            continue
        if not rec["coverage_ok"]:
            cov_off.append(label)
            why = ("the intervals are too narrow or off centre" if covered < lo
                   else "the intervals are wider than they need to be")
            notes.append(Note("recover.coverage_off", f"coverage is OFF for {label}: {covered}/{k} = {covered / k:.0%} of the "
                         f"{interval_name(ci_prob, ci_kind)} intervals hold the truth; a calibrated pipeline gives "
                         f"{lo}-{hi} of {k} ({lo / k:.0%}-{hi / k:.0%}, the {1 - level:.2%} binomial band: "
                         f"{STUDY_ALPHA:.0%} family-wise over {2 * len(keys)} tests): {why} "
                         f"(mean error {rec['mean_error']:+.4g}, mean truth {rec['mean_truth']:.4g})", "warning"))
        if not rec["ranks_ok"]:
            ranks_off.append(label)
            side = "above" if mean_u > 0.5 else "below"
            notes.append(Note("recover.ranks_off", f"ranks of the truth are not uniform for {label} (chi-square p = {p:.2g} < {level:.2g}, "
                         f"{bins} bins): the truth tends to lie {side} the posterior draws", "warning"))
    if tested and not cov_off:
        k = int(reps["replicate"].nunique())
        notes.append(f"coverage is plausible for all {len(keys)} estimand rows: each count within its binomial band "
                     f"around {100 * ci_prob:.3g}% for {k} replicates ({STUDY_ALPHA:.0%} family-wise, Bonferroni)")
    summary = pd.DataFrame(rows)
    return summary, tuple(cov_off), tuple(ranks_off), notes


# ----------------------------------------------------------------------------- plot


def plot_rank_histogram(reps: pd.DataFrame, summary: pd.DataFrame, path: Path, *, title: str) -> None:
    """One panel per estimand row: binned ranks, the uniform expectation and its 99% band."""
    from scipy.stats import binom

    n = len(summary)
    fig, axes = panel_grid(n, width=4.2, height=3.3)
    for ax, (_, s) in zip(axes.flat, summary.iterrows()):
        d = reps[reps["row"] == s["row"]]
        k, bins, n_ranks = int(s["replicates"]), int(s["rank_bins"]), int(s["rank_draws"])
        edges, probs = rank_bin_probs(n_ranks, bins)
        counts = np.histogram(d["rank"].to_numpy(dtype=float), bins=edges)[0]
        lo = binom.ppf(0.005, k, probs)
        hi = binom.ppf(0.995, k, probs)
        xs = edges / (n_ranks + 1)
        tested = s["truth_from"] == "prior"
        bad = tested and not (s["coverage_ok"] and s["ranks_ok"])
        fill, edge = ("#f5b7b1", "#c0392b") if bad else ("#aed6f1", "#2471a3")
        ax.stairs(counts, xs, fill=True, color=fill, zorder=1)
        ax.stairs(counts, xs, color=edge, linewidth=1.6, zorder=2, label="replicates per rank bin")
        ax.stairs(k * probs, xs, color="0.2", linestyle="--", zorder=3, label="expected if ranks are uniform")
        ax.stairs(hi, xs, color="0.45", linestyle=":", linewidth=1.3, zorder=3, baseline=None,
                  label="99% band if uniform")
        ax.stairs(lo, xs, color="0.45", linestyle=":", linewidth=1.3, zorder=3, baseline=None)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, max(counts.max(), hi.max()) * 1.15 + 0.5)
        ax.set_xlabel("rank of the truth, scaled (0: below all draws, 1: above all)", fontsize=8)
        ax.set_ylabel("replicates")
        if tested:
            status = "OFF" if not s["coverage_ok"] else "ok"
            verdict = f"{status}; band {s['band_lower']:.0%}-{s['band_upper']:.0%}"
        else:
            verdict = "descriptive"
        ax.set_title(f"{s['label']}\ncoverage {int(s['covered'])}/{k} ({verdict}), rank p = {s['rank_p']:.2g}",
                     fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
