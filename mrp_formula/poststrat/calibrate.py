"""Calibration to known totals: the logit shift (Ghitza & Gelman 2013; Rosenman et al.).

For every posterior draw s and level j of the calibration variable, the shift ``delta[s, j]`` is
added to the linear predictor of every population cell of level j so that the poststratified
mean of the level equals the known value t_j::

    sum_c N_c g^-1(eta[s, c] + delta[s, j]) / sum_c N_c = t_j      (c over the cells of level j)

The left side increases with delta, so there is one root. Identity and log links have it in closed
form (delta = t - m and delta = log t - log m, m the mean at delta = 0). Logit and probit links are
solved for all draws and levels at once by Newton steps on the link scale of the mean
(g(mean(delta)) - g(t), which is linear in delta for a single cell) kept inside a bracket that
every step narrows, with bisection when a step leaves it, and no longer than 1 + 2 |g(mean) - g(t)|
(where the inverse link is clipped flat, as Bambi clips it at machine epsilon, the derivative
underflows); to ``tol`` relative to the known value's distance from the nearer end of (0, 1), so
that a known share of 1e-9 is met to 1e-19, not to 10 % of itself.

The shift is found once, for the population as it is (the treatment variables at their
population distribution, no term excluded), and then held fixed: every estimand, counterfactual
``at`` and contrast is computed with the same shifted predictor. A contrast between two settings
of a treatment is therefore the model's contrast, moved only through where the level's baseline
sits on the link scale (on the probability scale the same shift changes a difference of
probabilities a little, as a baseline does).

``means_of_cells`` is the arithmetic on explicit arrays (tests; small problems); ``calibrate``
evaluates the same sums with a cell predictor in the chunked pass of :mod:`poststrat.sums`,
the mean and its derivative in one pass per Newton step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from mrp_formula.errors import FitError
from mrp_formula.poststrat.sums import DEFAULT_BLOCK, Request, Scenario, poststratify
from mrp_formula.spec.levels import canon_series

TOL = 1e-10  # largest |calibrated mean - known value| per draw and level, relative (see ``relative_error``)
REFUSE = 1e-8  # a calibration whose relative error stays above this is refused
MAX_STEPS = 200
_EPS = np.finfo(np.float64).eps
Means = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # delta (S, L) -> (mean, d mean / d delta)


@dataclass(frozen=True)
class Calibration:
    """The shifts of one calibration: ``shift`` and ``uncalibrated`` are (S, L), draws in
    (chain, draw) order; ``levels`` the levels of ``by`` in natural order."""

    by: str
    levels: tuple[str, ...]
    known: np.ndarray  # (L,)
    shift: np.ndarray  # (S, L), on the link scale
    uncalibrated: np.ndarray  # (S, L): the poststratified mean of each level before the shift
    link: str
    steps: int  # passes over the population the solver took
    max_error: float  # largest |calibrated mean - known| over draws and levels


def _link(link: str, m: np.ndarray) -> np.ndarray:
    from scipy import special

    m = np.clip(m, _EPS, 1 - _EPS)
    return special.logit(m) if link == "logit" else special.ndtri(m)


def _link_slope(link: str, m: np.ndarray) -> np.ndarray:
    """d g(m) / d m for the logit and probit links."""
    m = np.clip(m, _EPS, 1 - _EPS)
    if link == "logit":
        return 1.0 / (m * (1 - m))
    from scipy import special

    z = special.ndtri(m)
    return np.sqrt(2 * np.pi) * np.exp(0.5 * z * z)


def relative_error(m: np.ndarray, known: np.ndarray, link: str) -> np.ndarray:
    """|m - known| in units of the known value's room: its distance from the nearer end of (0, 1) for
    the logit and probit links, the value itself for log, at least 1 for identity; never less than
    what double precision resolves at the value (a few units in the last place, for 1 - 1e-9)."""
    known = np.asarray(known, dtype=float)
    if link in ("logit", "probit"):
        room = np.minimum(known, 1 - known)
    elif link == "log":
        room = known
    else:
        room = np.maximum(np.abs(known), 1.0)
    room = room + 8 * _EPS / TOL * np.abs(known)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(m - known) / room


def solve_shifts(means: Means, known: np.ndarray, link: str, shape: tuple[int, int], *, tol: float = TOL,
                 max_steps: int = MAX_STEPS) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    """(shift, uncalibrated mean, passes, largest error, largest relative error): ``shift`` (S, L)
    makes ``means(shift)[0]`` equal ``known`` (L,) in every row to ``tol`` (``relative_error``).
    ``means`` is called once per pass, for all draws and levels at once."""
    known = np.broadcast_to(np.asarray(known, dtype=float), shape)
    delta = np.zeros(shape)
    m, dm = means(delta)
    m0 = m.copy()
    passes = 1
    if link in ("identity", "log"):
        delta = known - m0 if link == "identity" else np.log(known) - np.log(m0)
        m, _ = means(delta)
        return delta, m0, passes + 1, *_errors(m, known, link)
    if link not in ("logit", "probit"):
        raise FitError(f"calibration does not support the {link} link")
    lo, hi = np.full(shape, -np.inf), np.full(shape, np.inf)
    gt = _link(link, known)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        while True:
            r = m - known
            todo = relative_error(m, known, link) > tol
            if not todo.any() or passes >= max_steps:
                break
            hi = np.where(todo & (r > 0), np.minimum(hi, delta), hi)
            lo = np.where(todo & (r < 0), np.maximum(lo, delta), lo)
            gap = _link(link, m) - gt
            step = gap / (dm * _link_slope(link, m))
            cap = 1.0 + 2.0 * np.abs(gap)  # where the inverse link is clipped flat, dm underflows
            newton = delta - np.clip(step, -cap, cap)
            inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
            both = np.isfinite(lo) & np.isfinite(hi)
            fallback = np.where(both, 0.5 * (lo + hi),
                                np.where(np.isfinite(lo), lo + np.maximum(1.0, np.abs(lo)), hi - np.maximum(1.0, np.abs(hi))))
            delta = np.where(todo, np.where(inside, newton, fallback), delta)
            m, dm = means(delta)
            passes += 1
    return delta, m0, passes, *_errors(m, known, link)


def _errors(m: np.ndarray, known: np.ndarray, link: str) -> tuple[float, float]:
    """The largest absolute and relative errors, levels without cells (nan) aside."""
    return (float(np.nanmax(np.abs(m - known), initial=0.0)),
            float(np.nanmax(relative_error(m, known, link), initial=0.0)))


def means_of_cells(eta: np.ndarray, weights: np.ndarray, level: np.ndarray, n_levels: int, link: str) -> Means:
    """The ``means`` of :func:`solve_shifts` for explicit cells: ``eta`` (S, n) linear predictors,
    ``weights`` (n,) population counts, ``level`` (n,) each cell's level code."""
    from mrp_formula.predict.cells import LINKINV, LINKINV_SLOPE

    onehot = np.zeros((len(level), n_levels))
    onehot[np.arange(len(level)), level] = weights
    total = onehot.sum(axis=0)

    def means(delta):
        e = eta + delta[:, level]
        return (LINKINV[link](e) @ onehot) / total, (LINKINV_SLOPE[link](e) @ onehot) / total
    return means


def calibrate(predictor, cells: pd.DataFrame, targets, *, block: int | None = None) -> Calibration:
    """Shifts that make ``predictor``'s poststratified mean of every level of ``targets.by``
    (``data.targets.Targets``) equal its known value, per draw; through the chunked sums."""
    by = targets.by
    req, slope = Request(Scenario(), (by,)), Request(Scenario(slope=True), (by,))
    kwargs = {"block": block or DEFAULT_BLOCK}
    index = {lv: j for j, lv in enumerate(targets.levels)}
    S, L = predictor.n_samples, len(targets.levels)
    base = predictor.reusing_terms()  # the design of every chunk evaluated once, not once per pass

    def means(delta):
        shifted = base.with_offset(by, targets.levels, delta)
        out = poststratify(cells, shifted, [req, slope], n_samples=S, **kwargs)
        order = canon_series(out[req].groups[by]).map(index).to_numpy(dtype=np.int64)
        m, dm = np.zeros((S, L)), np.zeros((S, L))
        m[:, order], dm[:, order] = out[req].values, out[slope].values
        return m, dm

    shift, m0, steps, err, rel = solve_shifts(means, targets.values, targets.link, (S, L))
    if not rel <= REFUSE:
        raise FitError(f"calibration did not reach the known values of '{by}' (largest error {err:.2g}, "
                       f"{rel:.2g} of the known value's distance from 0 or 1, after {steps} passes): are some "
                       f"known values beyond what any shift can reach?")
    return Calibration(by=by, levels=tuple(targets.levels), known=np.asarray(targets.values, dtype=float),
                       shift=shift, uncalibrated=m0, link=targets.link, steps=steps, max_error=err)


def summary(cal: Calibration, *, ci_prob: float, ci_kind: str) -> pd.DataFrame:
    """One row per level: known value, the uncalibrated estimate and the shift (mean, sd, interval)."""
    from mrp_formula.poststrat.estimands import interval

    rows = []
    for j, lv in enumerate(cal.levels):
        u, d = cal.uncalibrated[:, j], cal.shift[:, j]
        ulo, uhi = interval(u, ci_prob, ci_kind)
        lo, hi = interval(d, ci_prob, ci_kind)
        rows.append({cal.by: lv, "known": cal.known[j], "uncalibrated": float(u.mean()),
                     "uncalibrated_lower": ulo, "uncalibrated_upper": uhi,
                     "known_in_interval": bool(ulo <= cal.known[j] <= uhi),
                     "shift_mean": float(d.mean()), "shift_sd": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                     "shift_lower": lo, "shift_upper": hi, "ci_prob": ci_prob, "ci_kind": ci_kind,
                     "link": cal.link})
    return pd.DataFrame(rows)


def long_shifts(cal: Calibration, n_chains: int, n_draws: int) -> pd.DataFrame:
    """The shifts per draw: columns chain, draw, the level of ``by``, shift."""
    S, L = cal.shift.shape
    chain = np.repeat(np.arange(n_chains), n_draws)
    draw = np.tile(np.arange(n_draws), n_chains)
    return pd.DataFrame({"chain": np.repeat(chain, L), "draw": np.repeat(draw, L),
                         cal.by: np.tile(np.array(cal.levels, dtype=object), S),
                         "shift": cal.shift.reshape(-1)})


def fixed_estimands(estimands: pd.DataFrame, label_columns: list[str]) -> list:
    """An info note naming the estimands the calibration fixes exactly (their draws do not vary: the
    known means determine them), whose interval has no width and whose ESS and R-hat are left out."""
    from mrp_formula.notes import info

    fixed = estimands[estimands["ess_bulk"].isna() & (estimands["sd"].abs() <= 1e-9 * estimands["mean"].abs().clip(lower=1))]
    if not len(fixed):
        return []
    names = [" ".join(str(r[c]) for c in ["estimand", *label_columns] if c in r and pd.notna(r[c]) and str(r[c]))
             for _, r in fixed.iterrows()]
    return [info("calibrate.fixed",
                 f"calibrate: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''} "
                 f"{'is' if len(names) == 1 else 'are'} fixed by the calibration's known means (every draw the "
                 f"same): not an estimate with uncertainty; its interval has no width, and no ESS or R-hat is "
                 f"reported")]


def calibration_notes(cal: Calibration, table: pd.DataFrame) -> list:
    """What the shifts say of the sample: an info note always (the largest shift), a warning
    (``calibrate.bias``) when a known value lies outside the uncalibrated estimate's interval,
    which is a bias of the sample (or the model) that the posterior's uncertainty does not cover."""
    from mrp_formula.notes import info, warning

    scale = {"logit": "log-odds", "probit": "probit", "log": "log", "identity": "outcome"}[cal.link]
    j = int(np.argmax(np.abs(table["shift_mean"].to_numpy())))
    row = table.iloc[j]
    out = [info("calibrate.shifts",
                f"calibrated to the known means of {len(cal.levels)} level(s) of '{cal.by}': every estimand is "
                f"computed from shifted predictions; the largest mean shift is {row['shift_mean']:+.3g} on the "
                f"{scale} scale ({cal.by} = {row[cal.by]}: estimated {row['uncalibrated']:.4g}, known "
                f"{row['known']:.4g}); calibration.csv lists every level")]
    off = table[~table["known_in_interval"]]
    if len(off):
        shown = ", ".join(f"{r[cal.by]} ({r['uncalibrated']:.3g} vs {r['known']:.3g})" for _, r in off.head(6).iterrows())
        out.append(warning("calibrate.bias",
                           f"calibrate: for {len(off)} of {len(cal.levels)} level(s) of '{cal.by}' the known mean lies "
                           f"outside the model's {100 * row['ci_prob']:.3g}% interval before calibration: {shown}"
                           f"{' ...' if len(off) > 6 else ''}; the sample (or the model) is biased there, and the "
                           f"calibrated estimands rest on the shift correcting every cell of a level alike"))
    return out
