"""The report's calibration section (issue 14, item 4): shown from calibration.csv when the run
was calibrated (levels as written, the known mean against the model's, the shifts), absent
otherwise. No sampling: the run folder is synthetic (tests/_runfolder.py)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from _runfolder import STATES, make_run

from mrp_formula.output.report import RunView, render


def _table_rows(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table class="sortable" id="{re.escape(table_id)}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, f"no table {table_id}"
    return [re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S) for tr in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)]


def _calibration_csv(folder):
    n = len(STATES)
    rng = np.random.default_rng(1)
    known = rng.uniform(0.2, 0.8, n)
    model = known + 0.1
    pd.DataFrame({"state": STATES[:n], "known": known, "uncalibrated": model, "uncalibrated_lower": model - 0.05,
                  "uncalibrated_upper": model + 0.05, "known_in_interval": [True] + [False] * (n - 1),
                  "shift_mean": np.r_[-0.05, -np.linspace(0.3, 0.9, n - 1)], "shift_sd": 0.1,
                  "shift_lower": -1.0, "shift_upper": 0.0, "ci_prob": 0.9, "ci_kind": "eti",
                  "link": "logit"}).to_csv(folder / "calibration.csv", index=False)


def test_the_section_shows_every_level_and_the_largest_shift(tmp_path, no_figures):
    folder = make_run(tmp_path / "run")
    _calibration_csv(folder)
    view = RunView.from_folder(folder)
    assert list(view.calibration.state) == STATES  # leading zeros survive
    html = render(view)
    assert '<section id="calibration">' in html and 'href="#calibration"' in html
    rows = _table_rows(html, "t-calibration")
    assert [r[0] for r in rows] == STATES
    assert rows[0][5] == "yes" and rows[1][5] == "NO"
    lead = re.search(r'<section id="calibration">.*?<p class="lead">(.*?)</p>', html, re.S).group(1)
    assert "log-odds scale" in lead and f"state = {STATES[-1]}" in lead and "-0.9" in lead
    assert f"For {len(STATES) - 1} of {len(STATES)} levels" in lead


def test_no_section_without_calibration(tmp_path, no_figures):
    html = render(RunView.from_folder(make_run(tmp_path / "run")))
    assert 'id="calibration"' not in html and 'href="#calibration"' not in html


def test_a_contrast_of_a_population_variable_is_described_as_two_subpopulations(tmp_path, no_figures):
    """The page says what the run's notes say: a contrast of a variable the population table has
    compares its cells with one level against those with the other, not everyone set to each."""
    from mrp_formula.output.report.page import describe_estimand

    arm = make_run(tmp_path / "arm", manifest={"tables": {"population_columns": ["state", "n"]}})
    assert ("with treatment set to treatment vs set to control for everyone"
            in describe_estimand(RunView.from_folder(arm), "lift"))
    folder = make_run(tmp_path / "sub", manifest={"tables": {"population_columns": ["treatment", "state", "n"]}})
    words = describe_estimand(RunView.from_folder(folder), "lift")
    assert "between the population's cells with treatment = treatment and those with treatment = control" in words
    assert "for everyone" not in words
