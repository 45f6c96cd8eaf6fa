"""mrp batch without sampling: each run's warnings and its page's verdict carried into its record,
batch.csv, batch.json, index.html and the console (its status never "ok" beside a failed check);
index.html's estimands side by side and the variants' keys; the stacking weight of a run that
failed its checks remarked."""

from __future__ import annotations


import json
from types import SimpleNamespace

from markupsafe import escape

import pandas as pd
import pytest
from test_batch_rerun import _spec, run_folder

from mrp_formula.commands import batch as b
from mrp_formula.output.report.batch import context, write_index

CALIBRATE_BIAS = ("calibrate: the known mean lies outside the model's 95% interval for 2 of 5 levels of state "
                  "(the largest shift 1.2 on the logit scale): the sample misses something the known figures "
                  "hold")
MIXING = "model parameters mix poorly (R-hat 1.050, bulk ESS 120)"
ESS = "too few effective draws of the estimands (90 < 400)"

# (warnings, failed checks, --strict) -> (status, exit code, verdict): the verdict is the run page's
VERDICTS = [
    pytest.param((), (), False, "ok", 0, "ok", id="clean"),
    pytest.param((CALIBRATE_BIAS,), (), False, "warned", 0, "look at this", id="calibrate warning"),
    # the page calls poorly mixing parameters beside converged estimands a note, not a warning
    pytest.param((MIXING,), (), False, "ok", 0, "ok", id="parameters mix poorly"),
    pytest.param((ESS,), (ESS,), False, "checks failed", 0, "do not use", id="failed check"),
    pytest.param((ESS,), (ESS,), True, "failed", 5, "do not use", id="failed check under --strict"),
]


@pytest.mark.parametrize("warnings, failed, strict, status, code, verdict", VERDICTS)
def test_a_run_carries_its_warnings_and_its_pages_verdict(tmp_path, monkeypatch, warnings, failed, strict, status,
                                                          code, verdict):
    spec = _spec(tmp_path)
    out = tmp_path / "out"

    def fake_run(path, *, out, overrides, refit, spec_text):  # `mrp run` as far as the batch reads it
        run_folder(out, path, overrides, warnings=warnings, failed=failed)
        return SimpleNamespace(failed=failed, estimands=pd.read_csv(out / "estimands.csv"),
                               manifest={"fit_cache": {"reused": False}})

    monkeypatch.setattr("mrp_formula.commands.run.run", fake_run)
    task = b.RunTask(index=0, spec=str(spec), spec_text=spec.read_text(), variant="base", overrides=(),
                     out=str(out / "ab"), strict=strict)
    rec = b.run_task(task)
    assert (rec.status, rec.exit_code, rec.verdict) == (status, code, verdict)
    assert rec.warnings == warnings and rec.failed_checks == failed
    assert not (rec.status == "ok" and rec.failed_checks)
    row = b.batch_table([rec], []).iloc[0]
    assert row["warnings"] == "; ".join(warnings) and row["verdict"] == verdict and row["status"] == status
    setting = b.BatchSetting(out=out, files=(spec,), overrides=(), strict=strict, scheduler=None, workers=1)
    b.write_batch(setting, [rec], (), 1.0)
    doc = json.loads((out / "batch.json").read_text())["runs"]["ab"]
    assert doc["warnings"] == list(warnings) and doc["verdict"] == verdict and doc["status"] == status
    index = (out / "index.html").read_text()
    assert verdict in index and all(str(escape(w)) in index for w in warnings)
    # a rerun reads the same from the folder
    again = b.current_record(task, b.run_key(b.load_spec(spec), ()))
    if not strict:
        assert (again.verdict, again.warnings) == (verdict, warnings)


def _record(run, rows=(), verdict="ok", status="ok", sets=(), failed=(), variant="base"):
    return b.RunRecord(index=0, spec="/specs/ab.toml", variant=variant, run=run, status=status, exit_code=0,
                       verdict=verdict, rows=tuple(rows), group_columns=("treatment",), sets=tuple(sets),
                       failed_checks=tuple(failed))


def _row(treatment, mean):
    return {"estimand": "click_rate", "treatment": treatment, "mean": mean, "lower": mean - 0.1,
            "upper": mean + 0.1}


def _comparison(weights):
    table = pd.DataFrame({"model": ["ab", "ab.tight"], "elpd_loo": [-10.0, -10.5], "se": [1.0, 1.0],
                          "elpd_diff": [0.0, 0.5], "diff_se": [0.0, 0.3], "weight": weights, "formula": ["f", "f"]})
    return b.Comparison(spec="/specs/ab.toml", name="ab", runs=("ab", "ab.tight"), table=table,
                        stacked=({**_row("control", 0.31), "scale": None, "first": None, "second": None},))


def test_index_shows_the_estimands_as_a_table_of_estimand_rows_by_run(tmp_path):
    """Stacked rows come from the draws, which also name a contrast's first and second levels: they
    are not labels (the label column reads "b vs a"), so the stacked row meets the runs' row."""
    records = [_record("ab", [_row("control", 0.3), _row("treatment", 0.4)]),
               _record("ab.tight", [_row("control", 0.35)], sets=['model.priors.treatment="Normal(0, 0.1)"'],
                       variant="tight")]
    ctx = context(tmp_path, records, [_comparison([0.6, 0.4])], {"overrides": ["fit.draws=100"]})
    table = ctx["estimands"]
    assert table["labels"] == ["estimand", "treatment"] and table["runs"] == ["ab", "ab.tight", "ab.stacked"]
    assert table["rows"] == [
        {"labels": ["click_rate", "control"], "cells": ["0.3 [0.2, 0.4]", "0.35 [0.25, 0.45]", "0.31 [0.21, 0.41]"]},
        {"labels": ["click_rate", "treatment"], "cells": ["0.4 [0.3, 0.5]", "", ""]}]
    (comp,) = ctx["comparisons"]
    assert [r["sets"] for r in comp["rows"]] == ["", 'model.priors.treatment="Normal(0, 0.1)"']
    html = write_index(tmp_path, records, [_comparison([0.6, 0.4])], {"overrides": ["fit.draws=100"]}).read_text()
    assert '<th scope="col" class="num">ab.tight</th>' in html and "<td class=\"num\">0.35 [0.25, 0.45]</td>" in html
    assert "Normal(0, 0.1)" in html and "fit.draws=100" in html


@pytest.mark.parametrize("weights, failed_run, remarked", [
    ([0.9, 0.1], "ab", True),  # the weight goes to the run that failed its checks
    ([1.0, 2e-16], "ab.tight", False),  # a failed run without weight changes nothing
    ([0.6, 0.4], None, False),
])
def test_stacking_weight_on_a_run_that_failed_its_checks_is_remarked(weights, failed_run, remarked):
    records = [_record(r, verdict="do not use" if r == failed_run else "ok", failed=(ESS,) if r == failed_run else ())
               for r in ("ab", "ab.tight")]
    notes = b.weighed_against_checks(_comparison(weights), records).notes
    assert bool(notes) == remarked
    if remarked:
        assert "the stacking weight 0.90 goes to ab, which failed its checks (too few effective draws" in notes[0]
