"""The prior predictive distribution of every estimand: what the priors imply, before the data.

Draws of the model's parameters from their priors (``model.sample_prior``) are handed to
:class:`~mrp_formula.model.CellPredictor` as if they were a posterior, then poststratified
and summarised with the same code as ``run``. Only the outcomes are left out: the priors
of terms the spec does not set are the defaults of ``model.resolve_priors`` (Bambi's rules, scaled to
the sample rows), and the
population, levels and design come from the prepared tables as usual.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.spec.families import FAMILIES
from mrp_formula.errors import Problem, UsageError
from mrp_formula.notes import interval_name
from mrp_formula.output.files import check_out, staged_dir, write_json, write_table
from mrp_formula.output.manifest import manifest
from mrp_formula.model import sampler
from mrp_formula.steps import build, default_out, estimate, out_origin, plan as plan_of
from mrp_formula.output.plots import panel_grid

EXTREME = 0.01  # binary outcomes: a rate below 1% or above 99% counts as extreme
EXTREME_SHARE = 0.25  # note when more than this share of the prior draws is extreme
PLOT_CLIP = 0.005  # the plots show the central 99% of the draws (heavy-tailed ratios)


@dataclass(frozen=True)
class PriorResult:
    """The prior summary of every estimand row; the CLI prints it."""

    estimands: pd.DataFrame  # prior_estimands.csv
    draws: np.ndarray  # (rows, draws) prior draws of the estimands
    out: Path
    notes: tuple[str, ...]
    seconds: float
    manifest: dict = field(default_factory=dict)


def prior(path, *, draws: int = 1000, out=None, overrides=(), into_existing: bool = False) -> PriorResult:
    """Sample the prior, poststratify it and write ``prior_estimands.csv`` and
    ``prior_estimands.png`` (and ``manifest.json``) atomically into ``out``
    (default ``runs/<name>/prior``)."""

    t0 = time.perf_counter()
    if draws < 2:
        raise UsageError(Problem("--draws must be at least 2", got=str(draws)))
    plan = plan_of(path, overrides)
    loaded, spec, fit_plan = plan.loaded, plan.loaded.spec, plan.fit_plan
    out_dir = Path(out) if out else default_out(loaded) / "prior"
    origin = out_origin(loaded, out)
    check_out(out_dir, into_existing=into_existing, origin=origin)  # before any sampling
    seed = spec.fit.seed
    dt = sampler.sample_prior(build(plan), draws=draws, seed=seed)
    est = estimate(plan, dt, calibrate=False)  # the model's own prior predictive, not shifted to [calibrate]
    ed, table = est.draws, est.table
    table = table.drop(columns=[c for c in ("ess_bulk", "r_hat") if c in table.columns])  # independent draws
    table["draws"] = ed.draws.shape[1]
    labels = [_label(ed.rows.iloc[i]) for i in range(len(ed.rows))]

    notes = []
    if plan.targets is not None:
        notes.append(f"[calibrate] is left out: these are the model's own prior predictive estimands, not shifted "
                     f"to the known means of '{plan.targets.by}'")
    defaults = [p for p in fit_plan.priors if p.source == "default"]
    if defaults:
        notes.append("defaults for the priors the spec does not give: "
                     + "; ".join(f"{p.key} ~ {p.prior}" for p in defaults) + f" ({fit_plan.prior_scale})")
    if FAMILIES[spec.model.family].binary or FAMILIES[fit_plan.family].binary:
        flagged = []
        for i, label in enumerate(labels):
            if ed.rows.iloc[i]["scale"]:
                continue  # contrasts are not rates
            x = ed.draws[i]
            share = float(np.mean((x < EXTREME) | (x > 1 - EXTREME)))
            if share > EXTREME_SHARE:
                flagged.append((ed.rows.iloc[i]["estimand"], label, share))
        notes += [f"the priors put {what} below {EXTREME:.0%} or above {1 - EXTREME:.0%}: they may be wider than "
                  f"you believe" for what in _per_estimand(flagged)]
    else:
        notes += _beyond_the_data(plan, ed, labels)
    sections = {"draws": draws, "seed": seed, "ci_prob": spec.report.ci_prob, "ci_kind": spec.report.ci_kind,
                "priors": {k: str(v) for k, v in spec.model.priors.items()}}
    with staged_dir(out_dir, into_existing=into_existing, origin=origin) as tmp:
        write_table(table, tmp / "prior_estimands.csv")
        plot_prior(ed.draws, table, labels, tmp / "prior_estimands.png",
                   title=f"{spec.name}: prior predictive distribution of the estimands ({draws} draws, "
                         f"{interval_name(spec.report.ci_prob, spec.report.ci_kind)})")
        manifest_ = manifest(loaded, sections, overrides=overrides, notes=notes,
                             timings={"total": time.perf_counter() - t0})
        write_json(manifest_, tmp / "manifest.json")
    return PriorResult(estimands=table, draws=ed.draws, out=out_dir, notes=tuple(notes),
                       seconds=time.perf_counter() - t0, manifest=manifest_)


BEYOND = 10.0  # a prior draw of a mean beyond ten times the sample's largest outcome is far out


def _beyond_the_data(plan, ed, labels: list[str]) -> list[str]:
    """Outcomes that are not rates: a note where the priors put a notable share of an estimand (of
    its means, not a contrast) beyond ten times the sample's largest outcome in size, and where
    its prior mean lies outside its interval (a tail so heavy that the mean says little)."""
    response = plan.info.response_vars[0]
    y = pd.to_numeric(plan.tables.sample.get(response), errors="coerce") if response in plan.tables.sample else None
    top = float(np.nanmax(np.abs(y))) if y is not None and y.notna().any() else math.nan
    far, heavy = [], []
    for i, label in enumerate(labels):
        row = ed.rows.iloc[i]
        if row["scale"] or str(row.get("category", "")) not in ("", "nan", "None"):
            continue  # contrasts, and categories' probabilities
        x = ed.draws[i]
        if math.isfinite(top) and top > 0:
            share = float(np.mean(np.abs(x) > BEYOND * top))
            if share > EXTREME_SHARE:
                far.append((row["estimand"], label, share))
        mean, (lo, hi) = float(np.mean(x)), np.quantile(x, [0.025, 0.975])
        if not lo <= mean <= hi:
            heavy.append((row["estimand"], f"{label} ({mean:.3g}; its central 95%: {lo:.3g} to {hi:.3g})", None))
    out = [f"the priors put {what} beyond {BEYOND:g} times the sample's largest |{response}| ({top:g}): they may "
           f"be wider than you believe" for what in _per_estimand(far)]
    out += [f"the prior mean of {what} lies outside its central 95%: a tail so heavy that the mean says little; "
            f"read the median and the interval" for what in _per_estimand(heavy)]
    return out


def _per_estimand(flagged: list[tuple]) -> list[str]:
    """One phrase per estimand for its flagged rows (estimand, label, share or None): the row itself
    when it is the only one, else how many of its rows and the range of the shares (a `by` over 50
    states is one note, not 50)."""
    groups: dict = {}
    for name, label, share in flagged:
        groups.setdefault(name, []).append((label, share))
    out = []
    for name, rows in groups.items():
        shares = [s for _, s in rows if s is not None]
        if len(rows) == 1:
            label, share = rows[0]
            out.append(f"{share:.0%} of {label}" if share is not None else label)
            continue
        span = (f"{min(shares):.0%}" if f"{min(shares):.0%}" == f"{max(shares):.0%}"
                else f"{min(shares):.0%}-{max(shares):.0%}") if shares else ""
        each = f"{span} of each of" if span else "each of"
        out.append(f"{each} {len(rows)} rows of {name} (e.g. {rows[0][0]})")
    return out


def _label(row: pd.Series) -> str:
    parts = [f"{c}={row[c]}" for c in row.index if c not in ("estimand", "scale") and row[c] is not None
             and not (isinstance(row[c], float) and math.isnan(row[c]))]
    return f"{row['estimand']}[{', '.join(parts)}]" if parts else str(row["estimand"])


def plot_prior(draws: np.ndarray, table: pd.DataFrame, labels: list[str], path: Path, *, title: str) -> None:
    """One histogram per estimand row with its interval shaded and its mean marked."""

    n = len(labels)
    fig, axes = panel_grid(n, width=4.2, height=3.1)
    for i, ax in enumerate(axes.flat[:n]):
        x = draws[i][np.isfinite(draws[i])]
        row = table.iloc[i]
        lo_clip, hi_clip = np.quantile(x, [PLOT_CLIP, 1 - PLOT_CLIP])
        shown = x[(x >= lo_clip) & (x <= hi_clip)]
        ax.hist(shown, bins=40, density=True, color="#2e86c1", alpha=0.85, zorder=2)
        ax.axvspan(row["lower"], row["upper"], color="#f5b041", alpha=0.3, zorder=0, linewidth=0,
                   label=f"{interval_name(row['ci_prob'], row['ci_kind'])} [{row['lower']:.3g}, {row['upper']:.3g}]")
        ax.axvline(row["mean"], color="k", linewidth=1.2, zorder=3, label=f"mean {row['mean']:.3g}")
        ax.set_xlim(lo_clip, hi_clip)
        ax.set_yticks([])
        ax.set_title(labels[i], fontsize=9)
        ax.set_xlabel("value (central 99% of the draws shown)", fontsize=8)
        ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
