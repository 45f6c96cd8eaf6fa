"""mrp batch on real Dask clusters (loopback): a LocalCluster of worker processes with a failing
spec among good ones and a variant, the same numbers as `mrp run`, a rerun that skips current
runs, a scheduler and a worker started as separate processes and reached by address. Fits are
tiny (100 draws, 2 chains). A worker killed while it fits a spec, and a divergent fit under
--strict: test_batch_failures.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import AB_SPEC

from mrp_formula.commands import batch as b
from mrp_formula.commands.run import run
from mrp_formula.commands.scheduler import Scheduler

pytestmark = pytest.mark.slow

# the shared A/B spec (tests/conftest.py), smaller and seeded, with a variant
SPEC = (textwrap.dedent(AB_SPEC).lstrip().replace("draws = 300", "draws = 100").replace("tune = 300", "tune = 150")
        .replace("seed = 1\n", "seed = 3\n")
        + '[variants.tight]\n"model.priors.treatment" = "Normal(0, 0.1)"\n')
KEEP = ["estimand", "treatment", "mean", "sd", "lower", "upper"]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    from generate import simulate

    folder = tmp_path_factory.mktemp("specs")
    simulate(n=600, seed=5).to_csv(folder / "clicks.csv", index=False)
    (folder / "ab.toml").write_text(textwrap.dedent(SPEC).lstrip())
    no_data = textwrap.dedent(SPEC).lstrip().replace('name = "ab"', 'name = "nodata"').replace(
        "clicks.csv", "missing.csv").split("[variants")[0]
    (folder / "nodata.toml").write_text(no_data)
    (folder / "typo.toml").write_text(textwrap.dedent(SPEC).lstrip().replace('name = "ab"', 'name = "typo"')
                                      .replace("family =", "famly =").split("[variants")[0])
    return folder


@pytest.fixture(scope="module")
def direct(specs, tmp_path_factory):
    """`mrp run` of the spec, in this process, without the fit cache."""
    return run(specs / "ab.toml", out=tmp_path_factory.mktemp("direct") / "ab", cache=False)


@pytest.fixture(scope="module")
def batched(specs, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    events = []
    res = b.batch([specs], out=out, workers=2, on_event=lambda kind, rec, c: events.append((kind, dict(c))))
    return res, out, events


def _rows(table):
    return table[KEEP].sort_values(["estimand", "treatment"]).reset_index(drop=True)


def test_a_failing_spec_is_a_row_with_its_error_and_code_and_the_others_finish(batched):
    res, out, events = batched
    runs = {r.run: r for r in res.records}
    assert set(runs) == {"ab", "ab.tight", "nodata", "typo"}
    # 100 draws x 2 chains cannot reach the default ESS of 400: the runs finish, and say so
    assert runs["ab"].status == runs["ab.tight"].status == "checks failed"
    assert runs["ab"].verdict == "do not use" and runs["ab"].exit_code == 0
    assert runs["nodata"].exit_code == 4 and "missing.csv" in runs["nodata"].error
    assert runs["typo"].exit_code == 3 and "typo.toml:6: model.famly: unknown key; did you mean 'family'" in runs["typo"].error
    assert res.exit_code == 4  # the worst
    table = pd.read_csv(out / "batch.csv")
    failed = table[table["status"] == "failed"].set_index("run")
    assert failed.loc["nodata", "exit_code"] == 4 and failed.loc["typo", "exit_code"] == 3
    ok = table[table["run"] == "ab"]
    assert set(ok["estimand"]) == {"click_rate", "lift"} and ok["mean"].notna().all()
    assert (out / "ab" / "report.html").is_file() and (out / "ab.tight" / "report.html").is_file()
    index = (out / "index.html").read_text()
    assert 'href="ab/report.html"' in index and 'href="ab.tight/report.html"' in index
    assert "missing.csv" in index
    # progress: the counts end with every run done or failed and none running
    last = events[-1][1]
    assert last["running"] == last["queued"] == 0 and last["done"] + last["failed"] == last["total"] == 4


def test_variants_are_compared_and_stacked(batched):
    res, out, _ = batched
    (cmp,) = res.comparisons
    assert cmp.table is not None and set(cmp.table["model"]) == {"ab", "ab.tight"}
    assert cmp.table["weight"].sum() == pytest.approx(1.0)
    # both runs failed their checks: the stacking weight goes to numbers not to be used yet, and is said so
    assert any("which failed its checks" in n for n in cmp.notes)
    assert (out / "ab.compare.csv").is_file()
    table = pd.read_csv(out / "batch.csv")
    stacked = table[table["variant"] == "stacked"]
    assert set(stacked["estimand"]) == {"click_rate", "lift"}
    # each stacked mean lies between the variants' means (a mixture of their draws)
    for _, row in stacked.iterrows():
        means = table[(table["status"] == "checks failed") & (table["estimand"] == row["estimand"])
                      & (table["treatment"] == row["treatment"])]["mean"]
        assert means.min() - 1e-12 <= row["mean"] <= means.max() + 1e-12


def test_batch_gives_the_numbers_of_mrp_run(batched, direct):
    res, out, _ = batched
    pd.testing.assert_frame_equal(_rows(pd.read_csv(out / "ab" / "estimands.csv")), _rows(direct.estimands),
                                  check_exact=False, rtol=1e-9, check_dtype=False)


def test_a_rerun_skips_current_runs_and_keeps_the_results(batched, specs):
    res, out, _ = batched
    before = (out / "ab" / "estimands.csv").read_bytes()
    again = b.batch([specs], out=out, workers=1)
    runs = {r.run: r.status for r in again.records}
    assert runs == {"ab": "current", "ab.tight": "current", "nodata": "failed", "typo": "failed"}
    assert (out / "ab" / "estimands.csv").read_bytes() == before
    assert json.loads((out / "batch.json").read_text())["runs"]["ab"]["status"] == "current"


def _wait_for(path: Path, seconds: float = 60) -> None:
    t0 = time.time()
    while not path.is_file():
        if time.time() - t0 > seconds:
            raise TimeoutError(path)
        time.sleep(0.2)


def test_a_scheduler_and_a_worker_started_apart_reached_by_address(specs, direct, tmp_path):
    """`dask scheduler` and `dask worker` as their own processes (the venv's), the batch sent
    to the scheduler's address (same numbers as `mrp run`), then a recovery study's replicates."""
    bin_dir = Path(sys.executable).parent
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    sched = subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                              "--no-dashboard", "--scheduler-file", str(sched_file)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    worker = None
    try:
        _wait_for(sched_file)
        address = json.loads(sched_file.read_text())["address"]
        worker = subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                   "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=env)
        ab_only = tmp_path / "ab.toml"
        ab_only.write_text((specs / "ab.toml").read_text().replace("clicks.csv", str(specs / "clicks.csv"))
                           .split("[variants")[0])
        with Scheduler(address=address) as s:  # wait for the worker to join
            t0 = time.time()
            while s.n_workers < 1 and time.time() - t0 < 60:
                time.sleep(0.2)
        res = b.batch([ab_only], out=tmp_path / "out", scheduler=address)
        assert res.exit_code == 0, res.records
        pd.testing.assert_frame_equal(_rows(pd.read_csv(tmp_path / "out" / "ab" / "estimands.csv")),
                                      _rows(direct.estimands), check_exact=False, rtol=1e-9, check_dtype=False)
        # mrp recover sends its replicates through the same Scheduler to the same address
        from mrp_formula.commands.recover import recover

        study = recover(ab_only, replicates=2, scheduler=address, out=tmp_path / "recovery")
        assert study.failed == () and study.manifest["scheduler"] == address
        assert sorted(set(study.replicates["replicate"])) == [0, 1]
    finally:
        for p in (worker, sched):
            if p is not None:
                p.send_signal(signal.SIGINT)
        for p in (worker, sched):
            if p is not None:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


def test_strict_turns_failed_diagnostics_into_rows_with_exit_code_5(batched, specs):
    """100 draws x 2 chains cannot reach the default ESS of 400: under --strict the runs fail
    with code 5 (their folders, from the cached fits, are still written), the rest as before."""
    res, out, _ = batched
    assert all(r.verdict == "do not use" and r.failed_checks for r in res.records if r.exit_code == 0)
    strict = b.batch([specs], out=out, workers=1, strict=True, compare=False)
    runs = {r.run: r for r in strict.records}
    assert runs["ab"].status == "failed" and runs["ab"].exit_code == 5
    assert "--strict" in runs["ab"].error and "ESS" in runs["ab"].error
    assert strict.exit_code == 5
    assert (out / "ab" / "estimands.csv").is_file()


def test_a_scheduler_address_where_nothing_listens_is_said_at_once():
    """Connection refused: a usage error naming the address within seconds, not Dask's "Timed out"
    after its 30 s of retries."""
    import socket

    from mrp_formula.errors import UsageError

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        t0 = time.perf_counter()
        with pytest.raises(UsageError) as err:
            with Scheduler(address=f"tcp://127.0.0.1:{port}"):
                pass
    assert time.perf_counter() - t0 < 10
    assert f"nothing answers at tcp://127.0.0.1:{port}" in str(err.value)
