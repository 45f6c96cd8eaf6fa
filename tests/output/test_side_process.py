"""The page's figures drawn by the side process are the ones the run would draw itself (the page
is the same byte for byte); a side process that cannot help returns nothing and costs nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _runfolder import make_run  # noqa: E402

from mrp_formula.output import side_process as S  # noqa: E402


def test_switched_off_it_starts_nothing_and_the_run_draws_the_figures(monkeypatch, tmp_path):
    monkeypatch.setenv(S.SWITCH, "0")
    side = S.SideProcess()
    side.start_figures(tmp_path)
    assert not S.may_help() and side._proc is None and side.figures() is None
    side.close()  # closing twice is harmless
    with S.SideProcess(enabled=False) as off:
        assert off._proc is None


@pytest.mark.slow  # starts a Python process and draws every figure twice
def test_the_side_process_draws_the_same_figures_as_this_one(monkeypatch, tmp_path):
    from mrp_formula.output.report.document import figures_of, render
    from mrp_formula.output.report.view import RunView

    monkeypatch.setenv(S.SWITCH, "1")
    monkeypatch.setattr(S.system, "cpu_count", lambda: 2)
    folder = make_run(tmp_path / "r", chains=2, draws=200)
    with S.SideProcess() as side:
        assert side._proc is not None
        side.start_figures(folder)
        got = side.figures()
    here = figures_of(folder)
    assert got == here and got["trace"] and got["trace"][0].markup.startswith("<svg")
    view = RunView.from_folder(folder)
    assert render(view, got) == render(view)


@pytest.mark.slow  # starts a Python process
def test_a_side_process_that_fails_returns_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(S.SWITCH, "1")
    monkeypatch.setattr(S.system, "cpu_count", lambda: 2)
    with S.SideProcess() as side:
        side.start_figures(tmp_path / "no such run")  # the process cannot read it and exits with an error
        assert side.figures() is None
    with S.SideProcess() as side:  # ended before it was given a folder: no process left behind
        proc = side._proc
    assert proc is not None and proc.poll() is not None


def test_only_the_switch_starts_it(monkeypatch):
    monkeypatch.setattr(S.system, "cpu_count", lambda: 2)
    monkeypatch.delenv(S.SWITCH, raising=False)
    assert not S.may_help()
    monkeypatch.setenv(S.SWITCH, "1")
    assert S.may_help()
    monkeypatch.setattr(S.system, "cpu_count", lambda: 1)
    assert not S.may_help()
