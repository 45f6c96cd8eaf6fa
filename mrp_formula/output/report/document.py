"""``render(view) -> str``: the run as one self-contained HTML page (styles, script and figures
inline; it makes no request), and ``write_report(folder)``, which writes ``report.html`` into a
run folder.

The page reads top to bottom in the order a reader needs it: the question, the headline
numbers, the decision numbers in words, raw vs weighted vs MRP, the breakdowns, the densities,
the diagnostics with a verdict, the posterior predictive check, population coverage, the spec
and the manifest. Tables are plain HTML (the page reads with scripts off); a few lines of
inline script sort them (click a header) and filter them (the text box above).
"""

from __future__ import annotations

from pathlib import Path

from mrp_formula.output.report import page as P
from mrp_formula.output.report.figures import Counter, Svg, draw
from mrp_formula.output.report.view import RunView, text

REPORT = "report.html"


def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("mrp_formula.output", "templates"),
                             autoescape=jinja2.select_autoescape(("html", "j2")),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = P.fmt
    env.filters["pct"] = P.pct
    return env


def ordered_variables(manifest: dict) -> dict[str, list[str]]:
    """Variables with an ordered structure (rw1, rw2, ar1) and their levels in order, from the
    manifest's ``model.structure``: their breakdowns are also drawn over time."""
    return {s["variable"]: [str(lv) for lv in s["levels"]]
            for s in (manifest.get("model") or {}).get("structure") or ()
            if s.get("kind") in ("rw1", "rw2", "ar1") and "variable" in s and "levels" in s}


# the page's figures drawn in a second process when one is free (``parallel``): the trace and the
# raw-vs-MRP figure there, the rest here, about half the drawing each on the MRP primer
BESIDE = ("trace", "raw_vs_mrp")


def _figures(view: RunView, *, parallel: bool = False) -> dict:
    """The figures of the page, by section. ``parallel``: the sections of ``BESIDE`` are drawn
    in a forked child (``system.beside``) while this process draws the others; the page is the
    same either way (each section numbers its figures' ids itself)."""
    import mrp_formula.output.plots  # noqa: F401 - matplotlib imported once, before the child is forked
    from mrp_formula.system import beside

    jobs = _figure_jobs(view)
    child = beside(lambda: {k: jobs[k]() for k in BESIDE}, parallel=parallel)
    try:
        out = {k: job() for k, job in jobs.items() if k not in BESIDE}
        drawn, error, _ = child.result()
    finally:
        child.cancel()
    if error:  # the child failed as a whole: draw them here, so that their own errors show on the page
        drawn = {k: jobs[k]() for k in BESIDE}
    return {k: out[k] if k in out else drawn[k] for k in jobs}


def _figure_jobs(view: RunView) -> dict:
    """Section -> a function drawing its figures as SVG, each section with its own id prefix."""
    common = {"ci_prob": view.ci_prob, "ci_kind": view.ci_kind, "ropes": view.ropes}
    est, draws = view.estimands, view.draws
    ordered = ordered_variables(view.manifest)

    def densities():
        return draw(("estimands",), Counter("d"), estimands=est, draws=draws, **common) if draws is not None else []

    def forest():
        return {name: draw(("over_time", "forest"), Counter(f"f{k}_"), estimands=view.rows_of(name),
                           draws=view.draws_of(name), ordered=ordered, **common)
                for k, name in enumerate(P.breakdown_columns(view), 1)}

    def ppc():
        return draw(("ppc",), Counter("p"), ppc=view.ppc, **common) if view.ppc is not None and len(view.ppc) else []

    def trace():
        try:
            posterior = view.posterior if view.posterior is not None else _read_posterior(view.folder / "posterior.nc")
            return draw(("trace",), Counter("t"), posterior=posterior, **common) if posterior is not None else []
        except Exception as exc:  # a figure is a report, not a result
            return [Svg("trace.png", "", f"{type(exc).__name__}: {exc}")]

    return {"densities": densities, "raw_vs_mrp": lambda: draw(("raw_vs_mrp",), Counter("r"), estimands=est,
                                                               draws=draws, **common),
            "forest": forest, "trace": trace, "ppc": ppc}


def _read_posterior(nc: Path):
    """The posterior a run folder holds, or None when it has none."""
    if not nc.is_file():
        return None
    import xarray as xr

    with xr.open_datatree(nc, engine="h5netcdf") as dt:
        return dt.load()


def _breakdowns(view: RunView) -> list[dict]:
    out = []
    for name, by in P.breakdown_columns(view).items():
        rows = view.rows_of(name)
        varying = [c for c in view.label_columns if c in view.by_columns.get(name, []) or c in by]
        fixed = [c for c in view.label_columns if c not in varying and rows[c].map(text).ne("").any()]
        head = P.row_label(rows.iloc[0], fixed) if len(rows) else ""
        out.append({"name": name, "anchor": P.anchor(name), "by": by, "fixed": head,
                    "description": P.describe_estimand(view, name),
                    "table": P.estimand_table(view, rows, varying, f"t-{P.anchor(name)}",
                                              caption=f"lower, upper: the {view.ci_name}; {len(rows)} rows")})
    return out


def _side_by_side(view: RunView) -> P.Table | None:
    """Raw sample value, classical weighted estimate and MRP for the headline rows."""
    if "raw" not in view.estimands and "weighted" not in view.estimands:
        return None
    breakdowns = P.breakdown_columns(view)
    rows = view.estimands[~view.estimands["estimand"].isin(list(breakdowns))]
    if not len(rows):
        return None
    cols = (P.Column("estimand"), P.Column("row"), P.Column("raw", True, P.COLUMN_TIPS["raw"]),
            P.Column("weighted", True, P.COLUMN_TIPS["weighted"]), P.Column("MRP mean", True, "posterior mean"),
            P.Column(f"MRP {view.ci_name}", False), P.Column("MRP - raw", True, "what the model changed"))
    body = []
    for _, r in rows.iterrows():
        mrp, raw = P._num(r.get("mean")), P._num(r.get("raw"))
        # one number format for the row: its estimates, interval and the model's change alike
        raw_c, weighted_c, mrp_c, lower_c, upper_c, change_c = P.alike_cells(
            [raw, r.get("weighted"), mrp, r.get("lower"), r.get("upper"),
             None if mrp is None or raw is None else mrp - raw])
        body.append((P.Cell(str(r["estimand"])), P.Cell(P.row_label(r, view.label_columns) or "(whole population)"),
                     raw_c, weighted_c, mrp_c, P.Cell(f"{lower_c.shown} to {upper_c.shown}"), change_c))
    return P.Table("t-side", cols, tuple(body), filter=len(body) > 8)


def _ppc_table(view: RunView) -> P.Table | None:
    p = view.ppc
    if p is None or not len(p):
        return None
    has_cat = "category" in p and p["category"].ne("").any()
    cols = [P.Column("variable"), P.Column("level")] + ([P.Column("category")] if has_cat else []) + [
        P.Column("units", True, "sample units in the level"), P.Column("observed", True, "observed mean"),
        P.Column("predicted", True, "posterior predictive mean"), P.Column("lower", True), P.Column("upper", True),
        P.Column("inside", False, f"is the observed mean inside the predicted {view.ci_name}?")]
    body = []
    for _, r in p.iterrows():
        inside = bool(r.get("inside", True))
        cells = [P.Cell(text(r.get("variable"))), P.Cell(text(r.get("level")))]
        if has_cat:
            cells.append(P.Cell(text(r.get("category"))))
        cells += [P.Cell(P.count(r.get("units")), P._num(r.get("units"))),
                  *P.alike_cells([r.get("observed"), r.get("predicted"), r.get("lower"), r.get("upper")]),
                  P.Cell("yes" if inside else "NO", css="" if inside else "bad")]
        body.append(tuple(cells))
    return P.Table("t-ppc", tuple(cols), tuple(body), filter=len(body) > 8)


def _calibration_table(view: RunView) -> P.Table | None:
    c = view.calibration
    if c is None or not len(c):
        return None
    by = c.columns[0]
    cols = (P.Column(by), P.Column("known", True, "the known population mean of the level (calibrate.source)"),
            P.Column("model", True, "the model's poststratified mean of the level before calibration"),
            P.Column("lower", True), P.Column("upper", True),
            P.Column("known inside", False, f"is the known mean inside the model's {view.ci_name}?"),
            P.Column("shift", True, "posterior mean of the shift of the level's linear predictor"),
            P.Column("shift sd", True), P.Column("shift lower", True), P.Column("shift upper", True))
    body = []
    for _, r in c.iterrows():
        inside = bool(r.get("known_in_interval", True))
        body.append((P.Cell(text(r.get(by))), P.num_cell(r.get("known")), P.num_cell(r.get("uncalibrated")),
                     P.num_cell(r.get("uncalibrated_lower")), P.num_cell(r.get("uncalibrated_upper")),
                     P.Cell("yes" if inside else "NO", css="" if inside else "bad"),
                     P.num_cell(r.get("shift_mean"), digits=3), P.num_cell(r.get("shift_sd"), digits=3),
                     P.num_cell(r.get("shift_lower"), digits=3), P.num_cell(r.get("shift_upper"), digits=3)))
    return P.Table("t-calibration", cols, tuple(body), filter=len(body) > 8)


def _calibration_lead(view: RunView) -> str:
    c = view.calibration
    if c is None or not len(c):
        return ""
    by = c.columns[0]
    link = str(c["link"].iloc[0]) if "link" in c else ""
    scale = {"logit": "log-odds", "probit": "probit", "log": "log", "identity": "outcome"}.get(link, link)
    off = int((~c["known_in_interval"]).sum()) if "known_in_interval" in c else 0
    big = c.iloc[int(c["shift_mean"].abs().to_numpy().argmax())]
    return (f"Every estimand is calibrated: for each posterior draw, the predictions of every population cell of a "
            f"level of {by} are shifted on the {scale} scale by one amount, so that the level's poststratified "
            f"mean equals its known value; the shifts are found for the population as it is and held fixed in "
            f"every counterfactual and contrast. A shift measures how far the model fitted to this sample is "
            f"from the known figure: the largest is {P.fmt(big['shift_mean'], 3)} ({by} = {text(big[by])}). "
            f"For {off} of {len(c)} levels the known mean lies outside the model's {view.ci_name} before "
            f"calibration. The shift of each draw is in calibration_draws.parquet.")


def _warnings(view: RunView) -> list[str]:
    ws = list(view.warnings) + [n.removeprefix("warning: ") for n in view.notes if n.startswith("warning: ")]
    return [w[0].upper() + w[1:] for w in ws if w]


def context(view: RunView, *, parallel: bool = False) -> dict:
    """Everything the template shows (``parallel``: see :func:`_figures`)."""
    cs = P.checks(view)
    verdict = P.verdict(view, cs)
    decisions, decision_summaries = P.decisions(view)
    k, n = P.ppc_outside(view)
    return {
        "view": view, "title": view.name, "description": view.description, "question": P.question(view),
        "ci_name": view.ci_name, "headlines": P.headlines(view), "decisions": decisions,
        "decision_summaries": decision_summaries, "side": _side_by_side(view), "breakdowns": _breakdowns(view),
        "checks": cs, "verdict": verdict, "status_words": P.STATUS_WORDS, "warnings": _warnings(view),
        "notes": [n for n in view.notes if not n.startswith("warning: ")], "ppc_table": _ppc_table(view),
        "ppc_outside": k, "ppc_levels": n,
        "calibration_table": _calibration_table(view), "calibration_lead": _calibration_lead(view),
        "coverage": [c for c in cs if c.name.startswith(("population", "design effect"))],
        "figures": _figures(view, parallel=parallel), "spec_text": view.spec_text, "overrides": view.overrides,
        "extends": view.extends, "resolved_text": view.resolved_text if view.extends else "",
        "manifest": P.manifest_facts(view), "missing": list(view.missing),
        "manifest_json": _json(view.manifest), "version": str(view.manifest.get("mrp_formula", "")),
    }


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, default=str)


def render(view: RunView, *, parallel: bool = False) -> str:
    """The report of a run as one self-contained HTML page (``parallel``: see :func:`_figures`)."""
    return environment().get_template("report.html.j2").render(**context(view, parallel=parallel))


def summary(view: RunView) -> str:
    """The top of the report alone (the verdict, the headline estimates, the decision numbers in
    words) as an HTML fragment with its own scoped style: what a run shows in a notebook."""
    cs = P.checks(view)
    decisions, decision_summaries = P.decisions(view)
    return environment().get_template("summary.html.j2").render(
        title=view.name, description=view.description, verdict=P.verdict(view, cs), headlines=P.headlines(view),
        decisions=decisions, decision_summaries=decision_summaries, ci_name=view.ci_name,
        report=str(Path(view.place) / REPORT))


def write_report(folder: str | Path, out: str | Path | None = None, *, posterior=None, parallel: bool = True,
                 home: Path | None = None) -> Path:
    """Write ``report.html`` (or ``out``) for the run folder ``folder``, atomically. ``posterior``:
    the DataTree in the folder's posterior.nc, when the caller holds it (else it is read).
    ``parallel``: part of the figures drawn in a second process (when the machine has a core free).
    ``home``: where a staged folder will be once the run is complete (the page names it)."""
    view = RunView.from_folder(folder, posterior=posterior, home=home)
    target = Path(out) if out is not None else Path(folder) / REPORT
    write_text_atomic(target, render(view, parallel=parallel))
    return target


def write_text_atomic(path: Path, text_: str) -> None:
    """Write a page in one rename; a path that cannot be written is a usage error naming it."""
    from mrp_formula.errors import Problem, UsageError
    from mrp_formula.system import write_text_atomic as write

    path = Path(path)
    if path.is_dir():
        raise UsageError(Problem("is a folder, not a file to write the page to", file=str(path),
                                 hint=f"give a file name, e.g. {path / 'page.html'}"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, text_)
    except OSError as exc:
        raise UsageError(Problem(f"cannot write the page: {exc.strerror or exc}", file=str(path),
                                 hint="choose a folder you can write to")) from None


def report_note(folder: Path, posterior=None, *, parallel: bool = True, home: Path | None = None) -> str:
    """For ``pipeline.run``: write the report into the staged run folder (which becomes ``home``);
    a failure costs a run note (returned), never the results."""
    try:
        write_report(folder, posterior=posterior, parallel=parallel, home=home)
    except Exception as exc:  # the report is a view of the results, not a result
        return f"report.html was not written ({type(exc).__name__}: {exc}); the tables are complete"
    return ""
