"""A run never destroys what it did not write (issue 9, item 12).

An existing folder that mrp-formula did not write is refused (exit 2 for --out, 3 for
report.out) before anything is fitted; with --into-existing the run's files are added and
nothing already there is removed or replaced. A run folder mrp-formula recognises (the marker
in its manifest) is replaced, keeping what the earlier run did not write. A failure leaves the
previous folder byte for byte, and the folder follows the user's umask.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mrp_formula
from mrp_formula.commands import run as pipeline
from mrp_formula.cli import app
from mrp_formula.errors import OutputError, SpecError, UsageError
from mrp_formula.output.files import Origin, WRITTEN_BY, inspect_folder, staged_dir

from conftest import AB_SPEC

runner = CliRunner()
FAST = ["fit.draws=60", "fit.tune=60", "fit.chains=2", "report.plots=false"]


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: file bytes, link targets, and folders, with their modes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", mode)
        else:
            out[rel] = (p.read_bytes(), mode)
    return out


def someones_work(folder: Path) -> Path:
    """A folder of someone's work: files, a sub-folder, a symlink."""
    (folder / "thesis").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "thesis" / "chapter1.tex").write_text("\\chapter{One}")
    (folder / "estimands_old.csv").write_text("a,b\n1,2\n")
    (folder / "latest").symlink_to("thesis")
    return folder


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def write_run(tmp: Path, names=("estimands.csv",), text="new") -> None:
    for n in names:
        (tmp / n).write_text(text)
    (tmp / "manifest.json").write_text(json.dumps({"name": "x"}))


# ----------------------------------------------------------------------------- the folder rules


def test_someones_folder_is_refused_and_untouched(tmp_path):
    out = someones_work(tmp_path / "work")
    before = tree(out)
    with pytest.raises(UsageError) as e:
        with staged_dir(out) as tmp:
            write_run(tmp)
    p = e.value.problems[0]
    assert e.value.exit_code == 2
    assert p.file == str(out) and p.key == "--out"
    assert "did not write" in p.message and "notes.txt" in p.message and "thesis/" in p.message
    assert "--into-existing" in p.hint and "--out" in p.hint
    assert tree(out) == before and leftovers(tmp_path) == []


def test_report_out_refusal_is_a_spec_error_with_its_line(tmp_path):
    out = someones_work(tmp_path / "work")
    origin = Origin("report.out", file="spec.toml", line=12)
    with pytest.raises(SpecError) as e:
        with staged_dir(out, origin=origin) as tmp:
            write_run(tmp)
    p = e.value.problems[0]
    assert e.value.exit_code == 3 and p.key == "report.out" and p.file == "spec.toml" and p.line == 12
    assert str(out) in p.message and "set report.out" in p.hint


def test_a_file_is_not_a_folder(tmp_path):
    out = tmp_path / "results"
    out.write_text("a file")
    with pytest.raises(UsageError, match="not a folder"):
        with staged_dir(out, into_existing=True) as tmp:
            write_run(tmp)
    assert out.read_text() == "a file"


def test_new_and_empty_folders_are_fine(tmp_path):
    for out in (tmp_path / "new" / "run", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        with staged_dir(out) as tmp:
            write_run(tmp)
        assert (out / "estimands.csv").read_text() == "new"
        m = json.loads((out / "manifest.json").read_text())
        assert m["written_by"] == WRITTEN_BY and m["files"] == ["estimands.csv", "manifest.json"]
        assert m["name"] == "x"  # what the command wrote is kept
        assert inspect_folder(out).kind == "own"


def test_into_existing_adds_and_keeps_everything(tmp_path):
    out = someones_work(tmp_path / "work")
    before = tree(out)
    with staged_dir(out, into_existing=True) as tmp:
        assert tmp.parent == out  # written inside the folder: its parent need not be writable
        write_run(tmp, ("estimands.csv", "ppc.csv"))
    after = tree(out)
    assert {k: v for k, v in after.items() if k in before} == before  # every file kept, byte for byte
    assert set(after) - set(before) == {"estimands.csv", "ppc.csv", "manifest.json"}
    assert leftovers(tmp_path) == []

    # the folder is now recognised: a second run needs no flag, replaces its own files, drops the
    # ones it no longer writes, and keeps the rest
    (out / "added_later.txt").write_text("mine too")
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv",), text="second")
    after = tree(out)
    assert (out / "estimands.csv").read_text() == "second" and not (out / "ppc.csv").exists()
    assert (out / "added_later.txt").read_text() == "mine too"
    assert {k: v for k, v in after.items() if k in before} == before
    assert os.readlink(out / "latest") == "thesis"
    assert leftovers(tmp_path) == []


def test_into_existing_never_replaces_a_file(tmp_path):
    out = someones_work(tmp_path / "work")
    (out / "estimands.csv").write_text("their estimands")
    before = tree(out)
    with pytest.raises(UsageError) as e:
        with staged_dir(out, into_existing=True) as tmp:
            write_run(tmp, ("estimands.csv", "ppc.csv"))
    assert "estimands.csv" in e.value.problems[0].message and "never replaces" in e.value.problems[0].message
    assert tree(out) == before and leftovers(tmp_path) == []


def test_into_existing_refuses_someone_elses_manifest(tmp_path):
    out = someones_work(tmp_path / "work")
    (out / "manifest.json").write_text('{"tool": "something else"}')
    before = tree(out)
    with pytest.raises(UsageError, match="manifest.json that mrp-formula did not write"):
        with staged_dir(out, into_existing=True) as tmp:
            write_run(tmp)
    assert tree(out) == before


def test_own_folder_replaced_keeping_what_it_did_not_write(tmp_path):
    """An earlier run's folder, with another command's results and the user's own file in it."""
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv", "old_plot.png"))
    with staged_dir(out / "recovery") as tmp:
        (tmp / "recovery.csv").write_text("recovered")
    (out / "my_reading_of_it.md").write_text("looks fine")
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv",), text="newer")
    assert sorted(p.name for p in out.iterdir()) == ["estimands.csv", "manifest.json", "my_reading_of_it.md",
                                                     "recovery"]
    assert (out / "recovery" / "recovery.csv").read_text() == "recovered"
    assert (out / "my_reading_of_it.md").read_text() == "looks fine"


def test_a_file_of_the_user_with_a_name_the_run_now_writes_is_refused(tmp_path):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv",))
    (out / "ppc.csv").write_text("the user's own ppc.csv")
    before = tree(out)
    with pytest.raises(UsageError, match="ppc.csv"):
        with staged_dir(out) as tmp:
            write_run(tmp, ("estimands.csv", "ppc.csv"))
    assert tree(out) == before


def test_older_run_folders_are_recognised(tmp_path):
    """Folders written before the marker existed: their manifests had mrp_formula (run, compare)
    or name + spec.sha256 (recover, prior); they are replaced without a flag, nothing else lost."""
    out = tmp_path / "run"
    (out / "recovery").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"mrp_formula": "0.1.0", "name": "ab"}))
    (out / "estimands.csv").write_text("old")
    (out / "recovery" / "manifest.json").write_text(json.dumps({"name": "ab", "spec": {"sha256": "0" * 64}}))
    (out / "recovery" / "recovery.csv").write_text("old recovery")
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv",))
    assert (out / "estimands.csv").read_text() == "new"
    assert (out / "recovery" / "recovery.csv").read_text() == "old recovery"


def test_a_folder_of_other_commands_results_is_ours(tmp_path):
    """`mrp recover` before any `mrp run` leaves runs/<name>/ holding only recovery/ (and a cache)."""
    out = tmp_path / "run"
    with staged_dir(out / "recovery") as tmp:
        (tmp / "recovery.csv").write_text("r")
    (out / ".mrp-cache").mkdir()
    (out / ".prior.tmp-0badc0de").mkdir()  # what a killed `mrp prior` left of its temporary folder
    (out / ".prior.tmp-0badc0de" / "prior_estimands.csv").write_text("half")
    assert inspect_folder(out).kind == "own"
    with staged_dir(out) as tmp:
        write_run(tmp)
    assert sorted(p.name for p in out.iterdir()) == [".mrp-cache", "estimands.csv", "manifest.json", "recovery"]


@pytest.mark.parametrize("into", [False, True])
def test_failure_while_writing_leaves_the_folder_byte_identical(tmp_path, into):
    out = tmp_path / "run"
    if into:
        someones_work(out)
    with staged_dir(out, into_existing=into) as tmp:
        write_run(tmp, ("estimands.csv", "ppc.csv"), text="first")
    before = tree(out)
    for exc in (RuntimeError("a step failed"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with staged_dir(out, into_existing=into) as tmp:
                write_run(tmp, ("estimands.csv",), text="half")
                raise exc
        assert tree(out) == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("umask,folder_mode,file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640),
                                                          (0o077, 0o700, 0o600)])
def test_run_folder_follows_the_umask(tmp_path, umask, folder_mode, file_mode):
    old = os.umask(umask)
    try:
        with staged_dir(tmp_path / "run") as tmp:
            write_run(tmp, ("estimands.csv",))
    finally:
        os.umask(old)
    out = tmp_path / "run"
    assert stat.S_IMODE(out.stat().st_mode) == folder_mode
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == file_mode, f.name


# ----------------------------------------------------------------------------- mrp run, as a user runs it


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder with the A/B data and spec, fitted once (later runs reuse the cached fit)."""
    from generate import simulate

    d = tmp_path_factory.mktemp("project")
    simulate(n=2000, seed=5).to_csv(d / "clicks.csv", index=False)
    (d / "ab.toml").write_text(textwrap.dedent(AB_SPEC).lstrip())
    old = os.umask(0o022)
    try:
        mrp_formula.run(d / "ab.toml", out=d / "runs" / "first", overrides=FAST)
    finally:
        os.umask(old)
    return d


@pytest.mark.slow
def test_mrp_run_refuses_someones_work_before_fitting(project, tmp_path):
    out = someones_work(tmp_path / "work")
    before = tree(out)
    r = runner.invoke(app, ["run", str(project / "ab.toml"), "--out", str(out), *sum([["--set", o] for o in FAST], [])])
    assert r.exit_code == 2, r.output
    assert str(out) in r.stderr and "notes.txt" in r.stderr and "--into-existing" in r.stderr
    assert "Traceback" not in r.output
    assert tree(out) == before
    assert not (tmp_path / ".mrp-cache").exists()  # refused before the fit, not after it


@pytest.mark.slow
def test_mrp_run_refuses_report_out_with_exit_3(project, tmp_path):
    out = someones_work(tmp_path / "work")
    spec = project / "ab_out.toml"
    spec.write_text((project / "ab.toml").read_text() + f'\n[report]\nout = "{out}"\n')
    r = runner.invoke(app, ["run", str(spec), "--json", *sum([["--set", o] for o in FAST], [])])
    assert r.exit_code == 3, r.output
    err = json.loads(r.stdout)["errors"][0]
    assert err["key"] == "report.out" and err["file"] == str(spec) and err["line"] == len(
        spec.read_text().splitlines())
    assert str(out) in err["message"] and "--into-existing" in err["hint"]


@pytest.mark.slow
def test_mrp_run_into_existing_keeps_every_file(project, tmp_path):
    out = someones_work(tmp_path / "work")
    before = tree(out)
    args = ["run", str(project / "ab.toml"), "--out", str(out), "--into-existing", "--json",
            *sum([["--set", o] for o in FAST], [])]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    after = tree(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert {"estimands.csv", "estimand_draws.parquet", "manifest.json", "posterior.nc", "spec.toml"} <= set(after)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["written_by"] == WRITTEN_BY and "notes.txt" not in manifest["files"]
    # run again: now the folder is recognised, and the user's files are still kept
    r = runner.invoke(app, args[:4] + args[5:])
    assert r.exit_code == 0, r.output
    assert {k: v for k, v in tree(out).items() if k in before} == before


@pytest.mark.slow
def test_run_that_fails_midway_leaves_previous_run_byte_identical(project, monkeypatch):
    out = project / "runs" / "midway"
    mrp_formula.run(project / "ab.toml", out=out, overrides=FAST)  # the cached fit: no sampling
    (out / "recovery").mkdir(exist_ok=True)  # another command's results (unmarked: the user's, then)
    (out / "recovery" / "x.csv").write_text("kept")
    before = tree(out)
    real = pipeline.write_table
    AS_DIFFERENCE = ["estimands.lift.scale=\"difference\"", "estimands.lift.rope=[-0.01, 0.01]"]

    def fail_on_draws(df, path):
        if path.name == "estimand_draws.parquet":  # after estimands.csv was written
            raise OSError(28, "No space left on device")
        real(df, path)

    monkeypatch.setattr(pipeline, "write_table", fail_on_draws)
    with pytest.raises(OutputError, match="No space") as e:  # a clean error naming the place, exit 6
        mrp_formula.run(project / "ab.toml", out=out, overrides=FAST + AS_DIFFERENCE)
    assert e.value.exit_code == 6 and e.value.problems[0].file == str(out)
    assert tree(out) == before
    assert leftovers(out.parent) == []
    monkeypatch.undo()
    # and a run that succeeds replaces the results, keeping the sub-folder
    result = mrp_formula.run(project / "ab.toml", out=out, overrides=FAST + AS_DIFFERENCE)
    assert result.estimands.loc[result.estimands.estimand == "lift", "scale"].iloc[0] == "difference"
    assert (out / "recovery" / "x.csv").read_text() == "kept"


@pytest.mark.slow
def test_real_run_folder_follows_the_umask(project):
    out = project / "runs" / "first"  # written under umask 0o022 by the fixture
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    files = [p for p in out.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"estimands.csv", "estimand_draws.parquet", "posterior.nc", "manifest.json"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name


@pytest.mark.slow
def test_mrp_check_warns_of_a_report_out_that_run_would_refuse(project, tmp_path):
    out = someones_work(tmp_path / "work")
    r = runner.invoke(app, ["check", str(project / "ab.toml"), "--json", "--set", f'report.out="{out}"'])
    assert r.exit_code == 0, r.output
    warnings = json.loads(r.stdout)["warnings"]
    assert any(n.startswith("report.out:") and str(out) in n and "--into-existing" in n for n in warnings), warnings
    again = json.loads(runner.invoke(
        app, ["check", str(project / "ab.toml"), "--json", "--set", f'report.out="{tmp_path / "new"}"']).stdout)
    assert not any("report.out" in n for n in again["notes"] + again["warnings"])


@pytest.mark.slow
def test_mrp_run_into_existing_refuses_a_clash_before_fitting(project, tmp_path):
    out = someones_work(tmp_path / "work")
    (out / "report.html").write_text("their own page")
    before = tree(out)
    r = runner.invoke(app, ["run", str(project / "ab.toml"), "--out", str(out), "--into-existing",
                            *sum([["--set", o] for o in FAST], [])])
    assert r.exit_code == 2, r.output
    assert "report.html" in r.stderr and "never replaces" in r.stderr
    assert tree(out) == before
    assert not (tmp_path / ".mrp-cache").exists()  # refused before the fit, not after it


@pytest.mark.slow
def test_a_fit_the_cache_cannot_store_is_a_note_not_a_failure(project, monkeypatch):
    from mrp_formula.model.cache import FitCache

    def broken(self, key, posterior, seconds):
        raise OSError(28, "No space left on device", str(self.root))

    monkeypatch.setattr(FitCache, "_store", broken)
    out = project / "runs" / "unstored"
    result = mrp_formula.run(project / "ab.toml", out=out, overrides=FAST, refit=True)
    assert any(getattr(n, "code", "") == "cache.not_stored" and "No space left" in n for n in result.notes)
    manifest = json.loads((out / "manifest.json").read_text())
    assert any("not stored in the fit cache" in n for n in manifest["notes"])
    assert (out / "posterior.nc").exists() and (out / "estimands.csv").exists()
