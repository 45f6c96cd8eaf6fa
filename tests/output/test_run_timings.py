"""`mrp run` records the wall time of every step, the ones after the fit included (writing, the
PNGs, the page), and docs/outputs.md says what each covers. The PNGs are drawn beside the page (a
forked process on Linux), so those two steps overlap."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import mrp_formula
from mrp_formula.commands.run import TIMINGS
from mrp_formula.system import cpu_count

DOCS = Path(__file__).resolve().parents[2] / "docs" / "outputs.md"


def test_every_step_is_documented():
    row = next(line for line in DOCS.read_text().splitlines() if line.startswith("| `timings_seconds`"))
    assert set(TIMINGS) <= set(re.findall(r"`(\w+)`", row))


@pytest.mark.slow  # samples
def test_the_manifest_times_every_step_and_the_page_those_before_it(ab_dir):
    out = ab_dir / "run"
    result = mrp_formula.run(ab_dir / "ab.toml", out=out, overrides=["fit.draws=100", "fit.tune=100", "fit.chains=2"])
    t = result.manifest["timings_seconds"]
    assert tuple(t) == TIMINGS and all(v >= 0 for v in t.values())
    # posterior.nc and the fit cache are written (and counted in `write`) while the page is drawn
    assert t["total"] >= t["posterior"] + max(t["write"], t["plots"], t["report"]) and t["posterior"] >= t["fit"] > 0
    page = (out / "report.html").read_text()
    shown = re.search(r"<dt>timings</dt><dd>([^<]*)</dd>", page).group(1)
    # plots, report and total end after the page
    assert [k.split()[0] for k in shown.split(", ")] == [k for k in TIMINGS if k not in ("plots", "report", "total")]


@pytest.mark.slow  # samples
def test_plots_that_fail_beside_the_page_cost_a_note_never_the_run(ab_dir, monkeypatch):
    import threading

    import mrp_formula.output.plots as plots

    monkeypatch.setattr(threading, "active_count", lambda: 1)  # fork although earlier tests left threads

    def broken(*_a, **_k):
        raise RuntimeError("no ink")

    monkeypatch.setattr(plots, "write_plots", broken)  # the forked child inherits the patch
    out = ab_dir / "run"
    result = mrp_formula.run(ab_dir / "ab.toml", out=out, overrides=["fit.draws=50", "fit.tune=50", "fit.chains=2"])
    assert "plots were not written (RuntimeError: no ink); the tables are complete" in result.notes
    assert (out / "report.html").is_file() and (out / "estimands.csv").is_file() and not (out / "plots").exists()
    assert "plots were not written (RuntimeError: no ink); the tables are complete" in result.manifest["notes"]


@pytest.mark.slow  # samples
def test_classical_estimates_that_fail_beside_the_checks_fail_the_run_as_before(ab_dir, monkeypatch):
    """The classical estimates are computed in a forked child; when it fails they are computed
    again in the run's own process, so the error is the one the user would have seen."""
    import mrp_formula.poststrat.classical as classical
    from mrp_formula.errors import DataError, Problem

    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 1)  # fork although earlier tests left threads
    calls = []

    def broken(*_a, **_k):
        calls.append(1)
        raise DataError(Problem("cannot rake", key="population.margins"))

    monkeypatch.setattr(classical, "raw_and_weighted", broken)
    with pytest.raises(DataError, match="cannot rake"):
        mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "run", overrides=["fit.draws=50", "fit.tune=50",
                                                                            "fit.chains=2"])
    forked = sys.platform == "linux" and cpu_count() > 1
    assert calls == ([1] if forked else [1, 1])  # the child's call happened in its own memory
    assert not (ab_dir / "run").exists()  # nothing was written
