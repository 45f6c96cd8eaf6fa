"""What `mrp batch` tells the user while it runs, without a cluster: the workers and the Dask
dashboard's address once the cluster is up, then one line per finished run with the counts
(done, running, queued, failed) and its verdict when it is not ok; the closing table (the numbers
first, columns empty in every row dropped); and the dashboard's address read from a scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrp_formula.cli import main
from mrp_formula.commands import batch as b
from mrp_formula.commands.scheduler import Scheduler


class _Cluster:
    dashboard = "http://127.0.0.1:8787/status"

    def describe(self) -> str:
        return "2 Dask worker(s) on a local cluster"


def _record(run, status="ok", code=0, error="", fit="sampled"):
    return b.RunRecord(index=0, spec=f"/specs/{run}.toml", variant="base", run=run, status=status, exit_code=code,
                       error=error, fit=fit, seconds=2.5)


def test_progress_lines_and_the_dashboard_address(monkeypatch, capsys, tmp_path):
    ok, bad = _record("ab"), _record("nodata", "failed", 4, "nodata.toml: data.source: no such file")

    def fake_batch(specs, *, on_event, on_ready, **kwargs):
        on_event("start", None, {"total": 2, "done": 0, "running": 0, "queued": 0, "failed": 0, "current": 0})
        on_ready(_Cluster())
        on_event("ok", ok, {"total": 2, "done": 1, "running": 1, "queued": 0, "failed": 0, "current": 0})
        on_event("failed", bad, {"total": 2, "done": 1, "running": 0, "queued": 0, "failed": 1, "current": 0})
        table = b.batch_table([ok, bad], ())
        return b.BatchResult(table=table, records=(ok, bad), comparisons=(), out=Path(tmp_path), exit_code=4)

    monkeypatch.setattr(b, "batch", fake_batch)
    with pytest.raises(SystemExit) as e:
        main(["batch", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 4
    assert "batch: 2 run(s)" in err
    assert "2 Dask worker(s) on a local cluster; dashboard: http://127.0.0.1:8787/status" in err
    assert "[1/2 done, 1 running, 0 queued, 0 failed] ab: sampled (2.5 s)" in err
    assert "[1/2 done, 0 running, 0 queued, 1 failed] nodata: failed (exit 4): nodata.toml: data.source" in err


def test_a_long_error_does_not_squeeze_the_closing_table(monkeypatch, capsys, tmp_path):
    """The closing table keeps every column readable: a long error is cut there (whole in the
    progress line and batch.csv)."""
    long = "diagnostics failed under --strict: 13 divergent transitions: " + "the sampler missed part " * 6
    bad = _record("funnel", "failed", 5, long)

    def fake_batch(specs, *, on_event, on_ready, **kwargs):
        table = b.batch_table([_record("ab"), bad], ())
        return b.BatchResult(table=table, records=(_record("ab"), bad), comparisons=(), out=Path(tmp_path),
                             exit_code=5)

    monkeypatch.setattr(b, "batch", fake_batch)
    with pytest.raises(SystemExit):
        main(["batch", str(tmp_path), "--out", str(tmp_path / "out")])
    table = capsys.readouterr().err
    assert "│ funnel " in table and "│ failed " in table and "divergent…" in table


def _row(treatment, mean):
    return {"estimand": "click_rate", "treatment": treatment, "mean": mean, "lower": mean - 0.1,
            "upper": mean + 0.1}


def _estimated(run, rows):
    return b.RunRecord(index=0, spec="/specs/ab.toml", variant="base", run=run, status="ok", exit_code=0,
                       verdict="ok", rows=tuple(rows), group_columns=("treatment",))


def _cli_table(monkeypatch, capsys, tmp_path, records):
    def fake_batch(specs, *, on_event, on_ready, **kwargs):
        for r in records:
            on_event(r.status, r, {"total": 1, "done": 1, "running": 0, "queued": 0, "failed": 0, "current": 0})
        return b.BatchResult(table=b.batch_table(records, ()), records=tuple(records), comparisons=(),
                             out=Path(tmp_path), exit_code=0)

    monkeypatch.setattr(b, "batch", fake_batch)
    with pytest.raises(SystemExit):
        main(["batch", str(tmp_path), "--out", str(tmp_path / "out")])
    return capsys.readouterr().err


def test_the_closing_table_shows_the_numbers_first_and_drops_empty_columns(monkeypatch, capsys, tmp_path):
    rows = [{**_row("control", 0.312345), "scale": None, "sd": 0.05}, {**_row("treatment", 0.412345), "sd": 0.05}]
    err = _cli_table(monkeypatch, capsys, tmp_path, [_estimated("primer-variants.no_state_predictors", rows)])
    header = next(line for line in err.splitlines() if "estimand" in line)
    names = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert names[:6] == ["run", "estimand", "treatment", "mean", "lower", "upper"]
    assert "error" not in names and "exit_code" not in names  # empty for every run
    assert "0.3123" in err and "0.2123" in err and "0.4123" in err  # whole at the console's 80 columns


def test_the_console_says_a_runs_verdict_and_why(monkeypatch, capsys, tmp_path):
    rec = b.RunRecord(index=0, spec="/specs/ab.toml", variant="base", run="ab", status="warned", exit_code=0,
                      verdict="look at this", warnings=("calibrate: the known mean lies outside ...",),
                      reasons=("calibrate: the known mean lies outside the model's 95% interval",), fit="sampled")
    err = _cli_table(monkeypatch, capsys, tmp_path, [rec])
    assert "ab: sampled (0.0 s); look at this: calibrate: the known mean lies outside" in err


class _Client:
    def __init__(self, info):
        self.info = info

    def scheduler_info(self):
        return self.info


@pytest.mark.parametrize("info, shown", [
    ({"address": "tcp://10.0.0.5:8786", "services": {"dashboard": 8787}}, "http://10.0.0.5:8787/status"),
    ({"address": "tcp://10.0.0.5:8786", "services": {}}, None),  # started with --no-dashboard
])
def test_the_dashboard_address_comes_from_the_scheduler(info, shown):
    s = Scheduler(address="tcp://10.0.0.5:8786")
    s._client = _Client(info)
    assert s.dashboard == shown
    s._client = None

