"""``index.html`` of a batch: every run with its status, headline estimands, error and a link to
its own report.html, and the variants' LOO comparison; self-contained like report.html (the same
styles and sorting script, inline)."""

from __future__ import annotations

import math
from pathlib import Path

from mrp_formula import __version__
from mrp_formula.output.report import page as P
from mrp_formula.system import write_text_atomic

INDEX = "index.html"


def _label(row: dict, groups) -> str:
    parts = [f"{g}={row[g]}" for g in groups if row.get(g) not in (None, "") and not (
        isinstance(row.get(g), float) and math.isnan(row[g]))]
    name = f"{row['estimand']}[{', '.join(parts)}]" if parts else str(row["estimand"])
    return f"{name}: {P.fmt(row.get('mean'))} [{P.fmt(row.get('lower'))}, {P.fmt(row.get('upper'))}]"


def _wrote_folder(r) -> bool:
    """Whether the run's folder is this run's: it succeeded (or was current), or it failed only its
    checks under --strict (its estimands and report are written: the report shows what failed).
    A run that failed earlier leaves the folder as it was, perhaps an older run's: not linked."""
    return r.status != "failed" or bool(r.rows)


def context(out: Path, records, comparisons, manifest: dict) -> dict:
    runs = []
    for r in records:
        report = out / r.run / "report.html"
        runs.append({"run": r.run, "variant": r.variant, "status": r.status, "exit_code": r.exit_code,
                     "error": r.error, "verdict": r.verdict, "failed_checks": "; ".join(r.failed_checks),
                     "estimands": [_label(e, r.group_columns) for e in r.rows],
                     "report": f"{r.run}/report.html" if _wrote_folder(r) and report.is_file() else None})
    comps = []
    for c in comparisons:
        groups = [k for k in (c.stacked[0] if c.stacked else {}) if k not in (
            "estimand", "scale", "mean", "sd", "lower", "upper", "ci_prob", "ci_kind")]
        comps.append({"name": c.name, "notes": list(c.notes),
                      "rows": c.table.to_dict("records") if c.table is not None else [],
                      "stacked": [_label(e, groups) for e in c.stacked]})
    return {"version": __version__, "out_name": out.name, "runs": runs, "comparisons": comps,
            "n_runs": len(runs), "n_ok": sum(r["status"] != "failed" for r in runs),
            "n_current": sum(r["status"] == "current" for r in runs),
            "n_failed": sum(r["status"] == "failed" for r in runs),
            "exit_code": manifest.get("exit_code", 0), "seconds": manifest.get("seconds", "")}


def write_index(out: Path, records, comparisons, manifest: dict) -> Path:
    """Write ``out/index.html`` in one rename."""
    from mrp_formula.output.report.document import environment

    html = environment().get_template("batch.html.j2").render(**context(Path(out), records, comparisons, manifest))
    target = Path(out) / INDEX
    write_text_atomic(target, html)
    return target
