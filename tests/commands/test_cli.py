"""The command line: what the user sees, and the exit codes."""

from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from mrp_formula.cli import app

runner = CliRunner()


def test_check_ok(ab_dir):
    r = runner.invoke(app, ["check", str(ab_dir / "ab.toml")])
    assert r.exit_code == 0, r.output
    assert "is valid" in r.stderr
    assert "fitting 4 binomial cells instead of 2000 rows" in r.stderr


def test_check_json(ab_dir):
    r = runner.invoke(app, ["check", str(ab_dir / "ab.toml"), "--json"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["cells_fitted"] == 4 and doc["population_cells"] == 2


def test_spec_error_exit_3_no_traceback(ab_dir):
    spec = ab_dir / "ab.toml"
    spec.write_text(spec.read_text().replace('family = "bernoulli"', 'family = "bernouli"'))
    r = runner.invoke(app, ["check", str(spec)])
    assert r.exit_code == 3
    assert "model.family" in r.stderr and "did you mean 'bernoulli'" in r.stderr
    assert "Traceback" not in r.output


def test_spec_error_json(ab_dir):
    spec = ab_dir / "ab.toml"
    spec.write_text(spec.read_text().replace("draws = 300", "draws = 0"))
    r = runner.invoke(app, ["run", str(spec), "--json"])
    assert r.exit_code == 3
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["errors"][0]["key"] == "fit.draws" and doc["errors"][0]["line"]


def test_data_error_exit_4(ab_dir):
    r = runner.invoke(app, ["check", str(ab_dir / "ab.toml"), "--set", 'model.formula="clicked ~ treatment + gendr + (1|gender)"'])
    assert r.exit_code == 4, r.output
    assert "predictor 'gendr' is not a column of the sample" in r.stderr and "did you mean 'gender'" in r.stderr


def test_missing_spec_file(tmp_path):
    r = runner.invoke(app, ["check", str(tmp_path / "nope.toml")])
    assert r.exit_code == 3
    assert "spec file not found" in r.stderr


def test_usage_error_exit_2():
    r = runner.invoke(app, ["run"])
    assert r.exit_code == 2


@pytest.mark.slow
def test_run_json_stdout_is_only_json(ab_dir, tmp_path):
    r = runner.invoke(app, ["run", str(ab_dir / "ab.toml"), "--json", "--out", str(tmp_path / "out"),
                            "--set", "fit.draws=200", "--set", "fit.tune=200"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    names = [row["estimand"] for row in doc["estimands"]]
    assert names == ["click_rate", "click_rate", "lift"]
    assert (tmp_path / "out" / "estimands.csv").exists()
    assert "divergences" in doc["diagnostics"]


def test_failed_run_leaves_earlier_results(ab_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "estimands.csv").write_text("earlier")
    r = runner.invoke(app, ["run", str(ab_dir / "ab.toml"), "--out", str(out), "--set", "fit.draws=0"])
    assert r.exit_code == 3
    assert (out / "estimands.csv").read_text() == "earlier"


@pytest.mark.parametrize("command, rarely", [("check", True), ("watch", False), ("batch", False)])
def test_a_process_that_ends_with_its_command_collects_garbage_rarely(command, rarely):
    import subprocess
    import sys

    from mrp_formula.cli import COLLECT_RARELY

    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('thresholds', *gc.get_threshold(), flush=True))\n"
            f"sys.argv = ['mrp', {command!r}, '--help']\n"
            "from mrp_formula.cli import main\nmain()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line = next(x for x in out.stdout.splitlines() if x.startswith("thresholds"))
    assert (tuple(int(v) for v in line.split()[1:]) == COLLECT_RARELY) is rarely


def test_the_terminal_table_gives_an_estimate_and_its_interval_the_same_decimals():
    """The trial: "0.521", "0.4998" and "0.5421" side by side."""
    import io

    import pandas as pd
    from rich.console import Console

    from mrp_formula.cli import print_table

    df = pd.DataFrame({"estimand": ["a"], "scale": [""], "mean": [0.521], "lower": [0.4998], "upper": [0.5421]})
    out = io.StringIO()
    print_table(df, "t", Console(file=out, width=120))
    assert "0.5210" in out.getvalue() and "0.4998" in out.getvalue() and "0.5421" in out.getvalue()
