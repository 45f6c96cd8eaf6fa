"""mrp batch when things go wrong, on a LocalCluster of two worker processes: one batch under
--strict of two A/B specs and a spec whose fit diverges (a funnel), during which the worker
running the first A/B spec is killed (SIGKILL, once the worker reports that spec's task
executing). Every run still comes back: the killed one retried on another worker with the
numbers `mrp run` gives alone; the divergent one a row with exit code 5 that stops nothing."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from conftest import AB_SPEC

from mrp_formula.commands import batch as b
from mrp_formula.commands.run import run
from mrp_formula.commands.scheduler import compile_root

pytestmark = pytest.mark.slow
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file

# the shared A/B spec (tests/conftest.py), named and seeded per run, smaller, without plots
GOOD = (textwrap.dedent(AB_SPEC).lstrip().replace('name = "ab"', 'name = "NAME"').replace("seed = 1\n", "seed = SEED\n")
        .replace("draws = 300", "draws = 200").replace("tune = 300", "tune = 200")
        + "[report]\nplots = false\n"
        "ess_min = 100  # 200 draws x 2 chains: the defaults (400, 1.01) are for real runs\n"
        "rhat_max = 1.05\n")

# Eight groups of one observation each: the residual sd and the groups' sd trade off, and as
# either shrinks the group effects are squeezed into a narrow neck (a funnel) that NUTS at a low
# target acceptance cannot enter without diverging. Seeds 1 to 10 all gave 3 to 18 divergent
# transitions of 200 draws when this was written (non-centred effects diverge as well: the
# residual sd's funnel remains).
FUNNEL = """
name = "funnel"
[data]
source = "funnel.csv"
[model]
formula = "y ~ 1 + (1 | g)"
family = "gaussian"
parameterization = "centered"
[model.priors]
Intercept = "Normal(0, 1)"
"1|g" = "Normal(0, HalfNormal(10))"
sigma = "HalfNormal(1)"
[fit]
draws = 100
tune = 100
chains = 2
seed = 5
target_accept = 0.5
[population.margins]
g = { g0 = 0.125, g1 = 0.125, g2 = 0.125, g3 = 0.125, g4 = 0.125, g5 = 0.125, g6 = 0.125, g7 = 0.125 }
[estimands.mean]
[report]
plots = false
"""
KEEP = ["estimand", "treatment", "mean", "sd", "lower", "upper"]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    from generate import simulate

    folder = tmp_path_factory.mktemp("specs")
    simulate(n=600, seed=5).to_csv(folder / "clicks.csv", index=False)
    rng = np.random.default_rng(0)
    pd.DataFrame({"g": [f"g{i}" for i in range(8)], "y": rng.normal(0, 1, 8).round(3)}).to_csv(
        folder / "funnel.csv", index=False)
    for name, seed in (("ab", 1), ("ab_again", 2)):
        (folder / f"{name}.toml").write_text(textwrap.dedent(GOOD).lstrip().replace("NAME", name)
                                             .replace("SEED", str(seed)))
    (folder / "funnel.toml").write_text(textwrap.dedent(FUNNEL).lstrip())
    return folder


def _executing(dask_worker) -> list[str]:
    """On a worker: the keys of the tasks it is running now."""
    return [str(ts.key) for ts in dask_worker.state.tasks.values() if ts.state == "executing"]


def _compile_flags() -> str:
    return os.environ.get("PYTENSOR_FLAGS", "")


def _kill_when_running(sched, index: int, seen: dict) -> None:
    """Wait until a worker reports the task ``index`` (its key ends with ``-index``) executing and
    every worker has set its compile directory (each has begun a task), note those, then SIGKILL
    that worker's process."""
    client = sched.client
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        victim = next((address for address, keys in client.run(_executing).items()
                       if any(k.endswith(f"-{index}") for k in keys)), None)
        if victim is not None:
            flags = client.run(_compile_flags)
            if len(flags) == sched.workers and all("base_compiledir=" in f for f in flags.values()):
                pid = client.run(os.getpid, workers=[victim])[victim]
                os.kill(pid, signal.SIGKILL)
                seen.update(address=victim, pid=pid, flags=flags)
                return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def killed(specs, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    seen: dict = {}
    threads = []

    def on_ready(sched):
        t = threading.Thread(target=_kill_when_running, args=(sched, 0, seen), daemon=True)
        t.start()
        threads.append(t)

    files = [specs / "ab.toml", specs / "ab_again.toml", specs / "funnel.toml"]  # ab is task 0
    res = b.batch(files, out=out, workers=2, strict=True, on_ready=on_ready)
    for t in threads:
        t.join(timeout=10)
    return res, out, seen


def _rows(table):
    return table[KEEP].sort_values(["estimand", "treatment"]).reset_index(drop=True)


def test_a_worker_killed_while_running_a_spec_costs_no_result(killed, specs, tmp_path):
    res, out, seen = killed
    assert "address" in seen, "no worker was seen running the first spec"
    runs = {r.run: r for r in res.records}
    assert set(runs) == {"ab", "ab_again", "funnel"}
    # the killed spec ran again, on another worker process (the nanny restarts the dead one
    # under a new address), and finished like the others
    assert runs["ab"].worker and runs["ab"].worker != seen["address"]
    table = pd.read_csv(out / "batch.csv")
    for name in ("ab", "ab_again"):
        assert runs[name].status == "ok" and runs[name].exit_code == 0, runs[name]
        assert (out / name / "estimands.csv").is_file() and (out / name / "report.html").is_file()
        rows = table[table["run"] == name]
        assert (rows["status"] == "ok").all() and (rows["exit_code"] == 0).all()
        assert set(rows["estimand"]) == {"click_rate", "lift"} and rows["mean"].notna().all()
    assert (out / "funnel" / "estimands.csv").is_file()
    # a number is a function of spec, data and seed: the retried run gives `mrp run`'s numbers
    alone = run(specs / "ab.toml", out=tmp_path / "ab", cache=False)
    pd.testing.assert_frame_equal(_rows(pd.read_csv(out / "ab" / "estimands.csv")), _rows(alone.estimands),
                                  check_exact=False, rtol=1e-9, check_dtype=False)
    # the two workers were inside their tasks, each with its own PyTensor compile directory
    dirs = [f.split("base_compiledir=")[1].split(",")[0] for f in seen["flags"].values()]
    assert len(dirs) == 2 and len(set(dirs)) == 2
    assert all(d.startswith(str(compile_root())) for d in dirs)


def test_a_divergent_fit_under_strict_is_a_row_with_exit_code_5_and_stops_nothing(killed):
    res, out, _ = killed
    runs = {r.run: r for r in res.records}
    funnel = runs["funnel"]
    assert funnel.status == "failed" and funnel.exit_code == 5
    assert "--strict" in funnel.error and "divergent transitions" in funnel.error
    assert funnel.verdict == "do not use" and any("divergent" in c for c in funnel.failed_checks)
    assert runs["ab"].status == runs["ab_again"].status == "ok"
    assert res.exit_code == 5
    row = pd.read_csv(out / "batch.csv").set_index("run").loc["funnel"]
    assert row["status"] == "failed" and row["exit_code"] == 5 and "divergent transitions" in row["error"]
    diagnostics = json.loads((out / "funnel" / "manifest.json").read_text())["diagnostics"]
    assert diagnostics["divergences"] > 0
    # its folder is written (the checks failed, not the run): the index links its report, which
    # shows the failed checks
    assert "divergent transitions" in (out / "funnel" / "report.html").read_text()
    assert 'href="funnel/report.html"' in (out / "index.html").read_text()
