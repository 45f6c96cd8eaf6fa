"""`mrp run --format`, usage errors as JSON, `--set a=1 b=2`, and the progress shown on stderr."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from mrp_formula.cli import LiveProgress, PhaseLines, expand_set, main, print_table, reporter_for
from mrp_formula.errors import Problem
from mrp_formula.progress import SILENT, ChainState

ROOT = Path(__file__).resolve().parents[2]


def _main(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_bad_option_value_is_a_json_error_with_json(capsys, tmp_path):
    code, out, _ = _main(capsys, "run", str(tmp_path / "x.toml"), "--format", "xml", "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["ok"] is False and doc["exit_code"] == 2
    assert doc["errors"][0]["key"] == "--format" and "xml" in doc["errors"][0]["message"]


def test_missing_argument_is_a_json_error_with_json(capsys):
    code, out, _ = _main(capsys, "run", "--json")
    assert code == 2
    assert json.loads(out)["errors"][0]["message"] == "Missing argument 'spec'."


def test_bad_option_value_without_json_is_text_on_stderr(capsys, tmp_path):
    code, out, err = _main(capsys, "run", str(tmp_path / "x.toml"), "--format", "xml")
    assert code == 2 and out == ""
    assert "--format" in err


def test_json_and_a_other_format_conflict(capsys, tmp_path):
    code, out, _ = _main(capsys, "run", str(tmp_path / "x.toml"), "--format", "csv", "--json")
    assert code == 2
    assert json.loads(out)["errors"][0]["key"] == "--format"


def test_missing_spec_with_json(capsys, tmp_path):
    code, out, _ = _main(capsys, "run", str(tmp_path / "nope.toml"), "--format", "csv", "--json")
    assert code == 2  # the conflict is found before the file is looked for
    code, out, _ = _main(capsys, "run", str(tmp_path / "nope.toml"), "--json")
    assert code == 3 and json.loads(out)["errors"][0]["message"] == "spec file not found"


@pytest.mark.parametrize("args, expected", [
    (["run", "s.toml", "--set", "a=1", "b=2", "--json"], ["run", "s.toml", "--set", "a=1", "--set", "b=2", "--json"]),
    (["run", "--set", "a=1", "b=2", "s.toml"], ["run", "--set", "a=1", "--set", "b=2", "s.toml"]),
    (["run", "--set", "a=1", "--set", "b=2", "c=3"], ["run", "--set", "a=1", "--set", "b=2", "--set", "c=3"]),
    (["run", "s.toml", "--set", "a=1", "--", "b=2"], ["run", "s.toml", "--set", "a=1", "--", "b=2"]),
    (["run", "s.toml", "--out", "x=y"], ["run", "s.toml", "--out", "x=y"]),
])
def test_one_set_takes_every_key_value_after_it(args, expected):
    assert expand_set(args) == expected


def test_set_takes_both_through_main(capsys, ab_dir):
    """Both overrides reach the spec: the second one's error proves it was read."""
    code, out, _ = _main(capsys, "check", str(ab_dir / "ab.toml"), "--set", "fit.draws=100", "fit.chainz=2",
                         "--json")
    assert code == 3
    assert "fit.chainz" in json.dumps(json.loads(out)["errors"])


def test_a_problem_of_no_file_names_none():
    assert Problem("R-hat too high", key="diagnostics").render() == "diagnostics: R-hat too high"
    assert Problem("m", key="k", file="s.toml", line=3).render() == "s.toml:3: k: m"


def test_phase_lines_say_each_phase_with_seconds():
    buf = io.StringIO()
    r = PhaseLines(Console(file=buf, width=100))
    r.phase("checking spec")
    r.phase("sampling 2 chains x 10 draws")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("s] checking spec") and lines[1].endswith("s] sampling 2 chains x 10 draws")


def test_live_progress_shows_chains_draws_and_divergences():
    buf = io.StringIO()
    r = LiveProgress(Console(file=buf, width=120, force_terminal=True))
    r.phase("sampling 2 chains x 100 draws")
    r.chains((ChainState(0, 150, 200, 3, False, True), ChainState(1, 40, 200, 0, True, True)))
    r.done()
    text = buf.getvalue()
    assert "chain 1" in text and "chain 2" in text
    assert "150/200" in text and "3 divergences" in text and "warmup" in text


def test_quiet_or_no_terminal():
    assert reporter_for(quiet=True) is SILENT
    assert type(reporter_for(quiet=False)) is PhaseLines  # pytest's stderr is not a terminal


@pytest.mark.slow
def test_format_csv_is_estimands_csv_and_phases_on_stderr(ab_dir, tmp_path, capsys):
    out = tmp_path / "run"
    cmd = ["run", str(ab_dir / "ab.toml"), "--out", str(out), "--set", "fit.draws=100", "fit.tune=100"]
    code, stdout, stderr = _main(capsys, *cmd, "--format", "csv")
    assert code == 0, stderr
    assert stdout == (out / "estimands.csv").read_text()
    phases = ["checking spec", "reading data", "compiling model", "sampling 2 chains x 100 draws",
              "poststratifying", "writing"]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("[")]
    assert [ln.split("] ", 1)[1] for ln in lines] == phases
    assert "posterior of the estimands" not in stderr  # the table went to stdout, as csv

    # in this process, from the cached fit: json records, and --quiet says nothing of phases
    code, stdout, stderr = _main(capsys, *cmd, "--format", "json", "--quiet")
    assert code == 0, stderr
    rows = json.loads(stdout)
    table = pd.read_csv(out / "estimands.csv")
    assert [r["estimand"] for r in rows] == list(table["estimand"])
    assert list(rows[0]) == list(table.columns)
    assert not [ln for ln in stderr.splitlines() if ln.startswith("[")]


def test_table_labels_stay_whole_and_unescaped():
    buf = io.StringIO()
    df = pd.DataFrame({"label": ["click_rate[treatment=control]", "lift[treatment=treatment vs control]"],
                       **{f"number_{i}": [0.123456, 12.5] for i in range(8)}})
    print_table(df, "recovery", Console(file=buf, width=100))
    text = buf.getvalue()
    assert "lift[treatment=treatment vs control]" in text and "click_rate[treatment=control]" in text
    assert "\\[" not in text and "0.1235" in text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a pty")
def test_on_a_terminal_the_live_display_is_chosen_and_draws():
    """In a pseudo-terminal (no sampling: the display is fed chain states by hand)."""
    import pty

    code = ("from mrp_formula.cli import reporter_for\n"
            "from mrp_formula.progress import ChainState\n"
            "r = reporter_for(quiet=False)\n"
            "print(type(r).__name__, flush=True)\n"
            "r.phase('sampling 1 chain x 10 draws')\n"
            "r.chains((ChainState(0, 7, 20, 2, False, True),))\n"
            "r.done()\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the terminal
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out.extend(chunk)
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.WEXITSTATUS(status) == 0, text
    assert "LiveProgress" in text and "chain 1" in text and "7/20" in text and "2 divergences" in text


def test_write_estimands_to_stdout(tmp_path, capsys):
    from types import SimpleNamespace

    from mrp_formula.cli import write_estimands

    table = pd.DataFrame({"estimand": ["rate"], "scale": [""], "mean": [0.5], "lower": [0.4], "upper": [0.6]})
    table.to_csv(tmp_path / "estimands.csv", index=False)
    result = SimpleNamespace(out=tmp_path, estimands=table)
    write_estimands(result, "csv", "t")
    assert capsys.readouterr().out == (tmp_path / "estimands.csv").read_text()
    write_estimands(result, "json", "t")
    assert json.loads(capsys.readouterr().out) == [{"estimand": "rate", "scale": None, "mean": 0.5, "lower": 0.4,
                                                    "upper": 0.6}]
    write_estimands(result, "table", "the title")
    out = capsys.readouterr()
    assert "the title" in out.out and "rate" in out.out and out.err == ""


# --------------------------------------------------------------------------- the process's exit

_ENTRY = """
import atexit, sys
mark = sys.argv[1]
atexit.register(lambda: open(mark, "w").write("handlers ran"))
sys.argv = ["mrp", *sys.argv[2:]]
from mrp_formula.cli import main
main()
"""


def _entry(tmp_path, *args):
    """The `mrp` entry point in a fresh process (as the console script calls it), and whether the
    process's exit handlers ran."""
    import subprocess

    mark = tmp_path / "atexit.txt"
    done = subprocess.run([sys.executable, "-c", _ENTRY, str(mark), *args], capture_output=True, text=True,
                          timeout=120)
    return done, mark.is_file() and mark.read_text() == "handlers ran"


def test_the_entry_point_ends_with_all_its_output_and_handlers(tmp_path):
    """The command line skips the interpreter's teardown: the exit code, every byte written to a
    pipe and the exit handlers must survive that."""
    done, handled = _entry(tmp_path, "schema")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"]  # the whole schema, flushed: it parses
    assert handled


def test_the_entry_point_keeps_a_failing_exit_code(tmp_path):
    done, handled = _entry(tmp_path, "check", str(tmp_path / "missing.toml"), "--json")
    assert done.returncode == 3, done.stderr  # a spec error (the file is missing)
    assert json.loads(done.stdout)["ok"] is False
    assert handled


def test_a_contrast_of_two_subpopulations_is_not_a_choice_in_the_terminal():
    import pandas as pd

    from mrp_formula.cli import decision_lines

    df = pd.DataFrame({"estimand": ["gap", "lift"], "sex": ["f vs m", ""], "arm": ["", "B vs A"],
                       "scale": ["difference", "ratio"], "first": ["f", "B"], "second": ["m", "A"],
                       "chance_to_win": [0.23, 0.9], "expected_loss_first": [0.01, 0.001],
                       "expected_loss_second": [0.002, 0.02]})
    gap, lift = decision_lines(df, ("gap",))
    assert gap == "gap: chance that the average is higher for f than for m 23.0%"
    assert "beats" not in gap and "choose" not in gap
    assert "chance that B beats A 90.0%" in lift and "if you choose B" in lift
