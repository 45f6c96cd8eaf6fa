"""Estimands: from the spec to poststratification requests, and from reduced draws to the
long table of estimand draws and its summary. Everything is computed per draw and
summarised afterwards, never from summaries.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrp_formula.spec.families import FAMILIES
from mrp_formula.poststrat.sums import Reduced, Request, Scenario
from mrp_formula.spec.tree import EstimandSpec

SCALES = {
    "difference": lambda a, b: a - b,
    "ratio": lambda a, b: a / b,
    "odds_ratio": lambda a, b: (a / (1 - a)) / (b / (1 - b)),
}
NULL = {"difference": 0.0, "ratio": 1.0, "odds_ratio": 1.0}


@dataclass(frozen=True)
class Piece:
    """One block of rows of an estimand: its labels and how to get its draws from the requests."""

    estimand: str
    labels: tuple[tuple[str, str], ...]  # at / contrast columns for the whole block
    first: Request
    second: Request | None = None  # contrasts: first vs second
    contrast_var: str | None = None  # a population variable compared within the by groups
    contrast_levels: tuple[str, str] | None = None  # the two levels compared (first, second)
    scale: str | None = None


def _at_combos(est: EstimandSpec) -> list[dict[str, str]]:
    if not est.at:
        return [{}]
    names = list(est.at)
    return [dict(zip(names, combo)) for combo in itertools.product(*(est.at[n] for n in names))]


def plan(estimands: dict[str, EstimandSpec], population_vars: tuple[str, ...]) -> list[Piece]:
    pieces = []
    for name, est in estimands.items():
        exclude = tuple(est.exclude)
        by = tuple(est.by)
        for at in _at_combos(est):
            labels = tuple(at.items())
            if est.contrast is None:
                req = Request(Scenario(tuple(at.items()), exclude), by)
                pieces.append(Piece(name, labels, req))
                continue
            (var, (a, b)), = est.contrast.items()
            label = labels + ((var, f"{a} vs {b}"),)
            if var in population_vars:
                req = Request(Scenario(tuple(at.items()), exclude), by + (var,))
                pieces.append(Piece(name, label, req, contrast_var=var, contrast_levels=(a, b), scale=est.scale))
            else:
                ra = Request(Scenario(tuple(at.items()) + ((var, a),), exclude), by)
                rb = Request(Scenario(tuple(at.items()) + ((var, b),), exclude), by)
                pieces.append(Piece(name, label, ra, rb, contrast_levels=(a, b), scale=est.scale))
    return pieces


def requests(pieces: list[Piece]) -> list[Request]:
    out = []
    for p in pieces:
        out.append(p.first)
        if p.second is not None:
            out.append(p.second)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class EstimandDraws:
    """Rows (one per estimand and group) and their draws (rows x samples)."""

    rows: pd.DataFrame  # estimand, group columns, scale
    draws: np.ndarray  # (R, S)
    n_chains: int
    n_draws: int


def assemble(pieces: list[Piece], reduced: dict[Request, Reduced], *, n_chains: int, n_draws: int,
             group_columns: list[str], categories: tuple[str, ...] | None = None) -> EstimandDraws:
    """Rows and draws of every estimand; with ``categories`` one row per category as well."""
    rows, blocks = [], []
    for p in pieces:
        first = reduced[p.first]
        sides = None  # (a, b) draws of a contrast, for the decision numbers
        if p.contrast_var is None and p.second is None:
            vals = first.values  # (S, G)
            groups = first.groups
        elif p.second is not None:  # a contrast of counterfactuals: the variable set to each level
            second = reduced[p.second]
            sides = (first.values, second.values)
            vals = SCALES[p.scale](*sides)
            groups = first.groups
        else:
            var = p.contrast_var
            by = [c for c in first.groups.columns if c != var]
            g = first.groups.reset_index(drop=True)
            a_idx = g.index[g[var] == p.contrast_levels[0]]
            b_idx = g.index[g[var] == p.contrast_levels[1]]
            a_keys = g.loc[a_idx, by].astype(str).agg("\x1f".join, axis=1) if by else pd.Series([""] * len(a_idx), index=a_idx)
            b_keys = g.loc[b_idx, by].astype(str).agg("\x1f".join, axis=1) if by else pd.Series([""] * len(b_idx), index=b_idx)
            b_map = dict(zip(b_keys, b_idx))
            pairs = [(ia, b_map[k]) for ia, k in zip(a_idx, a_keys) if k in b_map]
            sides = (first.values[:, [a for a, _ in pairs]], first.values[:, [b for _, b in pairs]])
            vals = SCALES[p.scale](*sides)
            groups = g.loc[[a for a, _ in pairs], by].reset_index(drop=True) if by else pd.DataFrame(index=[0])
        groups = groups.reset_index(drop=True)
        for gi in range(len(groups)):
            row = {"estimand": p.estimand}
            row.update(dict(p.labels))
            for col in groups.columns:
                row[col] = groups.loc[gi, col]
            row["scale"] = p.scale or ""
            if p.contrast_levels is not None:  # typed, so that nobody splits the "a vs b" label
                row["first"], row["second"] = p.contrast_levels
            if vals.ndim == 3:
                for k, cat in enumerate(categories):
                    rows.append({**row, "category": cat, **_decision(sides, gi, k)})
                    blocks.append(vals[:, gi, k])
            else:
                rows.append({**row, **_decision(sides, gi, None)})
                blocks.append(vals[:, gi])
    table = pd.DataFrame(rows)
    if categories is not None:
        group_columns = group_columns + ["category"]
    for col in group_columns:
        if col not in table.columns:
            table[col] = None
    extra = [c for c in ("first", "second") + DECISION if c in table.columns]
    table = table[["estimand"] + group_columns + ["scale"] + extra]
    return EstimandDraws(rows=table, draws=np.vstack(blocks) if blocks else np.zeros((0, n_chains * n_draws)),
                         n_chains=n_chains, n_draws=n_draws)


DECISION = ("chance_to_win", "expected_loss_first", "expected_loss_second")


def _decision(sides, gi: int, k: int | None) -> dict:
    """A/B decision numbers on the outcome scale: the chance that the first level is higher (a tie,
    as when the contrast's effect is left out or fixed, counts half), and
    the expected loss (outcome given up, per draw) of choosing the first or the second level. They
    are in outcome units whatever the contrast's scale (:func:`with_loss_unit` says so)."""
    if sides is None:
        return {}
    a, b = (x[:, gi] if k is None else x[:, gi, k] for x in sides)
    if np.isnan(a).all():
        return {}
    return {"chance_to_win": float(np.mean(a > b) + 0.5 * np.mean(a == b)),
            "expected_loss_first": float(np.mean(np.maximum(b - a, 0))),
            "expected_loss_second": float(np.mean(np.maximum(a - b, 0)))}


def outcome_unit(family: str, response: tuple[str, ...]) -> str:
    """What the outcome's numbers are: the unit of the decision numbers (the expected losses are
    differences of population-averaged outcomes whatever the contrast's scale), and of a difference."""
    if family == "bernoulli":
        return f"probability that {response[0]} = 1"
    if family == "binomial":
        return f"proportion {response[0]} / {response[1]}"
    if FAMILIES[family].has_categories:
        return "probability of the category"
    if FAMILIES[family].response == "count":
        return f"mean count of {response[0]}"
    return f"mean of {response[0]}, in its units"


LOSS_UNIT = "expected_loss_unit"


def with_loss_unit(table: pd.DataFrame, unit: str) -> pd.DataFrame:
    """The table with :data:`LOSS_UNIT` beside the expected losses: outcome units, also where the
    contrast itself is a ratio or an odds ratio (a cumulative family's ``mean`` row is the expected
    category value, not a category's probability)."""
    if "expected_loss_first" not in table:
        return table
    table = table.copy()
    mean_row = (table["category"].astype(str) == "mean").to_numpy() if "category" in table else np.zeros(len(table), bool)
    table[LOSS_UNIT] = [None if pd.isna(v) else "outcome units: expected category value (the levels' numbers, "
                        "else 1, 2, ... in their order)" if m else f"outcome units: {unit}"
                        for v, m in zip(table["expected_loss_first"], mean_row)]
    return table


def group_columns(estimands: dict[str, EstimandSpec]) -> list[str]:
    cols = []
    for est in estimands.values():
        cols += list(est.at) + list(est.contrast or {}) + list(est.by)
    return list(dict.fromkeys(cols))


def long_draws(ed: EstimandDraws) -> pd.DataFrame:
    """One row per estimand row and draw: chain, draw, estimand, group columns, value."""
    r, s = ed.draws.shape
    chain = np.repeat(np.arange(ed.n_chains), ed.n_draws)
    draw = np.tile(np.arange(ed.n_draws), ed.n_chains)
    idx = np.repeat(np.arange(r), s)
    out = ed.rows.drop(columns=["scale", *[c for c in DECISION if c in ed.rows]]).iloc[idx].reset_index(drop=True)
    out.insert(0, "draw", np.tile(draw, r))
    out.insert(0, "chain", np.tile(chain, r))
    out["value"] = ed.draws.reshape(-1)
    return out


# ----------------------------------------------------------------------------- summaries


def interval(x: np.ndarray, prob: float, kind: str) -> tuple[float, float]:
    """Equal-tailed, or the narrowest interval holding ``prob`` of the draws."""
    x = np.sort(np.asarray(x, dtype=float))
    if kind == "eti":
        lo, hi = np.quantile(x, [(1 - prob) / 2, 1 - (1 - prob) / 2])
        return float(lo), float(hi)
    n = len(x)
    k = max(1, int(np.ceil(prob * n)))
    if k >= n:
        return float(x[0]), float(x[-1])
    widths = x[k - 1:] - x[: n - k + 1]
    i = int(np.argmin(widths))
    return float(x[i]), float(x[i + k - 1])


def summarise(ed: EstimandDraws, estimands: dict[str, EstimandSpec], *, ci_prob: float,
              ci_kind: str) -> pd.DataFrame:
    from mrp_formula.checks.diagnostics import ess_rhat

    out = []
    for i, row in ed.rows.iterrows():
        x = ed.draws[i]
        est = estimands[row["estimand"]]
        lo, hi = interval(x, ci_prob, ci_kind)
        rec = row.to_dict()
        rec.update(mean=float(np.mean(x)), median=float(np.median(x)), sd=float(np.std(x, ddof=1)),
                   lower=lo, upper=hi, ci_prob=ci_prob, ci_kind=ci_kind)
        if est.contrast is not None:
            null = NULL[est.scale]
            # a draw exactly at the null counts half, as a tie does in chance_to_win: a contrast that is
            # 0 in every draw (its term excluded) is not "almost certainly below 0"
            rec["p_above_null"] = float(np.mean(x > null) + 0.5 * np.mean(x == null))
            if est.rope is not None:
                rec["p_in_rope"] = float(np.mean((x >= est.rope[0]) & (x <= est.rope[1])))
        ess, rhat = ess_rhat(x.reshape(ed.n_chains, ed.n_draws))
        rec.update(ess_bulk=ess, r_hat=rhat)
        out.append(rec)
    table = pd.DataFrame(out)
    for col in ("p_above_null", "p_in_rope"):
        if col not in table.columns:
            table[col] = np.nan
    return table
