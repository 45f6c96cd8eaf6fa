"""mrp_formula.cli: what the user sees when a command is interrupted."""

from __future__ import annotations

import json

import pytest
from conftest import AB_SPEC

from mrp_formula import cli
from mrp_formula.commands import run as run_mod


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt


def _run_stopped(monkeypatch, capsys, stop, as_json: bool):
    """`mrp run` whose work is stopped by ``stop``: its exit code and what it wrote."""
    monkeypatch.setattr(run_mod, "run", stop)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", str(AB_SPEC), "--no-progress"] + (["--json"] if as_json else []))
    return exit_.value.code, capsys.readouterr()


@pytest.mark.parametrize("as_json", [True, False])
def test_an_interrupt_exits_130_and_says_so(monkeypatch, capsys, as_json):
    code, out = _run_stopped(monkeypatch, capsys, _interrupted, as_json)
    assert code == 130
    assert "interrupted: earlier results are untouched" in out.err
    if as_json:  # --json: an error object on stdout, as for every other exit code
        answer = json.loads(out.out)
        assert answer["ok"] is False and answer["exit_code"] == 130
        assert answer["errors"][0]["message"] == "interrupted: earlier results are untouched"
    else:
        assert out.out == ""


def _terminated(*args, **kwargs):
    from mrp_formula.errors import Terminated

    raise Terminated()


@pytest.mark.parametrize("as_json", [True, False])
def test_sigterm_exits_143_and_says_so(monkeypatch, capsys, as_json):
    code, out = _run_stopped(monkeypatch, capsys, _terminated, as_json)
    assert code == 143
    assert "terminated (SIGTERM): earlier results are untouched" in out.err
    if as_json:
        assert json.loads(out.out)["exit_code"] == 143


def test_sigterm_raises_an_interrupt_that_cleans_up():
    """SIGTERM (timeout, systemd, Slurm) raises where Ctrl-C would: a staged folder is removed."""
    import os
    import signal

    from mrp_formula import system
    from mrp_formula.errors import Terminated

    before = signal.getsignal(signal.SIGTERM)
    try:
        system.terminate_as_interrupt()
        with pytest.raises(KeyboardInterrupt) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler runs between bytecodes
                pass
        assert isinstance(caught.value, Terminated) and system.terminated()
    finally:
        signal.signal(signal.SIGTERM, before)
        system._TERMINATED.clear()


@pytest.mark.parametrize("raised, code, said", [
    ("Terminated", 143, "terminated (SIGTERM): earlier results are untouched"),
    ("KeyboardInterrupt", 130, "interrupted: earlier results are untouched"),
])
def test_an_interrupt_while_a_command_is_imported_is_said(monkeypatch, capsys, raised, code, said):
    """Typer turns an interrupt outside the command's work into a quiet 130 (the review: SIGTERM in
    the first second of `mrp run` exited 130 and said nothing)."""
    from mrp_formula import errors, system

    cli._SAID.clear()

    def interrupted(*args, **kwargs):
        if raised == "Terminated":
            system._TERMINATED.set()  # as the SIGTERM handler does
        raise getattr(errors, raised, KeyboardInterrupt)()

    monkeypatch.setattr(cli, "_setup_logging", interrupted)  # the first thing `mrp check` does
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["check", str(AB_SPEC)])
    finally:
        system._TERMINATED.clear()
    assert exit_.value.code == code and said in capsys.readouterr().err
