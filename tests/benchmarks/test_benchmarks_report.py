"""The benchmark's report writer (benchmarks/report.py) on small synthetic results: every figure in the
markdown is computed from the results it is given, so the writer cannot silently break or state numbers
the run did not measure. No benchmark is run."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks package lives at the top of the repository
    sys.path.insert(0, str(ROOT))

from benchmarks.report import write_report  # noqa: E402

DESIGN = {"formula": "y ~ a + (1|g)", "family": "bernoulli", "seed": 7,
          "levels": {"treatment": 2, "gender": 2, "age": 3, "region": 5},
          "effects": {"treatment": 0.5, "gender": -0.25, "treatment:gender": 0.125}, "region_sd": 0.2,
          "sample": {"female": 0.6, "male": 0.4, "under_35": 0.55, "largest_region": 0.3},
          "population": {"female": 0.5, "male": 0.5, "under_35": 0.25, "largest_region": 0.22,
                         "cells": 30, "people": 3_000_000},
          "scenarios": ["control", "treatment"], "fit": {"draws": 500, "tune": 700, "chains": 4}}


def _fit(n, e2e, fit, ess, *, cpu=None, chains=4, lift=0.02, **extra):
    return dict({"status": "ok", "n": n, "rows": n, "e2e_seconds": e2e, "fit_seconds": fit,
                 "fit_cpu_seconds": cpu if cpu is not None else 1.5 * fit, "peak_rss_mb": 500.0, "chains": chains,
                 "draws": 500, "min_ess_bulk": ess, "min_ess_param": "1|g", "max_rhat": 1.002, "divergences": 0,
                 "mean_steps_per_draw": 15.0, "estimand_min_ess": 1500.0,
                 "estimates": {"lift": lift, "lift_sd": 0.01}, "load_before": 0.5}, **extra)


def _mrp(n, e2e, fit, ess, **extra):
    """An mrp-formula fit: the Bambi fields plus the cells and the manifest's timings."""
    steps = dict(cells_fitted=60, import_seconds=0.5, prepare_seconds=0.4, poststratify_seconds=0.1,
                 checks_seconds=0.1, total_seconds=6.0, mass_matrix="diagonal",
                 parameterization={"1|g": "noncentered"})
    return _fit(n, e2e, fit, ess, **dict(steps, **extra))


def results() -> dict:
    """Two sizes; Bambi + nutpie at both, Bambi + PyMC at the small one and skipped at the large one."""
    return {
        "quick": True, "budget_seconds": 120.0, "mem_limit_gb": 4.0, "started": "2026-01-01 10:00:00",
        "finished": "2026-01-01 10:05:00", "config": {"pop_sizes": [5_000]}, "design": DESIGN,
        "machine": {"cpus": 3, "python": "3.12.0", "mem_total_gb": 16.0, "versions": {"bambi": "0.0"}},
        "truth": {"control": 0.05, "treatment": 0.07, "lift": 0.02}, "skipped": [],
        "base_n": 100_000, "poststrat_posterior": "mrp fit on 100,000 rows",
        "mrp_fit": [_mrp(1_000, 8.0, 5.0, 400.0, intercept_group_corr=-0.5),
                    _mrp(100_000, 10.0, 6.0, 900.0, intercept_group_corr=-0.99)],
        "bambi_fit": {
            "nutpie": [_fit(1_000, 12.0, 9.0, 300.0, cpu=9.0, chains=2, import_seconds=2.0, read_seconds=0.0,
                            build_seconds=0.1, poststratify_seconds=1.0),
                       _fit(100_000, 250.0, 240.0, 48.0, cpu=240.0, chains=2, import_seconds=2.0,
                            read_seconds=0.1, build_seconds=0.5, poststratify_seconds=1.0)],
            "pymc": [_fit(1_000, 20.0, 16.0, 200.0, cpu=16.0, chains=2, import_seconds=2.0, read_seconds=0.0,
                          build_seconds=0.1, poststratify_seconds=1.0),
                     {"n": 100_000, "status": "skipped", "predicted_seconds": 1800.0}]},
        "poststrat": {
            "mrp": [{"status": "ok", "m": 5_000, "cells": 5_000, "draws": 2_000, "block": 1_000_000,
                     "poststratify_seconds": 0.04, "predictor_seconds": 0.01, "seconds": 0.05, "peak_rss_mb": 450.0,
                     "rss_before_mb": 400.0, "estimates": {"lift": 0.021}, "load_before": 0.7}],
            "bambi": [{"status": "oom", "m": 5_000, "cells": 5_000, "seconds_until_oom": 3.0, "peak_rss_mb": 3000.0,
                       "rss_before_mb": 410.0, "mem_limit_gb": 4.0, "load_before": 0.6}],
            "run": [{"status": "ok", "m": 5_000, "e2e_seconds": 2.0, "prepare_seconds": 0.3,
                     "poststratify_seconds": 0.05, "population_rows": 5_000, "population_cells": 30,
                     "fit_reused": True, "peak_rss_mb": 350.0, "lift": 0.021, "load_before": 0.9}]},
        "rerun": [{"wall_seconds": 3.0, "exit_code": 0, "fit_reused": True, "change": ["estimands.x=1"],
                   "timings": {"total": 1.25, "prepare": 0.5, "poststratify": 0.05, "checks": 0.2}}],
    }


def render(res: dict, tmp_path: Path) -> str:
    path = tmp_path / "bench.md"
    write_report(res, path)
    return path.read_text()


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 1)
    return md[start:end if end >= 0 else None]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first markdown table in text, as cells."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[first:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows[2:]]  # header, separator


def test_side_by_side_has_both_tools_in_one_row_per_size_with_ratios_from_the_inputs(tmp_path):
    res = results()
    rows = table_rows(section(render(res, tmp_path), "Side by side"))
    assert [r[0] for r in rows] == ["1e3", "1e5"]  # one row per size, sizes in order
    mrp = {r["n"]: r for r in res["mrp_fit"]}
    nutpie = {r["n"]: r for r in res["bambi_fit"]["nutpie"]}
    pymc = {r["n"]: r for r in res["bambi_fit"]["pymc"]}
    for row, n in zip(rows, (1_000, 100_000)):
        m, b = mrp[n], nutpie[n]
        m_rate, b_rate = m["min_ess_bulk"] / m["fit_seconds"], b["min_ess_bulk"] / b["fit_seconds"]
        assert row[1] == f"{m['e2e_seconds']:.1f} s"
        assert row[2] == f"{b['e2e_seconds']:.1f} s ({b['e2e_seconds'] / m['e2e_seconds']:.1f}x)"
        shown = f"{b_rate:.2f}" if b_rate < 10 else f"{b_rate:.1f}"
        assert row[5] == f"{shown} ({m_rate / b_rate:.1f}x)"
    p = pymc[1_000]
    assert rows[0][3] == f"{p['e2e_seconds']:.1f} s ({p['e2e_seconds'] / mrp[1_000]['e2e_seconds']:.1f}x)"
    assert rows[0][3] == "20.0 s (2.5x)" and rows[0][2] == "12.0 s (1.5x)"  # 20 / 8, 12 / 8
    assert rows[1][2] == "250.0 s (25.0x)" and rows[1][5] == "0.20 (750.0x)"  # 250 / 10; (900 / 6) / (48 / 240)
    assert rows[1][3] == "skipped: predicted 30 min > budget" and rows[1][6] == ""


def test_a_size_one_tool_did_not_run_says_so(tmp_path):
    res = results()
    res["mrp_fit"].append(_mrp(10_000_000, 11.0, 7.0, 1000.0))
    rows = table_rows(section(render(res, tmp_path), "Side by side"))
    assert rows[-1][:4] == ["1e7", "11.0 s", "not run", "not run"]


@settings(max_examples=25, deadline=None)
@given(m_e2e=st.floats(1, 100), b_e2e=st.floats(1, 5000), m_fit=st.floats(0.5, 50), b_fit=st.floats(0.5, 5000),
       m_ess=st.floats(10, 5000), b_ess=st.floats(10, 5000))
def test_side_by_side_ratios_follow_any_inputs(tmp_path_factory, m_e2e, b_e2e, m_fit, b_fit, m_ess, b_ess):
    res = results()
    res["mrp_fit"] = [_mrp(1_000, m_e2e, m_fit, m_ess, intercept_group_corr=0.0)]
    res["bambi_fit"] = {"nutpie": [_fit(1_000, b_e2e, b_fit, b_ess, import_seconds=1.0, read_seconds=0.0,
                                        build_seconds=0.0, poststratify_seconds=1.0)], "pymc": []}
    row = table_rows(section(render(res, tmp_path_factory.mktemp("md")), "Side by side"))[0]
    assert row[2].endswith(f"({b_e2e / m_e2e:.1f}x)")
    assert row[5].endswith(f"({(m_ess / m_fit) / (b_ess / b_fit):.1f}x)")
    assert row[3] == "not run"


def test_fitting_table_one_row_per_size_and_tool_from_the_inputs(tmp_path):
    res = results()
    rows = table_rows(section(render(res, tmp_path), "Fitting"))
    named = [(r[0], r[1]) for r in rows]
    assert named == [("1e3", "mrp-formula (nutpie, cells)"), ("1e3", "Bambi + nutpie (rows)"),
                     ("1e3", "Bambi + PyMC NUTS (rows, default)"), ("1e5", "mrp-formula (nutpie, cells)"),
                     ("1e5", "Bambi + nutpie (rows)"), ("1e5", "Bambi + PyMC NUTS (rows, default)")]
    assert rows[0][9] == "80.0" and rows[0][10] == "53.3"  # ESS/s = 400 / 5; ESS/CPU-s = 400 / 7.5
    assert rows[4][9] == "0.2"  # 48 / 240
    assert rows[5][2].startswith("skipped: predicted 30 min")


def test_targets_are_judged_from_the_inputs(tmp_path):
    res = results()
    targets = table_rows(section(render(res, tmp_path), "Targets"))
    speed = targets[0]
    # 1e5: Bambi + nutpie fit 240 s / mrp end to end 10 s = 24x >= 20x; no PyMC run at 1e5
    assert "fit 240.0 s / mrp end to end 10.0 s = **24.0x**" in speed[1]
    assert speed[2] == "**holds** against Bambi + nutpie"
    slower = copy.deepcopy(res)
    slower["mrp_fit"][1]["e2e_seconds"] = 40.0  # 240 / 40 = 6x
    speed = table_rows(section(render(slower, tmp_path), "Targets"))[0]
    assert "**6.0x**" in speed[1] and speed[2] == "**does not hold** against Bambi + nutpie"
    ess = next(t for t in targets if t[0].startswith("min bulk ESS/s"))
    # the sizes compared and the ones without a Bambi run come from the results, not from the text
    assert ess[2] == "**holds** at 1e5 (no default-sampler run; against Bambi + nutpie)"
    res["mrp_fit"].append(_mrp(1_000_000, 11.0, 7.0, 1000.0, intercept_group_corr=-1.0))
    ess = next(t for t in table_rows(section(render(res, tmp_path), "Targets")) if t[0].startswith("min bulk"))
    assert ess[2].endswith("; no Bambi run at 1e6 to compare with")


def test_set_up_figures_come_from_the_recorded_design_and_runs(tmp_path):
    md = section(render(results(), tmp_path), "Set-up")
    assert "`y ~ a + (1|g)`, bernoulli; 2 x 2 x 3 x 5 = 60 predictor cells" in md
    assert "fixed seed (7)" in md and "treatment +0.50, male -0.25, interaction +0.12" in md
    assert "N(0, 0.2)" in md and "60 % women, 55 % under 35" in md and "largest region holds 30 %" in md
    assert "(30 gender x age x region cells, 3 M people) is 50 % men, 25 % under 35" in md
    assert "4 chains x 500 draws after 700 tuning steps" in md
    assert "mrp-formula's default target_accept" in md  # not recorded by these results: no number typed in
    assert "fit's CPU time / wall time was 1.5" in md  # mrp: cpu = 1.5 x fit
    assert "**2 chains** of 500 draws" in md and "CPU time / wall time was 1.0" in md
    assert "held 400 MB to 410 MB before their step" in md
    res = results()
    for r in res["mrp_fit"]:
        r["sampler_settings"] = {"tune": 300, "target_accept": 0.95, "mass_matrix": "diagonal"}
    assert "after 300 tuning steps, target_accept 0.95" in render(res, tmp_path)


def test_observations_are_computed_from_the_results(tmp_path):
    md = section(render(results(), tmp_path), "Observations")
    assert "ranged from 0.5 to 0.9 on 3 cores" in md
    assert "fitted 60 binomial cells for 1e3 and 1e5 rows; its end-to-end time was 8.0 s at 1e3 rows and 10.0 s" in md
    assert "62%" in md and "60%" in md  # fit / end to end: 5 / 8, 6 / 10
    assert "(posterior correlation of `Intercept` with the mean age effect + mean region effect: -0.500 at 1e3, " \
           "-0.990 at 1e5)" in md
    # poststratification: 0.04 s / (2,000 draws x 5,000 cells x 2 scenarios) = 2 ns
    assert "cost 2 ns per draw x cell x scenario (2 scenarios here: control and treatment) at 5,000 rows" in md
    assert "450 MB against 400 MB" in md
    assert "30 cells here from 5,000 rows" in md
    assert "the remaining 1.8 s of the CLI process" in md  # 3.0 - 1.25


def test_note_and_source_change_warning_are_shown(tmp_path):
    res = results()
    assert "**Note:**" not in render(res, tmp_path)
    res["note"] = "rebuilt from an earlier markdown"
    res["package_start"], res["package_end"] = {"a.py": "1"}, {"a.py": "2"}
    md = render(res, tmp_path)
    assert "**Note:** rebuilt from an earlier markdown" in md
    assert "the package's source changed while this benchmark ran** (a.py)" in md


@pytest.mark.parametrize("drop", ["poststrat", "rerun", "bambi"])
def test_missing_parts_do_not_break_the_writer(tmp_path, drop):
    res = results()
    if drop == "poststrat":
        res["poststrat"] = {"mrp": [], "bambi": [], "run": []}
        res["config"]["pop_sizes"] = []
    elif drop == "rerun":
        res["rerun"] = []
    else:
        res["bambi_fit"] = {"nutpie": [], "pymc": []}
    md = render(res, tmp_path)
    assert md.startswith("# Benchmarks") and "## Observations" in md
