"""How a run folder is committed: nothing that mrp-formula did not write is lost, whatever else
happens to the folder meanwhile (review 3: a file in plots/, a kill between two renames, a file
saved during a commit, two commits at once, leftovers of killed runs, a read-only place, a full
disk, a file system mounted inside)."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import pytest

from mrp_formula import system
from mrp_formula.errors import OutputError, UsageError
from mrp_formula.output import files
from mrp_formula.output.files import check_out, staged_dir, tidy


def write_run(tmp: Path, names=("estimands.csv",), text="new") -> None:
    for n in names:
        (tmp / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp / n).write_text(text)
    (tmp / "manifest.json").write_text(json.dumps({"name": "x"}))


def beside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def dead_name(prefix: str) -> str:
    return f"{prefix}0badc0de.{dead_pid()}@{system._host()}"


# ----------------------------------------------------------------------------- sub-folders, file by file


def test_a_users_file_in_plots_is_kept_and_plots_listed_file_by_file(tmp_path):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv", "plots/forest.png", "plots/ppc.png"))
    assert json.loads((out / "manifest.json").read_text())["files"] == [
        "estimands.csv", "manifest.json", "plots/forest.png", "plots/ppc.png"]
    (out / "plots" / "my_notes.txt").write_text("mine")
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv", "plots/forest.png"), text="second")
    assert (out / "plots" / "my_notes.txt").read_text() == "mine"
    assert (out / "plots" / "forest.png").read_text() == "second" and not (out / "plots" / "ppc.png").exists()
    # without plots (report.plots = false): the run's PNGs go, the user's file and its folder stay
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv",), text="third")
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["my_notes.txt"]
    assert beside(out) == []


def test_an_older_manifest_listing_plots_whole_still_replaces_it(tmp_path):
    out = tmp_path / "run"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "old.png").write_text("old")
    (out / "estimands.csv").write_text("old")
    (out / "manifest.json").write_text(json.dumps({"written_by": "mrp-formula", "name": "x",
                                                   "files": ["estimands.csv", "manifest.json", "plots"]}))
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv", "plots/new.png"))
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["new.png"]


def test_the_folder_of_plots_empty_of_ours_is_removed(tmp_path):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv", "plots/forest.png"))
    (out / "mine.txt").write_text("mine")  # so the files are moved in one by one
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv",))
    assert sorted(p.name for p in out.iterdir()) == ["estimands.csv", "manifest.json", "mine.txt"]


# ----------------------------------------------------------------------------- the swap


def test_exchange_swaps_in_one_step_and_falls_back(tmp_path, monkeypatch):
    for fallback in (False, True):
        if fallback:
            monkeypatch.setattr(system, "_renameat2", lambda *a: False)
        a, b = tmp_path / f"a{fallback}", tmp_path / f"b{fallback}"
        a.mkdir()
        (a / "x").write_text("a")
        b.write_text("b")
        system.exchange(a, b)
        assert a.read_text() == "b" and (b / "x").read_text() == "a"
        assert sorted(p.name for p in tmp_path.iterdir() if ".x-" in p.name) == []


def test_a_swap_never_leaves_the_folder_missing(tmp_path, monkeypatch):
    """A run killed inside the commit of a folder of its own finds the folder in place."""
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, text="earlier")
    seen = []
    real = os.rename

    def watched(a, b):  # every rename of the commit: is the run folder there?
        seen.append(os.path.lexists(out))
        real(a, b)

    monkeypatch.setattr(os, "rename", watched)
    with staged_dir(out) as tmp:
        write_run(tmp, text="later")
    monkeypatch.undo()
    assert seen and all(seen)
    assert (out / "estimands.csv").read_text() == "later" and beside(out) == []


KILLED_BETWEEN_RENAMES = r"""
import os, sys
from pathlib import Path
from mrp_formula import system
from mrp_formula.output import files
system._renameat2 = lambda *a, **k: False  # an OS or file system without RENAME_EXCHANGE
final = Path(sys.argv[1])
real = os.rename
def rename(a, b):
    real(a, b)
    if str(a) == str(final):  # the earlier folder moved aside: killed before the new one is in place
        os._exit(137)
os.rename = rename
with files.staged_dir(final) as tmp:
    (tmp / "estimands.csv").write_text("later")
    files.write_json({"name": "x", "files": ["estimands.csv"]}, tmp / "manifest.json")
"""


def test_a_run_killed_between_the_two_renames_of_a_swap_loses_nothing(tmp_path):
    """Where the OS cannot exchange two folders, the swap is two renames; a run killed between them
    left the earlier folder under a temporary name, which the next run deleted (the review)."""
    import sys

    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, text="earlier")
    r = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(out)])
    assert r.returncode == 137 and not os.path.lexists(out)
    notes = tidy(out)
    assert notes and "restored" in notes[0]
    # the killed run's lock file stays (flock released it; the next commit takes and removes it)
    assert (out / "estimands.csv").read_text() == "earlier" and beside(out) in ([], [".run.lock"])


def test_a_folder_moved_aside_by_a_killed_run_is_restored(tmp_path):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, text="earlier")
    (out / "user_notes.txt").write_text("mine")
    old = tmp_path / dead_name(".run.old-")
    os.rename(out, old)  # killed between the two renames where the OS cannot exchange
    notes = tidy(out)
    assert "restored" in notes[0] and old.name in notes[0]
    assert (out / "user_notes.txt").read_text() == "mine" and beside(out) == []
    # and staged_dir does the same before it writes
    os.rename(out, old)
    with staged_dir(out) as tmp:
        write_run(tmp, text="later")
    assert (out / "user_notes.txt").read_text() == "mine" and (out / "estimands.csv").read_text() == "later"


def test_leftovers_of_killed_runs_are_swept_and_live_ones_kept(tmp_path):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp)
    dead, live = tmp_path / dead_name(".run.tmp-"), tmp_path / system.owned_name(".run.tmp-")
    for d in (dead, live, out / dead_name(".prior.tmp-")):
        d.mkdir()
        (d / "half.csv").write_text("half")
    with staged_dir(out) as tmp:
        write_run(tmp)
    assert beside(out) == [live.name]
    assert sorted(p.name for p in out.iterdir()) == ["estimands.csv", "manifest.json"]


# ----------------------------------------------------------------------------- a folder with the user's files


def test_a_file_saved_into_the_folder_during_a_rerun_is_kept(tmp_path):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp)
    (out / "analysis.py").write_text("mine")
    inode = out.stat().st_ino
    with staged_dir(out) as tmp:
        write_run(tmp, text="later")
        (out / "saved_meanwhile.log").write_text("saved")
    assert out.stat().st_ino == inode  # the folder is the user's: its files are moved in, it is not replaced
    assert (out / "saved_meanwhile.log").read_text() == "saved" and (out / "analysis.py").read_text() == "mine"
    assert (out / "estimands.csv").read_text() == "later" and beside(out) == []


def test_a_failed_move_puts_every_file_back(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, ("estimands.csv", "ppc.csv"), text="earlier")
    (out / "mine.txt").write_text("mine")
    before = {p.name: p.read_text() for p in out.iterdir()}
    real = system.exchange

    def failing(a, b):
        if Path(b).name == "ppc.csv":
            raise OSError(errno.EIO, "I/O error", str(b))
        real(a, b)

    monkeypatch.setattr(files, "exchange", failing)
    with pytest.raises(OSError, match="I/O error"):
        with staged_dir(out) as tmp:
            write_run(tmp, ("estimands.csv", "ppc.csv", "new.csv"), text="later")
    assert {p.name: p.read_text() for p in out.iterdir()} == before and beside(out) == []


def _commit(out: Path, tag: str, slow: bool) -> None:
    if slow:  # slowed inside its commit, as a busy file system would
        real = files.exchange

        def slow_exchange(a, b):
            real(a, b)
            time.sleep(1.0)

        files.exchange = slow_exchange
    with staged_dir(out) as tmp:
        write_run(tmp, text=tag)


def test_two_commits_into_one_folder_take_turns(tmp_path):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, text="earlier")
    (out / "user_notes.txt").write_text("mine")
    ctx = multiprocessing.get_context("fork")
    a = ctx.Process(target=_commit, args=(out, "A", True))
    a.start()
    time.sleep(0.4)
    b = ctx.Process(target=_commit, args=(out, "B", False))
    b.start()
    a.join(20)
    b.join(20)
    assert a.exitcode == 0 and b.exitcode == 0
    assert (out / "estimands.csv").read_text() == "B" and (out / "user_notes.txt").read_text() == "mine"
    assert beside(out) == []


def test_a_commit_waits_for_the_lock_then_says_who_holds_it(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, text="earlier")
    monkeypatch.setattr(files, "LOCK_WAIT", 0.3)
    with system.locked(tmp_path / ".run.lock", wait=1):
        with pytest.raises(OutputError, match="another mrp-formula command") as e:
            with staged_dir(out) as tmp:
                write_run(tmp, text="later")
    assert e.value.exit_code == 6
    assert (out / "estimands.csv").read_text() == "earlier" and beside(out) == []


# ----------------------------------------------------------------------------- before the work; a full disk


def test_into_existing_clash_is_found_before_the_work(tmp_path):
    out = tmp_path / "work"
    out.mkdir()
    (out / "report.html").write_text("their page")
    with pytest.raises(UsageError, match="report.html"):
        check_out(out, into_existing=True, writes=("estimands.csv", "report.html"))
    check_out(out, into_existing=True, writes=("estimands.csv",))


def test_a_read_only_place_is_refused_before_the_work(tmp_path, monkeypatch):
    out = tmp_path / "ro" / "run"
    out.parent.mkdir()
    real = os.access
    monkeypatch.setattr(files.os, "access", lambda p, mode: False if Path(p) == out.parent else real(p, mode))
    with pytest.raises(OutputError) as e:
        check_out(out)
    p = e.value.problems[0]
    assert e.value.exit_code == 6 and p.file == str(out) and str(out.parent) in p.message


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_disk_while_writing_is_an_output_error(tmp_path, code):
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp, text="earlier")
    with pytest.raises(OutputError) as e:
        with staged_dir(out) as tmp:
            raise OSError(code, os.strerror(code), str(tmp / "posterior.nc"))
    assert "posterior.nc" in e.value.problems[0].message and e.value.exit_code == 6
    assert (out / "estimands.csv").read_text() == "earlier" and beside(out) == []


def test_room_for_refuses_what_does_not_fit(tmp_path):
    system.room_for(tmp_path / "posterior.nc", 1)
    with pytest.raises(OSError) as e:
        system.room_for(tmp_path / "posterior.nc", 1 << 62)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "posterior.nc")


# ----------------------------------------------------------------------------- other file systems


def test_removing_a_tree_never_crosses_a_mount_point(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    (gone / "mnt").mkdir(parents=True)
    (gone / "mnt" / "team.csv").write_text("team data")
    (gone / "a.csv").write_text("a")
    real = system.device
    monkeypatch.setattr(system, "device", lambda p: -1 if Path(p).name == "mnt" else real(p))
    assert system.remove_tree(gone) is False
    assert (gone / "mnt" / "team.csv").read_text() == "team data" and not (gone / "a.csv").exists()


def test_a_folder_mounted_inside_a_run_is_left_alone(tmp_path):
    """A folder the run did not write (a mount point among them) is never replaced or emptied."""
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_run(tmp)
    (out / "team").mkdir()
    (out / "team" / "team.csv").write_text("team data")
    inode = (out / "team").stat().st_ino
    with staged_dir(out) as tmp:
        write_run(tmp, text="later")
    assert (out / "team").stat().st_ino == inode and (out / "team" / "team.csv").read_text() == "team data"


def test_into_existing_writes_into_a_users_folder_of_the_same_name(tmp_path):
    """The user's plots/ with their own figure: the run's figures go in beside it (the review: it was
    refused as a folder "this run would replace"); a file of the user's named as one of the run's is
    still refused, before the work."""
    out = tmp_path / "project"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "user.png").write_text("mine")
    check_out(out, into_existing=True, writes=("estimands.csv", "plots"))
    with staged_dir(out, into_existing=True, writes=("estimands.csv", "plots")) as tmp:
        write_run(tmp, names=("estimands.csv", "plots/forest.png"), text="run")
    assert (out / "plots" / "user.png").read_text() == "mine" and (out / "plots" / "forest.png").read_text() == "run"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "plots").write_text("a file where the run needs a folder")
    with pytest.raises(UsageError):
        check_out(tmp_path / "other", into_existing=True, writes=("estimands.csv", "plots"))
