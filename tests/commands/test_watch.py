"""`mrp watch`: the loop fed change sets by hand (no file system, no sampler), and one real watch
with watchfiles on a temporary folder."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mrp_formula.commands.watch import file_changes, watch, watched_files
from mrp_formula.errors import Problem, SpecError

HEAD = "estimand,scale,mean,median,sd,lower,upper,ci_prob,ci_kind\n"


class FakeRun:
    """Stands in for `mrp run`: writes a minimal run folder whose estimate is the number in the
    spec file, or fails with a spec error when the file says 'broken'."""

    def __init__(self, folder: Path):
        self.folder, self.calls = folder, 0

    def __call__(self, spec, *, out=None, overrides=(), reporter=None):
        self.calls += 1
        text = Path(spec).read_text().strip()
        if text == "broken":
            raise SpecError(Problem("a typo", key="model.formula", file=str(spec), line=1))
        self.folder.mkdir(parents=True, exist_ok=True)
        mean = float(text)
        (self.folder / "estimands.csv").write_text(HEAD + f"rate,,{mean},{mean},0.1,{mean - .2},{mean + .2},0.94,hdi\n")
        (self.folder / "manifest.json").write_text('{"name": "w", "fit_cache": {"reused": %s}}'
                                                   % ("true" if self.calls > 1 else "false"))
        return SimpleNamespace(out=self.folder, manifest={"fit_cache": {"reused": self.calls > 1}})


def test_each_change_reruns_and_says_what_moved(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text("0.5")
    fake = FakeRun(tmp_path / "run")
    heard = []

    def edits():
        spec.write_text("0.8")
        yield {spec}
        yield set()  # nothing relevant: no rerun
        spec.write_text("broken")
        yield {spec}
        spec.write_text("0.8")
        yield {spec}

    n = watch(spec, edits(), on_rerun=heard.append, run_fn=fake)
    assert n == 4 and fake.calls == 4
    first, moved, broken, back = heard
    assert first.diff is None and first.error is None and first.changed == ()
    assert moved.changed == (spec,) and moved.reused_fit
    assert list(moved.diff.moved["estimand"]) == ["rate"]  # 0.5 -> 0.8 is 3 posterior sd
    assert broken.result is None and broken.error.problems[0].message == "a typo"
    assert back.diff is not None and not len(back.diff.moved)  # compared with the last good run: 0.8 -> 0.8


def test_watched_files_are_the_spec_and_its_inputs(ab_dir):
    assert watched_files(ab_dir / "ab.toml") == ((ab_dir / "ab.toml").resolve(), (ab_dir / "clicks.csv").resolve())
    (ab_dir / "bad.toml").write_text("name = ")
    assert watched_files(ab_dir / "bad.toml") == ((ab_dir / "bad.toml").resolve(),)


def test_watched_files_include_the_specs_it_extends(ab_dir):
    (ab_dir / "child.toml").write_text('extends = "ab.toml"\nname = "child"\n')
    assert watched_files(ab_dir / "child.toml") == ((ab_dir / "child.toml").resolve(), (ab_dir / "ab.toml").resolve(),
                                                    (ab_dir / "clicks.csv").resolve())


def test_a_real_edit_is_seen_once(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text("0.5")
    (tmp_path / "noise.txt").write_text("not watched")
    fake = FakeRun(tmp_path / "run")
    stop = threading.Event()
    heard = []

    def on_rerun(r):
        heard.append(r)
        if len(heard) == 2:
            stop.set()

    def edit():
        time.sleep(1.0)  # the watch is up
        (tmp_path / "noise.txt").write_text("ignored: not a watched file")
        spec.write_text("0.9")

    threading.Thread(target=edit, daemon=True).start()
    timer = threading.Timer(30, stop.set)  # never hangs
    timer.start()
    try:
        watch(spec, file_changes(spec, stop_event=stop, debounce_ms=200), on_rerun=on_rerun, run_fn=fake)
    finally:
        timer.cancel()
    assert len(heard) == 2, "the edit was not seen within 30 s"
    assert heard[1].changed == (spec.resolve(),)
    assert heard[1].diff is not None and list(heard[1].diff.moved["estimand"]) == ["rate"]


@pytest.mark.parametrize("text", ["0.5"])
def test_watched_files_of_a_non_spec_is_the_file_alone(tmp_path, text):
    spec = tmp_path / "s.toml"
    spec.write_text(text)
    assert watched_files(spec) == (spec.resolve(),)


def test_ctrl_c_exits_0(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from mrp_formula.cli import app
    from mrp_formula.commands import watch as watch_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(watch_mod, "watch", interrupted)
    (tmp_path / "s.toml").write_text('name = "s"\n')
    r = CliRunner().invoke(app, ["watch", str(tmp_path / "s.toml")])
    assert r.exit_code == 0
    assert "stopped watching" in r.stderr


@contextlib.contextmanager
def _changes_of(spec):
    """The change sets of ``spec``, stopped on leaving (and after 30 s at most: never hangs)."""
    stop = threading.Event()
    timer = threading.Timer(30, stop.set)
    timer.start()
    try:
        yield file_changes(spec, stop_event=stop, debounce_ms=200)
    finally:
        stop.set()
        timer.cancel()


def test_a_save_made_while_rerunning_is_not_lost(tmp_path):
    """No watch is open while the consumer reruns: a file saved then is handed over when it comes
    back (before, the save was never seen and the output kept the older file's numbers)."""
    spec = tmp_path / "s.toml"
    spec.write_text("0.5")
    with _changes_of(spec) as changes:
        threading.Timer(1.0, lambda: spec.write_text("0.6")).start()
        first = next(changes)  # the consumer now "reruns": a save meanwhile
        spec.write_text("0.75")
        second = next(changes)
    assert first == second == {spec.resolve()}
    assert spec.read_text() == "0.75"


def test_a_save_made_during_the_first_run_is_not_lost(tmp_path):
    """The changes are asked for only after the first run: a file saved during it is handed over
    at once (its stamp was taken when the watch was set up)."""
    spec = tmp_path / "s.toml"
    spec.write_text("0.5")
    with _changes_of(spec) as changes:
        spec.write_text("0.75")  # the first run is under way
        first = next(changes)
    assert first == {spec.resolve()}


def test_a_spec_that_is_not_there_is_refused_at_once(tmp_path):
    """`mrp watch missing.toml` watched a file that does not exist until Ctrl-C (exit 0)."""
    from typer.testing import CliRunner

    from mrp_formula.cli import app

    r = CliRunner().invoke(app, ["watch", str(tmp_path / "missing.toml")])
    assert r.exit_code == 3 and "spec file not found" in r.output
