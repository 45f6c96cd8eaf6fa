"""The whole benchmark: generate the data, run every case, save ``results.json`` as it goes."""

from __future__ import annotations

import json
import time

from benchmarks.data import design, generate, true_estimands, write_spec
from benchmarks.measure import machine, mem_available_gb, package_files, run_case, run_cli
from benchmarks.settings import BIG_LIMIT_GB, FULL, MEM_LIMIT_GB, OUT, QUICK, results_path


def predict_seconds(points: list[tuple[int, float]], n: int) -> float | None:
    """Time at n rows from the measured ones: a fixed cost plus a cost per row (the two largest
    measured sizes); with one point, proportional to n (a pessimistic guess)."""
    if not points:
        return None
    pts = sorted(points)
    if len(pts) == 1:
        n1, t1 = pts[0]
        return t1 * n / n1
    (n1, t1), (n2, t2) = pts[-2], pts[-1]
    slope = (t2 - t1) / (n2 - n1)
    if slope <= 0:
        return t2 * n / n2
    return t2 + slope * (n - n2)


def orchestrate(args) -> dict:
    """Generate the data, run every case (each in a fresh interpreter) and save the results as they come."""
    cfg = QUICK if args.quick else FULL
    logs = OUT / ("logs-quick" if args.quick else "logs")
    budget = args.budget
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"quick": args.quick, "budget_seconds": budget, "mem_limit_gb": MEM_LIMIT_GB, "config": cfg,
               "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "truth": true_estimands(),
               "design": design(),
               "mrp_fit": [], "bambi_fit": {"nutpie": [], "pymc": []}, "skipped": [],
               "poststrat": {"mrp": [], "bambi": [], "run": []}, "rerun": [], "package_start": package_files()}
    def save():
        results_path(args.quick).write_text(json.dumps(results, indent=1, default=str))

    files = generate(cfg, OUT)
    specs = OUT / ("specs-quick" if args.quick else "specs")
    specs.mkdir(exist_ok=True)
    runs = OUT / ("runs-quick" if args.quick else "runs")

    # --- mrp-formula fits
    print("mrp-formula fits", flush=True)
    for n in cfg["fit_sizes"]:
        spec = specs / f"ab_{n}.toml"
        write_spec(spec, files["samples"][n], files["population"], f"bench-ab-{n}")
        r = run_case({"case": "mrp_fit", "spec": str(spec), "run_dir": str(runs / f"mrp_{n}")},
                     timeout=3 * budget, logs=logs, label=f"mrp_fit_{n}")
        r["n"] = n
        results["mrp_fit"].append(r)
        save()
    # the same fits with the mass matrix forced diagonal, where "auto" chose low-rank
    for n in [n for n in cfg["fit_sizes"] if n >= 100_000][::2]:
        r = run_case({"case": "mrp_fit", "spec": str(specs / f"ab_{n}.toml"),
                      "run_dir": str(runs / f"mrp_{n}_diagonal"), "overrides": ['fit.mass_matrix="diagonal"']},
                     timeout=3 * budget, logs=logs, label=f"mrp_fit_{n}_diagonal")
        r["n"] = n
        results.setdefault("mrp_fit_diagonal", []).append(r)
        save()

    # --- plain Bambi fits, capped by the time budget
    for sampler in ("nutpie", "pymc"):
        if sampler == "pymc" and args.no_pymc:
            results["skipped"].append({"what": "bambi pymc", "why": "--no-pymc"})
            continue
        print(f"plain Bambi fits ({sampler})", flush=True)
        points = []
        for n in cfg["bambi_sizes"]:
            guess = predict_seconds(points, n)
            if guess is not None and guess > budget:
                results["bambi_fit"][sampler].append({"n": n, "status": "skipped", "predicted_seconds": guess})
                print(f"  bambi_{sampler}_{n}: skipped (predicted {guess:.0f} s > budget {budget:.0f} s)", flush=True)
                continue
            r = run_case({"case": "bambi_fit", "sampler": sampler, "sample": str(files["samples"][n]),
                          "population": str(files["population"])}, timeout=2 * budget,
                         logs=logs, label=f"bambi_{sampler}_{n}")
            r["n"] = n
            r["predicted_seconds"] = guess
            results["bambi_fit"][sampler].append(r)
            if r.get("status") == "ok":
                points.append((n, r["wall_seconds"]))
            save()

    # --- poststratification of big populations with 4,000 draws
    base_n = 100_000 if 100_000 in cfg["fit_sizes"] else max(cfg["fit_sizes"])
    base_spec, base_run = specs / f"ab_{base_n}.toml", runs / f"mrp_{base_n}"
    results["poststrat_posterior"] = f"mrp fit on {base_n:,} rows"
    results["base_n"] = base_n
    print(f"poststratification (posterior of the {base_n}-row fit)", flush=True)
    for m in cfg["pop_sizes"]:
        common = {"spec": str(base_spec), "run_dir": str(base_run), "population": str(files["big_pops"][m])}
        r = run_case(dict(common, case="mrp_poststrat"), timeout=3 * budget, mem_limit_gb=MEM_LIMIT_GB,
                     logs=logs, label=f"poststrat_mrp_{m}")
        r["m"] = m
        results["poststrat"]["mrp"].append(r)
        r = run_case(dict(common, case="bambi_predict"), timeout=2 * budget, mem_limit_gb=MEM_LIMIT_GB,
                     logs=logs, label=f"poststrat_bambi_{m}")
        r["m"] = m
        results["poststrat"]["bambi"].append(r)
        if (r.get("status") == "oom" and m == min(cfg["pop_sizes"]) and not args.quick
                and mem_available_gb() > BIG_LIMIT_GB + 2):
            # how much Bambi really needs at the smallest size: once more with a higher limit
            r = run_case(dict(common, case="bambi_predict"), timeout=2 * budget, mem_limit_gb=BIG_LIMIT_GB,
                         logs=logs, label=f"poststrat_bambi_{m}_{BIG_LIMIT_GB:.0f}gb")
            r["m"] = m
            results["poststrat"]["bambi_big_limit"] = r
        spec = specs / f"ab_{base_n}_pop_{m}.toml"
        write_spec(spec, files["samples"][base_n], files["big_pops"][m], f"bench-ab-{base_n}-pop-{m}")
        r = run_case({"case": "mrp_run_cached", "spec": str(spec), "run_dir": str(runs / f"mrp_{base_n}_pop_{m}")},
                     timeout=3 * budget, mem_limit_gb=MEM_LIMIT_GB, logs=logs, label=f"poststrat_run_{m}")
        r["m"] = m
        results["poststrat"]["run"].append(r)
        save()

    # --- a re-run whose estimands changed, fit cached: the CLI, so imports count
    print("cached re-runs (mrp run --set ...)", flush=True)
    changes = [['estimands.lift.scale="ratio"'],
               ['estimands.lift_by_gender={contrast={treatment=["treatment","control"]}, by=["gender"]}'],
               ['estimands.rate_by_age={at={treatment=["control","treatment"]}, by=["age"]}']]
    changes = changes[: cfg["reruns"]]
    if not args.quick:  # for information: the same with the default report.plots = true
        changes.append(['estimands.lift.scale="difference"', "report.plots=true"])
    for i, sets in enumerate(changes):
        cli = ["run", str(base_spec), "--out", str(runs / f"mrp_{base_n}_rerun"), "--json", "--no-progress"]
        for s in sets:
            cli += ["--set", s]
        r = run_cli(cli, logs=logs, label=f"rerun_{i + 1}")
        man = runs / f"mrp_{base_n}_rerun" / "manifest.json"
        if man.exists():
            m = json.loads(man.read_text())
            r["fit_reused"] = m.get("fit_cache", {}).get("reused")
            r["timings"] = m.get("timings_seconds")
        r["change"] = sets
        results["rerun"].append(r)
        save()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    results["package_end"] = package_files()
    save()
    return results
