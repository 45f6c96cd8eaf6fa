"""`mrp run` records the wall time of every step, the ones after the fit included (writing, the
PNGs, the page), and docs/outputs.md says what each covers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mrp_formula
from mrp_formula.commands.run import TIMINGS

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
    assert t["total"] >= t["posterior"] + t["write"] + t["plots"] + t["report"] and t["posterior"] >= t["fit"] > 0
    page = (out / "report.html").read_text()
    shown = re.search(r"<dt>timings</dt><dd>([^<]*)</dd>", page).group(1)
    assert [k.split()[0] for k in shown.split(", ")] == list(TIMINGS[:-2])  # report and total end after the page
