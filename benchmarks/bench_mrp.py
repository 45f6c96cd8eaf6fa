#!/usr/bin/env python
"""Benchmark: real MRP models (issue 11), mrp-formula against plain Bambi by hand, side by side.

    .venv/bin/python benchmarks/bench_mrp.py            # full run, writes docs/benchmarks-mrp.md
    .venv/bin/python benchmarks/bench_mrp.py --quick    # fewer draws, no shipped primer, a smaller
                                                        # CCES case: benchmarks/out/benchmarks-mrp-quick.md
    .venv/bin/python benchmarks/bench_mrp.py --report-only
    .venv/bin/python benchmarks/bench_mrp.py --only primer,ab     # some groups of cases (see --help)

Cases, each in a fresh interpreter (benchmarks/cases_mrp.py through measure.run_case), one after
the other in one run so that they share the machine's load (recorded with each case):

- the MRP primer as shipped (4 x 1,000, target_accept 0.95): end to end, divergences, the
  smallest estimand and parameter ESS, the efficiency block of the manifest;
- the primer at 2 x 500 (tune 500, 0.95) through mrp-formula (its Python API in a fresh interpreter,
  which builds the model through Bambi and records its recipe, and ``mrp run`` as a fresh CLI
  process, which reuses it) and through plain Bambi on the same aggregated cells with PyMC's NUTS;
- a small A/B spec (4 cells) refitted with ``mrp run --refit`` as a fresh CLI process (twice: the
  first compiles and records the model, the second reuses it), against Bambi + nutpie on the same
  cells;
- microseconds per log-density-and-gradient evaluation on the primer's cells: the compiled model
  against a hand-written numpy version and a fused numba loop;
- a CCES-scale simulated MRP (state x age x edu x race x sex, (1|state:race), (1|age:edu),
  >= 10,000 distinct cells, a population of every combination) against plain Bambi by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import machine, run_case, run_cli  # noqa: E402
from benchmarks.settings import OUT, ROOT  # noqa: E402

PRIMER = ROOT / "examples" / "mrp_primer" / "primer.toml"
PRIMER_NUMERIC = ["p_evang", "p_mormon", "kerry_04"]
CCES_FORMULA = "(1|state) + (1|age) + (1|edu) + (1|race) + (1|state:race) + (1|age:edu) + sex"
CCES_LEVELS = {"state": [f"s{i:02d}" for i in range(50)], "age": [f"a{i}" for i in range(6)],
               "edu": [f"e{i}" for i in range(5)], "race": [f"r{i}" for i in range(4)], "sex": ["f", "m"]}
GROUPS = ("primer", "primer_vs_bambi", "gradient", "ab", "cces")
AB_SPEC = """
name = "ab-refit"
[data]
source = "clicks.csv"
[model]
formula = "clicked ~ treatment + (1 | gender)"
family = "bernoulli"
levels.treatment = ["control", "treatment"]
[model.priors]
Intercept = "Normal(0, 1.5)"
treatment = "Normal(0, 1)"
"1|gender" = "Normal(0, HalfNormal(0.5))"
[fit]
draws = 1000
tune = 1000
chains = 2
seed = 1
[population.margins]
gender = { female = 0.5, male = 0.5 }
[estimands.click_rate]
at = { treatment = ["control", "treatment"] }
"""


def results_path(quick: bool) -> Path:
    return OUT / ("results-mrp-quick.json" if quick else "results-mrp.json")


def primer_cells(path: Path) -> str:
    """The primer's aggregated cells as mrp-formula fits them (for Bambi by hand); the formula."""
    from mrp_formula import steps

    plan = steps.plan(PRIMER)
    plan.fit_plan.data.to_parquet(path)
    return plan.fit_plan.formula.replace("mrp_successes", "mrp_successes").strip()


def simulate_cces(folder: Path, respondents: int, seed: int = 11) -> dict:
    """A CCES-like survey: 50 states x 6 ages x 5 educations x 4 races x 2 sexes (12,000 cells),
    effects drawn from known sds, a sample skewed by age, education and race, and a census-like
    population count for every combination."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    L = CCES_LEVELS
    eff = {"state": rng.normal(0, 0.4, 50), "age": rng.normal(0, 0.3, 6), "edu": rng.normal(0, 0.3, 5),
           "race": rng.normal(0, 0.6, 4), "state:race": rng.normal(0, 0.25, (50, 4)),
           "age:edu": rng.normal(0, 0.15, (6, 5)), "sex": 0.2}
    grid = pd.MultiIndex.from_product([range(50), range(6), range(5), range(4), range(2)],
                                      names=["state", "age", "edu", "race", "sex"]).to_frame(index=False)
    size = {"state": rng.lognormal(0, 0.3, 50), "age": np.array([.12, .17, .18, .18, .17, .18]),
            "edu": np.array([.14, .26, .26, .2, .14]), "race": np.array([.4, .2, .24, .16]),
            "sex": np.array([.49, .51])}
    share = np.ones(len(grid))
    for k, s in size.items():
        share *= (s / s.sum())[grid[k].to_numpy()]
    pop_n = np.maximum(np.round(share / share.sum() * 230_000_000), 1)
    bias = {"age": np.array([.7, .8, 1, 1.1, 1.2, 1.3]), "edu": np.array([.7, .9, 1, 1.2, 1.4]),
            "race": np.array([1.2, .9, .8, 1])}
    w = share.copy()
    for k, b in bias.items():
        w *= b[grid[k].to_numpy()]
    cell = rng.choice(len(grid), size=respondents, p=w / w.sum())
    g = grid.iloc[cell].reset_index(drop=True)

    def eta(f):
        return (-0.3 + eff["state"][f.state] + eff["age"][f.age] + eff["edu"][f.edu] + eff["race"][f.race]
                + eff["state:race"][f.state, f.race] + eff["age:edu"][f.age, f.edu] + eff["sex"] * f.sex)

    y = (rng.random(respondents) < 1 / (1 + np.exp(-eta(g)))).astype(int)

    def named(frame):
        return pd.DataFrame({k: np.asarray(L[k])[frame[k].to_numpy()] for k in L})

    sample = named(g).assign(y=y)
    sample.to_csv(folder / "sample.csv", index=False)
    pop = named(grid).assign(N=pop_n.astype(int))
    pop.to_csv(folder / "population.csv", index=False)
    pop.to_parquet(folder / "population.parquet")
    cells = sample.groupby(list(L), observed=True)["y"].agg(["sum", "count"]).reset_index()
    cells = cells.rename(columns={"sum": "mrp_successes", "count": "mrp_trials"})
    cells.to_parquet(folder / "cells.parquet")
    # the truth each state's estimate is judged against: the population-weighted mean of the true
    # probabilities of its cells (no random draw here: the sample is the same with or without it)
    p_true = 1 / (1 + np.exp(-eta(grid)))
    state = grid.state.to_numpy()
    truth = np.bincount(state, weights=pop_n * p_true) / np.bincount(state, weights=pop_n)
    return {"respondents": respondents, "cells": len(cells), "population_cells": len(pop),
            "truth": {s: float(t) for s, t in zip(L["state"], truth)}}


def cces_spec(folder: Path, draws: int, chains: int) -> Path:
    spec = folder / "cces.toml"
    spec.write_text(textwrap.dedent(f"""
        name = "cces-sim"
        [data]
        source = "sample.csv"
        [model]
        formula = "y ~ {CCES_FORMULA}"
        family = "bernoulli"
        [fit]
        draws = {draws}
        tune = {draws}
        chains = {chains}
        seed = 7
        [population]
        source = "population.csv"
        weight = "N"
        [estimands.support]
        by = ["state"]
        [report]
        plots = false
        """).lstrip())
    return spec


def orchestrate(args) -> dict:
    quick = args.quick
    logs = OUT / ("logs-mrp-quick" if quick else "logs-mrp")
    work = OUT / ("mrp-quick" if quick else "mrp")
    work.mkdir(parents=True, exist_ok=True)
    res = {"quick": quick, "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "load_start": os.getloadavg(), "cases": {}}
    if args.only and results_path(quick).is_file():  # some groups again: the others' results stay
        earlier = json.loads(results_path(quick).read_text())
        res = {**earlier, "cases": dict(earlier.get("cases", {})),
               "rerun": [*earlier.get("rerun", []), f"{args.only} at {res['started']}"]}

    def save():
        results_path(quick).write_text(json.dumps(res, indent=1, default=str))

    def wanted(label) -> bool:
        return not args.cases or label in args.cases.split(",")

    def case(label, params, timeout):
        if not wanted(label):
            return res["cases"].get(label, {})  # not rerun: its earlier result stays
        print(label, flush=True)
        r = run_case(params, logs=logs, timeout=timeout, label=label)
        r["loadavg"] = os.getloadavg()
        res["cases"][label] = r
        save()
        return r

    budget = args.budget
    only = set(args.only.split(",")) if args.only else set(GROUPS)
    primer_formula = primer_cells(work / "primer_cells.parquet")
    primer_cat = ["race", "female", "age", "edu", "state", "region", "poll"]
    if not quick and "primer" in only:
        case("primer_shipped_mrp", {"case": "mrp_spec", "spec": str(PRIMER), "run_dir": str(work / "primer"),
                                    "by": "state", "estimand": "support"}, timeout=budget)
    small = dict(draws=200, tune=200) if quick else dict(draws=500, tune=500)
    if "primer_vs_bambi" in only:
        primer_vs_bambi(res, save, case, wanted, work, logs, small, primer_formula, primer_cat, budget)
    if "gradient" in only:
        case("gradient_cost", {"case": "gradient_cost", "spec": str(PRIMER), "numeric": PRIMER_NUMERIC,
                               "evals": 1000 if quick else 3000}, timeout=budget)
    if "ab" in only:
        ab_refit(res, save, case, work, logs, budget)
    if "cces" in only:
        cces(res, case, work, quick, budget)
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    res["load_end"] = os.getloadavg()
    save()
    return res


def primer_vs_bambi(res, save, case, wanted, work, logs, small, primer_formula, primer_cat, budget) -> None:
    """The primer at 2 chains through mrp-formula (the Python API in a fresh interpreter, and
    ``mrp run`` as a fresh CLI process, as a user runs it) and through plain Bambi + PyMC on its cells."""
    overrides = [f"fit.draws={small['draws']}", f"fit.tune={small['tune']}", "fit.chains=2", "report.plots=false"]
    if wanted("primer_2chains_mrp"):  # this run builds the model through Bambi (and records it); the CLI's reuses it
        res["primer_recipes_removed"] = forget_recipes(work)
    case("primer_2chains_mrp", {"case": "mrp_spec", "spec": str(PRIMER), "run_dir": str(work / "primer_2x"),
                                "overrides": overrides, "by": "state", "estimand": "support"}, timeout=budget)
    if wanted("primer_2chains_cli"):
        res["cases"]["primer_2chains_cli"] = cli_run(["run", str(PRIMER), "--out", str(work / "primer_2x_cli"),
                                                      "--refit", "--no-progress", "--json", "--set", *overrides],
                                                     work / "primer_2x_cli", logs, "primer_2chains_cli")
        save()
    case("primer_2chains_bambi_pymc", {"case": "bambi_cells", "cells": str(work / "primer_cells.parquet"),
                                       "formula": primer_formula, "categorical": primer_cat, "sampler": "pymc",
                                       "chains": 2, "target_accept": 0.95, **small}, timeout=budget)


def cli_run(args: list[str], run_dir: Path, logs: Path, label: str) -> dict:
    """``mrp ARGS`` as a fresh CLI process (as a user runs it), with the run's timings, efficiency
    and diagnostics from the manifest it wrote."""
    load_before = os.getloadavg()[0]
    r = run_cli(args, logs=logs, label=label)
    r["load_before"] = load_before
    man = run_dir / "manifest.json"
    if r["exit_code"] == 0 and man.exists():  # a failed run leaves an earlier folder: not its figures
        m = json.loads(man.read_text())
        r["timings"], r["efficiency"] = m.get("timings_seconds"), m.get("efficiency")
        r["diagnostics"] = {k: v for k, v in m["diagnostics"].items() if k != "worst_parameters"}
    r["loadavg"] = os.getloadavg()
    return r


def ab_refit(res, save, case, work, logs, budget) -> None:
    """A small A/B spec refitted by the CLI in fresh processes, and Bambi + nutpie on its cells."""
    sys.path.insert(0, str(ROOT / "examples" / "ab_click"))
    from generate import simulate

    ab = work / "ab"
    ab.mkdir(exist_ok=True)
    clicks = simulate(n=2000, seed=5)
    clicks.to_csv(ab / "clicks.csv", index=False)
    (ab / "ab.toml").write_text(AB_SPEC.lstrip())
    cells = clicks.groupby(["treatment", "gender"])["clicked"].agg(["sum", "count"]).reset_index()
    cells.rename(columns={"sum": "mrp_successes", "count": "mrp_trials"}).to_parquet(ab / "cells.parquet")
    # the first refit compiles the callbacks and records the model's recipe, as Bambi + nutpie by hand
    # compiles them; the second reuses both
    res["ab_compiled_callbacks_removed"] = forget_compiled_callbacks()
    res["ab_recipes_removed"] = forget_recipes(ab)
    args = ["run", str(ab / "ab.toml"), "--out", str(ab / "run"), "--refit", "--no-progress", "--json"]
    res["cases"]["ab_refit_cli_1"] = cli_run(args, ab / "run", logs, "ab_refit_cli_1")
    save()
    # a few seconds each, so the machine's moment-to-moment speed shows: AB_ROUNDS pairs, one after
    # the other (a reused refit, then Bambi + nutpie by hand), and the medians compared
    rounds = []
    for i in range(AB_ROUNDS):
        mrp = cli_run(args, ab / "run", logs, f"ab_refit_cli_2_{i}")
        bambi = case("ab_bambi_nutpie", {"case": "bambi_cells", "cells": str(ab / "cells.parquet"),
                                         "formula": "p(mrp_successes, mrp_trials) ~ treatment + (1|gender)",
                                         "categorical": ["treatment", "gender"], "sampler": "nutpie", "chains": 2,
                                         "draws": 1000, "tune": 1000, "target_accept": 0.9}, timeout=budget)
        rounds.append((mrp, bambi))
    res["ab_rounds"] = [{"mrp": m.get("wall_seconds"), "bambi_nutpie": b.get("wall_seconds")} for m, b in rounds]
    res["cases"]["ab_refit_cli_2"] = _median_case([m for m, _ in rounds])
    res["cases"]["ab_bambi_nutpie"] = _median_case([b for _, b in rounds])
    save()


AB_ROUNDS = 5


def _median_case(results: list[dict]) -> dict:
    """The result whose wall time is the median of ``results`` (an odd number of them)."""
    ok = sorted((r for r in results if r.get("wall_seconds") is not None), key=lambda r: r["wall_seconds"])
    return ok[len(ok) // 2] if ok else (results[0] if results else {})


def forget_compiled_callbacks() -> int:
    """Remove nutpie's compiled callbacks from the compile cache (``mrp_formula/model/compiled.py``
    stores them in PyTensor's compile directory, beside PyTensor's own kernels, which stay)."""
    import subprocess

    folder = subprocess.run([sys.executable, "-c", "import pytensor; print(pytensor.config.base_compiledir)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    files = list((Path(folder) / "numba").glob("*-mrp-nutpie-*"))
    for f in files:
        f.unlink(missing_ok=True)
    return len(files)


def forget_recipes(folder: Path) -> int:
    """Remove the models' recipes (``mrp_formula/model/reuse.py``) kept beside ``folder``'s runs."""
    import shutil

    from mrp_formula.model.cache import CACHE_DIR
    from mrp_formula.model.reuse import MODELS_DIR

    entries = [d for d in (folder / CACHE_DIR / MODELS_DIR).glob("*") if d.is_dir()]
    for d in entries:
        shutil.rmtree(d)
    return len(entries)


def cces(res, case, work, quick, budget) -> None:
    """A CCES-scale simulation through mrp-formula and plain Bambi (nutpie and PyMC)."""
    cc = work / "cces"
    res["cces"] = simulate_cces(cc, respondents=20_000 if quick else 60_000)
    draws, chains = (200, 2) if quick else (1000, 4)
    spec = cces_spec(cc, draws, chains)
    case("cces_mrp", {"case": "mrp_spec", "spec": str(spec), "run_dir": str(cc / "run"), "by": "state",
                      "estimand": "support"}, timeout=3 * budget)
    for sampler in ("nutpie", "pymc"):
        case(f"cces_bambi_{sampler}", {"case": "bambi_cells", "cells": str(cc / "cells.parquet"),
                                       "formula": f"p(mrp_successes, mrp_trials) ~ {CCES_FORMULA}",
                                       "categorical": list(CCES_LEVELS), "sampler": sampler, "chains": chains,
                                       "draws": draws, "tune": draws, "target_accept": 0.9,
                                       "population": str(cc / "population.parquet"), "weight": "N",
                                       "by": "state"}, timeout=3 * budget)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--budget", type=float, default=1200.0, help="seconds per case before it is stopped")
    ap.add_argument("--report", type=Path, default=None)
    ap.add_argument("--only", default="", help=f"comma-separated groups of cases: {','.join(GROUPS)} (default all)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--cases", default="", help="comma-separated case labels: only these of the chosen groups run "
                                                "(e.g. cces_bambi_nutpie); the others keep their earlier results")
    args = ap.parse_args(argv)
    from benchmarks.report_mrp import write_report

    OUT.mkdir(parents=True, exist_ok=True)
    report = args.report or (OUT / "benchmarks-mrp-quick.md" if args.quick else ROOT / "docs" / "benchmarks-mrp.md")
    res = json.loads(results_path(args.quick).read_text()) if args.report_only else orchestrate(args)
    write_report(res, report)


if __name__ == "__main__":
    main()
