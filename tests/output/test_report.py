"""The run folder is replaced atomically; an interrupted write leaves the old one; other
commands' sub-folders survive a new run."""

from __future__ import annotations

import pytest

from mrp_formula.output.files import staged_dir

EARLIER = '{"written_by": "mrp-formula", "files": ["estimands.csv", "manifest.json"]}'  # an earlier run's


def test_replaces_and_keeps_other_subfolders(tmp_path):
    out = tmp_path / "run"
    (out / "recovery").mkdir(parents=True)
    (out / "recovery" / "recovery.csv").write_text("kept")
    (out / "recovery" / "manifest.json").write_text('{"written_by": "mrp-formula"}')
    (out / "estimands.csv").write_text("old")
    (out / "manifest.json").write_text(EARLIER)
    with staged_dir(out) as tmp:
        (tmp / "estimands.csv").write_text("new")
    assert (out / "estimands.csv").read_text() == "new"
    assert (out / "recovery" / "recovery.csv").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folders left


def test_failure_inside_leaves_previous_results(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "estimands.csv").write_text("old")
    (out / "manifest.json").write_text(EARLIER)
    with pytest.raises(RuntimeError):
        with staged_dir(out) as tmp:
            (tmp / "estimands.csv").write_text("half")
            raise RuntimeError("interrupted")
    assert (out / "estimands.csv").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
