"""``mrp diff RUN_A RUN_B``: what changed between two runs, and how far each estimand moved.

The comparison is pure functions over two :class:`RunView`: the unified diff of the spec files
(and of the ``--set`` overrides), the settings and inputs that differ (data hashes, seed, sampler,
versions), and each estimand row (each ``by`` group) matched by its labels, its move measured in
posterior standard deviations: ``(mean_b - mean_a) / sqrt((sd_a^2 + sd_b^2) / 2)``, flagged above
1 in absolute value. Rows in only one run are listed as added or removed. So "did adding this
predictor change anything?" has an answer at a glance.

Nothing here prints: the CLI prints the rich renderables of :func:`renderables`, and
:func:`render_html` writes the comparison as one self-contained page.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.output.report.view import RunView, label_columns, row_label, text

THRESHOLD = 1.0  # |shift| above this many posterior sd is flagged
ROUNDING = 1e-12  # a change of the mean smaller than this, relative to it, is rounding, shown as 0
SHOWN_PER_ESTIMAND = 12  # rows of an estimand shown in the terminal without --all (flagged ones always)
COLUMNS = ["estimand", "row", "status", "mean_a", "sd_a", "lower_a", "upper_a", "mean_b", "sd_b", "lower_b",
           "upper_b", "change", "shift", "flagged"]


def pooled_shift(mean_a, sd_a, mean_b, sd_b) -> np.ndarray:
    """(mean_b - mean_a) / sqrt((sd_a^2 + sd_b^2) / 2), elementwise; 0 when nothing moved and both sds
    are 0, +-inf when a point estimate moved with no posterior spread, nan when a number is missing."""
    ma, sa, mb, sb = (np.asarray(x, dtype=float) for x in (mean_a, sd_a, mean_b, sd_b))
    pooled = np.sqrt((sa ** 2 + sb ** 2) / 2)
    move = mb - ma
    with np.errstate(divide="ignore", invalid="ignore"):
        out = move / pooled
        out = np.where((pooled == 0) & (move == 0), 0.0, out)
        out = np.where((pooled == 0) & (move != 0), np.sign(move) * np.inf, out)
    return out


def row_key(row, columns: list[str]) -> tuple:
    """An estimand row's identity across runs: its name and its non-empty labels (so a label column
    that only the other run has does not split a row in two)."""
    return (str(row["estimand"]),) + tuple((c, text(row.get(c))) for c in columns if text(row.get(c)))


def compare_estimands(a: pd.DataFrame, b: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """One row per estimand row of either run (A's order, then rows only B has): both summaries, the
    change of the mean, the pooled shift in posterior sds and whether it is flagged; ``status`` is
    'both', 'added' (only in B) or 'removed' (only in A)."""
    ca, cb = label_columns(a), label_columns(b)
    rows_a = {row_key(r, ca): r for _, r in a.iterrows()}
    rows_b = {row_key(r, cb): r for _, r in b.iterrows()}
    keys = list(rows_a) + [k for k in rows_b if k not in rows_a]
    out = []
    for k in keys:
        ra, rb = rows_a.get(k), rows_b.get(k)
        any_row = ra if ra is not None else rb
        cols = ca if ra is not None else cb
        rec = {"estimand": k[0], "row": row_label(any_row, cols),
               "status": "both" if ra is not None and rb is not None else ("removed" if rb is None else "added")}
        for side, r in (("a", ra), ("b", rb)):
            for f in ("mean", "sd", "lower", "upper"):
                rec[f"{f}_{side}"] = float(r[f]) if r is not None and f in r and pd.notna(r[f]) else math.nan
        out.append(rec)
    df = pd.DataFrame(out, columns=COLUMNS[:-3])
    change = df["mean_b"] - df["mean_a"]
    noise = change.abs() <= ROUNDING * np.maximum(df["mean_a"].abs(), df["mean_b"].abs())
    df["change"] = change.where(~noise, 0.0)  # the last bits of a sum taken in another order: no change
    df["shift"] = pooled_shift(df["mean_a"], df["sd_a"], df["mean_a"] + df["change"], df["sd_b"]) if len(df) else []
    df["flagged"] = (df["status"] == "both") & (df["shift"].abs() > threshold)
    return df[COLUMNS]


@dataclass(frozen=True)
class Change:
    what: str
    a: str
    b: str


DECISION_NUMBERS = ("chance_to_win", "p_above_null", "p_in_rope")


@dataclass(frozen=True)
class DecisionChange:
    """A contrast row whose decision in words differs between the runs (``page.stance``: who is
    ahead and how likely, the ROPE's verdict), with the numbers behind it."""

    estimand: str
    row: str
    a: str
    b: str
    numbers: tuple[tuple[str, float, float], ...]  # (name, A, B) of the decision numbers either run has

    def to_json(self) -> dict:
        return {"estimand": self.estimand, "row": self.row, "a": self.a, "b": self.b,
                "numbers": {n: [_or_none(x), _or_none(y)] for n, x, y in self.numbers}}


def _or_none(x: float):
    return None if math.isnan(x) else x


def decision_changes(a: RunView, b: RunView) -> list[DecisionChange]:
    """The contrast rows of both runs whose decision in words changed (a ROPE widened, a chance to
    win that crossed 95 %), though the estimate itself may not have moved."""
    from mrp_formula.output.report.page import stance

    ca, cb = label_columns(a.estimands), label_columns(b.estimands)
    rows_b = {row_key(r, cb): r for _, r in b.estimands.iterrows()}
    out = []
    for _, ra in a.estimands.iterrows():
        rb = rows_b.get(row_key(ra, ca))
        if rb is None:
            continue
        sa, sb = stance(a, ra), stance(b, rb)
        if sa != sb:
            nums = tuple((n, _number(ra.get(n)), _number(rb.get(n))) for n in DECISION_NUMBERS
                         if not (math.isnan(_number(ra.get(n))) and math.isnan(_number(rb.get(n)))))
            out.append(DecisionChange(str(ra["estimand"]), row_label(ra, ca), sa or "(no decision)",
                                      sb or "(no decision)", nums))
    return out


def _number(x) -> float:
    try:
        return float(x) if x is not None and pd.notna(x) and str(x) != "" else math.nan
    except (TypeError, ValueError):
        return math.nan


def _applied(view: RunView) -> str:
    """spec.toml as the user wrote it: the lines the run appended for its --set overrides removed."""
    marks = {f"# applied with --set: {o}" for o in view.overrides}
    lines = view.spec_text.splitlines()
    while lines and (lines[-1] in marks or not lines[-1].strip()):
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def spec_diff(a: RunView, b: RunView) -> list[str]:
    """The unified diff of the two spec files (without the override comments; those are compared
    apart); of the specs as the runs used them when either extends another file (its spec.toml
    holds only its own keys, so the files alone would differ where the runs do not)."""
    if (a.extends or b.extends) and a.resolved_text and b.resolved_text:
        return list(difflib.unified_diff(a.resolved_text.splitlines(), b.resolved_text.splitlines(),
                                         fromfile=f"A/{a.folder.name} (extends resolved)",
                                         tofile=f"B/{b.folder.name} (extends resolved)", lineterm=""))
    return list(difflib.unified_diff(_applied(a).splitlines(), _applied(b).splitlines(),
                                     fromfile=f"A/{a.folder.name}/spec.toml", tofile=f"B/{b.folder.name}/spec.toml",
                                     lineterm=""))


def _short(h) -> str:
    return str(h)[:12] if h else "(none)"


def settings_changes(a: RunView, b: RunView) -> list[Change]:
    """What differs besides the spec text: the effective model, the inputs' content, the seed, the
    sampler, the interval, the versions, and whether the fit was sampled or reused."""
    out = []

    def add(what, x, y):
        x, y = ("" if x is None else str(x)), ("" if y is None else str(y))
        if x != y:
            out.append(Change(what, x or "(none)", y or "(none)"))

    add("formula", a.formula, b.formula)
    add("family", a.family, b.family)
    ia, ib = a.manifest.get("inputs") or {}, b.manifest.get("inputs") or {}
    for k in dict.fromkeys(list(ia) + list(ib)):
        ha, hb = (ia.get(k) or {}).get("sha256"), (ib.get(k) or {}).get("sha256")
        if ha != hb:
            out.append(Change(f"{k} file content (sha256)", _short(ha), _short(hb)))
        else:
            add(f"{k} file path", (ia.get(k) or {}).get("path"), (ib.get(k) or {}).get("path"))
    add("seed", a.manifest.get("seed"), b.manifest.get("seed"))
    sa, sb = a.manifest.get("sampler") or {}, b.manifest.get("sampler") or {}
    for k in dict.fromkeys(list(sa) + list(sb)):
        if k != "mass_matrix_reason":
            add(f"sampler {k.replace('_', ' ')}", sa.get(k), sb.get(k))
    add("interval", a.ci_name, b.ci_name)
    add("mrp-formula", a.manifest.get("mrp_formula"), b.manifest.get("mrp_formula"))
    va, vb = a.manifest.get("versions") or {}, b.manifest.get("versions") or {}
    for k in dict.fromkeys(list(va) + list(vb)):
        add(k, va.get(k), vb.get(k))
    return out


@dataclass(frozen=True)
class RunDiff:
    """Two runs compared; ``table`` has one row per estimand row of either run (see COLUMNS)."""

    a: RunView
    b: RunView
    spec_diff: tuple[str, ...]
    overrides_a: tuple[str, ...]
    overrides_b: tuple[str, ...]
    changes: tuple[Change, ...]
    table: pd.DataFrame
    threshold: float = THRESHOLD
    verdict_a: str = ""
    verdict_b: str = ""
    notes: tuple[str, ...] = field(default=())
    decisions: tuple[DecisionChange, ...] = ()

    @property
    def moved(self) -> pd.DataFrame:
        return self.table[self.table["flagged"]]

    @property
    def added(self) -> pd.DataFrame:
        return self.table[self.table["status"] == "added"]

    @property
    def removed(self) -> pd.DataFrame:
        return self.table[self.table["status"] == "removed"]

    @property
    def largest(self):
        both = self.table[(self.table["status"] == "both") & self.table["shift"].notna()]
        if not len(both):
            return None
        return both.loc[both["shift"].abs().idxmax()]

    def summary(self) -> list[str]:
        """The answer at a glance, one sentence a line."""
        out = []
        if self.spec_diff:
            body = [ln for ln in self.spec_diff if not ln.startswith(("+++", "---"))]
            gone, new = sum(ln[:1] == "-" for ln in body), sum(ln[:1] == "+" for ln in body)
            out.append(f"spec.toml: {gone} line{'s' if gone != 1 else ''} removed, {new} added")
        else:
            out.append("spec.toml: identical")
        if self.overrides_a != self.overrides_b:
            only_a = [o for o in self.overrides_a if o not in self.overrides_b]
            only_b = [o for o in self.overrides_b if o not in self.overrides_a]
            parts = ([f"only in A: {' '.join(only_a)}"] if only_a else []) + \
                    ([f"only in B: {' '.join(only_b)}"] if only_b else [])
            out.append("--set overrides differ (" + ("; ".join(parts) or "same ones, another order") + ")")
        data = [c for c in self.changes if c.what.endswith("(sha256)")]
        out.append("inputs: " + (", ".join(c.what.split(" ")[0] for c in data) + " changed" if data
                                 else "same content"))
        both = self.table[self.table["status"] == "both"]
        k = int(self.moved.shape[0])
        big = self.largest
        line = (f"{k} of {len(both)} estimand rows moved by more than {self.threshold:g} posterior sd"
                if k else f"no estimand row moved by more than {self.threshold:g} posterior sd ({len(both)} compared)")
        if big is not None and abs(big["shift"]) >= 0.005:  # not "largest: +0.00 sd" when nothing moved
            line += f"; largest: {_name(big)} {big['shift']:+.2f} sd"
        out.append(line)
        if self.decisions:
            first = self.decisions[0]
            out.append(f"{len(self.decisions)} decision{'s' if len(self.decisions) != 1 else ''} changed; "
                       f"{_name({'estimand': first.estimand, 'row': first.row})}: \"{first.a}\" -> \"{first.b}\"")
        if len(self.added):
            out.append(f"only in B (added): {len(self.added)} rows of "
                       f"{', '.join(dict.fromkeys(self.added['estimand']))}")
        if len(self.removed):
            out.append(f"only in A (removed): {len(self.removed)} rows of "
                       f"{', '.join(dict.fromkeys(self.removed['estimand']))}")
        return out

    def to_json(self) -> dict:
        from mrp_formula.output.files import table_records

        return {"a": str(self.a.folder), "b": str(self.b.folder), "threshold": self.threshold,
                "summary": self.summary(), "spec_diff": list(self.spec_diff),
                "overrides": {"a": list(self.overrides_a), "b": list(self.overrides_b)},
                "changes": [{"what": c.what, "a": c.a, "b": c.b} for c in self.changes],
                "verdict": {"a": self.verdict_a, "b": self.verdict_b},
                "decisions_changed": [c.to_json() for c in self.decisions],
                "estimands": table_records(self.table)}


def _name(row) -> str:
    return f"{row['estimand']}" + (f" [{row['row']}]" if row["row"] else "")


def diff_runs(a, b, *, threshold: float = THRESHOLD) -> RunDiff:
    """Compare the run folders ``a`` and ``b`` (paths or RunViews)."""
    from mrp_formula.output.report.page import verdict

    va = a if isinstance(a, RunView) else RunView.from_folder(a, draws=False)
    vb = b if isinstance(b, RunView) else RunView.from_folder(b, draws=False)
    return RunDiff(a=va, b=vb, spec_diff=tuple(spec_diff(va, vb)), overrides_a=tuple(va.overrides),
                   overrides_b=tuple(vb.overrides), changes=tuple(settings_changes(va, vb)),
                   table=compare_estimands(va.estimands, vb.estimands, threshold), threshold=threshold,
                   verdict_a=verdict(va).word, verdict_b=verdict(vb).word,
                   decisions=tuple(decision_changes(va, vb)))


# ----------------------------------------------------------------------------- the terminal


def _f(x) -> str:
    from mrp_formula.output.report.page import fmt

    return fmt(x)


def shown_rows(d: RunDiff, show_all: bool = False) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows the terminal shows: all of them with ``show_all``; else per estimand the flagged rows,
    added and removed rows, and the largest moves up to SHOWN_PER_ESTIMAND; and how many were left out."""
    if show_all:
        return d.table, {}
    keep, left = [], {}
    for est, sub in d.table.groupby("estimand", sort=False):
        if len(sub) <= SHOWN_PER_ESTIMAND:
            keep.append(sub)
            continue
        must = sub[sub["flagged"] | (sub["status"] != "both")]
        rest = sub.drop(must.index)
        room = max(SHOWN_PER_ESTIMAND - len(must), 0)
        top = rest.loc[rest["shift"].abs().sort_values(ascending=False).index[:room]]
        chosen = sub.loc[sorted(set(must.index) | set(top.index), key=list(sub.index).index)]
        keep.append(chosen)
        if len(sub) > len(chosen):
            left[str(est)] = len(sub) - len(chosen)
    return (pd.concat(keep) if keep else d.table.iloc[:0]), left


def renderables(d: RunDiff, show_all: bool = False) -> list:
    """rich renderables for the terminal: the summary, the spec diff, the other changes, the moves."""
    from rich.markup import escape
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    out: list = [Text(f"A: {d.a.folder}  ({d.a.name}, verdict: {d.verdict_a})\n"
                      f"B: {d.b.folder}  ({d.b.name}, verdict: {d.verdict_b})")]
    for line in d.summary():
        out.append(Text("  " + line, style="bold yellow" if "moved by more" in line and not line.startswith("no")
                        else ""))
    if d.spec_diff:
        out.append(Syntax("\n".join(d.spec_diff), "diff", theme="ansi_dark", background_color="default"))
    if d.overrides_a != d.overrides_b:
        t = Table(title="--set overrides", show_lines=False)
        t.add_column("A")
        t.add_column("B")
        t.add_row(escape(" ".join(d.overrides_a) or "(none)"), escape(" ".join(d.overrides_b) or "(none)"))
        out.append(t)
    if d.changes:
        t = Table(title="other changes", show_lines=False)
        for c in ("what", "A", "B"):
            t.add_column(c)
        for c in d.changes:
            t.add_row(escape(c.what), escape(c.a), escape(c.b))
        out.append(t)
    if d.decisions:
        t = Table(title="decisions that changed (the estimates may not have moved)", show_lines=False)
        for c in ("estimand", "row", "A", "B", "numbers (A -> B)"):
            t.add_column(c)
        for c in d.decisions:
            t.add_row(escape(c.estimand), escape(c.row), escape(c.a), escape(c.b), escape(_numbers(c)),
                      style="bold yellow")
        out.append(t)
    rows, left = shown_rows(d, show_all)
    t = Table(title=f"estimands: move in posterior sd, pooled; flagged (!) above {d.threshold:g}", show_lines=False)
    for c, j in (("estimand", "left"), ("row", "left"), ("mean A", "right"), ("sd A", "right"), ("mean B", "right"),
                 ("sd B", "right"), ("change", "right"), ("shift (sd)", "right"), ("", "left")):
        t.add_column(c, justify=j)
    for _, r in rows.iterrows():
        if r["status"] == "both":
            flag = "!" if r["flagged"] else ""
            shift = f"{r['shift']:+.2f}" if np.isfinite(r["shift"]) else text(r["shift"])
            style = "bold yellow" if r["flagged"] else None
        else:
            flag, shift, style = r["status"], "", "cyan"
        t.add_row(escape(str(r["estimand"])), escape(str(r["row"])), _f(r["mean_a"]), _f(r["sd_a"]),
                  _f(r["mean_b"]), _f(r["sd_b"]), _f(r["change"]), shift, flag, style=style)
    out.append(t)
    if left:
        out.append(Text("not shown (within the threshold; --all shows them): "
                        + ", ".join(f"{k}: {v} rows" for k, v in left.items())))
    return out


def _numbers(c: DecisionChange) -> str:
    from mrp_formula.notes import share_of_draws

    def shown(x):
        return "(none)" if math.isnan(x) else share_of_draws(x)

    return ", ".join(f"{n.replace('_', ' ')} {shown(x)} -> {shown(y)}" for n, x, y in c.numbers)


# ----------------------------------------------------------------------------- the page


def shift_figure(table: pd.DataFrame, threshold: float = THRESHOLD):
    """A dot per estimand row present in both runs: its move in posterior sds, the band of +-threshold
    shaded, flagged rows in red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    both = table[(table["status"] == "both") & np.isfinite(table["shift"])]
    if not len(both):
        return None
    labels = [_name(r) for _, r in both.iterrows()]
    x = both["shift"].to_numpy(dtype=float)
    n = len(both)
    fig = Figure(figsize=(7.2, 0.9 + 0.22 * n + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    lim = max(2.0, float(np.nanmax(np.abs(x))) * 1.1)
    ax.axvspan(-threshold, threshold, color="#e6eef6", lw=0)
    ax.axvline(0, color="#555555", lw=0.8, ls="--")
    flagged = np.abs(x) > threshold
    y = np.arange(n)
    ax.hlines(y, 0, x, color="#9cbfe0", lw=1.2)
    ax.plot(x[~flagged], y[~flagged], "o", color="#1f5a96", ms=5)
    ax.plot(x[flagged], y[flagged], "o", color="#c0212b", ms=6)
    ax.set_yticks(y, labels)
    for tick, f in zip(ax.get_yticklabels(), flagged):
        if f:
            tick.set_color("#c0212b")
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(-lim, lim)
    ax.set_xlabel("move from A to B, in pooled posterior sd: (mean B - mean A) / sqrt((sd A² + sd B²) / 2)",
                  fontsize=8.5)
    ax.tick_params(labelsize=8.5)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    ax.set_title(f"How far each estimand moved (shaded: within {threshold:g} sd)", fontsize=10, loc="left")
    return fig


def render_html(d: RunDiff) -> str:
    """The comparison as one self-contained HTML page."""
    from mrp_formula.output.report import page as P
    from mrp_formula.output.report.document import environment
    from mrp_formula.output.report.figures import Svg, to_svg

    cols = (P.Column("estimand"), P.Column("row"), P.Column("status"), P.Column("mean A", True),
            P.Column("sd A", True), P.Column("mean B", True), P.Column("sd B", True),
            P.Column("change", True, "mean B - mean A"),
            P.Column("shift (sd)", True, "change in pooled posterior sd"))
    body = []
    for _, r in d.table.iterrows():
        flagged = bool(r["flagged"])
        s = r["shift"]
        shift = P.Cell(f"{s:+.2f}" if np.isfinite(s) else ("" if pd.isna(s) else str(s)),
                       float(s) if np.isfinite(s) else (None if pd.isna(s) else math.copysign(1e300, s)),
                       "bad" if flagged else "")
        body.append((P.Cell(str(r["estimand"])), P.Cell(str(r["row"])),
                     P.Cell("moved" if flagged else ("" if r["status"] == "both" else r["status"]),
                            css="bad" if flagged else ""),
                     P.num_cell(r["mean_a"]), P.num_cell(r["sd_a"]), P.num_cell(r["mean_b"]), P.num_cell(r["sd_b"]),
                     P.num_cell(r["change"]), shift))
    table = P.Table("t-diff", cols, tuple(body), filter=len(body) > 8)
    fig = None
    try:
        f = shift_figure(d.table, d.threshold)
        fig = Svg("shift", to_svg(f, "s1-")) if f is not None else None
    except Exception as exc:  # a figure is a report, not a result
        fig = Svg("shift", "", f"{type(exc).__name__}: {exc}")
    return environment().get_template("diff.html.j2").render(
        d=d, summary=d.summary(), table=table, figure=fig, decision_numbers=[_numbers(c) for c in d.decisions],
        reports=[_report_link(v) for v in (d.a, d.b)], version=str(d.b.manifest.get("mrp_formula", "")))


def _report_link(view: RunView) -> str:
    """The run's report.html as a link ('' when it has none)."""
    page = view.folder / "report.html"
    return page.resolve().as_uri() if page.is_file() else ""


def write_html(d: RunDiff, out: str | Path) -> Path:
    from mrp_formula.output.report.document import write_text_atomic

    out = Path(out)
    write_text_atomic(out, render_html(d))
    return out
