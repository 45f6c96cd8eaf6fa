"""The fit cache is speed, never results (review 3): a store that cannot be made is a note, a
damaged entry is replaced, two processes storing one key both keep their fits, and what a killed
store left is swept."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time

import numpy as np
import xarray as xr

from mrp_formula import system
from mrp_formula.model import cache
from mrp_formula.model.cache import FitCache

KEY = "k" * 32


def posterior() -> xr.DataTree:
    return xr.DataTree.from_dict({"posterior": xr.Dataset({"x": (("chain", "draw"), np.arange(8.0).reshape(2, 4))})})


def test_a_stored_fit_is_read_back(tmp_path):
    fc = FitCache(tmp_path / ".mrp-cache")
    assert fc.store(KEY, posterior(), 1.0) == ""
    tree, note = fc.load(KEY)
    assert tree is not None and "reused" in note


def test_an_entry_that_is_a_file_is_replaced(tmp_path):
    fc = FitCache(tmp_path / ".mrp-cache")
    fc.root.mkdir()
    fc.entry(KEY).write_text("x")
    assert fc.store(KEY, posterior(), 1.0) == ""
    assert fc.load(KEY)[0] is not None and sorted(os.listdir(fc.root)) == [KEY]


def test_a_cache_that_is_a_file_costs_a_note(tmp_path):
    (tmp_path / ".mrp-cache").write_text("x")
    note = FitCache(tmp_path / ".mrp-cache").store(KEY, posterior(), 1.0)
    assert "not stored in the fit cache" in note and "results are complete" in note
    assert (tmp_path / ".mrp-cache").read_text() == "x"


def test_a_full_disk_costs_a_note_and_leaves_nothing(tmp_path, monkeypatch):
    def full(folder, nbytes):
        raise OSError(28, "No space left on device", str(folder))

    monkeypatch.setattr(cache, "room_for", full)
    fc = FitCache(tmp_path / ".mrp-cache")
    assert "No space left" in fc.store(KEY, posterior(), 1.0)
    assert os.listdir(fc.root) == []


def _store(root, slow: bool, answers) -> None:
    if slow:  # slowed just before its entry goes into place
        real = cache.rename_new

        def slow_rename(a, b):
            time.sleep(1.0)
            real(a, b)

        cache.rename_new = slow_rename
    answers.put(FitCache(root).store(KEY, posterior(), 1.0))


def test_two_stores_of_one_key_both_keep_their_fit(tmp_path):
    ctx = multiprocessing.get_context("fork")
    answers = ctx.Queue()
    a = ctx.Process(target=_store, args=(tmp_path / "c", True, answers))
    a.start()
    time.sleep(0.5)
    b = ctx.Process(target=_store, args=(tmp_path / "c", False, answers))
    b.start()
    a.join(20)
    b.join(20)
    assert [answers.get(timeout=5), answers.get(timeout=5)] == ["", ""]
    assert sorted(os.listdir(tmp_path / "c")) == [KEY] and FitCache(tmp_path / "c").load(KEY)[0] is not None


def test_what_a_killed_store_left_is_swept(tmp_path):
    p = subprocess.Popen(["true"])
    p.wait()
    fc = FitCache(tmp_path / ".mrp-cache")
    dead = fc.root / f".tmp-0badc0de.{p.pid}@{system._host()}"
    live = fc.root / system.owned_name(".tmp-")
    for d in (dead, live, fc.root / "models" / f".tmp-0badc0de.{p.pid}@{system._host()}"):
        d.mkdir(parents=True)
        (d / "posterior.nc").write_text("half")
    assert fc.store(KEY, posterior(), 1.0) == ""
    assert sorted(os.listdir(fc.root)) == sorted([KEY, live.name, "models"])
    assert os.listdir(fc.root / "models") == []
