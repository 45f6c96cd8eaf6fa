"""What the report says, as plain data: the question, the headline numbers, the decision
numbers in words, the tables, the diagnostics with a verdict. Pure functions of a
:class:`RunView`; ``render`` lays them out and adds the figures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mrp_formula.checks.diagnostics import divergence_advice, mixing_advice, trading_pair
from mrp_formula.notes import share_of_draws
from mrp_formula.output.report.view import NULL, RunView, _num, row_label, text

MANY = 12  # an estimand without `by` but with more rows than this is shown as a breakdown


# ----------------------------------------------------------------------------- formatting


def fmt(x, digits: int = 4) -> str:
    """A number for people: 4 significant digits, no trailing noise; '' when missing."""
    v = _num(x)
    if v is None:
        return ""
    if v == 0:
        return "0"
    if abs(v) >= 10 ** digits and float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_alike(values, digits: int = 4) -> list[str]:
    """Numbers read side by side (an estimate and its interval): the same decimals for all, as many as
    give the largest ``digits`` significant digits, so that 3.0004 beside 3.015 reads "3.000", not
    "3"; '' for a missing one."""
    nums = [_num(v) for v in values]
    finite = [abs(v) for v in nums if v is not None and math.isfinite(v)]
    if not finite or max(finite) == 0:
        return [fmt(v, digits) for v in nums]
    top = max(finite)
    decimals = min(max(digits - 1 - math.floor(math.log10(top)), 0), 12)
    sep = "," if top >= 10 ** digits else ""
    shown = [v for v in nums if v is not None and math.isfinite(v)]
    while decimals and all(f"{v:.{decimals}f}".endswith("0") for v in shown):  # 0.1 to 0.2, not 0.100 to 0.200
        decimals -= 1
    return ["" if v is None else (fmt(v) if not math.isfinite(v) else f"{v:{sep}.{decimals}f}") for v in nums]


def pct(p, missing: str = "") -> str:
    """A share (of the population's weight, say) as a percentage; exactly 0 and 1 shown as such."""
    v = _num(p)
    if v is None:
        return missing
    if 0.999 < v < 1:
        return ">99.9%"
    if 0 < v < 0.001:
        return "<0.1%"
    return f"{100 * v:.1f}%"


def chance(p, missing: str = "") -> str:
    """A probability estimated from the draws: never "100.0%" (notes.share_of_draws)."""
    v = _num(p)
    return missing if v is None else share_of_draws(v)


def count(n) -> str:
    v = _num(n)
    return "" if v is None else f"{v:,.0f}"


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Cell:
    shown: str
    sort: float | None = None  # numeric sort key (None: sort by the text)
    css: str = ""
    title: str = ""


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool = False
    tip: str = ""


@dataclass(frozen=True)
class Table:
    id: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""
    filter: bool = True  # a text box that hides non-matching rows


def num_cell(v, *, as_pct: bool = False, digits: int = 4, css: str = "") -> Cell:
    x = _num(v)
    if x is None:
        return Cell("", None, css)
    return Cell(chance(x) if as_pct else fmt(x, digits), x, css)


def alike_cells(values, digits: int = 4) -> list[Cell]:
    """Cells of numbers read side by side (``fmt_alike``), each sorting by its value."""
    return [Cell(shown, _num(v)) for v, shown in zip(values, fmt_alike(values, digits))]


COLUMN_TIPS = {
    "mean": "posterior mean",
    "median": "posterior median",
    "sd": "posterior standard deviation",
    "lower": "lower end of the credible interval",
    "upper": "upper end of the credible interval",
    "P(>null)": "posterior probability that the contrast is above its null value (0 for a difference, 1 for "
                "a ratio)",
    "in ROPE": "posterior probability that the contrast lies in the region of practical equivalence",
    "chance to win": "probability that the first level gives the higher outcome",
    "loss if first": "outcome given up on average by choosing the first level, when the second is better",
    "loss if second": "outcome given up on average by choosing the second level, when the first is better",
    "raw": "plain sample value (no model, no weighting)",
    "weighted": "classical poststratification: the sample raked to the population margins",
    "ESS": "bulk effective sample size of the estimand",
    "R-hat": "rank-normalised split R-hat of the estimand (1 = chains agree)",
}


ALIKE = ("mean", "median", "lower", "upper", "raw", "weighted")  # read side by side: the same decimals


def estimand_table(view: RunView, rows: pd.DataFrame, label_cols: list[str], table_id: str,
                   caption: str = "") -> Table:
    """Rows of the estimand summary: labels, posterior summary, decision numbers, raw/weighted, diagnostics."""
    th = view.diagnostics
    cols = [Column(c) for c in label_cols]
    spec = [("mean", "mean", False), ("median", "median", False), ("sd", "sd", False),
            ("lower", "lower", False), ("upper", "upper", False)]
    opt = [("p_above_null", "P(>null)", True), ("p_in_rope", "in ROPE", True),
           ("chance_to_win", "chance to win", True), ("expected_loss_first", "loss if first", False),
           ("expected_loss_second", "loss if second", False), ("raw", "raw", False),
           ("weighted", "weighted", False), ("ess_bulk", "ESS", False), ("r_hat", "R-hat", False)]
    # a contrast of two subpopulations has no arm to choose: no loss of choosing one (as in the decisions)
    parts = {e for e in dict.fromkeys(rows["estimand"]) if _subpopulations(view, e)} if "estimand" in rows else set()
    losses = ("expected_loss_first", "expected_loss_second")
    keep = rows.loc[~rows["estimand"].isin(parts)] if parts else rows
    shown = spec + [o for o in opt if o[0] in rows and (keep if o[0] in losses else rows)[o[0]].notna().any()]
    cols += [Column(title, True, COLUMN_TIPS.get(title, "")) for _, title, _ in shown]
    out = []
    alike = [k for k, _, _ in shown if k in ALIKE]
    for _, r in rows.iterrows():
        cells = [Cell(text(r.get(c))) for c in label_cols]
        same = dict(zip(alike, fmt_alike([r.get(k) for k in alike])))
        for key, _title, as_pct in shown:
            if key in losses and r.get("estimand") in parts:
                cells.append(Cell(""))
                continue
            if key in same:
                cells.append(Cell(same[key], _num(r.get(key))))
                continue
            css = ""
            if key == "r_hat" and (_num(r.get(key)) or 0) > th.rhat_max:
                css = "bad"
            if key == "ess_bulk" and _num(r.get(key)) is not None and _num(r.get(key)) < th.ess_min:
                css = "bad"
            digits = 3 if key in ("ess_bulk",) else 4
            cell = num_cell(r.get(key), as_pct=as_pct, digits=digits, css=css)
            if key == "ess_bulk" and cell.sort is not None:
                cell = Cell(count(cell.sort), cell.sort, css)
            cells.append(cell)
        out.append(tuple(cells))
    return Table(table_id, tuple(cols), tuple(out), caption)


# ----------------------------------------------------------------------------- the question


@dataclass(frozen=True)
class Fact:
    term: str
    value: str
    code: bool = False  # shown in a monospace font (formulas, file names)


def _population(view: RunView) -> str:
    pop = view.spec.get("population") if isinstance(view.spec.get("population"), dict) else {}
    stats = view.manifest.get("tables") or {}
    cells = stats.get("population_cells")
    if isinstance(pop.get("margins"), dict):
        parts = []
        for var, shares in pop["margins"].items():
            if isinstance(shares, dict):
                total = sum(float(v) for v in shares.values() if _num(v) is not None) or 1.0
                parts.append(f"{var}: " + ", ".join(f"{k} {pct(float(v) / total)}" for k, v in shares.items()
                                                    if _num(v) is not None))
        joint = pop.get("joint", "independent")
        how = "combined by raking the sample" if joint == "rake" else "combined as if independent"
        return f"margins only ({'; '.join(parts)}), {how}" + (f": {count(cells)} cells" if cells else "")
    src = (view.manifest.get("inputs") or {}).get("population", {}).get("path") or pop.get("source") or ""
    out = Path(str(src)).name if src else "a cell table"
    extra = []
    if cells is not None:
        extra.append(f"{count(cells)} cells after collapsing to the variables used")
    if pop.get("weight"):
        extra.append(f"weights from column {pop['weight']}")
    else:
        extra.append("each row counts once")
    return out + (" (" + "; ".join(extra) + ")" if extra else "")


def _sample(view: RunView) -> str:
    stats = view.manifest.get("tables") or {}
    src = (view.manifest.get("inputs") or {}).get("data", {}).get("path") or ""
    name = Path(str(src)).name if src else "the sample"
    used, seen = stats.get("sample_rows_used"), stats.get("sample_rows_in")
    out = name
    if used is not None:
        out += f": {count(used)} rows used"
        if seen is not None and seen != used:
            out += f" of {count(seen)}"
    dropped = stats.get("dropped_missing") or {}
    if isinstance(dropped, dict) and dropped:
        out += " (dropped for missing values: " + ", ".join(f"{k} {count(v)}" for k, v in dropped.items()) + ")"
    return out


def outcome_words(view: RunView) -> str:
    """What an estimand averages over the population: 'clicked', 'the share clicks / visits'."""
    y = view.response
    if y.startswith("p(") and y.endswith(")") and "," in y:
        a, b = (s.strip() for s in y[2:-1].split(",", 1))
        return f"{a} / {b}"
    if view.family in ("categorical", "cumulative"):
        return f"each category of {y}" if y else "each category"
    return y or "the outcome"


def _kind(view: RunView) -> str:
    if view.family == "bernoulli":
        return " (a probability)"
    if view.family == "binomial":
        return " (a share)"
    if view.family in ("categorical", "cumulative"):
        return " (the probability of each category, and the expected category)"
    return ""


def _levels(v) -> str:
    if isinstance(v, (list, tuple)):
        return ", then to ".join(str(x) for x in v)
    return str(v)


def describe_estimand(view: RunView, name: str) -> str:
    """The estimand in words: 'population average of clicked (a probability), with treatment set to
    control, then to treatment, for everyone'."""
    e = view.estimand_specs.get(name)
    if e is None:
        return ""
    base = f"population average of {outcome_words(view)}"
    parts = []
    at = e.get("at") if isinstance(e.get("at"), dict) else {}
    contrast = e.get("contrast")
    if isinstance(contrast, dict) and len(contrast) == 1 and isinstance(next(iter(contrast.values())), list) \
            and len(next(iter(contrast.values()))) == 2:
        (var, (a, b)), = contrast.items()
        scale = str(e.get("scale", "difference")).replace("_", " ")
        if var in (view.manifest.get("tables", {}).get("population_columns") or ()):  # two subpopulations
            head = (f"{scale} of the {base}{_kind(view)} between the population's cells with {var} = {a} and "
                    f"those with {var} = {b} (each with its own mix of the other variables)")
        else:
            head = f"{scale} of the {base}{_kind(view)} with {var} set to {a} vs set to {b} for everyone"
    else:
        head = base + _kind(view)
    if at:
        parts.append("with " + " and ".join(f"{k} set to {_levels(v)}" for k, v in at.items()) + " for everyone")
    by = e.get("by")
    if isinstance(by, list) and by:
        parts.append("by " + ", ".join(str(x) for x in by))
    excl = e.get("exclude")
    if isinstance(excl, list) and excl:
        parts.append("leaving out " + ", ".join(str(x) for x in excl) + " when predicting")
    rope = view.ropes.get(name)
    if rope:
        parts.append(f"region of practical equivalence [{fmt(rope[0])}, {fmt(rope[1])}]")
    return head[0].upper() + head[1:] + ("; " + "; ".join(parts) if parts else "")


def question(view: RunView) -> list[Fact]:
    m = view.manifest.get("model") or {}
    family = view.family
    fam = family
    if m.get("aggregated") and m.get("cells_fitted") is not None:
        fam += f" (fitted on {count(m.get('cells_fitted'))} binomial cells of {count(m.get('rows_in'))} rows: " \
               f"the same likelihood)"
    facts = [Fact("model", view.formula, True), Fact("family", fam), Fact("sample", _sample(view)),
             Fact("population", _population(view))]
    for name in dict.fromkeys(view.estimands["estimand"]):
        d = describe_estimand(view, name)
        if d:
            facts.append(Fact(f"estimand {name}", d))
    return facts


# ----------------------------------------------------------------------------- headline


@dataclass(frozen=True)
class Headline:
    estimand: str
    label: str
    value: str
    interval: str
    note: str = ""
    link: str = ""  # to a breakdown section


def breakdown_columns(view: RunView) -> dict[str, list[str]]:
    """Per estimand, the columns it is broken down by (its `by`, or, without the spec, the varying
    label columns of an estimand with many rows); estimands that are not breakdowns are left out."""
    out = {}
    specs = view.estimand_specs
    for est, varying in view.by_columns.items():
        by = specs.get(est, {}).get("by") if est in specs else None
        rows = len(view.rows_of(est))
        if isinstance(by, list) and by:
            out[est] = ([c for c in by if c in varying] + [c for c in varying if c == "category"]) or list(by)
        elif rows > MANY:
            out[est] = varying
    return out


def anchor(name: str) -> str:
    """An id for the estimand's section: its name, with a checksum when characters had to be replaced
    (so 'a_b' and 'a-b' do not share one)."""
    import zlib

    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "-") else "-" for ch in name)
    return "est-" + (safe if safe == name else f"{safe}-{zlib.crc32(name.encode()):08x}")


def breakdown_groups(view: RunView, est: str) -> list[tuple[str, pd.DataFrame]]:
    """The rows of a breakdown estimand split by what is not broken down (an `at` level, a category):
    (label of the split, rows); one split with label '' when nothing else varies."""
    by = breakdown_columns(view).get(est, [])
    rows = view.rows_of(est)
    other = [c for c in view.by_columns.get(est, []) if c not in by]
    if not other:
        return [(row_label(rows.iloc[0], [c for c in view.label_columns if c not in by]) if len(rows) else "", rows)]
    out = []
    for _, sub in rows.groupby(other, sort=False):
        out.append((row_label(sub.iloc[0], [c for c in view.label_columns if c not in by]), sub))
    return out


def headlines(view: RunView) -> list[Headline]:
    out = []
    breakdowns = breakdown_columns(view)
    cols = view.label_columns
    for est in dict.fromkeys(view.estimands["estimand"]):
        rows = view.rows_of(est)
        if est in breakdowns:
            by = breakdowns[est]

            def name(r, by=by):
                return ", ".join(text(r.get(c)) for c in by if text(r.get(c)))

            for fixed_label, sub in breakdown_groups(view, est):
                m = pd.to_numeric(sub["mean"], errors="coerce")
                if m.isna().all():
                    continue
                lo, hi = sub.loc[m.idxmin()], sub.loc[m.idxmax()]
                label = f"by {', '.join(by)}" + (f"; {fixed_label}" if fixed_label else "")
                low, high = fmt_alike([m.min(), m.max()], 3)
                same = low == high  # e.g. no term of the `by` variable in the model
                out.append(Headline(est, label, low if same else f"{low} to {high}",
                                    f"posterior means of {len(sub)} groups",
                                    note="the same in every group" if same else f"lowest {name(lo)}, highest {name(hi)}",
                                    link=anchor(est)))
            continue
        for _, r in rows.iterrows():
            if _fixed_by_calibration(view, r):
                out.append(Headline(est, row_label(r, cols), fmt(r.get("mean"), 3),
                                    "fixed by the known values of [calibrate]",
                                    note="calibrated to equal them in every draw: no uncertainty is left"))
                continue
            mean, lower, upper = fmt_alike([r.get("mean"), r.get("lower"), r.get("upper")], 3)
            out.append(Headline(est, row_label(r, cols), mean, f"{view.ci_name} {lower} to {upper}",
                                note=f"posterior mean; sd {fmt(r.get('sd'), 2)}"))
    return out


def _fixed_by_calibration(view: RunView, row) -> bool:
    """A calibrated estimand the known values fix exactly (a national figure adding up whole levels
    of `calibrate.by`): its draws do not vary, its ESS is left empty (docs/outputs.md)."""
    sd, mean = _num(row.get("sd")), _num(row.get("mean"))
    return (bool(view.manifest.get("calibrate")) and _num(row.get("ess_bulk")) is None and sd is not None
            and mean is not None and sd <= 1e-9 * max(1.0, abs(mean)))


# ----------------------------------------------------------------------------- decisions in words


@dataclass(frozen=True)
class Decision:
    title: str
    bottom_line: str
    sentences: tuple[str, ...]


def _likely(p: float) -> str:
    if p >= 0.99:
        return "almost certainly"
    if p >= 0.95:
        return "very likely"
    if p >= 0.8:
        return "probably"
    return ""


def _ahead(win: float, first: str, second: str, says, neither: str) -> str:
    """The bottom line of a chance ``win`` that ``first`` is ahead of ``second``: the likely one and
    ``says(it, the other)``, or ``neither``."""
    for p, a, b in ((win, first, second), (1 - win, second, first)):
        if _likely(p):
            return f"{a} {_likely(p)} {says(a, b)} ({chance(p)})"
    return neither


def _subpopulations(view: RunView, name: str) -> bool:
    """Whether the estimand contrasts two parts of the population (its contrast variable is a
    population variable) rather than two settings applied to everyone (an A/B test's arms)."""
    e = view.estimand_specs.get(name) or {}
    contrast = e.get("contrast")
    columns = view.manifest.get("tables", {}).get("population_columns") or ()
    return isinstance(contrast, dict) and len(contrast) == 1 and next(iter(contrast)) in columns


def contrast_levels(row, cols: list[str]) -> tuple[str, str] | None:
    """The two levels a contrast row compares: its typed ``first`` and ``second`` columns."""
    first, second = text(row.get("first")), text(row.get("second"))
    return (first, second) if first and second else None


def rope_verdict(row, rope: tuple[float, float] | None, first: str, second: str) -> str:
    """What the share of the posterior in the ROPE says of a contrast row ("" without a ROPE)."""
    p_rope, mean, up = _num(row.get("p_in_rope")), _num(row.get("mean")), _num(row.get("p_above_null"))
    if rope is None or p_rope is None:
        return ""
    if p_rope >= 0.95:
        return "practically equivalent: any difference is smaller than the ROPE"
    if p_rope > 0.05:
        return "not settled with respect to the ROPE: more data would tell"
    if up is not None and up >= 0.95 and mean is not None and mean > rope[1]:
        return f"practically different: {first} is higher by more than the ROPE"
    if up is not None and up <= 0.05 and mean is not None and mean < rope[0]:
        return f"practically different: {second} is higher by more than the ROPE"
    return "outside the ROPE, but the direction is not settled"


def stance(view: RunView, row) -> str:
    """What a contrast row decides, in words without its numbers, so that two runs' can be compared:
    who is ahead and how likely ("treatment very likely ahead"), then the ROPE's verdict; "" for a
    row that is not a contrast."""
    levels = contrast_levels(row, view.label_columns)
    if levels is None:
        return ""
    first, second = levels
    win, up = _num(row.get("chance_to_win")), _num(row.get("p_above_null"))
    parts = []
    p = win if win is not None else up
    if p is not None:
        ahead = next((f"{a} {_likely(q)} ahead" for q, a in ((p, first), (1 - p, second)) if _likely(q)),
                     "neither clearly ahead")
        parts.append(ahead)
    verdict = rope_verdict(row, view.ropes.get(str(row["estimand"])), first, second)
    if verdict:
        parts.append(verdict)
    return "; ".join(parts)


def decision(view: RunView, row) -> Decision | None:
    levels = contrast_levels(row, view.label_columns)
    if levels is None:
        return None
    first, second = levels
    est = str(row["estimand"])
    scale = text(row.get("scale")) or "difference"
    null = NULL.get(scale, 0.0)
    outcome = outcome_words(view)
    others = [c for c in view.label_columns if text(row.get(c)) != f"{first} vs {second}"]
    where = row_label(row, others)
    title = f"{est}: {first} vs {second}" + (f" ({where})" if where else "")
    mean, lo, hi = _num(row.get("mean")), _num(row.get("lower")), _num(row.get("upper"))
    shown = fmt_alike([mean, lo, hi], 3)
    s = [f"The {scale.replace('_', ' ')} {first} vs {second} is {shown[0]} "
         f"({view.ci_name} {shown[1]} to {shown[2]}; no difference would be {fmt(null)})."]
    win = _num(row.get("chance_to_win"))
    bottom = ""
    if win is not None and _subpopulations(view, est):  # no arm to choose: which part of the population is higher
        s.append(f"Chance that the population average of {outcome} is higher for {first} than for {second}: "
                 f"{chance(win)}.")
        bottom = _ahead(win, first, second, lambda a, b: "has the higher average",
                        f"no clear difference: the chance that {first} is higher than {second} is {chance(win)}")
    elif win is not None:
        s.append(f"Chance that {first} beats {second} (a higher population average of {outcome}): {chance(win)}.")
        l1, l2 = _num(row.get("expected_loss_first")), _num(row.get("expected_loss_second"))
        if l1 is not None and l2 is not None:
            s.append(f"Expected loss (the population average of {outcome} given up, averaged over the posterior, "
                     f"if the arm you choose is the worse one): {fmt(l1, 2)} if you choose {first}, {fmt(l2, 2)} if "
                     f"you choose {second}. This reads higher as better; if lower is better, swap the two.")
        bottom = _ahead(win, first, second, lambda a, b: f"beats {b}",
                        f"no clear winner: the chance that {first} beats {second} is {chance(win)}")
    else:
        pd_ = _num(row.get("p_above_null"))
        if pd_ is not None:
            s.append(f"Probability that the {scale.replace('_', ' ')} is above {fmt(null)}: {chance(pd_)}.")
            if _likely(pd_):
                bottom = f"the {scale.replace('_', ' ')} is {_likely(pd_)} above {fmt(null)}"
            elif _likely(1 - pd_):
                bottom = f"the {scale.replace('_', ' ')} is {_likely(1 - pd_)} below {fmt(null)}"
            else:
                bottom = f"the direction is not settled (P(above {fmt(null)}) = {chance(pd_)})"
    rope = view.ropes.get(est)
    p_rope = _num(row.get("p_in_rope"))
    verdict = rope_verdict(row, rope, first, second)
    if verdict:
        s.append(f"{chance(p_rope)} of the posterior lies in the region of practical equivalence "
                 f"[{fmt(rope[0])}, {fmt(rope[1])}].")
        s.append(verdict[0].upper() + verdict[1:] + ".")
        bottom = f"{bottom}; {verdict}" if bottom else verdict
    if bottom and not bottom.startswith((first, second)):  # a level's name keeps its case
        bottom = bottom[0].upper() + bottom[1:]
    return Decision(title, bottom + "." if bottom else "", tuple(s))


@dataclass(frozen=True)
class DecisionSummary:
    estimand: str
    text: str
    link: str


def decisions(view: RunView) -> tuple[list[Decision], list[DecisionSummary]]:
    """Whole-population contrasts in words; contrasts broken down by groups summarised per estimand."""
    out, summaries = [], []
    breakdowns = breakdown_columns(view)
    for est in dict.fromkeys(view.estimands["estimand"]):
        rows = view.rows_of(est)
        if not len(rows) or contrast_levels(rows.iloc[0], view.label_columns) is None:
            continue
        if est in breakdowns:
            win = rows["chance_to_win"] if "chance_to_win" in rows else pd.Series(dtype=float)
            win = pd.to_numeric(win, errors="coerce").dropna()
            first, second = contrast_levels(rows.iloc[0], view.label_columns)
            if len(win):
                up, down = int((win >= 0.95).sum()), int((win <= 0.05).sum())
                rest = len(win) - up - down
                txt = (f"{est} by {', '.join(breakdowns[est])}: {first} very likely (>= 95%) higher in "
                       f"{up} of {len(win)} groups, {second} in {down}"
                       + (f"; undecided in the other {rest}." if rest else "."))
            else:
                pdir = pd.to_numeric(rows["p_above_null"], errors="coerce").dropna()
                txt = (f"{est} by {', '.join(breakdowns[est])}: above the null with >= 95% probability in "
                       f"{int((pdir >= 0.95).sum())} of {len(pdir)} groups, below in {int((pdir <= 0.05).sum())}.")
            summaries.append(DecisionSummary(est, txt, anchor(est)))
            continue
        for _, r in rows.iterrows():
            d = decision(view, r)
            if d is not None:
                out.append(d)
    return out, summaries


# ----------------------------------------------------------------------------- diagnostics and verdict


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    target: str
    status: str  # ok | note | look | fail | n/a
    advice: str
    reason: str = ""  # the check in a few words, for the verdict (when it is not ok)


STATUS_WORDS = {"ok": "ok", "note": "note", "look": "look at this", "fail": "fails", "n/a": "n/a"}


def _worst_row(view: RunView, column: str, pick) -> str:
    """", worst: sex_gap [female vs male]": the estimand row with the largest (``pick=max``) or
    smallest value of ``column`` in the table ('' without one), so that the reader finds the number."""
    rows = view.estimands
    values = pd.to_numeric(rows[column], errors="coerce") if column in rows else pd.Series(dtype=float)
    if not values.notna().any():
        return ""
    r = rows.loc[values.idxmax() if pick is max else values.idxmin()]
    where = row_label(r, view.label_columns)
    return f", worst: {r['estimand']}{' [' + where + ']' if where else ''}"


def checks(view: RunView) -> list[Check]:
    d = view.diagnostics
    out: list[Check] = []
    if d.divergences is not None:
        bad = d.divergences > d.divergences_max
        out.append(Check("divergent transitions", count(d.divergences), f"at most {d.divergences_max}",
                         "fail" if bad else "ok",
                         f"The sampler missed part of the posterior: {divergence_advice(None, _switchable(view))}."
                         if bad else "None beyond the limit: the sampler explored the posterior.",
                         f"{count(d.divergences)} divergent transition{'s' if d.divergences != 1 else ''} (at most {d.divergences_max})"))
    if d.chains > 1 and d.estimand_max_rhat is not None:
        bad = d.estimand_max_rhat > d.rhat_max
        out.append(Check("R-hat of the estimands (largest)", f"{d.estimand_max_rhat:.3f}", f"at most {d.rhat_max}",
                         "fail" if bad else "ok",
                         "The chains disagree about the estimands: run more draws (fit.draws, fit.tune) and check "
                         "the priors." if bad else "The chains agree about every estimand.",
                         f"the chains disagree about the estimands (R-hat {d.estimand_max_rhat:.3f} > {d.rhat_max}"
                         f"{_worst_row(view, 'r_hat', max)})"))
    elif d.chains <= 1:
        out.append(Check("R-hat of the estimands", "", "needs 2 or more chains", "n/a",
                         "With one chain, convergence cannot be checked by comparing chains: use fit.chains >= 2."))
    if d.estimand_min_ess_bulk is not None:
        bad = d.estimand_min_ess_bulk < d.ess_min
        out.append(Check("effective draws of the estimands (smallest bulk ESS)", count(d.estimand_min_ess_bulk),
                         f"at least {count(d.ess_min)}", "fail" if bad else "ok",
                         f"The intervals are noisy: run more draws (fit.draws, now {count(d.draws)} per chain)."
                         if bad else "Enough independent draws for stable intervals.",
                         f"too few effective draws of the estimands ({count(d.estimand_min_ess_bulk)} < "
                         f"{count(d.ess_min)}{_worst_row(view, 'ess_bulk', min)})"))
    params_floor = 100 * max(d.chains, 1)
    est_ok = not any(c.status == "fail" for c in out)
    if d.max_rhat is not None or d.min_ess_bulk is not None:
        bad_r = d.chains > 1 and d.max_rhat is not None and d.max_rhat > d.rhat_max
        bad_e = d.min_ess_bulk is not None and d.min_ess_bulk < params_floor
        worst = ", ".join(list(d.worst_parameters)[:3])
        value = ", ".join(x for x in (f"R-hat {d.max_rhat:.3f}" if d.max_rhat is not None and d.chains > 1 else "",
                                      f"bulk ESS {count(d.min_ess_bulk)}" if d.min_ess_bulk is not None else "",
                                      f"tail ESS {count(d.min_ess_tail)}" if d.min_ess_tail is not None else "")
                          if x)
        if bad_r or bad_e:
            advice = f"Some parameters mix poorly (worst: {worst})."
            pair = trading_pair(_switchable(view))
            advice += (f" The estimands are fine, and they are what is reported: {pair} that trade off can mix "
                       f"badly while the population averages they imply do not."
                       if est_ok else f" {mixing_advice(_switchable(view)).capitalize()}.")
        else:
            advice = "Every parameter mixes well."
        out.append(Check("model parameters (worst R-hat, smallest ESS)", value,
                         f"R-hat at most {d.rhat_max}, ESS at least {params_floor}",
                         # the estimands are what is reported: with them fine, poor mixing of parameters is a note
                         ("note" if est_ok else "look") if (bad_r or bad_e) else "ok", advice,
                         f"model parameters mix poorly ({value})"))
    if d.bfmi_min is not None:
        bad = d.bfmi_min < 0.3
        out.append(Check("energy BFMI (lowest chain)", f"{d.bfmi_min:.2f}", "at least 0.3", "look" if bad else "ok",
                         "The sampler explores the tails poorly: a non-centred parameterization or tighter priors on "
                         "group scales usually help." if bad else "The sampler moves through the tails well.",
                         f"low energy BFMI ({d.bfmi_min:.2f})"))
    if d.treedepth_hits is not None:
        bad = d.treedepth_hits > 0
        out.append(Check("transitions at the maximum tree depth", count(d.treedepth_hits), "0",
                         "look" if bad else "ok",
                         "Sampling is slow and may be inefficient: rescale predictors or use stronger priors."
                         if bad else "None.", "transitions at the maximum tree depth"))
    out += _efficiency_check(view)
    out += _ppc_check(view)
    out += _coverage_checks(view)
    out += _srm_checks(view)
    return out


def _efficiency_check(view: RunView) -> list[Check]:
    """The work of the fit, for information (manifest.json's ``efficiency``)."""
    from mrp_formula.checks.efficiency import summary_line

    eff = view.manifest.get("efficiency") or {}
    line = summary_line(eff)
    if not line:
        return []
    per_grad = eff.get("seconds_per_gradient")
    value = f"{eff['leapfrog_steps_per_draw']:.1f} steps per draw" if eff.get("leapfrog_steps_per_draw") else ""
    if per_grad:
        value += f", {per_grad * 1e6:.0f} us per gradient"
    return [Check("sampler efficiency", value, "for information", "ok", line[0].upper() + line[1:] + ".")]


def ppc_outside(view: RunView) -> tuple[int, int]:
    p = view.ppc
    if p is None or not len(p) or "inside" not in p:
        return 0, 0
    return int((~p["inside"].astype(bool)).sum()), len(p)


def _ppc_check(view: RunView) -> list[Check]:
    k, n = ppc_outside(view)
    if not n:
        return []
    from scipy.special import bdtrc

    miss = 1 - view.ci_prob
    p_value = float(bdtrc(k - 1, n, miss)) if k else 1.0  # P(at least k of n outside by chance)
    bad = p_value < 0.01
    expected = f"about {miss * n:.1f} expected by chance"
    return [Check("posterior predictive check: levels outside their interval", f"{k} of {n}", expected,
                  "look" if bad else "ok",
                  f"More observed group means fall outside their {view.ci_name} than chance explains "
                  f"(p = {p_value:.2g}): the model misses a pattern in those groups; consider adding the variable "
                  f"or an interaction (see the table below)." if bad else
                  "The model reproduces the observed mean of every group as well as chance allows.",
                  f"the model misses the observed mean of {k} of {n} groups")]


NEW_LEVELS_LOOK = 0.10  # population weight in levels without sample from which the page says "look at this"


def _coverage_checks(view: RunView) -> list[Check]:
    cov = view.manifest.get("coverage") or {}
    out = []
    cells, empty, share = cov.get("cells"), cov.get("cells_without_sample"), _num(cov.get("weight_without_sample"))
    if cells is not None and empty is not None:
        out.append(Check("population cells without sample", f"{count(empty)} of {count(cells)} "
                         f"({pct(share, 'n/a')} of the weight)", "", "note" if empty else "ok",
                         "The model extrapolates to these cells from the other variables (that is what MRP is "
                         "for; the estimates there rest on the model's structure)." if empty else
                         "Every population cell has sample."))
    new = view.manifest.get("new_level_weight_share") or cov.get("new_level_share") or {}
    levels = view.manifest.get("new_levels") or {}
    if new or levels:
        parts = []
        for var in dict.fromkeys(list(levels) + list(new)):
            lv = levels.get(var) or []
            shown = ", ".join(map(str, lv[:8])) + (f" and {len(lv) - 8} more" if len(lv) > 8 else "")
            parts.append(f"{var}: {shown} ({pct(new.get(var), 'n/a')} of the weight)")
        kinds = {sp.get("variable"): sp.get("kind") for sp in view.manifest.get("model", {}).get("structure") or []}
        structured = sorted(v for v in dict.fromkeys(list(levels) + list(new)) if kinds.get(v, "iid") != "iid")
        iid = [v for v in dict.fromkeys(list(levels) + list(new)) if v not in structured]
        words = []
        if iid:
            words.append(f"{'Their' if not structured else ', '.join(iid) + ':'} effects are drawn from the fitted "
                         "group distribution: they are as uncertain as a new group is, and carry no information of "
                         "their own.")
        for v in structured:
            words.append(f"{v}: effects from the {kinds[v]} structure (model.structure.{v}), informed by the "
                         "neighbouring levels: the estimates there rest on that structure.")
        # the largest share of one factor (shares of several factors overlap: state and state:age)
        worst = max(new, key=lambda v: _num(new[v]) or 0.0) if new else None
        share = _num(new.get(worst)) or 0.0 if worst else 0.0
        big = share >= NEW_LEVELS_LOOK
        if big:
            words.insert(0, f"{pct(share)} of the population is in levels of {worst} without a single respondent: "
                            f"every estimate that includes them rests on the model alone there.")
        out.append(Check("population levels absent from the sample", "; ".join(parts),
                         f"under {NEW_LEVELS_LOOK:.0%} of the weight", "look" if big else "note", " ".join(words),
                         f"{pct(share)} of the population in levels of {worst} without sample" if big else ""))
    deff = _num(cov.get("design_effect"))
    if deff is not None:
        out.append(Check("design effect of weighting the sample to the population", f"{deff:.2f}",
                         "", "note" if deff > 2 else "ok",
                         f"Raking the sample to the population leaves an effective sample of "
                         f"{count(cov.get('effective_n'))} of {count(cov.get('n_units'))}: the classical weighted "
                         f"estimate is that much noisier; MRP borrows strength instead."))
    return out


def _srm_checks(view: RunView) -> list[Check]:
    out = []
    for w in view.warnings:
        if w.startswith("sample ratio mismatch"):
            out.append(Check("sample ratio", "mismatch", "the planned allocation", "fail", w[0].upper() + w[1:] + ".",
                             "sample ratio mismatch: the assignment or the logging is broken"))
    for n in view.notes:
        if n.startswith("sample ratio of"):
            out.append(Check("sample ratio", "matches", "the planned allocation", "ok", n[0].upper() + n[1:] + "."))
    return out


def _switchable(view: RunView) -> bool | None:
    """Whether the run's model has a group term whose parameterization the spec can switch (None:
    no group term)."""
    model = view.manifest.get("model") or {}
    structured = {s.get("term") for s in model.get("structure") or () if isinstance(s, dict)}
    terms = model.get("parameterization") or {}
    return any(t not in structured for t in terms) if terms else None


# warnings of the run that the checks above already judge (Diagnostics.warnings, the SRM check)
JUDGED = re.compile(r"^(\d+ divergent transitions?|estimands have|model parameters mix|low energy BFMI|"
                    r"\d+ transitions hit|sample ratio mismatch|one chain: R-hat)")


def other_warnings(view: RunView) -> list[str]:
    """Warnings of the run that no check judges: notes marked 'warning: ' and warnings this page does
    not know (each deserves a look)."""
    out = [w for w in view.warnings if not JUDGED.match(w)]
    out += [n.removeprefix("warning: ") for n in view.notes if n.startswith("warning: ")]
    return out


def _first_clause(w: str) -> str:
    """A long warning's first clause, unless that is only a label (``calibrate: ...``): then the
    warning cut short."""
    head, _, rest = w.partition(": ")
    if len(w) > 140 and rest and len(head) < 25 and " " not in head:  # a label, not a clause
        w = rest
    w = w.split(": ")[0] if len(w) > 140 else w
    return w if len(w) <= 140 else w[:137] + "..."


@dataclass(frozen=True)
class Verdict:
    level: str  # ok | look | bad
    word: str  # ok | look at this | do not use
    headline: str
    reasons: tuple[str, ...] = field(default=())


def verdict(view: RunView, checks_: list[Check] | None = None) -> Verdict:
    """One word for the whole run: 'do not use' when a check the run is judged by fails (those
    ``--strict`` enforces, and a sample ratio mismatch); 'look at this' when a diagnostic or a run
    warning deserves attention; 'ok' otherwise."""
    cs = checks(view) if checks_ is None else checks_
    fails = [c.reason or c.name for c in cs if c.status == "fail"]
    if not fails:  # failed by the run's own account, in words this page does not know
        fails = [f.split(":")[0] for f in view.diagnostics.failed]
    looks = [c.reason or c.name for c in cs if c.status == "look"]
    looks += [_first_clause(w) for w in other_warnings(view)]
    if fails:
        also = f" Also look at: {'; '.join(looks)}." if looks else ""
        return Verdict("bad", "do not use", f"Do not use these numbers yet: {'; '.join(fails)}. The diagnostics "
                       f"below say how to fix it; then rerun.{also}", tuple(fails + looks))
    if looks:
        return Verdict("look", "look at this", f"Usable, but look at: {'; '.join(looks)}.", tuple(looks))
    mixing = [c for c in cs if c.name.startswith("model parameters") and c.status == "note"]
    if mixing:
        return Verdict("ok", "ok", "The estimands converged and every check passes: the numbers can be used. "
                       "Some model parameters mix poorly while the estimands they imply do not (see the diagnostics).")
    return Verdict("ok", "ok", "The sampler converged and every check passes: the numbers can be used.")


# ----------------------------------------------------------------------------- manifest


def _sampler(s: dict) -> str:
    if not s:
        return ""
    out = f"{s.get('name', '')}: {s.get('chains', '?')} chains of {s.get('draws', '?')} draws after " \
          f"{s.get('tune', '?')} tuning steps, target acceptance {s.get('target_accept', '?')}"
    if s.get("mass_matrix"):
        out += f", {str(s['mass_matrix']).replace('_', '-')} mass matrix"
        if s.get("mass_matrix_reason"):
            out += f" ({s['mass_matrix_reason']})"
    return out


def manifest_facts(view: RunView) -> list[Fact]:
    m = view.manifest
    s = m.get("sampler") or {}
    facts = [Fact("mrp-formula", str(m.get("mrp_formula", ""))),
             Fact("seed", str(m.get("seed", ""))),
             Fact("sampler", _sampler(s)),
             Fact("spec sha256", str((m.get("spec") or {}).get("sha256", "")), True)]
    if view.overrides:
        facts.append(Fact("applied with --set", ", ".join(view.overrides), True))
    for k, v in (m.get("inputs") or {}).items():
        if isinstance(v, dict):
            facts.append(Fact(f"{k} sha256", f"{v.get('sha256', '')}  {v.get('path', '')}", True))
    fc = m.get("fit_cache") or {}
    if fc:
        facts.append(Fact("fit", ("reused from the cache" if fc.get("reused") else "sampled for this run")
                          + (f" (key {fc.get('key')})" if fc.get("key") else "")))
    t = m.get("timings_seconds") or {}
    if t:
        facts.append(Fact("timings", ", ".join(f"{k} {float(v):.1f} s" for k, v in t.items() if _num(v) is not None)))
    v = m.get("versions") or {}
    if v:
        facts.append(Fact("versions", ", ".join(f"{k} {val}" for k, val in v.items())))
    facts.append(Fact("run folder", str(view.place.resolve()), True))
    facts.append(Fact("written", view.written))
    return facts

