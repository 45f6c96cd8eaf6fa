"""`mrp diff RUN_A RUN_B`: the spec's unified diff, the other changes, each estimand row matched
across runs and its move in pooled posterior sd, flagged above 1; rows in one run only listed as
added or removed; the terminal, JSON and HTML outputs; a folder that is not a run folder exits 2.
No sampling: the run folders are synthetic (tests/_runfolder.py)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from _runfolder import SPEC, STATES, make_run, state_means
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.commands.diff import (
    compare_estimands,
    diff_runs,
    pooled_shift,
    render_html,
    shown_rows,
)
from mrp_formula.errors import EXIT_USAGE


def _two(tmp_path, *, b_states=None, b_spec=SPEC, b_manifest=None, b_overrides=(), a_overrides=()):
    a = make_run(tmp_path / "a", posterior=False, overrides=a_overrides)
    b = make_run(tmp_path / "b", posterior=False, states=b_states, spec=b_spec, manifest=b_manifest,
                 overrides=b_overrides)
    return a, b


# ----------------------------------------------------------------------------- the arithmetic


def test_pooled_shift_by_hand():
    assert pooled_shift(1.0, 0.3, 1.5, 0.4) == pytest.approx(0.5 / math.sqrt((0.09 + 0.16) / 2))
    out = pooled_shift([0, 0, 1, np.nan], [0, 0, 1, 1], [0, 2, 1, 1], [0, 0, 1, 1])
    assert out[0] == 0 and out[1] == np.inf and out[2] == 0 and np.isnan(out[3])


finite = st.floats(-1e6, 1e6, allow_nan=False)
spread = st.floats(1e-3, 1e3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(finite, spread, finite, spread, st.floats(-100, 100).filter(lambda c: abs(c) > 1e-3), finite)
def test_shift_is_antisymmetric_and_free_of_units(ma, sa, mb, sb, c, d):
    s = pooled_shift(ma, sa, mb, sb)
    assert pooled_shift(mb, sb, ma, sa) == pytest.approx(-s, rel=1e-9, abs=1e-9)
    # the same posteriors on another scale (x -> c x + d) moved by the same number of sds
    assert pooled_shift(c * ma + d, abs(c) * sa, c * mb + d, abs(c) * sb) == pytest.approx(
        np.sign(c) * s, rel=1e-6, abs=1e-6)


def test_rows_matched_by_labels_whatever_the_columns():
    a = pd.DataFrame({"estimand": ["x", "x", "y"], "state": ["01", "02", ""], "scale": "", "mean": [1.0, 2.0, 3.0],
                      "sd": [1.0, 1.0, 1.0], "lower": 0.0, "upper": 1.0})
    # B: another column order, an extra label column, rows reordered, one row gone, one new
    b = pd.DataFrame({"estimand": ["x", "x", "z"], "age": ["", "", "old"], "state": ["02", "01", ""], "scale": "",
                      "mean": [2.0, 3.5, 0.0], "sd": [1.0, 1.0, 1.0], "lower": 0.0, "upper": 1.0})
    t = compare_estimands(a, b)
    assert t["row"].tolist() == ["state = 01", "state = 02", "", "age = old"]
    assert t["status"].tolist() == ["both", "both", "removed", "added"]
    assert t["shift"].iloc[0] == pytest.approx(2.5) and t["shift"].iloc[1] == 0
    assert t["flagged"].tolist() == [True, False, False, False]


# ----------------------------------------------------------------------------- two run folders


def test_nothing_moved_between_identical_runs(tmp_path):
    a, b = _two(tmp_path)
    d = diff_runs(a, b)
    assert d.spec_diff == () and d.changes == () and not len(d.moved)
    assert d.table["shift"].abs().max() == 0
    assert d.summary()[0] == "spec.toml: identical"
    assert d.summary()[-1].startswith("no estimand row moved by more than 1 posterior sd (54 compared)")


def test_moved_groups_are_flagged_in_posterior_sd(tmp_path):
    means = state_means(0)
    moved = dict(means)
    moved["05"] = means["05"] + 0.06  # 2 sds of 0.03
    moved["09"] = means["09"] - 0.015  # half an sd: not flagged
    a, b = _two(tmp_path, b_states=moved)
    d = diff_runs(a, b)
    flagged = d.moved
    assert flagged["row"].tolist() == ["state = 05"]
    ta = pd.read_csv(a / "estimands.csv", dtype={"state": str}).set_index(["estimand", "state"])
    tb = pd.read_csv(b / "estimands.csv", dtype={"state": str}).set_index(["estimand", "state"])
    ra, rb = ta.loc[("support", "05")], tb.loc[("support", "05")]
    expected = (rb["mean"] - ra["mean"]) / math.sqrt((ra["sd"] ** 2 + rb["sd"] ** 2) / 2)
    assert flagged["shift"].iloc[0] == pytest.approx(expected)
    assert 1.5 < expected < 2.5
    assert "1 of 54 estimand rows moved by more than 1 posterior sd; largest: support [state = 05]" in d.summary()[-1]


def test_spec_diff_and_overrides(tmp_path):
    spec_b = SPEC.replace('formula = "y ~ treatment + (1 | state)"', 'formula = "y ~ treatment + age + (1 | state)"')
    a, b = _two(tmp_path, b_spec=spec_b, a_overrides=["fit.draws=300"], b_overrides=["fit.draws=300", "fit.seed=9"],
                b_manifest={"seed": 9, "inputs": {"data": {"path": "/somewhere/sample.csv", "sha256": "00" * 32},
                                                  "population": {"path": "/somewhere/pop.csv", "sha256": "ef" * 32}}})
    d = diff_runs(a, b)
    assert '-formula = "y ~ treatment + (1 | state)"' in d.spec_diff
    assert '+formula = "y ~ treatment + age + (1 | state)"' in d.spec_diff
    assert not any("applied with --set" in line for line in d.spec_diff)  # compared apart, as overrides
    summary = d.summary()
    assert summary[0] == "spec.toml: 1 line removed, 1 added"  # one line replaced (was "2 lines changed")
    assert summary[1] == "--set overrides differ (only in B: fit.seed=9)"
    assert summary[2] == "inputs: data changed"
    changes = {c.what: (c.a, c.b) for c in d.changes}
    assert changes["seed"] == ("7", "9")
    assert changes["data file content (sha256)"] == ("cd" * 6, "00" * 6)
    assert "population file content (sha256)" not in changes


def test_added_and_removed_estimands(tmp_path):
    spec_b = SPEC.replace("[estimands.support]\nby = [\"state\"]\n", "")
    a = make_run(tmp_path / "a", posterior=False)
    b = make_run(tmp_path / "b", posterior=False, spec=spec_b)
    tb = pd.read_csv(b / "estimands.csv", dtype=str, keep_default_na=False)
    tb = tb[tb.estimand != "support"]
    extra = tb.iloc[[0]].assign(estimand="new_one")
    pd.concat([tb, extra]).to_csv(b / "estimands.csv", index=False)
    d = diff_runs(a, b)
    assert len(d.removed) == 51 and set(d.removed["estimand"]) == {"support"}
    assert d.added["estimand"].tolist() == ["new_one"]
    assert "only in B (added): 1 rows of new_one" in d.summary()
    assert "only in A (removed): 51 rows of support" in d.summary()


def test_terminal_shows_moves_and_says_what_it_left_out(tmp_path):
    moved = dict(state_means(0))
    moved["05"] += 0.06
    a, b = _two(tmp_path, b_states=moved)
    d = diff_runs(a, b)
    rows, left = shown_rows(d)
    support = rows[rows.estimand == "support"]
    assert len(support) == 12 and "state = 05" in support["row"].tolist()
    assert left == {"support": 39}
    rows_all, left_all = shown_rows(d, show_all=True)
    assert len(rows_all) == 54 and left_all == {}


def test_html_page_of_a_diff_is_self_contained(tmp_path):
    moved = dict(state_means(0))
    moved["05"] += 0.06
    a, b = _two(tmp_path, b_states=moved)
    (a / "report.html").write_text("<!DOCTYPE html>")
    html = render_html(diff_runs(a, b))
    assert html.count("<svg") == 1
    # nothing loaded; a link to each run's own page where it has one (A here, not B)
    assert re.search(r'\bsrc="(?!data:)|<(?!a )[a-z]+ [^>]*\bhref="(?!#|data:)', html) is None
    assert html.count(f'<a href="{(a / "report.html").resolve().as_uri()}">its report</a>') == 1
    assert html.count(">its report</a>") == 1
    assert '<td class="bad">moved</td>' in html
    body = re.search(r'<table class="sortable" id="t-diff">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert body.count("<tr>") == 54


# ----------------------------------------------------------------------------- the command


def test_mrp_diff_command(tmp_path):
    moved = dict(state_means(0))
    moved["05"] += 0.06
    a, b = _two(tmp_path, b_states=moved)
    runner = CliRunner()
    res = runner.invoke(app, ["diff", str(a), str(b), "--html", str(tmp_path / "d.html")])
    assert res.exit_code == 0, res.output
    assert "1 of 54 estimand rows moved by more than 1 posterior sd" in res.output
    assert "not shown (within the threshold; --all shows them): support: 39 rows" in res.output
    assert (tmp_path / "d.html").read_text().startswith("<!DOCTYPE html>")
    res = runner.invoke(app, ["diff", str(a), str(b), "--json"])
    doc = json.loads(res.stdout)
    assert doc["ok"] and len(doc["estimands"]) == 54
    flagged = [r for r in doc["estimands"] if r["flagged"]]
    assert [r["row"] for r in flagged] == ["state = 05"]
    res = runner.invoke(app, ["diff", str(a), str(b), "--all"])
    assert res.exit_code == 0 and "not shown" not in res.output
    assert all(s in res.output for s in STATES[:3])


@pytest.mark.parametrize("which", ["a", "b"])
def test_mrp_diff_refuses_a_folder_that_is_not_a_run(tmp_path, which):
    a = make_run(tmp_path / "a", posterior=False)
    (tmp_path / "plain").mkdir()
    args = [str(tmp_path / "plain"), str(a)] if which == "a" else [str(a), str(tmp_path / "plain")]
    res = CliRunner().invoke(app, ["diff", *args])
    assert res.exit_code == EXIT_USAGE
    assert str(tmp_path / "plain") in res.output and "not a run folder" in res.output
    res = CliRunner().invoke(app, ["diff", *args, "--json"])
    assert res.exit_code == EXIT_USAGE and json.loads(res.stdout)["errors"][0]["file"] == str(tmp_path / "plain")


def test_mrp_diff_html_to_a_folder_is_a_usage_error(tmp_path):
    a = make_run(tmp_path / "a", posterior=False)
    res = CliRunner().invoke(app, ["diff", str(a), str(a), "--html", str(tmp_path)])
    assert res.exit_code == EXIT_USAGE
    assert f"{tmp_path}: is a folder, not a file to write the page to" in res.output


def test_a_decision_that_changed_is_named_though_no_estimate_moved_far(tmp_path):
    """The lift's chance to win fell from near certainty to a coin toss: the decision in words
    changed, said in the summary, the terminal, the JSON and the page, with the numbers behind it."""
    a = make_run(tmp_path / "a", posterior=False)
    b = make_run(tmp_path / "b", posterior=False, treatment=0.05)
    d = diff_runs(a, b)
    assert [(c.estimand, c.row) for c in d.decisions] == [("lift", "treatment vs control")]
    change = d.decisions[0]
    assert change.a.startswith("treatment almost certainly ahead; practically different")
    assert change.b.startswith("neither clearly ahead")
    numbers = dict((n, (x, y)) for n, x, y in change.numbers)
    assert numbers["chance_to_win"][0] > 0.99 and 0.2 < numbers["chance_to_win"][1] < 0.8
    assert any(line.startswith('1 decision changed; lift [treatment vs control]: "treatment almost')
               for line in d.summary())
    res = CliRunner().invoke(app, ["diff", str(a), str(b), "--json"])
    doc = json.loads(res.stdout)
    assert doc["decisions_changed"][0]["numbers"]["chance_to_win"][0] > 0.99
    res = CliRunner().invoke(app, ["diff", str(a), str(b)])
    assert "decisions that changed" in res.output and "chance to win >99.9% ->" in res.output
    assert "Decisions that changed" in render_html(d)
    assert diff_runs(a, a).decisions == ()


def test_rounding_is_no_change_and_no_largest_move():
    """A rerun whose sums were taken in another order moves a mean by 5.6e-17: shown as 0, and the
    summary names no "largest: +0.00 sd"."""
    a = pd.DataFrame({"estimand": ["x", "y"], "mean": [0.521, 0.3], "sd": [0.013, 0.02], "lower": 0.0, "upper": 1.0})
    b = a.assign(mean=[0.521 + 5.551e-17, 0.3])
    t = compare_estimands(a, b)
    assert t["change"].tolist() == [0.0, 0.0] and t["shift"].tolist() == [0.0, 0.0]
    assert compare_estimands(a, a.assign(mean=[0.5211, 0.3]))["change"].iloc[0] == pytest.approx(1e-4)
