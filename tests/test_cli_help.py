"""`mrp --help`: each command's help is its docstring's paragraphs, unwrapped for the terminal."""

from __future__ import annotations

from typer.testing import CliRunner

from mrp_formula.cli import app


def test_help_wraps_at_the_terminal_not_where_the_source_did():
    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0
    for cmd in app.registered_commands:
        assert cmd.short_help and "\n" not in cmd.short_help, cmd.name
        assert cmd.short_help.replace("\\[", "[") in " ".join(r.output.replace("│", " ").split()), cmd.name
