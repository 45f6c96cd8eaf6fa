"""benchmarks/bench_mrp.py's pure parts: the CCES-scale simulation has the shape the issue asks
for, and the report writer shows the numbers of the results it is given. No benchmark is run;
one slow test fits the primer briefly through the geometry script."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_mrp import CCES_LEVELS, simulate_cces  # noqa: E402
from benchmarks.report_mrp import write_report  # noqa: E402


def test_cces_simulation_has_ten_thousand_cells_and_every_population_combination(tmp_path):
    info = simulate_cces(tmp_path, respondents=60_000)
    assert info["cells"] >= 10_000 and info["population_cells"] == 50 * 6 * 5 * 4 * 2
    pop = pd.read_parquet(tmp_path / "population.parquet")
    assert not pop.duplicated(list(CCES_LEVELS)).any() and (pop["N"] >= 1).all()
    cells = pd.read_parquet(tmp_path / "cells.parquet")
    assert len(cells) == info["cells"] and cells["mrp_trials"].sum() == 60_000
    again = simulate_cces(tmp_path / "again", respondents=60_000)
    assert again == info  # a function of the seed
    truth = info["truth"]  # each state's population-weighted true probability
    assert sorted(truth) == CCES_LEVELS["state"] and all(0 < t < 1 for t in truth.values())
    sample = pd.read_csv(tmp_path / "sample.csv")
    raw = sample.groupby("state")["y"].mean()
    # the sample's state means scatter around the truth (about 1,200 respondents a state)
    assert abs(float((raw - pd.Series(truth)).mean())) < 0.05


def test_report_shows_the_ratios_of_the_results(tmp_path):
    res = {"quick": True, "started": "s", "finished": "f", "machine": {"cpus": 2},
           "cases": {"primer_2chains_mrp": {"status": "ok", "wall_seconds": 10.0, "e2e_seconds": 9.5,
                                            "timings": {"fit": 6.0}, "load_before": 3.0,
                                            "diagnostics": {"divergences": 0, "estimand_min_ess_bulk": 900.0},
                                            "efficiency": {"leapfrog_steps_per_draw": 31.0,
                                                           "seconds_per_gradient": 150e-6,
                                                           "ess_per_1000_gradients_parameters": 4.5}},
                     "primer_2chains_cli": {"exit_code": 0, "wall_seconds": 9.0,
                                            "efficiency": {"model_reuse": "reused"}},
                     "primer_2chains_bambi_pymc": {"status": "ok", "wall_seconds": 95.0, "load_before": 3.1},
                     "gradient_cost": {"status": "ok", "cells": 3693, "parameters": 100, "model_us": 180.0,
                                       "numpy_us": 110.0, "fused_us": 30.0, "fused_matches_numpy": True, "elementwise_us": 20.0,
                                       "model_over_fused": 6.0, "load_before": 2.0}}}
    path = tmp_path / "b.md"
    write_report(res, path)
    md = path.read_text()
    assert "`mrp run` (fresh CLI process, as a user runs it; model: reused) 9.0 s" in md
    assert "**10.6x** (target 10x)" in md
    assert "Python API in a fresh interpreter 10.0 s, 9.5x" in md  # the API's figure beside it
    assert "| primer_2chains_mrp | ok | 9.5 | 6.0 | 0 | 900 | – | 31.0 | 150 | 4.50 | – | 3.0 |" in md
    assert "**6.0x** the hand-fused reference" in md
    assert "scalar libm: this llvmlite has no vectorised exp) 20 us" in md  # the floor of the fused loop


@pytest.mark.slow  # compiles and samples the primer (a few seconds of draws)
def test_geometry_script_builds_sum_to_zero_effects():
    """The script behind the geometry rows of docs/benchmarks-mrp.md fits the primer with
    sum-to-zero group effects: each term's effects sum to zero in every draw."""
    from benchmarks.geometry_primer import fit

    post, line = fit("zsn_c", 1, "diag", 1, 20, 20)
    assert "gradients" in line and "steps/draw" in line
    for term in ("1|age", "1|state", "1|poll"):
        assert np.abs(post[term].sum(post[term].dims[-1]).values).max() < 1e-9


def test_report_judges_the_cces_estimates_against_the_truth(tmp_path):
    truth = {"s00": 0.40, "s01": 0.60}
    res = {"started": "s", "finished": "f", "machine": {"cpus": 2},
           "cces": {"respondents": 100, "cells": 10, "population_cells": 20, "truth": truth},
           "cases": {"cces_mrp": {"status": "ok", "wall_seconds": 5.0,
                                  "estimates": {"s00": [0.41, 0.01, 900.0], "s01": [0.55, 0.02, 800.0]}}}}
    write_report(res, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "cces_mrp: state estimates against the simulated truth: largest error 0.0500, root mean square 0.0361, " \
           "1 of 2 states within 2 posterior sd." in text


def test_no_ratio_against_a_case_that_did_not_finish(tmp_path):
    """A case stopped at its time limit records the seconds it was given, not its time: no ratio."""
    res = {"started": "s", "finished": "f", "machine": {"cpus": 2},
           "cases": {"primer_2chains_cli": {"exit_code": 0, "wall_seconds": 9.0},
                     "primer_2chains_mrp": {"status": "ok", "wall_seconds": 10.0},
                     "primer_2chains_bambi_pymc": {"status": "timeout", "wall_seconds": 1200.0}}}
    write_report(res, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "**no ratio (mrp-formula: ok, Bambi: timeout)** (target 10x)" in text and "133.3x" not in text
