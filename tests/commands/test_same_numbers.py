"""The same spec and seed give the same numbers: the shipped specs against numbers recorded
before the code was reorganised (tests/golden/, rewritten only on purpose with
`python tests/commands/test_same_numbers.py`, when a change is meant to move the numbers).

The bits depend on the BLAS kernels OpenBLAS picks for the CPU (their sums round differently in
the last bit, and the sampler's trajectories amplify that): tests/golden/recorded.json names the
kernels the numbers were recorded with (and, for the record, the CPU). Where the CPU runs those, the
spec is run in a fresh process with ``OPENBLAS_CORETYPE`` set to them and must give the recorded
numbers bit for bit (seen across an Intel Xeon and an AMD EPYC); on a CPU that cannot, the numbers
must agree within Monte Carlo error (docs/outputs.md, Reproducibility)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
NUMBERS = ["mean", "median", "sd", "lower", "upper"]
CASES = {  # name -> (spec, --set overrides): small fits, so the test stays quick
    "ab_click": (ROOT / "specs" / "ab_click.toml", ["fit.draws=300", "fit.tune=300", "fit.chains=2"]),
    "mrp_primer": (ROOT / "examples" / "mrp_primer" / "primer.toml",
                   ["fit.draws=200", "fit.tune=200", "fit.chains=2"]),
}
RECORDING_KERNELS = "Haswell"  # OpenBLAS's kernels a recording uses (AVX2 and FMA: most x86-64 CPUs since 2013)
# the CPU flags each OpenBLAS kernel set needs (forcing kernels the CPU lacks would crash it)
KERNEL_NEEDS = {"SkylakeX": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}, "Haswell": {"avx2", "fma"}}
# Monte Carlo standard error of each number in units of sd / sqrt(bulk ESS) (normal approximations:
# a median 1.25, an sd 0.71, a 5 % or 95 % quantile 2.1, a 2.5 % or 97.5 % one 2.7; the interval's
# ends get 3.5, since the table has no tail ESS and the tails mix more slowly than the bulk)
MCSE_FACTOR = {"mean": 1.0, "median": 1.3, "sd": 0.8, "lower": 3.5, "upper": 3.5}


def numbers(name: str, out: Path) -> pd.DataFrame:
    import mrp_formula

    spec, overrides = CASES[name]
    if not (ROOT / "examples" / "ab_click" / "clicks.csv").exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "ab_click" / "generate.py")], check=True)
    result = mrp_formula.run(spec, out=out, overrides=overrides, cache=False)
    table = result.estimands
    labels = [c for c in ("estimand", *result.manifest.get("group_columns", ()), "scale") if c in table.columns]
    labels += [c for c in table.columns if c not in labels and c not in NUMBERS and pd.api.types.is_string_dtype(table[c])
               and c not in ("ci_kind", "expected_loss_unit", "first", "second")]
    return table[labels + NUMBERS + ["ess_bulk"]].reset_index(drop=True)


def cpu_flags() -> set[str]:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


def can_run(kernels: str) -> bool:
    return sys.platform == "linux" and KERNEL_NEEDS[kernels] <= cpu_flags()


def cpu_model() -> str:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
    except (OSError, StopIteration):
        return ""
    return line.split(":", 1)[1].strip()


def recorded() -> dict:
    """The kernels tests/golden was recorded with, and the CPU it was recorded on."""
    return json.loads((GOLDEN / "recorded.json").read_text())




def numbers_with_kernels(name: str, out: Path, kernels: str) -> pd.DataFrame:
    """``numbers`` in a fresh process whose OpenBLAS uses ``kernels`` (it reads the variable once, when loaded)."""
    # this checkout's package first, whatever the environment has installed
    env = {**os.environ, "OPENBLAS_CORETYPE": kernels,
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    csv = out.parent / f"{name}-numbers.csv"
    proc = subprocess.run([sys.executable, __file__, "--csv", name, str(out), str(csv)], capture_output=True,
                          text=True, env=env, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_csv(csv, keep_default_na=False)


def same_labels(name: str, now: pd.DataFrame, before: pd.DataFrame) -> None:
    assert list(now.columns) == list(before.columns) + ["ess_bulk"]
    for col in before.columns:
        if col not in NUMBERS:
            assert now[col].fillna("").astype(str).tolist() == before[col].fillna("").astype(str).tolist(), f"{name}: {col}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_numbers_as_recorded(name, tmp_path):
    before = pd.read_csv(GOLDEN / f"{name}.csv", keep_default_na=False)
    if can_run(recorded()["kernels"]):  # the recorded kernels: the same bits
        now = numbers_with_kernels(name, tmp_path / "run", recorded()["kernels"])
        same_labels(name, now, before)
        for col in NUMBERS:
            np.testing.assert_allclose(now[col].to_numpy(float), before[col].to_numpy(float), rtol=1e-9,
                                       err_msg=f"{name}: {col} moved")
        return
    now = numbers(name, tmp_path / "run")  # other kernels: other draws, the same posterior
    same_labels(name, now, before)
    mcse = now["sd"].to_numpy(float) / np.sqrt(now["ess_bulk"].to_numpy(float))
    for col in NUMBERS:
        # two independent runs differ by sqrt(2) MCSE in sd; 5 of those is a miss of 1 in 10^6 per number
        tol = 5 * np.sqrt(2) * MCSE_FACTOR[col] * mcse
        gap = np.abs(now[col].to_numpy(float) - before[col].to_numpy(float))
        assert (gap <= tol).all(), f"{name}: {col} moved beyond Monte Carlo error: {gap.max():.4g} > {tol[gap.argmax()]:.4g}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--csv"]:  # one case's numbers into a file (numbers_with_kernels)
        numbers(sys.argv[2], Path(sys.argv[3])).to_csv(sys.argv[4], index=False, float_format="%.17g")
        raise SystemExit(0)
    # record the numbers (only when a change is meant to move them), with the recorded kernels
    import tempfile

    if os.environ.get("OPENBLAS_CORETYPE") != RECORDING_KERNELS:
        if not can_run(RECORDING_KERNELS):
            raise SystemExit(f"this CPU cannot run OpenBLAS's {RECORDING_KERNELS} kernels: record on one that can, "
                             "or change RECORDING_KERNELS")
        os.execve(sys.executable, [sys.executable, __file__], {**os.environ, "OPENBLAS_CORETYPE": RECORDING_KERNELS})
    GOLDEN.mkdir(exist_ok=True)
    (GOLDEN / "recorded.json").write_text(json.dumps({"kernels": RECORDING_KERNELS, "cpu": cpu_model()}) + "\n")
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            numbers(case, Path(d) / "run").drop(columns="ess_bulk").to_csv(GOLDEN / f"{case}.csv", index=False,
                                                                           float_format="%.17g")
            print("recorded", case)
