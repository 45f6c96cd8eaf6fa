"""`mrp init --template`: every template writes a spec and its example data that `mrp check` accepts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.commands.init import TEMPLATES

runner = CliRunner()


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_each_template_passes_check(tmp_path, template):
    spec = tmp_path / template / f"{template}.toml"
    r = runner.invoke(app, ["init", str(spec), "--template", template])
    assert r.exit_code == 0, r.output
    for name in TEMPLATES[template].data:
        assert (spec.parent / name).is_file()
    r = runner.invoke(app, ["check", str(spec), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["estimands"]


def test_existing_data_is_kept(tmp_path):
    (tmp_path / "clicks.csv").write_text("mine")
    r = runner.invoke(app, ["init", str(tmp_path / "ab.toml")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "clicks.csv").read_text() == "mine"
    assert "kept" in r.stderr


def test_an_unknown_template_is_a_usage_error(tmp_path):
    r = runner.invoke(app, ["init", str(tmp_path / "x.toml"), "--template", "nope"])
    assert r.exit_code == 2
    assert not (tmp_path / "x.toml").exists()
