"""mrp batch without sampling: which run folders a rerun may take as current (the folder's own
manifest decides, not batch.json), the files a run key hashes, batch.json written as each run
finishes, run folders that would clash, and an OUT that an interrupted first batch left."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from mrp_formula import __version__
from mrp_formula.commands import batch as b
from mrp_formula.output.manifest import input_files, spec_entry
from mrp_formula.spec.tree import load_spec
from test_batch import BASE as SPEC  # the same small A/B spec

CLICKS = "clicked,treatment,gender\n1,control,female\n0,treatment,male\n"


def _spec(folder: Path, extra: str = "", name: str = "ab.toml", spec_name: str = "ab") -> Path:
    (folder / "clicks.csv").write_text(CLICKS)
    path = folder / name
    path.write_text(textwrap.dedent(SPEC).lstrip().replace('name = "ab"', f'name = "{spec_name}"')
                    + textwrap.dedent(extra))
    return path


def run_folder(folder: Path, spec: Path, overrides=(), *, warnings=(), failed=(), estimands=True) -> Path:
    """A run folder as `mrp run` writes it, as far as a rerun reads it: the marked manifest (the spec
    as run, its overrides, its inputs' hashes, diagnostics, warnings) and estimands.csv."""
    loaded = load_spec(spec, tuple(overrides))
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"written_by": "mrp-formula", "files": ["estimands.csv", "manifest.json"], "mrp_formula": __version__,
                "name": loaded.spec.name, "spec": spec_entry(loaded, list(overrides)), "inputs": input_files(loaded),
                "diagnostics": {"failed": list(failed)}, "notes": list(warnings), "warnings": list(warnings)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if estimands:
        pd.DataFrame({"estimand": ["click_rate"], "treatment": ["control"], "scale": [None], "mean": [0.3],
                      "lower": [0.2], "upper": [0.4]}).to_csv(folder / "estimands.csv", index=False)
    return folder


def _task(spec: Path, out: Path, overrides=(), strict=False) -> b.RunTask:
    return b.RunTask(index=0, spec=str(spec), spec_text=spec.read_text(), variant="base", overrides=tuple(overrides),
                     out=str(out / "ab"), strict=strict)


def _edit_data(folder: Path) -> None:
    (folder / "clicks.csv").write_text(CLICKS.replace("1,control", "0,control"))


def _unmarked(folder: Path) -> None:
    m = json.loads((folder / "ab" / "manifest.json").read_text())
    (folder / "ab" / "manifest.json").write_text(json.dumps({"note": "another tool's", **{"x": m["spec"]}}))


def _older(folder: Path) -> None:  # a manifest from before the spec as run was recorded
    m = json.loads((folder / "ab" / "manifest.json").read_text())
    del m["spec"]["resolved"]
    (folder / "ab" / "manifest.json").write_text(json.dumps(m))


# (the folder's overrides, what happens after it was written, the rerun's overrides, taken as current?)
RERUNS = [
    pytest.param((), None, (), True, id="same spec, overrides and inputs"),
    # an interrupted batch with fit.seed=99 left its folder where the first batch's was: batch.json
    # still holds the first batch's key, the folder another configuration's numbers
    pytest.param(("fit.seed=99",), None, (), False, id="folder of other overrides"),
    pytest.param((), None, ("fit.seed=99",), False, id="rerun with other overrides"),
    pytest.param((), _edit_data, (), False, id="data changed since"),
    pytest.param((), _unmarked, (), False, id="manifest not the tool's"),
    pytest.param((), _older, (), False, id="manifest without the spec as run"),
    pytest.param((), lambda f: (f / "ab" / "estimands.csv").unlink(), (), False, id="estimands missing"),
]


@pytest.mark.parametrize("written_with, after, rerun_with, current", RERUNS)
def test_a_rerun_takes_a_folder_only_when_its_own_manifest_was_made_from_the_runs_key(
        tmp_path, written_with, after, rerun_with, current):
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    run_folder(out / "ab", spec, written_with)
    if after:
        after(tmp_path if after is _edit_data else out)
    key = b.run_key(load_spec(spec, tuple(rerun_with)), rerun_with)
    rec = b.current_record(_task(spec, out, rerun_with), key)
    assert (rec is not None) == current
    if current:
        assert rec.status == "current" and rec.rows[0]["mean"] == 0.3 and rec.key == key


def test_the_run_key_is_the_key_of_the_manifest_its_run_writes(tmp_path):
    spec = _spec(tmp_path, '[variants.tight]\n"fit.draws" = 200\n')
    sets = ("fit.draws=200", "fit.chains=2")
    folder = run_folder(tmp_path / "out" / "ab.tight", spec, sets)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert b.folder_key(manifest) == b.run_key(load_spec(spec, sets), sets)
    assert b.folder_key({"spec": {"overrides": []}}) is None  # no spec as run, no inputs


def test_under_strict_a_current_folder_whose_checks_failed_runs_again(tmp_path):
    spec = _spec(tmp_path)
    run_folder(tmp_path / "out" / "ab", spec, failed=["too few effective draws of the estimands (90 < 400)"])
    key = b.run_key(load_spec(spec), ())
    assert b.current_record(_task(spec, tmp_path / "out"), key).verdict == "do not use"
    assert b.current_record(_task(spec, tmp_path / "out", strict=True), key) is None


CALIBRATE = """
[calibrate]
by = "gender"
source = "known.csv"
column = "share"
"""
ADJACENCY = """
[model.structure]
gender = { kind = "icar", adjacency = "adj.csv" }
"""


@pytest.mark.parametrize("extra, name, before, after", [
    (CALIBRATE, "known.csv", "gender,share\nfemale,0.3\nmale,0.4\n", "gender,share\nfemale,0.95\nmale,0.4\n"),
    (ADJACENCY, "adj.csv", "a,b\nfemale,male\n", "a,b\nmale,female\n"),
    ("", "clicks.csv", CLICKS, CLICKS.replace("1,control", "0,control")),
], ids=["calibrate targets", "adjacency table", "data"])
def test_the_run_key_hashes_every_file_the_spec_reads(tmp_path, extra, name, before, after):
    spec = _spec(tmp_path, extra)
    (tmp_path / name).write_text(before)
    key = b.run_key(load_spec(spec), ())
    assert b.run_key(load_spec(spec), ()) == key
    (tmp_path / name).write_text(after)
    assert b.run_key(load_spec(spec), ()) != key


@pytest.mark.parametrize("first, second", [("a.toml", "b.toml"), ("b.toml", "a.toml")])
def test_two_runs_writing_one_folder_are_refused_before_anything_runs(tmp_path, first, second):
    """a.toml is named "ab" with a variant "narrow" (folder ab.narrow); b.toml is named "ab.narrow"."""
    a = _spec(tmp_path, '[variants.narrow]\n"fit.draws" = 200\n', name="a.toml")
    bb = _spec(tmp_path, name="b.toml", spec_name="ab.narrow")
    files = [tmp_path / first, tmp_path / second]
    tasks, failed, _ = b.plan_runs(files, tmp_path / "out", (), strict=False, refit=False)
    assert sorted(Path(t.out).name for t in tasks) == ["ab", "ab.narrow"]  # one run per folder
    (refused,) = failed
    assert refused.run == "ab.narrow" and refused.exit_code == 2 and refused.status == "failed"
    assert str(a) in refused.error and str(bb) in refused.error and "'narrow'" in refused.error


def test_batch_json_records_each_run_as_it_finishes(tmp_path, monkeypatch):
    """A batch interrupted (Ctrl-C) during its second run: batch.json (and batch.csv) hold the first."""
    spec_a = _spec(tmp_path, name="a.toml", spec_name="a")
    _spec(tmp_path, name="c.toml", spec_name="c")
    out = tmp_path / "out"

    class Interrupted:
        dashboard, n_workers = None, 1

        def __init__(self, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def run(self, fn, tasks, on_event=None):
            from mrp_formula.commands.scheduler import Event

            first = tasks[0]
            on_event(Event("started", 0))
            on_event(Event("done", 0, result=b.RunRecord(index=first.index, spec=first.spec, variant="base",
                                                         run="a", status="ok", exit_code=0, verdict="ok")))
            on_event(Event("started", 1))
            raise KeyboardInterrupt

    monkeypatch.setattr(b, "Scheduler", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        b.batch([spec_a, tmp_path / "c.toml"], out=out)
    doc = json.loads((out / "batch.json").read_text())
    assert doc["complete"] is False and doc["pending"] == ["c"]
    assert doc["runs"]["a"]["status"] == "ok" and doc["runs"]["a"]["key"]
    assert list(pd.read_csv(out / "batch.csv")["run"]) == ["a"]


def _leftovers(out: Path, spec: Path) -> None:
    run_folder(out / "ab", spec)
    (out / ".mrp-cache").mkdir()
    (out / ".ab.narrow.tmp-0123abcd").mkdir()  # a run folder being staged when the batch stopped
    (out / ".batch.csv.k2j3.tmp").write_text("")


@pytest.mark.parametrize("extra, refused", [
    (None, None),
    (lambda out: (out / "notes.txt").write_text("mine"), "notes.txt"),
    (lambda out: (out / "plain").mkdir(), "plain"),
])
def test_an_interrupted_first_batch_leaves_a_folder_the_next_batch_takes_as_its_own(tmp_path, extra, refused):
    """Ctrl-C before batch.json was written: OUT holds run folders (their manifests mark them), the
    fit cache and temporary folders; a rerun takes OUT, and refuses it when it holds anything else,
    naming it."""
    from mrp_formula.errors import UsageError

    out = tmp_path / "out"
    _leftovers(out, _spec(tmp_path))
    if extra:
        extra(out)
    if refused is None:
        b._check_batch_out(out)
    else:
        with pytest.raises(UsageError, match=f"no batch wrote: {refused}"):
            b._check_batch_out(out)


def test_a_run_folder_is_not_a_batch_folder(tmp_path):
    from mrp_formula.errors import UsageError

    folder = run_folder(tmp_path / "run", _spec(tmp_path))
    with pytest.raises(UsageError, match="no batch wrote"):
        b._check_batch_out(folder)


def test_batch_json_keeps_the_run_that_owns_a_folder_beside_the_one_refused_it(tmp_path):
    a = _spec(tmp_path, '[variants.narrow]\n"fit.draws" = 200\n', name="a.toml")
    bb = _spec(tmp_path, name="b.toml", spec_name="ab.narrow")
    tasks, failed, _ = b.plan_runs([a, bb], tmp_path / "out", (), strict=False, refit=False)
    done = [b.RunRecord(index=t.index, spec=t.spec, variant=t.variant, run=Path(t.out).name, status="ok",
                        exit_code=0, verdict="ok") for t in tasks]
    setting = b.BatchSetting(out=tmp_path, files=(a, bb), overrides=(), strict=False, scheduler=None, workers=1)
    runs = b.batch_manifest(setting, failed + done, (), 1.0)["runs"]  # the refused one first: it still yields
    assert runs["ab.narrow"]["variant"] == "narrow" and runs["ab.narrow"]["status"] == "ok"
    assert runs[f"ab.narrow ({bb})"]["exit_code"] == 2
