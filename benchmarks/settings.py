"""Where the benchmark writes, and the sizes of a full and a quick run."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"  # git-ignored: data, specs, run folders, logs, results.json

FULL = dict(fit_sizes=[1_000, 10_000, 100_000, 1_000_000, 10_000_000],
            bambi_sizes=[1_000, 10_000, 100_000, 1_000_000],
            pop_sizes=[10_000, 100_000, 1_000_000], reruns=3)
QUICK = dict(fit_sizes=[1_000, 10_000], bambi_sizes=[1_000], pop_sizes=[10_000], reruns=1)
DEFAULT_BUDGET = 600.0  # seconds: Bambi sizes predicted to take longer are skipped
MEM_LIMIT_GB = 8.0  # RLIMIT_AS of the prediction cases (mrp and Bambi alike)
BIG_LIMIT_GB = 16.0  # one more try of Bambi's predict at the smallest population, to see what it needs


def results_path(quick: bool) -> Path:
    return OUT / ("results-quick.json" if quick else "results.json")
