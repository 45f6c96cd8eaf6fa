"""Measurement: wall time, CPU time, peak memory, sampling efficiency.

Every measured case runs in a fresh interpreter (``python -m benchmarks.cases PARAMS``), so
imports, compilation and peak memory are those of a cold process. Peak memory is the larger of the
child's ``ru_maxrss`` (from ``os.wait4``) and the sum of RSS over the child's process tree sampled
every 0.1 s; the prediction cases run under an address-space limit (``RLIMIT_AS``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.settings import ROOT

# ------------------------------------------------------------------------------- inside a case


def proc_status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux), in MB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def vm_hwm_mb() -> float:
    """Peak RSS of this process so far, in MB."""
    peak = proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_rss_mb() -> float:
    rss = proc_status_mb("VmRSS")
    return rss if rss is not None else float("nan")


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime


def posterior_diagnostics(dt) -> dict:
    """Minimum bulk ESS over every element of every parameter, max R-hat, divergences."""
    import arviz as az
    import numpy as np

    post = dt["posterior"].to_dataset()
    ess, rhat = {}, {}
    for v in post.data_vars:
        da = post[v]
        if "__obs__" in da.dims:
            continue
        ess[v] = float(np.min(np.asarray(az.ess(da, method="bulk"))))
        rhat[v] = float(np.max(np.asarray(az.rhat(da))))
    stats = dt["sample_stats"] if "sample_stats" in dt.children else None
    div = int(np.asarray(stats["diverging"]).sum()) if stats is not None else None
    steps = float(np.asarray(stats["n_steps"]).mean()) if stats is not None and "n_steps" in stats else None
    worst = min(ess, key=ess.get)
    return {"min_ess_bulk": ess[worst], "min_ess_param": worst, "max_rhat": max(rhat.values()),
            "divergences": div, "chains": int(post.sizes["chain"]), "draws": int(post.sizes["draw"]),
            "mean_steps_per_draw": steps, "ess_by_param": ess}


def intercept_group_corr(post) -> float:
    """Posterior correlation of the intercept with the mean age effect + mean region effect (the
    ridge along which they trade off); ``post`` is the posterior group of a fit."""
    import numpy as np

    icpt = np.asarray(post["Intercept"].values).ravel()
    total = sum(np.asarray(post[v].values).reshape(icpt.size, -1).mean(axis=1) for v in ("1|age", "1|region"))
    return float(np.corrcoef(icpt, total)[0, 1])


def estimand_ess(arrays: dict) -> dict:
    """Bulk ESS of per-draw estimands given as (chains, draws) arrays; the minimum and each."""
    import arviz as az
    import numpy as np

    each = {k: float(az.ess(np.asarray(v, dtype=float), method="bulk")) for k, v in arrays.items()}
    return {"estimand_min_ess": min(each.values()), "estimand_ess": each}


# ------------------------------------------------------------------------------- around a case


def tree_rss_mb(pid: int) -> float:
    """The memory of a process and its descendants (Linux /proc), in MB: the sum of their
    proportional set sizes (``Pss`` of ``smaps_rollup``), where a page two processes share counts
    half in each, so a forked child (``mrp run`` draws its PNGs in one) adds only the pages it
    writes; ``VmRSS`` where the kernel offers no ``smaps_rollup``."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        q = stack.pop()
        if q in seen:
            continue
        seen.add(q)
        try:
            total += _pss_mb(q)
            for task in Path(f"/proc/{q}/task").iterdir():
                kids = (task / "children").read_text().split()
                stack.extend(int(k) for k in kids)
        except (OSError, ValueError):
            continue
    return total


def _pss_mb(pid: int) -> float:
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return 0.0


def child_env() -> dict:
    """The environment of a case or CLI run: this checkout's mrp_formula first on the path, so the
    code measured is the code hashed by ``package_files``. Python may write bytecode caches (an
    environment that forbids it would make every process compile mrp_formula's modules again,
    which an installed package never does, while the libraries it is compared with have theirs)."""
    path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_case(params: dict, *, logs: Path, timeout: float, mem_limit_gb: float | None = None, label: str) -> dict:
    """Run one case in a fresh interpreter; wall time, peak memory and the case's own numbers."""
    logs.mkdir(parents=True, exist_ok=True)
    result_path = logs / f"{label}.json"
    result_path.unlink(missing_ok=True)
    params = dict(params, result=str(result_path))
    limit = int(mem_limit_gb * 1024 ** 3) if mem_limit_gb else None

    def preexec():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(child_env(), PYTHONUNBUFFERED="1")
    load0 = os.getloadavg()[0]
    log = open(logs / f"{label}.log", "w")
    params["t_launch"] = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cases", json.dumps(params)],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec, env=env, cwd=str(ROOT))
    peak_tree, timed_out, status, ru = 0.0, False, 0, None
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak_tree = max(peak_tree, tree_rss_mb(proc.pid))
        if time.perf_counter() - start > timeout and not timed_out:
            timed_out = True
            proc.kill()
        time.sleep(0.1)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    out = {}
    if result_path.exists():
        out = json.loads(result_path.read_text())
    elif timed_out:
        out = {"status": "timeout", "error": f"stopped after {timeout:.0f} s"}
    else:
        tail = (logs / f"{label}.log").read_text()[-400:]
        killed = proc.returncode < 0
        oom = "MemoryError" in tail or "std::bad_alloc" in tail or "Cannot allocate memory" in tail
        out = {"status": "oom" if (oom or (killed and limit)) else "error",
               "error": f"exit code {proc.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"}
    out["wall_seconds"] = wall
    out["cpu_seconds"] = (ru.ru_utime + ru.ru_stime) if ru else None
    out["peak_rss_mb_wait4"] = ru.ru_maxrss / 1024 if ru else None
    out["peak_rss_mb_tree"] = peak_tree
    out["peak_rss_mb"] = max(x for x in (out.get("peak_rss_mb_wait4") or 0, peak_tree) if x is not None)
    out["load_before"] = load0
    out["load_after"] = os.getloadavg()[0]
    out["mem_limit_gb"] = mem_limit_gb
    out["label"] = label
    print(f"  {label}: {out.get('status')} in {wall:.1f} s, peak {out['peak_rss_mb']:.0f} MB"
          + (f" ({out.get('error')})" if out.get("status") != "ok" else ""), flush=True)
    return out


def run_cli(args: list[str], *, logs: Path, label: str) -> dict:
    """`.venv/bin/mrp ...` as a subprocess: wall time includes interpreter start and imports."""
    exe = Path(sys.executable).parent / "mrp"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([str(exe), *args], cwd=str(ROOT), capture_output=True, text=True, env=child_env())
    wall = time.perf_counter() - start
    (logs / f"{label}.log").write_text(proc.stderr)
    out = {"label": label, "wall_seconds": wall, "exit_code": proc.returncode, "args": args}
    try:
        doc = json.loads(proc.stdout)
        out["ok"] = doc.get("ok")
        out["estimands"] = [r.get("estimand") for r in doc.get("estimands", [])]
    except json.JSONDecodeError:
        out["ok"] = False
    print(f"  {label}: exit {proc.returncode} in {wall:.1f} s", flush=True)
    return out


# ------------------------------------------------------------------------------- the machine


def _meminfo_gb(field: str) -> float | None:
    """A line of /proc/meminfo (Linux), in GB; None where there is none."""
    try:
        return int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                        if line.startswith(field + ":"))) / 1024 ** 2
    except (OSError, StopIteration):
        return None


def mem_available_gb() -> float:
    return _meminfo_gb("MemAvailable") or 0.0


def package_files() -> dict:
    """sha256 of every source file of mrp_formula: to tell whether the package changed during the run."""
    import hashlib

    pkg = ROOT / "mrp_formula"
    return {f.relative_to(pkg).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()[:16]
            for f in sorted(pkg.rglob("*.py"))}


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in
                                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    total = _meminfo_gb("MemTotal")
    if total is not None:
        info["mem_total_gb"] = total
    try:
        from importlib.metadata import version

        info["versions"] = {p: version(p) for p in ("bambi", "pymc", "nutpie", "arviz", "numpy", "pandas",
                                                     "duckdb", "pytensor")}
    except Exception:
        pass
    return info
