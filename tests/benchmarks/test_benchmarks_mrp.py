"""benchmarks/bench_mrp.py's pure parts: the CCES-scale simulation has the shape the issue asks
for, and the report writer shows the numbers of the results it is given. No benchmark is run."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

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


def test_report_shows_the_ratios_of_the_results(tmp_path):
    res = {"quick": True, "started": "s", "finished": "f", "machine": {"cpus": 2},
           "cases": {"primer_2chains_mrp": {"status": "ok", "wall_seconds": 10.0, "e2e_seconds": 9.5,
                                            "timings": {"fit": 6.0}, "load_before": 3.0,
                                            "diagnostics": {"divergences": 0, "estimand_min_ess_bulk": 900.0},
                                            "efficiency": {"leapfrog_steps_per_draw": 31.0,
                                                           "seconds_per_gradient": 150e-6,
                                                           "ess_per_1000_gradients_parameters": 4.5}},
                     "primer_2chains_bambi_pymc": {"status": "ok", "wall_seconds": 95.0, "load_before": 3.1},
                     "gradient_cost": {"status": "ok", "cells": 3693, "parameters": 100, "model_us": 180.0,
                                       "numpy_us": 110.0, "fused_us": 30.0, "fused_matches_numpy": True,
                                       "model_over_fused": 6.0, "load_before": 2.0}}}
    path = tmp_path / "b.md"
    write_report(res, path)
    md = path.read_text()
    assert "**9.5x** (target 10x)" in md
    assert "| primer_2chains_mrp | ok | 9.5 | 6.0 | 0 | 900 | – | 31.0 | 150 | 4.50 | – | 3.0 |" in md
    assert "**6.0x** the hand-fused reference" in md
