"""The HTML report of a run folder: RunView reads the folder back, render() makes one
self-contained page with every section in the order a reader needs it, the verdict follows the
diagnostics, the decision numbers read right, and failures cost a figure or a note, never the page.
No sampling: the run folder is synthetic (tests/_runfolder.py). The page in a real browser is
tests/test_report_browser.py."""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from html.parser import HTMLParser

import pandas as pd
import pytest
from _runfolder import STATES, make_run
from typer.testing import CliRunner

from mrp_formula.errors import EXIT_USAGE, UsageError
from mrp_formula.output.report import RunView, render, write_report
from mrp_formula.output.report import page as P

SECTIONS = ["question", "headline", "decisions", "raw-vs-mrp", "breakdowns", "densities", "diagnostics", "ppc",
            "coverage", "spec", "manifest"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "synthetic")


@pytest.fixture(scope="module")
def html(folder):
    """The whole page, figures drawn (seconds): for the tests about the figures and what they embed."""
    return render(RunView.from_folder(folder))


@pytest.fixture(scope="module")
def page_text(folder):
    """The page without its figures (the `no_figures` stand-in), for the tests about its text."""
    from conftest import without_figures

    with pytest.MonkeyPatch.context() as mp:
        without_figures(mp)
        return render(RunView.from_folder(folder))


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict]]:
    p = _Tags()
    p.feed(html)
    return p.tags


def _table_rows(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table class="sortable" id="{re.escape(table_id)}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, f"no table {table_id}"
    return [re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S) for tr in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)]


# ----------------------------------------------------------------------------- RunView


def test_view_reads_the_folder_with_labels_as_written(folder):
    v = RunView.from_folder(folder)
    assert v.name == "synthetic" and v.description == "A run folder made up for the tests"
    assert v.family == "bernoulli" and v.formula == "y ~ treatment + (1 | state)"
    assert v.ci_name == "90% ETI"
    support = v.rows_of("support")
    assert list(support["state"]) == STATES  # '01' stays '01', not 1
    assert set(v.draws_of("support")["state"]) == set(STATES)
    assert v.label_columns == ["treatment", "state"]
    assert v.ropes == {"lift": (0.98, 1.02)}
    assert P.breakdown_columns(v) == {"support": ["state"]}
    assert v.ppc["level"].tolist()[2] == "01" and v.ppc["inside"].dtype == bool
    assert v.missing == ()


def test_overrides_apply_to_the_spec_the_page_describes(tmp_path):
    f = make_run(tmp_path / "r", overrides=['description="changed on the command line"'])
    v = RunView.from_folder(f)
    assert v.description == "changed on the command line"
    assert v.overrides == ['description="changed on the command line"']


@pytest.mark.parametrize("case", ["absent", "file", "empty", "no_estimands", "bad_manifest"])
def test_not_a_run_folder_is_a_usage_error_naming_the_path(tmp_path, case):
    target = tmp_path / "x"
    if case == "file":
        target.write_text("")
    elif case == "empty":
        target.mkdir()
    elif case == "no_estimands":
        target.mkdir()
        (target / "manifest.json").write_text("{}")
    elif case == "bad_manifest":
        make_run(target, posterior=False)
        (target / "manifest.json").write_text("{not json")
    with pytest.raises(UsageError) as info:
        RunView.from_folder(target)
    assert info.value.exit_code == EXIT_USAGE
    assert str(target) in info.value.problems[0].file
    assert "not a run folder" in info.value.problems[0].message


# ----------------------------------------------------------------------------- the page


@pytest.mark.slow  # draws every figure of the page
def test_page_is_self_contained(html):
    tags = _tags(html)
    names = {t for t, _ in tags}
    assert "link" not in names and "img" not in names and "iframe" not in names
    for tag, attrs in tags:
        assert "src" not in attrs, (tag, attrs)
        for key in ("href", "xlink:href"):
            ref = attrs.get(key)
            if ref is not None:
                assert ref.startswith(("#", "data:")), (tag, attrs)
    assert "url(http" not in html and "@import" not in html and "@font-face" not in html
    assert all(a.get("src") is None for t, a in tags if t == "script")


def test_sections_in_the_order_a_reader_needs_them(page_text):
    where = [page_text.index(f'<section id="{s}"') for s in SECTIONS]
    assert where == sorted(where)
    assert page_text.index('class="verdict') < where[0]  # the verdict is seen first


def test_headline_numbers_are_the_run_folders(folder, page_text):
    table = pd.read_csv(folder / "estimands.csv", dtype={"state": str})
    rate = table[table.estimand == "rate"]
    def decimals(*xs):  # three significant digits of the largest, the same decimals for all
        return 2 - math.floor(math.log10(max(abs(x) for x in xs)))

    for _, r in rate.iterrows():
        d = decimals(r["mean"], r["lower"], r["upper"])
        assert f'<div class="value">{r["mean"]:.{d}f}</div>' in page_text
        assert f"90% ETI {r['lower']:.{d}f} to {r['upper']:.{d}f}" in page_text
    support = table[table.estimand == "support"]
    lo, hi = support.loc[support["mean"].idxmin()], support.loc[support["mean"].idxmax()]
    d = decimals(lo["mean"], hi["mean"])
    assert f"{lo['mean']:.{d}f} to {hi['mean']:.{d}f}" in page_text
    assert f"lowest {lo['state']}, highest {hi['state']}" in page_text


def test_breakdown_is_a_sortable_table_of_every_group_with_numeric_sort_keys(folder, page_text):
    rows = _table_rows(page_text, "t-est-support")
    assert [r[0] for r in rows] == STATES
    table = pd.read_csv(folder / "estimands.csv", dtype={"state": str})
    support = table[table.estimand == "support"].set_index("state")
    keys = re.findall(r'<tr><td>(\d\d)</td><td data-v="([^"]*)" class="num">', page_text)
    assert len(keys) == len(STATES)
    for state, v in keys:
        assert float(v) == pytest.approx(support.loc[state, "mean"], rel=1e-12)
    # states without sample: no raw value, an empty sort key (sorted last by the script)
    row50 = rows[STATES.index("50")]
    assert row50[0] == "50" and "" in row50
    assert '<div class="filter"><label>Filter <input type="search" data-table="t-est-support"' in page_text


@pytest.mark.slow  # draws every figure of the page
def test_every_figure_is_inline_svg_with_ids_unique_in_the_page(html):
    svgs = re.findall(r"<svg\b", html)
    # raw vs MRP, the support forest, the densities, the PPC, the trace
    assert len(svgs) == 5
    ids = re.findall(r'\bid="([^"]+)"', html)
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, sorted(dup)[:5]
    refs = set(re.findall(r'href="#([^"]+)"', html)) | set(re.findall(r"url\(#([^)]+)\)", html))
    assert refs <= set(ids)  # every reference resolves within the page


@pytest.mark.slow  # draws every figure of the page again
def test_figures_drawn_in_a_second_process_give_the_same_page(folder, html, monkeypatch):
    """With a core free (``mrp report``, or ``mrp run`` without PNGs) the trace and raw-vs-MRP
    figures are drawn in a forked child: the page is the same to the byte, and a child that
    fails as a whole costs nothing (its figures are drawn here)."""
    from mrp_formula import system
    from mrp_formula.output.report import document

    children = []  # (forked, the Beside) of each call
    real = system.beside

    def spy(work, parallel=True):
        child = real(work, parallel=parallel)
        children.append((child._pid is not None, child))
        return child

    monkeypatch.setattr(system, "beside", spy)
    assert render(RunView.from_folder(folder), parallel=True) == html
    [(forked, child)] = children
    if sys.platform == "linux" and system.cpu_count() > 1 and threading.active_count() == 1:  # beside forks only then
        assert forked and not child.result()[1]  # a child drew them, and answered without error

    monkeypatch.setattr(system, "beside", lambda work, parallel=True: real(lambda: 1 / 0, parallel=parallel))
    assert render(RunView.from_folder(folder), parallel=True) == html
    assert set(document.BESIDE) <= set(document._figure_jobs(RunView.from_folder(folder)))


@pytest.mark.slow  # drawing 4 chains x 1,000 draws for 51 states is the point, and costs ~7 s
def test_page_stays_small_for_51_states_and_long_chains(tmp_path):
    f = make_run(tmp_path / "big", chains=4, draws=1000)
    html = render(RunView.from_folder(f))
    assert len(html.encode()) < 3_000_000, len(html.encode())
    assert "data:image/png;base64," in html  # the trace lines are rasterised inside their SVG


def test_diagnostics_read_as_plain_words_with_the_verdict(folder, page_text):
    v = RunView.from_folder(folder)
    assert P.verdict(v).word == "ok"
    assert '<span class="word">ok</span>' in page_text
    assert "population levels absent from the sample" in page_text and "state: 50, 51 (1.2% of the weight)" in page_text
    assert "4 of 102 (1.2% of the weight)" in page_text  # cells without sample
    assert "<td>1 of 51</td><td>about 5.1 expected by chance</td>" in page_text  # the PPC: state 07 misses


@pytest.mark.parametrize("patch,word,phrase", [
    ({}, "ok", "every check passes"),
    ({"diagnostics": {"divergences": 3, "failed": ["3 divergent transitions: ..."]}}, "do not use",
     "3 divergent transitions (at most 0)"),
    ({"diagnostics": {"estimand_min_ess_bulk": 120.0, "failed": ["estimands have too few effective draws"]}},
     "do not use", "too few effective draws of the estimands (120 < 400, worst: rate [treatment = control])"),
    ({"diagnostics": {"max_rhat": 1.05}, "warnings": ["model parameters mix poorly (max R-hat 1.050)"]},
     "ok", "Some model parameters mix poorly while the estimands they imply do not"),
    ({"diagnostics": {"max_rhat": 1.05, "estimand_max_rhat": 1.03, "failed": ["estimands have not converged"]},
      "warnings": ["model parameters mix poorly (max R-hat 1.050)"]},
     "do not use", "Also look at: model parameters mix poorly (R-hat 1.050"),
    ({"diagnostics": {"bfmi_min": 0.2}}, "look at this", "low energy BFMI (0.20)"),
    ({"warnings": ["sample ratio mismatch in 'treatment' (chi-square p = 1e-09): the assignment is broken"]},
     "do not use", "sample ratio mismatch"),
    ({"notes": ["warning: population level 'ca' of 'state' is not in the sample: a typo?"]}, "look at this",
     "population level 'ca'"),
    # a third of the population in levels without a single respondent: not an ok run
    ({"new_levels": {"region": ["west"]}, "new_level_weight_share": {"region": 0.314}}, "look at this",
     "31.4% of the population in levels of region without sample"),
    # one state without sample, counted once though state:age shares it (5.9%, not 11.8%: under 10%)
    ({"new_levels": {"state": ["S16"], "state:age": ["S16:a"]},
      "new_level_weight_share": {"state": 0.0588, "state:age": 0.0588}}, "ok", "every check passes"),
])
def test_verdict_follows_the_checks(tmp_path, patch, word, phrase):
    v = RunView.from_folder(make_run(tmp_path / "r", manifest=patch, posterior=False))
    verdict = P.verdict(v)
    assert verdict.word == word, verdict
    assert phrase in verdict.headline, verdict.headline


def test_thresholds_come_from_the_spec(tmp_path):
    spec = open(make_run(tmp_path / "a", posterior=False) / "spec.toml").read()
    spec = spec.replace('ci_kind = "eti"', 'ci_kind = "eti"\ness_min = 1000')
    v = RunView.from_folder(make_run(tmp_path / "b", spec=spec, posterior=False))
    assert v.diagnostics.ess_min == 1000
    assert P.verdict(v).word == "do not use"  # 950 effective draws < 1000


def test_ppc_outside_more_than_chance_asks_for_a_look(tmp_path):
    v = RunView.from_folder(make_run(tmp_path / "r", posterior=False))
    k, n = P.ppc_outside(v)
    assert (k, n) == (1, 51)  # state 07, of 49 states with sample + 2 arms
    check = [c for c in P.checks(v) if c.name.startswith("posterior predictive")][0]
    assert check.status == "ok"  # 1 of 51 at a 10% miss rate is chance
    ppc = pd.read_csv(tmp_path / "r" / "ppc.csv", dtype={"level": str})
    ppc.loc[ppc.variable == "state", "inside"] = [i % 2 == 0 for i in range((ppc.variable == "state").sum())]
    ppc.to_csv(tmp_path / "r" / "ppc.csv", index=False)
    v = RunView.from_folder(tmp_path / "r")
    check = [c for c in P.checks(v) if c.name.startswith("posterior predictive")][0]
    assert check.status == "look" and P.verdict(v).word == "look at this"


def _row(**kw):
    base = {"estimand": "lift", "treatment": "treatment vs control", "state": "", "scale": "ratio",
            "first": "treatment", "second": "control", "mean": 1.5,
            "lower": 1.2, "upper": 1.8, "p_above_null": 0.999, "p_in_rope": 0.0, "chance_to_win": 0.999,
            "expected_loss_first": 1e-6, "expected_loss_second": 0.02}
    base.update(kw)
    return pd.Series(base)


@pytest.mark.parametrize("row,bottom", [
    (_row(), "treatment almost certainly beats control (99.9%); practically different: treatment is higher"),
    (_row(chance_to_win=1.0, p_above_null=1.0), "treatment almost certainly beats control (>99.9%); "),
    (_row(chance_to_win=0.0, p_above_null=0.0, mean=0.8, lower=0.7, upper=0.9),
     "control almost certainly beats treatment (>99.9%); "),
    (_row(chance_to_win=0.96, p_above_null=0.96, p_in_rope=0.2), "treatment very likely beats control (96.0%); "
                                                                "not settled"),
    (_row(chance_to_win=0.03, p_above_null=0.03, p_in_rope=0.01, mean=0.8, lower=0.7, upper=0.9),
     "control very likely beats treatment (97.0%); practically different: control is higher"),
    (_row(chance_to_win=0.55, p_above_null=0.55, p_in_rope=0.97, mean=1.0), "No clear winner: the chance that "
                                                                           "treatment beats control is 55.0%; "
                                                                           "practically equivalent"),
])
def test_decision_numbers_in_words(tmp_path, row, bottom):
    """Arms applied to everyone (the population has no treatment column): which one to choose. A
    level's name keeps its case at the start of the bottom line."""
    arm = make_run(tmp_path / "arm", manifest={"tables": {"population_columns": ["state", "n"]}})
    d = P.decision(RunView.from_folder(arm), row)
    assert d.bottom_line.startswith(bottom), d.bottom_line
    assert d.title == "lift: treatment vs control"


def test_a_contrast_of_two_subpopulations_has_no_winner_to_choose(folder):
    """The fixture's population has a treatment column: the contrast compares two parts of the
    population, so the page says which is higher, not which arm beats which or what choosing costs."""
    d = P.decision(RunView.from_folder(folder), _row(chance_to_win=0.96, p_above_null=0.96, p_in_rope=0.2))
    assert d.bottom_line.startswith("treatment very likely has the higher average (96.0%)"), d.bottom_line
    words = " ".join(d.sentences)
    assert "Chance that the population average of" in words and "is higher for treatment than for control: 96.0%" in words
    assert "beats" not in words and "you choose" not in words


def test_decision_without_a_rope_or_chance_uses_the_direction(folder):
    v = RunView.from_folder(folder)
    d = P.decision(v, _row(estimand="other", chance_to_win=None, p_in_rope=None, p_above_null=0.02, scale="difference",
                           mean=-0.1))
    assert d.bottom_line == "The difference is very likely below 0."
    assert "Probability that the difference is above 0: 2.0%." in d.sentences


def test_missing_optional_files_leave_a_readable_page(tmp_path, no_figures):
    f = make_run(tmp_path / "r", posterior=False)
    for name in ("estimand_draws.parquet", "ppc.csv", "spec.toml"):
        (f / name).unlink()
    v = RunView.from_folder(f)
    assert set(v.missing) == {"estimand_draws.parquet", "ppc.csv", "spec.toml"}
    html = render(v)
    assert "Not in the run folder: estimand_draws.parquet, ppc.csv, spec.toml" in html
    assert "no posterior predictive check" in html
    assert all(f'<section id="{s}"' in html for s in SECTIONS)


def test_a_failing_figure_costs_the_figure_not_the_page(folder, monkeypatch):
    import mrp_formula.output.plots as plots

    def broken(*_a, **_k):
        raise RuntimeError("no ink")

    monkeypatch.setattr(plots, "figures", broken)
    html = render(RunView.from_folder(folder))
    assert "could not be drawn (RuntimeError: no ink)" in html
    assert "<svg" not in html
    assert '<table class="sortable" id="t-est-support">' in html


def test_write_report_and_the_pipeline_hook(tmp_path, monkeypatch, no_figures):
    from mrp_formula.output.report import document, report_note

    f = make_run(tmp_path / "r", posterior=False)
    assert write_report(f) == f / "report.html"
    assert (f / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert report_note(f) == ""
    monkeypatch.setattr(document, "render", lambda view, **_: 1 / 0)
    note = report_note(f)
    assert note.startswith("report.html was not written (ZeroDivisionError") and "tables are complete" in note
    assert (f / "report.html").read_text().startswith("<!DOCTYPE html>")  # the old page is intact
    assert not [p for p in f.iterdir() if p.name.startswith(".report.html")]  # no temporary file left


def test_mrp_report_command(tmp_path, no_figures):
    from mrp_formula.cli import app

    f = make_run(tmp_path / "r", posterior=False)
    res = CliRunner().invoke(app, ["report", str(f), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"ok": True, "report": str(f / "report.html")}
    res = CliRunner().invoke(app, ["report", str(f), "-o", str(tmp_path / "page.html")])
    assert res.exit_code == 0 and (tmp_path / "page.html").is_file()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert res.exit_code == EXIT_USAGE
    assert str(tmp_path / "nothing") in res.output and "not a run folder" in res.output


def test_a_breakdown_set_at_several_levels_keeps_them_apart(tmp_path, no_figures):
    spec = open(make_run(tmp_path / "a", posterior=False) / "spec.toml").read()
    spec = spec.replace("[report]", '[estimands.arm]\nat = { treatment = ["control", "treatment"] }\n'
                                    'by = ["state"]\n\n[report]')
    f = make_run(tmp_path / "b", spec=spec, posterior=False)
    table = pd.read_csv(f / "estimands.csv", dtype=str, keep_default_na=False)
    extra = [{**table.iloc[0].to_dict(), "estimand": "arm", "treatment": arm, "state": s, "mean": str(m)}
             for arm, base in (("control", 0.1), ("treatment", 0.3)) for s, m in zip(("01", "02", "03"),
                                                                                  (base, base + 0.05, base + 0.1))]
    pd.concat([table, pd.DataFrame(extra)]).to_csv(f / "estimands.csv", index=False)
    v = RunView.from_folder(f)
    assert P.breakdown_columns(v)["arm"] == ["state"]
    cards = [h for h in P.headlines(v) if h.estimand == "arm"]
    assert [(h.label, h.value) for h in cards] == [("by state; treatment = control", "0.1 to 0.2"),
                                                  ("by state; treatment = treatment", "0.3 to 0.4")]
    html = render(v)
    head = re.search(r'<table class="sortable" id="t-est-arm">.*?<thead>(.*?)</thead>', html, re.S).group(1)
    assert re.findall(r"<th[^>]*>(.*?)</th>", head)[:3] == ["treatment", "state", "mean"]
    assert [r[:2] for r in _table_rows(html, "t-est-arm")] == [[a, s] for a in ("control", "treatment")
                                                                for s in ("01", "02", "03")]


def test_contrasts_by_group_are_summarised_and_categories_labelled(tmp_path, no_figures):
    spec = open(make_run(tmp_path / "a", posterior=False) / "spec.toml").read()
    spec = spec.replace("[report]", '[estimands.lift_by]\ncontrast = { treatment = ["treatment", "control"] }\n'
                                    'by = ["state"]\n\n[report]')
    f = make_run(tmp_path / "b", spec=spec, posterior=False)
    table = pd.read_csv(f / "estimands.csv", dtype=str, keep_default_na=False)
    lift = table[table.estimand == "lift"].iloc[0].to_dict()
    wins = {"01": 0.99, "02": 0.97, "03": 0.5, "04": 0.01}
    extra = [{**lift, "estimand": "lift_by", "state": s, "chance_to_win": str(w)} for s, w in wins.items()]
    table = pd.concat([table, pd.DataFrame(extra)])
    table.insert(3, "category", "")
    table.loc[table.estimand == "rate", "category"] = ["yes", "no"]
    table.to_csv(f / "estimands.csv", index=False)
    v = RunView.from_folder(f)
    assert v.label_columns == ["treatment", "state", "category"]
    decisions, summaries = P.decisions(v)
    assert [d.title for d in decisions] == ["lift: treatment vs control"]
    assert [s.text for s in summaries] == ["lift_by by state: treatment very likely (>= 95%) higher in 2 of 4 groups, "
                                           "control in 1; undecided in the other 1."]
    labels = [h.label for h in P.headlines(v) if h.estimand == "rate"]
    assert labels == ["treatment = control, category yes", "treatment = treatment, category no"]
    html = render(v)
    assert P.anchor("lift_by") != P.anchor("lift-by") and re.fullmatch(r"[a-z0-9-]+", P.anchor("lift_by"))
    assert f'<table class="sortable" id="t-{P.anchor("lift_by")}">' in html and "chance to win" in html


def test_the_runs_posterior_in_memory_draws_the_trace_the_file_would(folder, monkeypatch):
    """``mrp run`` hands the report its posterior instead of having posterior.nc read back: the
    trace figure is the same, and the file is not opened."""
    import xarray as xr

    from mrp_formula.output.report import document

    from_file = document._figures(RunView.from_folder(folder))["trace"]
    with xr.open_datatree(folder / "posterior.nc", engine="h5netcdf") as dt:
        posterior = dt.load()

    def no_reading(*_a, **_k):
        raise AssertionError("posterior.nc was read although the posterior was given")

    monkeypatch.setattr(xr, "open_datatree", no_reading)
    in_memory = document._figures(RunView.from_folder(folder, posterior=posterior))["trace"]
    assert from_file and [s.markup for s in in_memory] == [s.markup for s in from_file]
    assert all(s.markup.startswith("<svg") and not s.error for s in in_memory)


def test_a_subpopulation_contrast_shows_no_loss_of_choosing(tmp_path):
    """The breakdown table leaves the expected-loss cells of a contrast of two subpopulations
    empty (there is no arm to choose), as the decisions section does."""
    v = RunView.from_folder(make_run(tmp_path / "r", posterior=False))
    contrasts = [e for e in dict.fromkeys(v.estimands["estimand"]) if P.contrast_levels(v.rows_of(e).iloc[0],
                                                                                       v.label_columns)]
    assert contrasts
    name = contrasts[0]
    rows = v.rows_of(name)
    (var,) = v.estimand_specs[name]["contrast"]
    columns = v.manifest["tables"]["population_columns"]
    v.manifest["tables"]["population_columns"] = [c for c in columns if c != var]  # arms set in everyone
    assert "loss if first" in [c.title for c in P.estimand_table(v, rows, v.label_columns, "t").columns]
    v.manifest["tables"]["population_columns"] = columns + [var]  # two parts of the population
    assert "loss if first" not in [c.title for c in P.estimand_table(v, rows, v.label_columns, "t").columns]


def test_a_headline_fixed_by_calibration_says_so_not_an_interval():
    from types import SimpleNamespace

    calibrated, plain = SimpleNamespace(manifest={"calibrate": {"by": "state"}}), SimpleNamespace(manifest={})
    fixed = {"mean": 0.398, "sd": 4.7e-12, "ess_bulk": None}
    assert P._fixed_by_calibration(calibrated, fixed)
    assert not P._fixed_by_calibration(plain, fixed)  # no [calibrate]: an ordinary (if odd) estimate
    assert not P._fixed_by_calibration(calibrated, {"mean": 0.398, "sd": 0.01, "ess_bulk": 2000.0})


def test_a_breakdown_whose_groups_are_all_equal_reads_so(tmp_path):
    folder = make_run(tmp_path / "r", posterior=False)
    est = pd.read_csv(folder / "estimands.csv", dtype={"state": str})
    est.loc[est.estimand == "support", "mean"] = 0.5
    est.to_csv(folder / "estimands.csv", index=False)
    (h,) = [h for h in P.headlines(RunView.from_folder(folder)) if h.estimand == "support"]
    assert h.value == "0.5" and h.note == "the same in every group"  # not "0.5 to 0.5, lowest 01, highest 01"


def test_a_breakdown_names_its_variables_in_the_specs_order():
    from types import SimpleNamespace

    view = SimpleNamespace(by_columns={"b": ["age", "state"]}, estimand_specs={"b": {"by": ["state", "age"]}},
                           rows_of=lambda est: range(48))
    assert P.breakdown_columns(view) == {"b": ["state", "age"]}  # was the table's column order: age, state


@pytest.mark.parametrize("values, digits, shown", [
    ((3.0004, 3.015, 2.9), 4, ["3.000", "3.015", "2.900"]),  # not "3" beside "3.015"
    ((0.05001, 0.04012, 0.05987), 3, ["0.0500", "0.0401", "0.0599"]),
    ((0.1, 0.2), 3, ["0.1", "0.2"]),  # common trailing zeros dropped
    ((12345.6, 9876.5), 4, ["12,346", "9,876"]),
    ((0.5234, None, float("nan")), 4, ["0.5234", "", ""]),
    ((0.0, 0.0), 3, ["0", "0"]),
])
def test_numbers_read_side_by_side_share_their_decimals(values, digits, shown):
    assert P.fmt_alike(values, digits) == shown


def test_a_run_of_a_spec_that_extends_another_is_read_as_the_run_used_it(tmp_path):
    """spec.toml holds the file alone (here two keys over a base); the page reads the spec the run
    used from the manifest: every estimand, its ROPE, the family, and shows both (the trial: a child
    spec's page described a third of the estimands, lost the ROPE and said "binomial")."""
    from _runfolder import SPEC

    from mrp_formula.commands.diff import diff_runs
    from mrp_formula.spec.tree import tomllib

    resolved = tomllib.loads(SPEC)
    child = 'extends = "base.toml"\nname = "child"\n'
    manifest = {"spec": {"path": "/p/child.toml", "sha256": "ab" * 32, "overrides": [],
                         "extends": ["/p/base.toml"], "resolved": resolved}}
    folder = make_run(tmp_path / "child", spec=child, manifest=manifest)
    view = RunView.from_folder(folder)
    assert set(view.estimand_specs) == {"rate", "lift", "support"} and view.ropes["lift"] == (0.98, 1.02)
    assert view.family == "bernoulli"
    html = render(view)
    assert "This spec extends <code>/p/base.toml</code>" in html and "rope = [0.98, 1.02]" in html
    # the same run from the flat file: nothing differs but the text of spec.toml
    flat = make_run(tmp_path / "flat", manifest={"spec": {**manifest["spec"], "extends": []}})
    d = diff_runs(folder, flat)
    assert d.spec_diff == () and d.changes == ()


def test_raw_weighted_and_mrp_of_a_row_share_their_decimals(folder, page_text):
    """The trial: "0.0826" beside "0.05983 to 0.1048" and a change "-0.00989" in one row."""
    for row in _table_rows(page_text, "t-side"):
        numbers = [row[2], row[3], row[4], *row[5].split(" to "), row[6]]
        decimals = {len(n.split(".")[1]) if "." in n else 0 for n in numbers if n}
        assert len(decimals) == 1, row
