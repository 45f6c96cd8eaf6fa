"""Plots of a run folder: PNGs written to ``<folder>/plots/``.

``write_plots`` draws, from the tables the pipeline already holds (the estimand summary, the
long estimand draws, the posterior and the PPC table):

* ``estimands.png`` (``estimands_1.png``, ... when there are more than 12 panels): the posterior
  density of every estimand row, with the report interval, the posterior mean and, for contrasts,
  P(direction), the ROPE band and the share of draws in it. An estimand with many rows (a
  breakdown by 51 states) is shown in the forest plot instead, and the figure says so.
* ``forest.png``: every estimand with groups, one panel each: posterior mean, 50% and report interval.
* ``over_time.png``: estimands broken down by an ordered variable (one with an rw1, rw2 or ar1
  structure: a week, an age band) drawn along its order: the posterior mean with its bands.
* ``raw_vs_mrp.png``: raw sample value, classical raked value and MRP per estimand row.
* ``trace.png``: traces and rank histograms of the hyperparameters (``*_sigma``, ``Intercept``,
  common effects and family parameters; group-level offsets are left out).
* ``ppc.png``: observed vs predicted mean per level of each model variable.

A figure with nothing to show is not written; the list returned names the files written.
``figures(kinds, ...)`` returns the same figures unsaved (the HTML report renders them as SVG).
Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, never with pyplot, so
nothing depends on the interactive backend and no figure stays registered anywhere (there is
no pyplot figure to close; a figure is freed with its last reference). Plain matplotlib
throughout: arviz-plots (``plot_trace_dist``, ``plot_rank``) works on these posteriors, but
leaves the density column of the trace plot unlabelled and has no pagination, single label
column, "no sample" marks or decision annotations; here every figure's layout is under control.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mrp_formula.notes import share_of_draws
from mrp_formula.poststrat.estimands import NULL, interval

DPI = 120
MANY = 12  # an estimand with more rows than this goes to the forest plot, not to the densities
PER_PAGE = 12  # density panels per estimands figure
SORT_ABOVE = 10  # panels with more rows than this are sorted by value
MAX_TRACE = 16  # parameters in the trace figure
MAX_COMPONENTS = 8  # a common effect with more components than this is left out of the trace figure
ROW_IN = 0.24  # inches per labelled row in forest-like panels
PANEL_EXTRA = 3.2  # rows' worth of height for a panel's title and x axis
TWO_COLUMNS_ABOVE = 48  # labelled rows; above this forest-like figures get two columns
META = ("chain", "draw", "estimand", "value")

MRP = "#1f5a96"
MRP_LIGHT = "#9cbfe0"
RAW = "#e66100"
WEIGHTED = "#6a3d9a"
ROPE = "#f2b134"
BAD = "#c0212b"
NULL_LINE = "#555555"


# ----------------------------------------------------------------------------- the rows


@dataclass(frozen=True)
class _Row:
    """One estimand row with what the plots need."""

    estimand: str
    groups: tuple[tuple[str, str], ...]  # (column, level) of the non-missing group columns
    category: str | None
    scale: str | None  # difference | ratio | odds_ratio for contrasts, else None
    point: float  # the posterior mean: the number the tables and the report's cards show
    lower: float
    upper: float
    p_above_null: float
    p_in_rope: float
    raw: float
    weighted: float
    draws: np.ndarray  # may be empty when the draws frame has no matching rows

    @property
    def is_contrast(self) -> bool:
        return self.scale in NULL

    @property
    def null(self) -> float | None:
        return NULL.get(self.scale) if self.scale else None

    @property
    def level_text(self) -> str:
        """The group levels, bare: 'control', 'treatment vs control', 'AK', 'f, north'."""
        return ", ".join(v for _, v in self.groups)

    @property
    def title(self) -> str:
        """Estimand and group levels: 'click_rate: treatment = control', 'lift: b vs a'."""
        parts = [v if " vs " in v else f"{c} = {v}" for c, v in self.groups]
        if self.category is not None:
            parts.append(f"category {self.category}")
        return self.estimand + (": " + ", ".join(parts) if parts else "")


def _text(v) -> str:
    """A level as text; missing -> ''; 1.0 -> '1' (CSV round trips turn levels into floats)."""
    if v is None:
        return ""
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _num(row, col) -> float:
    v = row.get(col, np.nan)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _group_columns(estimands: pd.DataFrame, draws: pd.DataFrame | None) -> list[str]:
    """Group columns: those of the draws frame, else those between ``estimand`` and ``scale``."""
    if draws is not None and len(draws.columns):  # first/second: a contrast's two levels, in its label already
        cols = [c for c in draws.columns if c not in META and c not in ("category", "first", "second")]
    else:
        cols = list(estimands.columns)
        end = cols.index("scale") if "scale" in cols else len(cols)
        cols = [c for c in cols[1:end] if c != "category"]
    return [c for c in cols if c in estimands.columns]


def _draws_by_key(draws: pd.DataFrame | None, keys: list[str]) -> dict[tuple, np.ndarray]:
    if draws is None or not len(draws):
        return {}
    keys = [k for k in keys if k in draws.columns]
    order = [c for c in ("chain", "draw") if c in draws.columns]
    d = draws.sort_values(order, kind="stable") if order else draws
    out = {}
    for key, sub in d.groupby(keys, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        out[tuple(_text(k) for k in key)] = sub["value"].to_numpy(dtype=float)
    return out


def _rows(estimands: pd.DataFrame, draws: pd.DataFrame | None) -> list[_Row]:
    group_cols = _group_columns(estimands, draws)
    has_cat = "category" in estimands.columns
    keys = ["estimand"] + group_cols + (["category"] if has_cat else [])
    by_key = _draws_by_key(draws, keys)
    rows = []
    for rec in estimands.to_dict("records"):
        key = tuple(_text(rec.get(k)) for k in keys if draws is None or k in draws.columns)
        scale = _text(rec.get("scale")) or None
        cat = _text(rec.get("category")) if has_cat else ""
        rows.append(_Row(
            estimand=str(rec["estimand"]),
            groups=tuple((c, _text(rec.get(c))) for c in group_cols if _text(rec.get(c))),
            category=cat or None, scale=scale,
            point=_num(rec, "mean") if np.isfinite(_num(rec, "mean")) else _num(rec, "median"),
            lower=_num(rec, "lower"), upper=_num(rec, "upper"),
            p_above_null=_num(rec, "p_above_null"), p_in_rope=_num(rec, "p_in_rope"),
            raw=_num(rec, "raw"), weighted=_num(rec, "weighted"),
            draws=by_key.get(key, np.zeros(0)),
        ))
    return rows


def _by_estimand(rows: list[_Row]) -> dict[str, list[_Row]]:
    out: dict[str, list[_Row]] = {}
    for r in rows:
        out.setdefault(r.estimand, []).append(r)
    return out


# ----------------------------------------------------------------------------- helpers


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


def _pct(p: float) -> str:
    return share_of_draws(p) if np.isfinite(p) else "n/a"


def _ci_name(ci_prob: float, ci_kind: str) -> str:
    return f"{100 * ci_prob:.3g}% {ci_kind.upper()}"


def _scale_name(scale: str | None) -> str:
    return (scale or "estimate").replace("_", " ")


def panel_grid(n: int, *, width: float, height: float, ncols: int = 3):
    """A figure with ``n`` panels, ``ncols`` to a line (unused panels hidden): (figure, axes)."""
    import math

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


class FigureSink:
    """Stands in for the plots folder and keeps the figures instead of writing PNGs (the HTML
    report renders them as SVG): ``sink / "forest.png"`` names a figure, ``figures`` lists them."""

    def __init__(self) -> None:
        self.figures: list[tuple[str, Figure]] = []

    def __truediv__(self, name: str) -> "_SinkEntry":
        return _SinkEntry(self, str(name))


@dataclass(frozen=True)
class _SinkEntry:
    sink: FigureSink
    name: str


def _save(fig: Figure, path: Path) -> Path:
    if isinstance(path, _SinkEntry):
        FigureCanvasAgg(fig)
        path.sink.figures.append((path.name, fig))
        return path
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def _style(ax) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=8.5)


def _stacked(sizes: list[int], *, width: float, title: str, keep_order: bool = True,
             legend_space: bool = False) -> tuple[Figure, list]:
    """A figure of stacked panels, one per block of ``sizes`` labelled rows, each panel as tall
    as its rows; two columns when the rows would make one column too tall. Axes in block order."""
    units = [max(n, 1.2) + PANEL_EXTRA for n in sizes]
    columns = [list(range(len(sizes)))]
    if sum(sizes) > TWO_COLUMNS_ABOVE and len(sizes) > 1:
        if keep_order:
            best = min(range(1, len(sizes)), key=lambda k: max(sum(units[:k]), sum(units[k:])))
            two = [list(range(best)), list(range(best, len(sizes)))]
        else:
            two = [[], []]
            for i in sorted(range(len(sizes)), key=lambda i: -units[i]):
                min(two, key=lambda c: sum(units[j] for j in c)).append(i)
            two = [sorted(c) for c in two]
        if max(sum(units[i] for i in c) for c in two) <= 0.75 * sum(units):  # worth a second column
            columns = two
    ncol = len(columns)
    tallest = max(sum(units[i] for i in c) for c in columns)
    head = 0.75 + (0.35 if legend_space else 0)
    fig = Figure(figsize=(width * ncol, tallest * ROW_IN + head), layout="constrained")
    fig.suptitle(title, fontsize=11)
    subs = [fig] if ncol == 1 else list(fig.subfigures(1, ncol, wspace=0.04))
    axes: list = [None] * len(sizes)
    for sub, col in zip(subs, columns):
        ratios = [units[i] for i in col]
        filler = tallest - sum(ratios)
        if filler > 0.5:
            ratios.append(filler)
        axs = sub.subplots(len(ratios), 1, gridspec_kw={"height_ratios": ratios}, squeeze=False)[:, 0]
        for i, ax in zip(col, axs):
            axes[i] = ax
        for ax in axs[len(col):]:
            ax.set_axis_off()
    return fig, axes


def _rows_axis(ax, labels: list[str]) -> None:
    n = len(labels)
    ax.set_yticks(range(n), labels)
    ax.set_ylim(n - 0.5, -0.5)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#e6e6e6", lw=0.6)
    ax.set_axisbelow(True)
    _style(ax)


def _reference(ax, rows: list[_Row], ropes: dict) -> None:
    """Null line and ROPE band of a contrast panel."""
    r = rows[0]
    rope = ropes.get(r.estimand)
    if rope is not None and r.is_contrast:
        ax.axvspan(rope[0], rope[1], color=ROPE, alpha=0.25, lw=0)
    if r.is_contrast and r.null is not None:
        ax.axvline(r.null, color=NULL_LINE, ls="--", lw=0.9)


# ----------------------------------------------------------------------------- estimands


def gaussian_kde(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``x`` on ``grid`` with Scott's bandwidth (scipy's gaussian_kde)."""
    bw = np.std(x, ddof=1) * len(x) ** (-1 / 5)
    if not np.isfinite(bw) or bw <= 0:
        raise ValueError("no spread")
    z = (grid[:, None] - x[None, :]) / bw
    return np.exp(-0.5 * z * z).sum(axis=1) / (len(x) * bw * np.sqrt(2 * np.pi))


def _kde(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    x = _finite(x)
    if len(x) < 5 or np.ptp(x) <= 0:
        return None
    if len(x) > 4000:
        x = x[np.linspace(0, len(x) - 1, 4000).astype(int)]
    lo, hi = np.quantile(x, [0.002, 0.998])
    pad = 0.03 * (hi - lo)
    grid = np.linspace(max(lo - pad, x.min()), min(hi + pad, x.max()), 256)
    try:
        return grid, gaussian_kde(x, grid)
    except (np.linalg.LinAlgError, ValueError):
        return None


def _density_panel(ax, r: _Row, ci_prob: float, ci_kind: str, rope) -> None:
    ci = _ci_name(ci_prob, ci_kind)
    lines = [r.title, f"mean {_fmt(r.point)}, {ci} [{_fmt(r.lower)}, {_fmt(r.upper)}]"]
    if r.is_contrast:
        op = "<" if np.isfinite(r.p_above_null) and r.p_above_null < 0.5 else ">"
        p = r.p_above_null if op == ">" else 1 - r.p_above_null
        lines.append(f"P({_scale_name(r.scale)} {op} {_fmt(r.null)}) = {_pct(p)}")
    wrapped = [textwrap.fill(lines[0], 44)] + lines[1:]
    ax.set_title("\n".join(wrapped), fontsize=9, loc="left")
    _style(ax)
    ax.spines["left"].set_visible(False)
    ax.set_yticks([])
    ax.set_xlabel(_scale_name(r.scale) if r.is_contrast else "estimate", fontsize=8.5)
    dens = _kde(r.draws)
    if dens is None:
        if np.isfinite(r.point):
            ax.axvline(r.point, color=MRP, lw=1.5)
            half = max(abs(r.point) * 0.5, 1e-3)
            ax.set_xlim(r.point - half, r.point + half)
        ax.text(0.02, 0.92, "no draws to estimate a density" if not len(r.draws) else "all draws equal",
                transform=ax.transAxes, ha="left", va="top", fontsize=8.5, color="#666666")
        return
    grid, y = dens
    top = float(y.max())
    ax.plot(grid, y, color=MRP, lw=1.4)
    inside = (grid >= r.lower) & (grid <= r.upper)
    ax.fill_between(grid, 0, y, where=inside, color=MRP_LIGHT, alpha=0.7, lw=0)
    ax.plot([r.lower, r.upper], [0, 0], color=MRP, lw=4, solid_capstyle="butt")
    if np.isfinite(r.point):
        ax.plot([r.point] * 2, [0, float(np.interp(r.point, grid, y))], color=MRP, lw=1.2)
    ax.set_ylim(0, top * 1.22)
    span = grid[-1] - grid[0]
    lo_view, hi_view = grid[0] - 0.02 * span, grid[-1] + 0.02 * span
    show = []  # reference values worth widening the view for
    if r.is_contrast and r.null is not None and (grid[0] - 0.6 * span) <= r.null <= (grid[-1] + 0.6 * span):
        show.append(r.null)
    if rope is not None and r.is_contrast:
        near = rope[1] >= grid[0] - 0.6 * span and rope[0] <= grid[-1] + 0.6 * span
        p_rope = r.p_in_rope
        if not np.isfinite(p_rope) and len(r.draws):
            p_rope = float(np.mean((r.draws >= rope[0]) & (r.draws <= rope[1])))
        if near:
            show += [max(rope[0], grid[0] - 0.6 * span), min(rope[1], grid[-1] + 0.6 * span)]
            ax.axvspan(rope[0], rope[1], color=ROPE, alpha=0.3, lw=0)
            ax.text((rope[0] + rope[1]) / 2 if rope[1] - rope[0] < 0.5 * span else float(np.mean(show[-2:])),
                    top * 1.12, f"{_pct(p_rope)} in ROPE", ha="center", va="center", fontsize=8,
                    color="#8a5a00", bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
        else:
            ax.text(0.98, 0.93, f"ROPE [{_fmt(rope[0])}, {_fmt(rope[1])}] off the scale:\n{_pct(p_rope)} in ROPE",
                    transform=ax.transAxes, ha="right", va="top", fontsize=8, color="#8a5a00")
    if r.is_contrast and r.null is not None and r.null in show:
        ax.axvline(r.null, color=NULL_LINE, ls="--", lw=0.9)
    if show:
        lo_view = min(lo_view, min(show) - 0.03 * span)
        hi_view = max(hi_view, max(show) + 0.03 * span)
    ax.set_xlim(lo_view, hi_view)


def _estimand_pages(rows: list[_Row], ci_prob: float, ci_kind: str, ropes: dict, plots: Path) -> list[Path]:
    by_est = _by_estimand(rows)
    shown = [r for rs in by_est.values() if len(rs) <= MANY for r in rs]
    moved = [(e, len(rs)) for e, rs in by_est.items() if len(rs) > MANY]
    if not shown:
        return []
    per_page = math.ceil(len(shown) / math.ceil(len(shown) / PER_PAGE))  # balanced: 13 -> 7 + 6
    pages = [shown[i:i + per_page] for i in range(0, len(shown), per_page)]
    out = []
    ci = _ci_name(ci_prob, ci_kind)
    for k, page in enumerate(pages, 1):
        ncol = min(3, len(page))
        nrow = math.ceil(len(page) / ncol)
        width = 4.3 * ncol if ncol > 1 else 5.6
        head = 0.55 + (0.25 if moved else 0)
        fig = Figure(figsize=(width, 2.75 * nrow + head), layout="constrained")
        title = f"Posterior of the estimands: density, mean (line), shaded {ci}"
        if len(pages) > 1:
            title += f" (page {k} of {len(pages)})"
        if moved:
            names = ", ".join(f"{e} ({n} rows)" for e, n in moved)
            title += "\n" + textwrap.fill(f"in the forest plot only: {names}", 110)
        fig.suptitle(title, fontsize=11)
        axs = fig.subplots(nrow, ncol, squeeze=False).ravel()
        for ax, r in zip(axs, page):
            _density_panel(ax, r, ci_prob, ci_kind, ropes.get(r.estimand))
        for ax in axs[len(page):]:
            ax.set_axis_off()
        name = "estimands.png" if len(pages) == 1 else f"estimands_{k}.png"
        out.append(_save(fig, plots / name))
    return out


# ----------------------------------------------------------------------------- forest, raw vs MRP


@dataclass(frozen=True)
class _Block:
    title: str
    rows: list[_Row]
    labels: list[str]
    sorted_: bool = False


def _blocks(rows: list[_Row], *, ungrouped: bool) -> list[_Block]:
    """Panels: one per estimand (and category, when the rows are per group and category).
    Group columns with one level in all rows of an estimand go to the title ('lift: b vs a'),
    the others label the rows. Without ``ungrouped``, an estimand with a single row and no
    category is left out."""
    blocks, whole = [], []
    for est, rs in _by_estimand(rows).items():
        cols = list(dict.fromkeys(c for r in rs for c, _ in r.groups))
        levels = {c: [dict(r.groups).get(c, "") for r in rs] for c in cols}
        fixed = [c for c in cols if len(set(levels[c])) == 1]
        varying = [c for c in cols if c not in fixed]
        head = est
        if fixed:
            head += ": " + ", ".join(levels[c][0] if " vs " in levels[c][0] else f"{c} = {levels[c][0]}"
                                     for c in fixed)
        if varying:
            head += (", by " if fixed else " by ") + ", ".join(varying)

        def label(r: _Row, varying=varying) -> str:
            g = dict(r.groups)
            return ", ".join(g.get(c, "") or "(all)" for c in varying) if varying else r.level_text

        cats = list(dict.fromkeys(r.category for r in rs))
        if cols and cats != [None]:
            for cat in cats:
                sub = [r for r in rs if r.category == cat]
                blocks.append(_Block(f"{head}, category {cat}", sub, [label(r) or "(all)" for r in sub]))
        elif cols:
            blocks.append(_Block(head, rs, [label(r) for r in rs]))
        elif cats != [None]:  # per category only; an expected value ("mean") has its own scale
            probs = [r for r in rs if r.category != "mean"]
            means = [r for r in rs if r.category == "mean"]
            if probs:
                blocks.append(_Block(f"{est} by category", probs, [str(r.category) for r in probs]))
            if means:
                blocks.append(_Block(f"{est}: expected category value", means, ["mean"]))
        elif ungrouped:
            whole += rs
    if len(whole) == 1:
        blocks.append(_Block(whole[0].estimand, whole, ["(whole population)"]))
    elif whole:  # one panel for all the whole-population estimands: one outcome scale
        blocks.append(_Block("estimands of the whole population", whole, [r.estimand for r in whole]))
    return blocks


def _sort(block: _Block, key) -> _Block:
    if len(block.rows) <= SORT_ABOVE:
        return block
    vals = np.array([key(r) for r in block.rows], dtype=float)
    order = np.argsort(np.where(np.isfinite(vals), -vals, np.inf), kind="stable")
    return _Block(block.title, [block.rows[i] for i in order], [block.labels[i] for i in order], True)


def _forest(rows: list[_Row], ci_prob: float, ci_kind: str, ropes: dict, plots: Path) -> list[Path]:
    blocks = [_sort(b, lambda r: r.point) for b in _blocks(rows, ungrouped=False)]
    if not blocks:
        return []
    ci = _ci_name(ci_prob, ci_kind)
    fig, axes = _stacked([len(b.rows) for b in blocks], width=7.2, legend_space=True,
                         title=f"Estimands by group: mean (point), 50% {ci_kind.upper()} (thick), {ci} (thin)")
    for ax, b in zip(axes, blocks):
        _reference(ax, b.rows, ropes)
        y = np.arange(len(b.rows))
        ax.hlines(y, [r.lower for r in b.rows], [r.upper for r in b.rows], color=MRP, lw=1.2)
        half = np.array([interval(_finite(r.draws), 0.5, ci_kind) if len(_finite(r.draws)) > 1 else (np.nan, np.nan)
                         for r in b.rows])
        ax.hlines(y, half[:, 0], half[:, 1], color=MRP, lw=4.5)
        ax.plot([r.point for r in b.rows], y, "o", ms=5, color="white", mec=MRP, mew=1.5, ls="none")
        _rows_axis(ax, b.labels)
        ax.set_title(b.title + (" (sorted by mean)" if b.sorted_ else ""), fontsize=9.5, loc="left")
        r0 = b.rows[0]
        ax.set_xlabel(_scale_name(r0.scale), fontsize=8.5)
    handles = [Line2D([], [], marker="o", color=MRP, mfc="white", lw=0, label="mean"),
               Line2D([], [], color=MRP, lw=4.5, label=f"50% {ci_kind.upper()}"),
               Line2D([], [], color=MRP, lw=1.2, label=ci)]
    if any(ropes.get(b.rows[0].estimand) is not None and b.rows[0].is_contrast for b in blocks):
        handles.append(Line2D([], [], color=ROPE, alpha=0.5, lw=8, label="ROPE"))
    if any(b.rows[0].is_contrast for b in blocks):
        handles.append(Line2D([], [], color=NULL_LINE, ls="--", lw=0.9, label="no difference"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    return [_save(fig, plots / "forest.png")]


def _raw_vs_mrp(rows: list[_Row], ci_prob: float, ci_kind: str, plots: Path) -> list[Path]:
    blocks = []
    for b in _blocks(rows, ungrouped=True):
        if not any(np.isfinite(r.raw) or np.isfinite(r.weighted) for r in b.rows):
            continue
        labels = [lab if (np.isfinite(r.raw) or np.isfinite(r.weighted)) else f"{lab} (no sample)"
                  for lab, r in zip(b.labels, b.rows)]
        blocks.append(_sort(_Block(b.title, b.rows, labels), lambda r: r.point))
    if not blocks:
        return []
    ci = _ci_name(ci_prob, ci_kind)
    fig, axes = _stacked([len(b.rows) for b in blocks], width=7.2, legend_space=True,
                         title="What the model changed: raw sample value, classical raked estimate, MRP")
    for ax, b in zip(axes, blocks):
        r0 = b.rows[0]
        if r0.is_contrast and r0.null is not None:
            ax.axvline(r0.null, color=NULL_LINE, ls="--", lw=0.9)
        y = np.arange(len(b.rows))
        ax.hlines(y, [r.lower for r in b.rows], [r.upper for r in b.rows], color=MRP_LIGHT, lw=5)
        ax.plot([r.point for r in b.rows], y, "o", ms=5.5, color=MRP, ls="none")
        ax.plot([r.raw for r in b.rows], y, "s", ms=6, mfc="none", mec=RAW, mew=1.4, ls="none")
        ax.plot([r.weighted for r in b.rows], y, "D", ms=5.5, mfc="none", mec=WEIGHTED, mew=1.4, ls="none")
        _rows_axis(ax, b.labels)
        ax.set_title(b.title + (" (sorted by MRP mean)" if b.sorted_ else ""), fontsize=9.5, loc="left")
        ax.set_xlabel(_scale_name(r0.scale), fontsize=8.5)
    handles = [Line2D([], [], marker="s", mfc="none", mec=RAW, mew=1.4, lw=0, label="raw sample"),
               Line2D([], [], marker="D", mfc="none", mec=WEIGHTED, mew=1.4, lw=0, label="raked (classical)"),
               Line2D([], [], marker="o", color=MRP, lw=0, label="MRP mean"),
               Line2D([], [], color=MRP_LIGHT, lw=5, label=f"MRP {ci}")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8.5, frameon=False)
    return [_save(fig, plots / "raw_vs_mrp.png")]


# ----------------------------------------------------------------------------- posterior predictive check


def _ppc(ppc: pd.DataFrame, ci_prob: float, ci_kind: str, plots: Path) -> list[Path]:
    need = {"variable", "level", "observed", "lower", "upper"}
    if ppc is None or not len(ppc) or not need <= set(ppc.columns):
        return []
    df = ppc.copy()
    df["level"] = df["level"].map(_text)
    has_cat = "category" in df.columns and df["category"].map(_text).ne("").any()
    keys = ["variable", "category"] if has_cat else ["variable"]
    panels = []
    for key, sub in df.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        sub = sub.reset_index(drop=True)
        if len(sub) > SORT_ABOVE:
            sub = sub.sort_values("observed", ascending=False, kind="stable").reset_index(drop=True)
        panels.append((key, sub))
    ci = _ci_name(ci_prob, ci_kind)
    fig, axes = _stacked([len(s) for _, s in panels], width=6.4, keep_order=False, legend_space=True,
                         title=f"Posterior predictive check: observed mean vs predicted ({ci}) per level")
    for ax, (key, sub) in zip(axes, panels):
        inside = sub["inside"].astype(bool).to_numpy() if "inside" in sub else (
            (sub["lower"] <= sub["observed"]) & (sub["observed"] <= sub["upper"])).to_numpy()
        y = np.arange(len(sub))
        ax.hlines(y, sub["lower"], sub["upper"], color=MRP_LIGHT, lw=5)
        if "predicted" in sub:
            ax.plot(sub["predicted"], y, "|", ms=9, mew=1.6, color=MRP)
        ax.plot(sub["observed"][inside], y[inside], "o", ms=5, color="black")
        ax.plot(sub["observed"][~inside], y[~inside], "o", ms=5.5, color=BAD)
        labels = [f"{lv} (n={u:,.0f})" if np.isfinite(u) else lv
                  for lv, u in zip(sub["level"], pd.to_numeric(sub.get("units", np.nan), errors="coerce")
                                   * np.ones(len(sub)))]
        _rows_axis(ax, labels)
        for tick, ok in zip(ax.get_yticklabels(), inside):
            if not ok:
                tick.set_color(BAD)
        name = str(key[0]) + (f", category {_text(key[1])}" if has_cat else "")
        out_n = int((~inside).sum())
        ax.set_title(f"{name}: {out_n} of {len(sub)} levels outside the interval"
                     + (" (sorted by observed)" if len(sub) > SORT_ABOVE else ""), fontsize=9.5, loc="left")
        ax.set_xlabel("mean outcome" + (" (probability of the category)" if has_cat and _text(key[1]) != "mean"
                                        else ""), fontsize=8.5)
    handles = [Line2D([], [], marker="o", color="black", lw=0, label="observed, inside"),
               Line2D([], [], marker="o", color=BAD, lw=0, label="observed, outside"),
               Line2D([], [], marker="|", color=MRP, ms=9, mew=1.6, lw=0, label="predicted mean"),
               Line2D([], [], color=MRP_LIGHT, lw=5, label=f"predicted {ci}")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8.5, frameon=False)
    return [_save(fig, plots / "ppc.png")]


# ----------------------------------------------------------------------------- trace


def _posterior_dataset(posterior):
    """The posterior group as a Dataset, from a DataTree (root or node) or a Dataset."""
    import xarray as xr

    if posterior is None:
        return None
    if isinstance(posterior, xr.Dataset):
        return posterior
    if isinstance(posterior, xr.DataTree):
        if "posterior" in posterior.children:
            return posterior["posterior"].to_dataset()
        return posterior.to_dataset()
    return None


def _hyperparameters(ds) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(label, (chains, draws)) of Intercept, common effects, family parameters and *_sigma;
    group-level offsets (names with '|' not ending in _sigma) and big common factors are left out."""
    chosen, left_out = [], []
    for name, da in ds.data_vars.items():
        name = str(name)
        if "chain" not in da.dims or "draw" not in da.dims:
            continue
        if "|" in name and not name.endswith("_sigma"):
            continue
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if any("__obs__" in str(d) for d in extra):
            continue
        da = da.transpose("chain", "draw", *extra)
        size = int(np.prod([da.sizes[d] for d in extra])) if extra else 1
        if size > MAX_COMPONENTS:
            left_out.append(f"{name} ({size} values)")
            continue
        values = np.asarray(da.values, dtype=float).reshape(da.sizes["chain"], da.sizes["draw"], size)
        if extra:
            idx = pd.MultiIndex.from_product([[_text(v) for v in da[d].values] for d in extra])
            labels = [f"{name}[{', '.join(t)}]" for t in idx]
        else:
            labels = [name]
        chosen += [(lab, values[:, :, k]) for k, lab in enumerate(labels)]
    chosen.sort(key=lambda c: c[0] != "Intercept")  # stable: Intercept first, then as in the posterior
    return chosen, left_out


# the trace figure's margins in inches: a fixed grid, since its shape is always the same (constrained
# layout measured every label of its 2 n axes: 1.2 of its 2.1 s on the MRP primer)
TRACE_LEFT, TRACE_RIGHT, TRACE_BOTTOM, TRACE_ROW_GAP, TRACE_COL_GAP = 0.6, 0.15, 0.45, 0.55, 0.3
TRACE_TITLE_LINE = 0.2


def _trace_grid(fig: Figure, rows: int, title_lines: int) -> dict:
    """Gridspec keywords for ``rows`` x 2 axes: room for the title lines, each row's axes title
    above it and tick labels below, the tick labels of the left column."""
    w, h = fig.get_figwidth(), fig.get_figheight()
    top = 1 - (0.15 + TRACE_TITLE_LINE * title_lines + 0.25) / h
    bottom = TRACE_BOTTOM / h
    pitch = (top - bottom) * h / rows
    axes_w = (w - TRACE_LEFT - TRACE_RIGHT - TRACE_COL_GAP) / 2
    return {"width_ratios": [2.2, 1], "left": TRACE_LEFT / w, "right": 1 - TRACE_RIGHT / w, "top": top,
            "bottom": bottom, "hspace": TRACE_ROW_GAP / max(pitch - TRACE_ROW_GAP, 0.1),
            "wspace": TRACE_COL_GAP / axes_w}


def _trace(posterior, plots: Path) -> list[Path]:
    from scipy.special import bdtr

    from mrp_formula.checks.diagnostics import RHAT_MAX, Thresholds, average_ranks, ess_rhat

    ess_min = Thresholds().ess_min  # the report's default thresholds colour the titles

    ds = _posterior_dataset(posterior)
    if ds is None:
        return []
    params, left_out = _hyperparameters(ds)
    if not params:
        return []
    if len(params) > MAX_TRACE:
        left_out.insert(0, f"{len(params) - MAX_TRACE} more parameters")
        params = params[:MAX_TRACE]
    n = len(params)
    chains, draws = params[0][1].shape
    title = ("Hyperparameters: trace per chain (left), rank histogram per chain (right: flat = well mixed)\n"
             f"red title: R-hat > {RHAT_MAX} or bulk ESS < {ess_min:g}")
    if left_out:
        title += "\n" + textwrap.fill("not shown: " + ", ".join(left_out), 120)
    fig = Figure(figsize=(11, 1.55 * n + 0.8 + 0.2 * bool(left_out)))
    fig.suptitle(title, fontsize=11, y=1 - 0.08 / fig.get_figheight())
    axs = fig.subplots(n, 2, squeeze=False, gridspec_kw=_trace_grid(fig, n, title.count("\n") + 1))
    colors = [f"C{k % 10}" for k in range(chains)]
    bins = int(np.clip(draws // 25, 5, 20))
    for (label, x), (ax_t, ax_r) in zip(params, axs):
        ess, rhat = ess_rhat(x)
        for c in range(chains):
            ax_t.plot(np.arange(draws), x[c], color=colors[c], lw=0.5, alpha=0.75)
        stats = f"ESS {ess:.0f}" + (f", R-hat {rhat:.3f}" if np.isfinite(rhat) else "")
        warn = (np.isfinite(rhat) and rhat > RHAT_MAX) or (np.isfinite(ess) and ess < ess_min)
        ax_t.set_title(f"{label}    {stats}", fontsize=9.5, loc="left", color=BAD if warn else "black")
        ax_t.set_xlim(0, draws - 1)
        _style(ax_t)
        if chains > 1 and np.isfinite(x).all():
            ranks = (average_ranks(x) - 1) / (chains * draws)
            edges = np.linspace(0, 1, bins + 1)
            p = 1 / bins
            cdf = bdtr(np.arange(draws + 1), draws, p)  # binomial quantiles 0.5% and 99.5%
            lo, hi = np.searchsorted(cdf, [0.005, 0.995])
            ax_r.axhspan(lo, hi, color="#e9e9e9", lw=0)
            ax_r.axhline(draws * p, color=NULL_LINE, ls="--", lw=0.8)
            top = hi
            for c in range(chains):
                counts, _ = np.histogram(ranks[c], bins=edges)
                ax_r.stairs(counts, edges, color=colors[c], lw=1.1, baseline=None)
                top = max(top, counts.max())
            ax_r.set_ylim(0, top * 1.1)
            ax_r.set_xlim(0, 1)
            ax_r.set_yticks([])
            ax_r.spines["left"].set_visible(False)
        else:
            ax_r.hist(_finite(x.ravel()), bins=30, color=MRP_LIGHT)
            ax_r.set_yticks([])
        _style(ax_r)
    axs[-1, 0].set_xlabel("draw", fontsize=8.5)
    axs[-1, 1].set_xlabel("rank of the draw (fraction)" if chains > 1 else "value", fontsize=8.5)
    if chains > 1:
        axs[0, 1].set_title("ranks (grey: 99% band if mixed)", fontsize=9, loc="left")
    return [_save(fig, plots / "trace.png")]


# ----------------------------------------------------------------------------- over time


def _over_time(rows: list[_Row], ci_prob: float, ci_kind: str, ordered: dict, plots: Path) -> list[Path]:
    """Every estimand broken down by an ordered variable (a week, an age band: the levels of a
    ``model.structure`` walk), drawn along its order: the posterior mean as a line, the report interval as
    a band, the raw sample value as points; one line per level of any other breakdown column."""
    panels = []
    for name, rs in _by_estimand(rows).items():
        cols = {c for r in rs for c, _ in r.groups}
        time = next((c for c in ordered if c in cols), None)
        if time is None or any(r.is_contrast for r in rs):
            continue
        order = {lv: i for i, lv in enumerate(ordered[time])}
        series: dict[str, list[tuple[int, _Row]]] = {}
        for r in rs:
            g = dict(r.groups)
            if g.get(time) not in order:
                continue
            label = ", ".join(f"{c} = {v}" for c, v in r.groups if c != time)
            if r.category is not None:
                label = (label + ", " if label else "") + f"category {r.category}"
            series.setdefault(label, []).append((order[g[time]], r))
        if series:
            panels.append((name, time, series))
    if not panels:
        return []
    ci = _ci_name(ci_prob, ci_kind)
    fig = Figure(figsize=(8.0, 2.9 * len(panels) + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    colors = [MRP, RAW, WEIGHTED, "#2a9d8f", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    for ax, (name, time, series) in zip(axes, panels):
        for k, (label, pts) in enumerate(sorted(series.items())):
            pts.sort(key=lambda t: t[0])
            x = np.array([i for i, _ in pts])
            color = colors[k % len(colors)]
            ax.fill_between(x, [r.lower for _, r in pts], [r.upper for _, r in pts], color=color, alpha=0.2, lw=0)
            ax.plot(x, [r.point for _, r in pts], "-", color=color, lw=1.6, label=label or "MRP mean")
            ax.plot(x, [r.raw for _, r in pts], "o", ms=3.5, mfc="none", mec=color, mew=1.0)
        levels = list(ordered[time])
        step = max(1, math.ceil(len(levels) / 16))
        ax.set_xticks(range(0, len(levels), step), [levels[i] for i in range(0, len(levels), step)], fontsize=8)
        ax.set_xlim(-0.5, len(levels) - 0.5)
        ax.set_xlabel(time, fontsize=8.5)
        ax.set_title(f"{name} by {time}: mean (line), {ci} (band), raw sample (circles)", fontsize=9.5, loc="left")
        if len(series) > 1:
            ax.legend(fontsize=7.5, frameon=False, ncol=min(4, len(series)))
        _style(ax)
    return [_save(fig, plots / "over_time.png")]


# ----------------------------------------------------------------------------- entry point


def write_plots(folder: Path, *, estimands: pd.DataFrame, draws: pd.DataFrame, posterior,
                ppc: pd.DataFrame | None, ci_prob: float, ci_kind: str,
                ropes: dict[str, tuple[float, float]], ordered: dict | None = None) -> list[Path]:
    """Write the PNGs of a run into ``folder/plots/`` and return their paths.

    ``ordered`` maps an ordered variable (one with an rw1, rw2 or ar1 structure) to its levels in
    order: estimands broken down by it are also drawn along that order (``over_time.png``).

    ``estimands`` is the summary table (estimand, group columns, [category], scale, mean,
    lower, upper, p_above_null, p_in_rope, raw, weighted, ...), ``draws`` the long draws (chain,
    draw, estimand, group columns, [category], value), ``posterior`` an ``xarray.DataTree`` (or
    None), ``ppc`` the PPC table or None, ``ropes`` the ROPE of each contrast estimand by name.
    """
    plots = Path(folder) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    return _draw(plots, KINDS, estimands=estimands, draws=draws, posterior=posterior, ppc=ppc, ci_prob=ci_prob,
                 ci_kind=ci_kind, ropes=ropes, ordered=ordered)


KINDS = ("estimands", "forest", "over_time", "raw_vs_mrp", "trace", "ppc")


def figures(kinds=KINDS, *, estimands: pd.DataFrame | None = None, draws: pd.DataFrame | None = None,
            posterior=None, ppc: pd.DataFrame | None = None, ci_prob: float = 0.95, ci_kind: str = "eti",
            ropes: dict[str, tuple[float, float]] | None = None,
            ordered: dict | None = None) -> list[tuple[str, Figure]]:
    """The figures ``write_plots`` would write (only those of ``kinds``), not saved: (file name, figure)."""
    sink = FigureSink()
    _draw(sink, kinds, estimands=estimands, draws=draws, posterior=posterior, ppc=ppc, ci_prob=ci_prob,
          ci_kind=ci_kind, ropes=ropes, ordered=ordered)
    return sink.figures


def _draw(plots, kinds, *, estimands, draws, posterior, ppc, ci_prob, ci_kind, ropes, ordered=None) -> list:
    ropes = {k: (float(v[0]), float(v[1])) for k, v in (ropes or {}).items() if v is not None}
    rows = _rows(estimands, draws) if estimands is not None and len(estimands) else []
    out: list = []
    if "estimands" in kinds:
        out += _estimand_pages(rows, ci_prob, ci_kind, ropes, plots)
    if "forest" in kinds:
        out += _forest(rows, ci_prob, ci_kind, ropes, plots)
    if "over_time" in kinds and ordered:
        out += _over_time(rows, ci_prob, ci_kind, ordered, plots)
    if "raw_vs_mrp" in kinds:
        out += _raw_vs_mrp(rows, ci_prob, ci_kind, plots)
    if "trace" in kinds:
        out += _trace(posterior, plots)
    if "ppc" in kinds:
        out += _ppc(ppc, ci_prob, ci_kind, plots)
    return out
