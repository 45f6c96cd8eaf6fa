"""Model comparison by PSIS-LOO: specs fitted on the same data, ranked by their expected log
pointwise predictive density (``elpd_loo``), with its standard error, the effective number of
parameters (``p_loo``), the difference to the best spec and the standard error of that
difference, stacking weights and Pareto-k diagnostics (ArviZ ``loo`` and ``compare``).

Each spec is fitted the way ``mrp run`` fits it (same plan, same fit cache). LOO compares
predictions of the same observations, so the specs must model the same response on the same
rows: that is checked before anything is sampled, and a mismatch is refused. Bernoulli and
binomial specs may be fitted on aggregated binomial cells (rows with identical predictors
merged); LOO then leaves out one cell at a time, not one row, which answers another question,
and a fit on cells cannot be compared with a fit on rows (or on other cells) at all.

Nothing here prints: :func:`compare` returns a frozen :class:`CompareResult` and writes
``compare.csv`` and ``manifest.json`` atomically into the output folder.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mrp_formula.errors import DataError, Problem, SpecError, UsageError
from mrp_formula.spec.levels import canon_series
from mrp_formula.output.files import Origin, check_out, sha256_text, staged_dir, write_json, write_table
from mrp_formula.output.manifest import manifest
from mrp_formula.model import sampler as model_mod
from mrp_formula.model.cache import CACHE_DIR
from mrp_formula.steps import default_out, plan_and_model, posterior

METHOD = "stacking"
COLUMNS = ["model", "rank", "elpd_loo", "se", "p_loo", "elpd_diff", "diff_se", "p_worse", "weight", "loo_unit",
           "n_loo", "pareto_k_max", "n_high_k", "good_k", "divergences", "fit", "formula", "spec"]
# model: the spec's name; rank: 0 is the best; elpd_loo, se: PSIS-LOO estimate and its standard error;
# p_loo: effective number of parameters; elpd_diff, diff_se: elpd_loo minus the best's (<= 0) and the
# standard error of that difference; p_worse: normal-approximation probability of being worse than the
# best; weight: stacking weight; loo_unit, n_loo: what LOO leaves out ("row" or "cell") and how many;
# pareto_k_max, n_high_k, good_k: the largest Pareto k, how many exceed good_k (unreliable terms);
# divergences: divergent transitions of the fit; fit: "sampled" or "cached".
SMALL_DIFF = 4.0  # |elpd_diff| below this: the models predict about equally well (Sivula et al.)


@dataclass(frozen=True)
class CompareResult:
    """The comparison table (best spec first) and what to say about it; the CLI prints it."""

    table: pd.DataFrame  # compare.csv, columns COLUMNS
    out: Path
    unit: str  # "row" or "cell": what LOO leaves out
    n_obs: int  # sample rows every spec is fitted on
    n_loo: int  # rows or cells LOO leaves out one at a time
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    manifest: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Entry:
    path: Path  # as given
    label: str
    plan: object  # steps.Plan
    model: object  # bambi.Model

    @property
    def loaded(self):
        return self.plan.loaded

    @property
    def fp(self):
        return self.plan.fit_plan

    @property
    def file(self) -> str:
        return str(self.plan.loaded.path)


def compare(paths: Sequence, *, out=None, overrides=(), refit: bool = False, cache: bool = True,
            progress: bool = False, into_existing: bool = False,
            on_spec: Callable[[int, int, str, bool, float], None] | None = None) -> CompareResult:
    """Fit every spec (or reuse its cached fit), compute PSIS-LOO and compare.

    ``overrides`` (``--set``) apply to every spec. The fit cache is the one beside ``out``
    (default ``runs/compare``, so ``runs/.mrp-cache`` like ``mrp run``); a matching fit in the
    cache beside the spec's own run folder is reused too. ``on_spec(done, total, label, reused,
    seconds)`` is called as each spec is fitted and scored.
    """

    t0 = time.perf_counter()
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise UsageError(Problem("a comparison needs at least two specs", got=str(len(paths)),
                                 hint="mrp compare A.toml B.toml [C.toml ...]"))
    prepared = [plan_and_model(p, overrides) for p in paths]
    labels = _labels(paths, [plan.loaded.spec.name for plan, _ in prepared])
    entries = [_Entry(path=p, label=lab, plan=plan, model=m) for p, lab, (plan, m) in zip(paths, labels, prepared)]
    orders = check_same_data(entries)
    first = entries[0]
    unit = "cell" if first.fp.aggregated else "row"
    n_obs, n_loo = int(first.fp.rows_in), len(first.fp.data)

    out_dir = Path(out) if out else Path.cwd() / "runs" / "compare"
    origin = Origin("--out" if out else "")
    check_out(out_dir, into_existing=into_existing, origin=origin)  # before any fit
    primary = out_dir.resolve().parent / CACHE_DIR
    loos, fits = {}, {}
    for i, e in enumerate(entries):
        t1 = time.perf_counter()
        fitted = posterior(e.plan, [primary, default_out(e.loaded).resolve().parent / CACHE_DIR], model=e.model,
                           refit=refit, cache=cache, progress=progress)
        loos[e.label] = entry_loo(e, fitted, orders[e.label])
        fits[e.label] = fitted
        if on_spec:
            on_spec(i + 1, len(entries), e.label, fitted.reused, time.perf_counter() - t1)

    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = az.compare(loos, method=METHOD, round_to="none")

    table = compare_table(cmp, loos, {e.label: e for e in entries}, fits, unit)

    warns, notes = _messages(table, unit, n_obs, n_loo)
    notes += [f"{e.label}: {fits[e.label].note}" for e in entries if fits[e.label].note]
    seconds = time.perf_counter() - t0
    sections = {
        "method": f"PSIS-LOO (arviz loo), {METHOD} weights (arviz compare)",
        "specs": [{"label": e.label, "path": str(e.loaded.path), "sha256": sha256_text(e.loaded.text),
                   "name": e.loaded.spec.name, "formula": e.plan.info.text, "fitted_formula": e.fp.formula,
                   "family": e.fp.family, "aggregated": e.fp.aggregated, "cells_fitted": e.fp.cells,
                   "fit_cache": {"key": fits[e.label].key, "reused": fits[e.label].reused}}
                  for e in entries],
        "loo": {"unit": unit, "n_obs": n_obs, "n_loo": n_loo},
    }
    manifest_ = manifest(None, sections, overrides=overrides, notes=notes, warnings=warns,
                         timings={"total": seconds})
    with staged_dir(out_dir, into_existing=into_existing, origin=origin) as tmp:
        write_table(table, tmp / "compare.csv")
        write_json(manifest_, tmp / "manifest.json")
    return CompareResult(table=table, out=out_dir, unit=unit, n_obs=n_obs, n_loo=n_loo, warnings=tuple(warns),
                         notes=tuple(notes), manifest=manifest_, seconds=seconds)


def entry_loo(e: _Entry, fitted, order: np.ndarray):
    """PSIS-LOO of one spec's fit, its observations in the shared canonical ``order``."""
    codes, first_rows = row_patterns(e.fp.data)
    if len(first_rows) == len(codes):  # every fitted row (or cell) differs from the others
        ll = model_mod.pointwise_log_likelihood(e.model, fitted.fit.posterior)
        ll, codes = ll.isel(__obs__=order), None
    else:  # identical rows have identical terms: compute each once, expand after PSIS
        ll = model_mod.pointwise_log_likelihood(e.model, fitted.fit.posterior, data=e.fp.data.iloc[first_rows])
        codes = codes[order]
    return psis_loo(fitted.fit.posterior, ll.assign_coords(__obs__=np.arange(ll.sizes["__obs__"])), codes)


def compare_table(cmp: pd.DataFrame, loos: dict, by_label: dict, fits: dict, unit: str) -> pd.DataFrame:
    """compare.csv from arviz ``compare``'s table, best first."""
    rows = []
    for name, r in cmp.iterrows():
        e, res, fitted = by_label[name], loos[name], fits[name]
        k = np.asarray(res.pareto_k, dtype=float).ravel()
        rows.append({
            "model": name, "rank": int(r["rank"]), "elpd_loo": float(r["elpd"]), "se": float(r["se"]),
            "p_loo": float(r["p"]), "elpd_diff": float(r["elpd_diff"]), "diff_se": float(r["dse"]),
            "p_worse": float(r["p_worse"]), "weight": float(r["weight"]), "loo_unit": unit,
            "n_loo": int(res.n_data_points), "pareto_k_max": float(np.nanmax(k)),
            "n_high_k": int(np.sum(k > res.good_k)), "good_k": float(res.good_k),
            "divergences": _divergences(fitted.fit.posterior), "fit": "cached" if fitted.reused else "sampled",
            "formula": e.plan.info.text, "spec": str(e.path),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- same data?


def check_same_data(entries: Sequence[_Entry]) -> dict[str, np.ndarray]:
    """Refuse specs that are not fitted on the same observations, before anything is sampled.

    Checks, against the first spec: the response, the number of observations, the aggregation
    (rows, or cells of the same predictors), rows dropped for missing values, and the fitted rows
    (or cells) themselves. Returns, per label, the order that lines the fitted rows/cells up
    (rows: sorted by the response and the shared predictors; cells: by their predictor values).
    """
    first = entries[0]
    rest = entries[1:]

    # the response
    bad = [e for e in rest if _norm(e.plan.info.response) != _norm(first.plan.info.response)]
    if bad:
        raise SpecError([Problem(f"{_who(e, entries)} models the response {e.plan.info.response!r} but {_who(first, entries)} models "
                                 f"{first.plan.info.response!r}: LOO compares predictions of the same outcome only",
                                 key="model.formula", file=e.file, line=e.loaded.line("model", "formula"),
                                 hint="compare specs with the same response (left of ~) on the same data")
                         for e in bad])

    # the number of observations
    bad = [e for e in rest if int(e.fp.rows_in) != int(first.fp.rows_in)]
    if bad:
        raise DataError([Problem(f"{_who(e, entries)} is fitted on {int(e.fp.rows_in)} observations but {_who(first, entries)} on "
                                 f"{int(first.fp.rows_in)}{_sources(e, first)}: the specs are not fitted on the "
                                 f"same data, and LOO can only compare specs that are",
                                 key="data", file=e.file, line=e.loaded.line("data"),
                                 hint="use the same data, query, joins and missing-value handling in every spec")
                         for e in bad])

    # the aggregation
    modes = {e.label: _mode(e) for e in entries}
    if len(set(modes.values())) > 1:
        weighted = any(e.loaded.spec.data.weights for e in entries)
        hint = ('set model.aggregate = "never" in every spec (or --set model.aggregate=never) to fit and '
                'compare rows')
        if weighted:
            hint += "; specs with data.weights are always fitted on cells: expand the weighted rows instead"
        raise SpecError([Problem(f"{_who(e, entries)} is fitted on {_describe_mode(e)} but {_who(first, entries)} on "
                                 f"{_describe_mode(first)}: the elpd of different cells (or of cells and rows) "
                                 f"are not comparable, a cell's log-likelihood is not the sum of its rows' terms",
                                 key="model.aggregate", file=e.file,
                                 line=e.loaded.line("model", "aggregate") or e.loaded.line("model"), hint=hint)
                         for e in rest if modes[e.label] != modes[first.label]])
    if len(first.fp.data) < 2:
        raise DataError(Problem(f"{_who(first, entries)} is fitted on {len(first.fp.data)} binomial cell: leave-one-out "
                                f"needs at least two", key="model.aggregate", file=first.file,
                                hint='set model.aggregate = "never" in every spec to compare rows'))

    # rows dropped for missing values in different columns may be different rows
    dropped = {e.label: dict(e.plan.tables.stats.get("dropped_missing") or {}) for e in entries}
    bad = [e for e in rest if dropped[e.label] != dropped[first.label]]
    if bad:
        raise DataError([Problem(f"{_who(e, entries)} dropped rows with missing values ({_dropped(dropped[e.label])}) but "
                                 f"{_who(first, entries)} ({_dropped(dropped[first.label])}): they may fit different rows",
                                 key="data.missing", file=e.file,
                                 line=e.loaded.line("data", "missing") or e.loaded.line("data"),
                                 hint="drop the incomplete rows the same way for every spec (e.g. with data.query), "
                                      "so all of them fit the same rows")
                         for e in bad])

    # the fitted rows (or cells) themselves
    if first.fp.aggregated:
        from mrp_formula.model.plan import SUCCESSES, TRIALS

        keys = sorted(first.plan.info.rhs_vars)
        cols = keys + [SUCCESSES, TRIALS]
    else:
        shared = set(first.plan.info.rhs_vars)
        for e in rest:
            shared &= set(e.plan.info.rhs_vars)
        shared = {v for v in shared
                  if len({e.plan.tables.variables[v].categorical for e in entries}) == 1}
        cols = list(first.plan.info.response_vars) + sorted(shared)
        keys = list(cols)  # each spec's sample comes sorted by its own columns: line rows up by the shared ones
    frames, orders = {}, {}
    for e in entries:
        frame = _canonical(e.fp.data, cols)
        order = (frame.sort_values(keys, kind="stable").index.to_numpy() if keys
                 else np.arange(len(frame)))
        frames[e.label] = frame.iloc[order].reset_index(drop=True)
        orders[e.label] = order
    problems = []
    ref = frames[first.label]
    what = "cells" if first.fp.aggregated else "rows"
    for e in rest:
        frame = frames[e.label]
        differ = [c for c in cols if len(frame) != len(ref)
                  or not np.array_equal(_hash(frame[c]), _hash(ref[c]))]
        if differ:
            shown = ", ".join(repr(c) for c in differ[:4])
            problems.append(Problem(f"{_who(e, entries)} and {_who(first, entries)} fit {int(e.fp.rows_in)} observations each, but not "
                                    f"the same {what}: the values of {shown} differ{_sources(e, first)}; LOO can "
                                    f"only compare specs fitted on the same data",
                                    key="data", file=e.file, line=e.loaded.line("data"),
                                    hint="point every spec at the same data, with the same query, recode and joins"))
    if problems:
        raise DataError(problems)
    return orders


def _norm(text: str) -> str:
    return "".join(str(text).split())


def _who(e: _Entry, entries: Sequence[_Entry]) -> str:
    """How messages name a spec: its path, or, when specs share a file (a batch's variants), its
    run's label with the file's name."""
    paths = [str(x.path) for x in entries]
    return str(e.path) if len(set(paths)) == len(paths) else f"{e.label} ({e.path.name})"


def _mode(e: _Entry):
    return ("cells", frozenset(e.plan.info.rhs_vars)) if e.fp.aggregated else ("rows",)


def _describe_mode(e: _Entry) -> str:
    if not e.fp.aggregated:
        return f"its {int(e.fp.rows_in)} rows"
    keys = ", ".join(e.plan.info.rhs_vars) or "nothing (one cell)"
    return f"{e.fp.cells} binomial cells (rows grouped by {keys})"


def _sources(a: _Entry, b: _Entry) -> str:
    sa, sb = a.loaded.resolve(a.loaded.spec.data.source), b.loaded.resolve(b.loaded.spec.data.source)
    if sa == sb:
        return ""
    return f" (data {a.loaded.spec.data.source} vs {b.loaded.spec.data.source})"


def _dropped(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items()) or "none"


def _canonical(data: pd.DataFrame, cols) -> pd.DataFrame:
    """Values as canonical text (1, 1.0 and True alike), so that specs that read a column with
    another dtype or level order still match."""
    out = {}
    for c in cols:
        s = data[c]
        if pd.api.types.is_bool_dtype(s.dtype):
            s = s.astype("int64")
        out[c] = canon_series(s.reset_index(drop=True)).astype(str).to_numpy()
    return pd.DataFrame(out)


def _hash(s: pd.Series) -> np.ndarray:
    return pd.util.hash_pandas_object(s, index=False).to_numpy()


def _labels(paths: Sequence[Path], names: Sequence[str]) -> list[str]:
    """The spec names; the file name is added where names repeat, then a number."""
    labels = list(names)
    if len(set(labels)) < len(labels):
        labels = [f"{n} ({p.name})" if names.count(n) > 1 else n for n, p in zip(names, paths)]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    return labels


# ----------------------------------------------------------------------------- LOO


def row_patterns(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Which distinct row each row of ``data`` is (codes), and the first row of each pattern."""
    codes, _ = pd.factorize(pd.util.hash_pandas_object(data, index=False).to_numpy())
    _, first = np.unique(codes, return_index=True)
    return codes, first


def psis_loo(posterior, ll, codes: np.ndarray | None = None):
    """PSIS-LOO of one fit (arviz ``loo``); arviz's warnings are replaced by the table's Pareto-k
    columns. With ``codes``, ``ll`` holds the terms of distinct rows only and row i's is
    ``ll[codes[i]]``: the same PSIS result for identical rows, computed once and expanded, with the
    totals summed over all rows as arviz sums them."""
    import dataclasses

    import arviz as az
    import xarray as xr
    from scipy.special import logsumexp

    post = posterior["posterior"].to_dataset()
    obs_vars = [v for v in post.data_vars if "__obs__" in post[v].dims]
    post = post.drop_vars(obs_vars)  # the relative efficiency comes from the parameters' ESS
    if "__obs__" in post.coords:
        post = post.drop_vars("__obs__")
    dt = xr.DataTree.from_dict({"posterior": post, "log_likelihood": ll.to_dataset(name="y")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(dt, pointwise=True, var_name="y")
    if codes is None:
        return res
    values = ll.transpose("chain", "draw", "__obs__").to_numpy()
    values = values.reshape(-1, values.shape[-1])
    lppd_i = logsumexp(values, axis=0) - np.log(values.shape[0])
    elpd_u = np.asarray(res.elpd_i, dtype=float).ravel()
    k_u = np.asarray(res.pareto_k, dtype=float).ravel()
    obs = {"__obs__": np.arange(len(codes))}
    elpd_i = xr.DataArray(elpd_u[codes], dims="__obs__", coords=obs)
    pareto_k = xr.DataArray(k_u[codes], dims="__obs__", coords=obs)
    p_loo_i = xr.DataArray((lppd_i - elpd_u)[codes], dims="__obs__", coords=obs)
    elpd, se, p_loo, _ = elpd_i.azstats.loo_summary(p_loo_i)
    return dataclasses.replace(res, elpd=float(elpd), se=float(se), p=float(p_loo), n_data_points=len(codes),
                               warning=bool(np.any(pareto_k > res.good_k)), elpd_i=elpd_i, pareto_k=pareto_k,
                               log_weights=None)


def _divergences(posterior) -> int:
    try:
        return int(posterior["sample_stats"]["diverging"].sum())
    except Exception:  # no sample_stats (variational fit) or no divergence flag
        return 0


LOPSIDED = 0.05  # a stacking weight below this beside a close elpd_loo needs its explanation


def weight_note(best: pd.Series, other: pd.Series, *, close: bool) -> str:
    """Why a model that predicts about as well as the best can get a stacking weight near 0."""
    lo = min(best["weight"], other["weight"])
    if not close or lo >= LOPSIDED:
        return ""
    low, high = (best, other) if best["weight"] < other["weight"] else (other, best)
    return (f"; its stacking weight is {other['weight']:.2g} against {best['weight']:.2g}: that is not a "
            f"verdict that {low['model']} predicts worse. Stacking looks for the mix of predictive "
            f"distributions that predicts best; when two models predict nearly the same, adding "
            f"{low['model']} to {high['model']} changes the mix almost not at all, so the optimiser "
            f"puts (nearly) all the weight on one of them. Read elpd_diff and diff_se for which predicts "
            f"better, the weights for how to combine them")


def _messages(table: pd.DataFrame, unit: str, n_obs: int, n_loo: int) -> tuple[list[str], list[str]]:
    """Warnings (cells, Pareto k, divergences) and notes (how the others compare with the best)."""
    warns, notes = [], []
    if unit == "cell":
        warns.append(f"the fits are on aggregated binomial cells ({n_obs} rows in {n_loo} cells, each a group of "
                     f"rows with identical predictors): LOO leaves out a whole cell at a time, not a row, so "
                     f"elpd_loo scores predicting a new cell, a different question, and with few cells it is "
                     f"noisy and Pareto k is often high; to compare row by row set model.aggregate = \"never\" "
                     f"in every spec (--set model.aggregate=never)")
    for _, r in table.iterrows():
        if r["n_high_k"]:
            warns.append(f"{r['model']}: {r['n_high_k']} of {r['n_loo']} {unit}s have Pareto k > {r['good_k']:.2f} "
                         f"(max {r['pareto_k_max']:.2f}): PSIS-LOO is unreliable for them and elpd_loo may be too "
                         f"optimistic; sample more draws"
                         + (", or fit rows (model.aggregate = \"never\")" if unit == "cell" else
                            ", or use a more robust model"))
        if r["divergences"]:
            warns.append(f"{r['model']}: {r['divergences']} divergent transition{'s' if r['divergences'] != 1 else ''}: the posterior (and so its LOO) "
                         f"may be biased; check it with `mrp run`")
    best = table.iloc[0]
    for _, r in table.iloc[1:].iterrows():
        d, se = r["elpd_diff"], r["diff_se"]
        if abs(d) < SMALL_DIFF:
            verdict = "they predict about equally well"
        elif abs(d) < 2 * se:
            verdict = "the difference is within about two standard errors"
        else:
            verdict = f"{best['model']} predicts clearly better"
        notes.append(f"{r['model']} vs {best['model']}: elpd_diff {d:.1f} (SE {se:.1f}); {verdict}"
                     + weight_note(best, r, close=abs(d) < SMALL_DIFF or abs(d) < 2 * se))
    if n_loo < 100:
        notes.append(f"only {n_loo} {unit}s: the normal approximation behind the standard errors and p_worse "
                     f"is rough")
    return warns, notes
