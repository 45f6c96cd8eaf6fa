#!/usr/bin/env python
"""Benchmark: the same A/B model through mrp-formula and through plain Bambi.

    .venv/bin/python benchmarks/bench_ab.py            # full run, writes docs/benchmarks.md
    .venv/bin/python benchmarks/bench_ab.py --quick    # small sizes only, writes
                                                       # benchmarks/out/benchmarks-quick.md
    .venv/bin/python benchmarks/bench_ab.py --report-only   # re-write the markdown from the saved JSON

Model: ``clicked ~ treatment*gender + (1|age) + (1|region)``, bernoulli, 2 x 2 x 6 x 50 cells,
simulated with a fixed seed from known effects (benchmarks/data.py). Every measured case runs in a
fresh interpreter (benchmarks/cases.py, measured by benchmarks/measure.py); the markdown is
written from the saved results alone (benchmarks/report.py). Generated data, run folders, logs
and the raw JSON go to ``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.settings import DEFAULT_BUDGET, OUT, ROOT, results_path  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only (a few minutes)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                    help="seconds; Bambi sizes predicted to take longer are skipped (default %(default)s)")
    ap.add_argument("--no-pymc", action="store_true", help="skip the Bambi + PyMC-NUTS variant")
    ap.add_argument("--report", type=Path, default=None,
                    help="markdown output (default docs/benchmarks.md, or benchmarks/out/benchmarks-quick.md "
                         "with --quick)")
    ap.add_argument("--report-only", action="store_true", help="re-write the markdown from the saved JSON")
    args = ap.parse_args(argv)
    from benchmarks.report import write_report

    report = args.report or (OUT / "benchmarks-quick.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    if args.report_only:
        res = json.loads(results_path(args.quick).read_text())
    else:
        from benchmarks.orchestrate import orchestrate

        res = orchestrate(args)
    write_report(res, report)


if __name__ == "__main__":
    main()
