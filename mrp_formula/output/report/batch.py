"""``index.html`` of a batch: every run with its status, verdict, warnings, error and a link to its
own report.html; the estimands side by side (one row per estimand and labels, one column per run,
the stacked mixtures last); and the variants' LOO comparison with each variant's keys. Self-contained
like report.html (the same styles and sorting script, inline)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from mrp_formula import __version__
from mrp_formula.output.report import page as P
from mrp_formula.system import write_text_atomic

INDEX = "index.html"
# a stacked row's keys that are not labels (first, second: a contrast's levels, which its label shows)
SUMMARY = ("estimand", "scale", "first", "second", "mean", "sd", "lower", "upper", "ci_prob", "ci_kind", "r_hat",
           "ess_bulk")
LEVEL_OF_VERDICT = {"ok": "ok", "look at this": "look", "do not use": "bad"}  # page.verdict's words


@dataclass(frozen=True)
class Column:
    """One column of the estimand table: a run (or a spec's stacked mixture) and its rows."""

    run: str
    rows: tuple  # estimand rows, as dicts
    groups: tuple[str, ...]
    stacked: bool = False


def _text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return P.text(v)


def _cell(row: dict) -> str:
    mean, lower, upper = P.fmt_alike([row.get("mean"), row.get("lower"), row.get("upper")])
    return f"{mean} [{lower}, {upper}]" if mean else ""


def estimand_table(columns: list[Column]) -> dict:
    """Estimand x run: ``labels`` (estimand and the label columns of any run), ``runs``, and
    ``rows`` (each its labels and one cell per run: mean [lower, upper], '' where the run lacks it)."""
    labels: list[str] = []
    for c in columns:
        labels += [g for g in c.groups if g not in labels]
    cells: dict[tuple, dict[str, str]] = {}
    for c in columns:
        for row in c.rows:
            key = (_text(row.get("estimand")), *(_text(row.get(g)) for g in labels))
            cells.setdefault(key, {})[c.run] = _cell(row)
    return {"labels": ["estimand", *labels], "runs": [c.run for c in columns],
            "stacked": [c.run for c in columns if c.stacked],
            "rows": [{"labels": list(key), "cells": [found.get(c.run, "") for c in columns]}
                     for key, found in cells.items()]}


def _wrote_folder(r) -> bool:
    """Whether the run's folder is this run's: it succeeded (or was current), or it failed only its
    checks under --strict (its estimands and report are written: the report shows what failed).
    A run that failed earlier leaves the folder as it was, perhaps an older run's: not linked."""
    return r.status != "failed" or bool(r.rows)


def _sets(r) -> str:
    return ", ".join(r.sets)


def context(out: Path, records, comparisons, manifest: dict) -> dict:
    runs = []
    for r in records:
        report = out / r.run / "report.html"
        runs.append({"run": r.run, "variant": r.variant, "status": r.status, "exit_code": r.exit_code,
                     "error": r.error, "verdict": r.verdict, "level": LEVEL_OF_VERDICT.get(r.verdict, ""),
                     "failed_checks": list(r.failed_checks),
                     "warnings": [w for w in r.warnings if w not in r.failed_checks],
                     "report": f"{r.run}/report.html" if _wrote_folder(r) and report.is_file() else None})
    columns = [Column(r.run, tuple(r.rows), tuple(r.group_columns)) for r in records if r.rows]
    by_run = {r.run: r for r in records}
    comps = []
    for c in comparisons:
        groups = tuple(k for k in (c.stacked[0] if c.stacked else {}) if k not in SUMMARY)
        if c.stacked:
            columns.append(Column(f"{c.name}.stacked", tuple(c.stacked), groups, stacked=True))
        rows = c.table.to_dict("records") if c.table is not None else []
        for row in rows:
            r = by_run.get(row["model"])
            row.update(sets=_sets(r) if r else "", verdict=r.verdict if r else "",
                       level=LEVEL_OF_VERDICT.get(r.verdict, "") if r else "")
        comps.append({"name": c.name, "notes": list(c.notes), "rows": rows, "stacked": bool(c.stacked)})
    return {"version": __version__, "out_name": out.name, "runs": runs, "comparisons": comps,
            "estimands": estimand_table(columns), "overrides": list(manifest.get("overrides") or ()),
            "complete": manifest.get("complete", True), "pending": list(manifest.get("pending") or ()),
            "n_runs": len(runs), "n_ok": sum(r["status"] != "failed" for r in runs),
            "n_current": sum(r["status"] == "current" for r in runs),
            "n_failed": sum(r["status"] == "failed" for r in runs),
            "n_look": sum(r["level"] == "look" for r in runs if r["status"] != "failed"),
            "n_bad": sum(r["level"] == "bad" for r in runs if r["status"] != "failed"),
            "exit_code": manifest.get("exit_code", 0), "seconds": manifest.get("seconds", "")}


def write_index(out: Path, records, comparisons, manifest: dict) -> Path:
    """Write ``out/index.html`` in one rename."""
    from mrp_formula.output.report.document import environment

    html = environment().get_template("batch.html.j2").render(**context(Path(out), records, comparisons, manifest))
    target = Path(out) / INDEX
    write_text_atomic(target, html)
    return target
