"""The markdown report (docs/benchmarks.md), written from a results dict alone."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.data import design as current_design
from benchmarks.measure import intercept_group_corr
from benchmarks.settings import MEM_LIMIT_GB, OUT


def _f(x, digits=1, unit=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}{unit}"


def _mb(x):
    return "–" if x is None else (f"{x / 1024:,.2f} GB" if x >= 1024 else f"{x:,.0f} MB")


def _code(name: str) -> str:
    """A term name as code inside a markdown table cell (a bare | would end the cell)."""
    return "`" + name.replace("|", "\\|") + "`"


def _n(n):
    return f"1e{int(round(math.log10(n)))}" if n and 10 ** round(math.log10(n)) == n else f"{n:,}"


def _list(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _span(values: list[float], fmt: str = "{:.1f}") -> str:
    """The range of some measured values as text: "1.1–1.3", or one value when they round alike."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def _cpu_per_wall(rows: list[dict]) -> str | None:
    """Fit CPU time / fit wall time over the successful fits: how many cores the fit kept busy on average."""
    ratios = [r["fit_cpu_seconds"] / r["fit_seconds"] for r in rows
              if r.get("status") == "ok" and r.get("fit_cpu_seconds") and r.get("fit_seconds")]
    return _span(ratios) if ratios else None


def _design(res: dict) -> dict:
    """The simulated design the run recorded; results from before it did: the current code's (benchmarks/data.py)."""
    return res.get("design") or current_design()


def _status(r):
    s = r.get("status")
    if s == "ok":
        return None
    if s == "skipped":
        return f"skipped: predicted {r['predicted_seconds'] / 60:,.0f} min > budget"
    if s == "oom":
        return f"out of memory ({r.get('mem_limit_gb') or MEM_LIMIT_GB:.0f} GB address-space limit)"
    return f"{s}: {r.get('error', '')}"


def verdicts(res: dict) -> list[tuple[str, str, str]]:
    """(target, measured, holds?) for the issue's five targets."""
    out = []
    mrp = {r["n"]: r for r in res["mrp_fit"] if r.get("status") == "ok"}
    bn = {r["n"]: r for r in res["bambi_fit"]["nutpie"] if r.get("status") == "ok"}
    bp = {r["n"]: r for r in res["bambi_fit"]["pymc"] if r.get("status") == "ok"}

    def yes(ok):
        return "**holds**" if ok else "**does not hold**"

    n = 100_000
    if n in mrp and (n in bn or n in bp):
        parts, oks = [], []
        for name, b in (("Bambi + nutpie", bn), ("Bambi + PyMC NUTS (default)", bp)):
            if n in b:
                ratio = b[n]["fit_seconds"] / mrp[n]["e2e_seconds"]
                oks.append(ratio >= 20)
                parts.append(f"{name}: fit {b[n]['fit_seconds']:.1f} s / mrp end to end "
                             f"{mrp[n]['e2e_seconds']:.1f} s = **{ratio:.1f}x**")
        names = [nm for nm, b in (("against Bambi + nutpie", bn), ("against Bambi's default sampler", bp))
                 if n in b]
        verdict = "; ".join(f"{yes(ok)} {nm}" for ok, nm in zip(oks, names))
        out.append(("`mrp run` end to end at 1e5 rows >= 20x faster than the row-level Bambi fit (mrp-formula: a "
                    "fresh process running `mrp_formula.run`, imports included; Bambi: the `fit` call alone)",
                    "; ".join(parts), verdict))
    else:
        out.append(("`mrp run` at 1e5 rows >= 20x faster than the Bambi fit", "not measured (no 1e5 run)", "n/a"))
    if 1_000 in mrp and 1_000_000 in mrp:
        a, b = mrp[1_000]["fit_seconds"], mrp[1_000_000]["fit_seconds"]
        e1, e2 = mrp[1_000]["e2e_seconds"], mrp[1_000_000]["e2e_seconds"]
        out.append(("fit time at 1e6 rows within 2x of 1e3",
                    f"fit {b:.1f} s vs {a:.1f} s = **{b / a:.2f}x** (fit CPU time "
                    f"{mrp[1_000_000]['fit_cpu_seconds']:.1f} s vs {mrp[1_000]['fit_cpu_seconds']:.1f} s = "
                    f"{mrp[1_000_000]['fit_cpu_seconds'] / mrp[1_000]['fit_cpu_seconds']:.2f}x; end to end "
                    f"{e2:.1f} s vs {e1:.1f} s = {e2 / e1:.2f}x)", yes(b / a <= 2)))
    else:
        out.append(("fit time at 1e6 rows within 2x of 1e3", "not measured", "n/a"))
    rows = []
    for n in sorted(mrp):
        if n < 100_000:
            continue
        m_rate = mrp[n]["min_ess_bulk"] / mrp[n]["fit_seconds"]
        for name, b in (("Bambi + PyMC NUTS (default)", bp), ("Bambi + nutpie", bn)):
            if n in b:
                b_rate = b[n]["min_ess_bulk"] / b[n]["fit_seconds"]
                rows.append((name, n, m_rate, b_rate, m_rate / b_rate))
    if rows:
        txt = "; ".join(f"{_n(n)} rows vs {name}: {m:.1f} / {b:.2f} ESS/s = **{r:.1f}x** "
                        f"({'holds' if r >= 3 else 'does not hold'})" for name, n, m, b, r in rows)
        default = [r for name, *_, r in rows if "default" in name]
        holds = all(r >= 3 for r in default) if default else all(r >= 3 for *_, r in rows)
        basis = "against Bambi's default sampler" if default else "no default-sampler run; against Bambi + nutpie"
        big = [r for k, r in sorted(mrp.items()) if k >= 100_000]
        compared = sorted({n for _, n, *_ in rows})
        alone = [_n(r["n"]) for r in big if r["n"] not in compared]
        txt += (". mrp-formula alone: " + "; ".join(
            f"{_n(r['n'])}: min ESS {r['min_ess_bulk']:.0f} ({_code(r['min_ess_param'])}), "
            f"{r['min_ess_bulk'] / r['fit_seconds']:.1f} ESS/s, max R-hat {r['max_rhat']:.3f}" for r in big))
        out.append(("min bulk ESS/s at N >= 1e5 >= 3x Bambi's default", txt,
                    f"{yes(holds)} at {_list([_n(n) for n in compared])} ({basis})"
                    + (f"; no Bambi run at {_list(alone)} to compare with" if alone else "")))
    else:
        out.append(("min bulk ESS/s at N >= 1e5 >= 3x Bambi's default", "no Bambi run at N >= 1e5", "n/a"))
    ps = {r["m"]: r for r in res["poststrat"]["mrp"]}
    run = {r["m"]: r for r in res["poststrat"]["run"]}
    m = 1_000_000
    if m in run and run[m].get("status") == "ok":
        r = run[m]
        ok = r["e2e_seconds"] < 60 and r["peak_rss_mb"] < 1.5 * 1024
        out.append(("1e6-cell population, 4,000 draws: < 60 s and < 1.5 GB peak — (a) as `mrp run` does it "
                    "(read the table, collapse it to the model's variables, poststratify; fit cached)",
                    f"{r['e2e_seconds']:.1f} s end to end, of which prepare {r['prepare_seconds']:.1f} s and "
                    f"poststratify {r['poststratify_seconds']:.2f} s ({r['population_rows']:,} rows -> "
                    f"{r['population_cells']:,} cells); peak RSS {_mb(r['peak_rss_mb'])}", yes(ok)))
    if m in ps and ps[m].get("status") == "ok":
        r = ps[m]
        ok = r["poststratify_seconds"] < 60 and r["peak_rss_mb"] < 1.5 * 1024
        out.append(("(b) the same, but as 1e6 *distinct* cells: `poststratify` + `CellPredictor` on every row, "
                    "without the collapse (the poststratification step alone)",
                    f"{r['poststratify_seconds']:.1f} s (+ {r['predictor_seconds']:.2f} s to set up the "
                    f"predictor), peak RSS {_mb(r['peak_rss_mb'])} (process total; {_mb(r['rss_before_mb'])} "
                    "before poststratifying)", yes(ok)))
    elif m in ps:
        out.append(("(b) 1e6 distinct cells through `poststratify`", _status(ps[m]), "**does not hold**"))
    if m not in ps and m not in run:
        out.append(("1e6-cell population poststratified in < 60 s, < 1.5 GB", "not measured", "n/a"))
    rr = [r for r in res["rerun"] if r.get("exit_code") == 0 and "report.plots=true" not in r["change"]]
    if rr:
        times = ", ".join(f"{r['wall_seconds']:.1f} s" for r in rr)
        ok = all(r["wall_seconds"] < 5 and r.get("fit_reused") for r in rr)
        out.append(("cached re-run (estimands changed) < 5 s end to end", f"{times} (fit reused: "
                    f"{', '.join(str(r.get('fit_reused')) for r in rr)})", yes(ok)))
    else:
        out.append(("cached re-run < 5 s", "failed or not measured", "n/a"))
    return out


BAMBI = (("nutpie", "Bambi + nutpie"), ("pymc", "Bambi + PyMC NUTS"))


def side_by_side(res: dict) -> list[str]:
    """One row per size with both tools: end-to-end time and min bulk ESS/s, and their ratios to mrp-formula's."""
    mrp = {r["n"]: r for r in res["mrp_fit"]}
    bambi = {s: {r["n"]: r for r in res["bambi_fit"][s]} for s, _ in BAMBI}
    sizes = sorted(set(mrp) | {n for b in bambi.values() for n in b})

    def rate(r):
        return r["min_ess_bulk"] / r["fit_seconds"]

    def shown(x):
        return _f(x, 2 if x < 10 else 1)

    L = ["| rows | mrp-formula end to end | " + " | ".join(f"{name} end to end (x mrp)" for _, name in BAMBI)
         + " | mrp-formula min ESS/s | " + " | ".join(f"{name} min ESS/s (mrp x)" for _, name in BAMBI) + " |",
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in sizes:
        m = mrp.get(n)
        m_ok = m is not None and m.get("status") == "ok"
        times, rates = [], []
        for s, _ in BAMBI:
            b = bambi[s].get(n)
            if b is None:
                times.append("not run")
                rates.append("")
            elif _status(b):
                times.append(_status(b))
                rates.append("")
            else:
                times.append(f"{_f(b['e2e_seconds'])} s"
                             + (f" ({b['e2e_seconds'] / m['e2e_seconds']:.1f}x)" if m_ok else ""))
                rates.append(shown(rate(b)) + (f" ({rate(m) / rate(b):.1f}x)" if m_ok else ""))
        m_time = f"{_f(m['e2e_seconds'])} s" if m_ok else (_status(m) if m else "not run")
        m_rate = shown(rate(m)) if m_ok else ""
        L.append(f"| {_n(n)} | {m_time} | {' | '.join(times)} | {m_rate} | {' | '.join(rates)} |")
    return L


def _all_cases(res: dict) -> list[dict]:
    out = list(res["mrp_fit"]) + list(res.get("mrp_fit_diagonal", []))
    for v in res["bambi_fit"].values():
        out += [r for r in v if "wall_seconds" in r]
    for v in res["poststrat"].values():
        out += v if isinstance(v, list) else [v]
    return out


def _ridge_text(res: dict, sizes: list[int]) -> str:
    """Posterior correlation of the intercept with the mean group effects: recorded by the fit case, or, for
    results from before it was, read from the saved run folders; nothing where neither has it."""
    fits = {r["n"]: r for r in res["mrp_fit"] if r.get("status") == "ok"}
    try:
        parts = []
        for n in sizes:
            corr = fits.get(n, {}).get("intercept_group_corr")
            if corr is None:
                import arviz as az

                runs = OUT / ("runs-quick" if res.get("quick") else "runs")
                corr = intercept_group_corr(az.from_netcdf(runs / f"mrp_{n}" / "posterior.nc")["posterior"])
            parts.append(f"{corr:+.3f} at {_n(n)}")
        return (" (posterior correlation of `Intercept` with the mean age effect + mean region effect: "
                + ", ".join(parts) + ")")
    except Exception:  # neither recorded nor a run folder left: say nothing
        return ""


RIDGE = ("with more data each cell's rate is pinned down while the intercept and the group effects still trade off "
         "against each other, a long narrow ridge for NUTS")


def _mixing(res: dict, mrp: dict) -> str | None:
    """How the mixing of mrp-formula's fits changes with N, and the mass matrix "auto" chose."""
    big = [r for k, r in sorted(mrp.items()) if k >= 100_000]
    if not big:
        return None
    small = mrp[min(mrp)]
    txt = "; ".join(f"{_n(r['n'])}: min ESS {r['min_ess_bulk']:.0f} (`{r['min_ess_param']}`), R-hat "
                    f"{r['max_rhat']:.3f}, {r['mean_steps_per_draw']:.0f} leapfrog steps/draw, estimand ESS "
                    f"{r['estimand_min_ess']:,.0f}" for r in big)
    ridge = _ridge_text(res, [small["n"], big[-1]["n"]])  # the ridge is named only where its correlation is shown
    falls = min(r["min_ess_bulk"] for r in big) < small["min_ess_bulk"]
    at_small = (f"at {_n(small['n'])}, {small.get('mass_matrix', 'diagonal').replace('_', '-')}: min ESS "
                f"{small['min_ess_bulk']:.0f}, {small['mean_steps_per_draw']:.0f} steps/draw")
    diag_big = [r for r in big if r.get("mass_matrix", "diagonal") == "diagonal"]
    if diag_big:  # a diagonal mass matrix at large N
        line = (f"The minimum ESS of the model parameters is {'lower' if falls else 'not lower'} at N >= 1e5 than at "
                f"{_n(small['n'])} ({at_small}; {txt})" + (f": {RIDGE}{ridge}" if ridge else "") + ". The estimands' minimum ESS "
                f"(what an MRP run reports) is {_span([r['estimand_min_ess'] for r in big], '{:,.0f}')} at "
                f"N >= 1e5.")
    else:
        low = [r for r in mrp.values() if r.get("mass_matrix") == "low_rank"]
        first = min(r["n"] for r in low) if low else big[0]["n"]
        reason = next((r["sampler_settings"].get("mass_matrix_reason") for r in sorted(low, key=lambda r: r["n"])
                       if r.get("sampler_settings")), None)
        line = ((RIDGE[0].upper() + RIDGE[1:] + ridge + ". " if ridge else "")
                + f"From {_n(first)} rows on, `fit.mass_matrix = \"auto\"` took nutpie's low-rank mass matrix"
                + (f" (the manifest's reason at {_n(first)}: {reason})" if reason else "")
                + f", and the minimum ESS {'fell below' if falls else 'did not fall below'} that of the "
                f"{_n(small['n'])} fit ({at_small}; low-rank: {txt}).")
        diag_rows = [r for r in res.get("mrp_fit_diagonal", []) if r.get("status") == "ok"]
        if diag_rows:
            line += (" The same fits with `fit.mass_matrix = \"diagonal\"`: " + "; ".join(
                f"{_n(r['n'])}: min ESS {r['min_ess_bulk']:.0f} (`{r['min_ess_param']}`), R-hat "
                f"{r['max_rhat']:.3f}, {r['mean_steps_per_draw']:.0f} leapfrog steps/draw, fit "
                f"{r['fit_seconds']:.1f} s, estimand ESS {r['estimand_min_ess']:,.0f}" for r in diag_rows) + ".")
    b5 = [(name, r) for name, rows in (("Bambi + nutpie", res["bambi_fit"]["nutpie"]),
                                      ("Bambi + PyMC NUTS", res["bambi_fit"]["pymc"]))
          for r in rows if r.get("status") == "ok" and r["n"] == big[0]["n"]]
    if b5:
        line += " Plain Bambi at the same N: " + "; ".join(
            f"{name} min ESS {r['min_ess_bulk']:.0f}, R-hat {r['max_rhat']:.3f}, "
            f"{r['mean_steps_per_draw']:.0f} steps/draw" for name, r in b5) + "."
    return line


def _poststrat_cost(res: dict) -> str | None:
    """What mrp-formula's poststratification of distinct rows cost, and what a full run hands it."""
    ps = sorted((r for r in res["poststrat"]["mrp"] if r.get("status") == "ok"), key=lambda r: r["cells"])
    if not ps:
        return None
    scenarios = _design(res)["scenarios"]
    per = [r["poststratify_seconds"] / (r["draws"] * r["cells"] * len(scenarios)) * 1e9 for r in ps]
    line = (f"mrp-formula's chunked poststratification (`CellPredictor.weighted_sums`) cost "
            f"{_span(per, '{:.0f}')} ns per draw x cell x scenario ({len(scenarios)} scenarios here: "
            f"{_list(scenarios)}) at {_list([_n(r['cells']) for r in ps])} rows")
    mem = [f"{_mb(r['peak_rss_mb'])} against {_mb(r['rss_before_mb'])} at {_n(r['cells'])} rows" for r in ps
           if r.get("peak_rss_mb") is not None and r.get("rss_before_mb") is not None]
    if mem:
        line += ". The process's peak memory against its memory before the step: " + "; ".join(mem)
    runs = [r for r in res["poststrat"]["run"] if r.get("status") == "ok"]
    if runs:
        cells = sorted({r["population_cells"] for r in runs})
        line += (". A full `mrp run` does not hand it the raw table: it first collapses the population to the "
                 "distinct combinations of the model's (and `by`) variables, "
                 f"{_list([f'{c:,}' for c in cells])} cells here from "
                 f"{_list([f'{r['population_rows']:,}' for r in runs])} rows (its manifest), and its poststratify "
                 f"step took {_span([r['poststratify_seconds'] for r in runs], '{:.2f}')} s")
    return line + "."


def observations(res: dict) -> list[str]:
    out = []
    loads = [r["load_before"] for r in _all_cases(res) if r.get("load_before") is not None]
    if loads:
        out.append(f"The 1-minute load average before the cases ranged from {min(loads):.1f} to {max(loads):.1f} on "
                   f"{res['machine'].get('cpus')} cores. It counts the benchmark's own previous case as well as "
                   "anything else running on the machine (the benchmark does not tell them apart); wall times "
                   "and ESS/s depend on it, while the CPU-time columns count the case's own process only.")
    mrp = {r["n"]: r for r in res["mrp_fit"] if r.get("status") == "ok"}
    if mrp:
        share = [r["fit_seconds"] / r["e2e_seconds"] for r in mrp.values()]
        cells = sorted({r["cells_fitted"] for r in mrp.values()})
        lo, hi = mrp[min(mrp)], mrp[max(mrp)]
        growth = (f"; its end-to-end time was {lo['e2e_seconds']:.1f} s at {_n(lo['n'])} rows and "
                  f"{hi['e2e_seconds']:.1f} s at {_n(hi['n'])}" if len(mrp) > 1 else "")
        out.append(f"mrp-formula fitted {_span(cells, '{:,}')} binomial cells for "
                   f"{_list([_n(n) for n in sorted(mrp)])} rows{growth}. The fit call (model build, compilation "
                   f"and sampling; the run does not time them apart) is {_span(share, '{:.0%}')} of the end-to-end "
                   "time.")
    line = _mixing(res, mrp) if mrp else None
    if line:
        out.append(line)
    t = res["truth"]
    ests = [(f"mrp {_n(r['n'])}", r["estimates"]["lift"], r["estimates"]["lift_sd"]) for r in mrp.values()]
    for s_, rows in res["bambi_fit"].items():
        ests += [(f"Bambi/{s_} {_n(r['n'])}", r["estimates"]["lift"], r["estimates"]["lift_sd"])
                 for r in rows if r.get("status") == "ok"]
    if ests:
        z = [abs(e - t["lift"]) / sd for _, e, sd in ests if sd]
        diffs = []
        for rows in res["bambi_fit"].values():
            for r in rows:
                if r.get("status") == "ok" and r["n"] in mrp:
                    diffs.append(abs(r["estimates"]["lift"] - mrp[r["n"]]["estimates"]["lift"])
                                 / mrp[r["n"]]["estimates"]["lift_sd"])
        out.append(f"Sanity check: every posterior mean of the lift is within {max(z):.1f} posterior sd of the truth "
                   f"({t['lift']:.4f})" + (f"; at the same N, mrp-formula's and plain Bambi's posterior means of the "
                                          f"lift differ by at most {max(diffs):.2f} posterior sd" if diffs else "")
                   + ".")
    line = _poststrat_cost(res)
    if line:
        out.append(line)
    b = [r for r in res["poststrat"]["bambi"] if r.get("status") == "ok"]
    big = res["poststrat"].get("bambi_big_limit")
    if big and big.get("status") == "ok":
        same = next((r for r in res["poststrat"]["mrp"] if r.get("status") == "ok" and r["cells"] == big["m"]), None)
        agree = (f"lift {big['estimates']['lift']:.4f} (mrp-formula's poststratification of the same table with the "
                 f"same posterior: {same['estimates']['lift']:.4f})" if same
                 else f"lift {big['estimates']['lift']:.4f}")
        draws = big.get("draws")
        arrays = (f" ({draws:,} x {big['m']:,} = {draws * big['m'] * 8 / 1e6:,.0f} MB each)" if draws else "")
        limit = res.get("mem_limit_gb") or MEM_LIMIT_GB
        out.append(f"With a {big['mem_limit_gb']:.0f} GB address-space limit instead of {limit:.0f} GB, Bambi's "
                   f"predict on {big['m']:,} cells finished in {big['seconds']:.1f} s with a peak of "
                   f"{_mb(big['peak_rss_mb'])}; {agree}. Why it needs that much comes from reading Bambi's source, "
                   "not from this run: it builds the whole (draws x cells) linear predictor at once (`xr.dot` for "
                   "the common terms, a pydata-`sparse` product for the group terms) and then the response with "
                   f"`apply_ufunc`, so several (draws x cells) float64 arrays{arrays} and the sparse product's "
                   "intermediates are alive at once.")
    elif big:
        out.append(f"Bambi's predict at {big['m']:,} cells failed even with a {big['mem_limit_gb']:.0f} GB limit "
                   f"({_status(big)}).")
    for r in b:
        out.append(f"Bambi's predict on {r['cells']:,} cells: {r['seconds']:.1f} s, peak {_mb(r['peak_rss_mb'])}.")
    rr = [r for r in res["rerun"] if r.get("timings")]
    if rr:
        r = rr[0]
        tm = r["timings"]
        out.append(f"Cached re-run, first change: {r['wall_seconds']:.1f} s in all; the manifest's timings: "
                   f"prepare {tm.get('prepare', 0):.1f} s (spec, reading and collapsing the sample), poststratify "
                   f"{tm.get('poststratify', 0):.2f} s, checks {tm.get('checks', 0):.2f} s, run total "
                   f"{tm.get('total', 0):.1f} s; the remaining {r['wall_seconds'] - tm.get('total', 0):.1f} s of the "
                   "CLI process fall outside the run's own timings (interpreter start-up, imports, printing).")
    return out


def _setup(res: dict) -> list[str]:
    """The set-up bullets: the design from the results (or the simulation code), the run settings the
    results recorded, and where a statement rests on a library's defaults, that it does."""
    d = _design(res)
    t = res["truth"]
    lv, eff, smp, pop = d["levels"], d["effects"], d["sample"], d["population"]
    cells = math.prod(lv.values())
    mrp = [r for r in res["mrp_fit"] if r.get("status") == "ok"]
    bambi = [r for v in res["bambi_fit"].values() for r in v if r.get("status") == "ok"]
    settings = next((r["sampler_settings"] for r in mrp if r.get("sampler_settings")), None)
    fit = dict(d["fit"], **(settings or {}))
    chains, draws = (mrp[0]["chains"], mrp[0]["draws"]) if mrp else (fit["chains"], fit["draws"])
    accept = f"target_accept {settings['target_accept']}" if settings else "mrp-formula's default target_accept"
    busy = _cpu_per_wall(mrp)
    b_busy = _cpu_per_wall(bambi)
    b_chains = _span([r["chains"] for r in bambi], "{:d}") if bambi else None
    b_draws = _span([r["draws"] for r in bambi], "{:,}") if bambi else None
    before = [r["rss_before_mb"] for k in ("mrp", "bambi") for r in res["poststrat"][k]
              if r.get("rss_before_mb") is not None]
    L = []
    L.append(f"* Model: `{d['formula']}`, {d['family']}; {' x '.join(str(v) for v in lv.values())} = {cells:,} "
             f"predictor cells. Data simulated with a fixed seed ({d['seed']}) from known effects (treatment "
             f"{eff['treatment']:+.2f}, male {eff['gender']:+.2f}, interaction {eff['treatment:gender']:+.2f} on the "
             f"logit scale, {lv['age']} age effects, {lv['region']} region effects drawn from N(0, "
             f"{d['region_sd']})). The sample is {smp['female'] * 100:.0f} % women, {smp['under_35'] * 100:.0f} % "
             f"under 35, and its largest region holds {smp['largest_region'] * 100:.0f} % of it; the population "
             f"({pop['cells']:,} gender x age x region cells, {pop['people'] / 1e6:.0f} M people) is "
             f"{pop['male'] * 100:.0f} % men, {pop['under_35'] * 100:.0f} % under 35, largest region "
             f"{pop['largest_region'] * 100:.0f} %.")
    L.append(f"* True population click rates: control {t['control']:.4f}, treatment {t['treatment']:.4f}, "
             f"lift (difference) {t['lift']:.4f}.")
    L.append("* **mrp-formula**: a generated spec (`benchmarks/out/specs/`) run with `mrp_formula.run(spec, "
             "refit=True)`: DuckDB reads the Parquet sample as counted distinct rows, the model is fitted on "
             f"binomial cells with nutpie ({chains} chains x {draws:,} draws after {fit['tune']:,} tuning steps, "
             f"{accept}, the mass matrix chosen by `fit.mass_matrix = \"auto\"` (see the table by step), the "
             "chains in parallel" + (f"; the fit's CPU time / wall time was {busy}" if busy else "")
             + "), then poststratified (estimands: click rate per arm and the lift) and the run folder written "
             "(`report.plots = false`: neither side draws plots). Priors are mrp-formula's defaults (Bambi's for "
             "common terms, Normal(0, HalfNormal(1)) for group terms).")
    L.append("* **Plain Bambi**: `bmb.Model(formula, rows, family=\"bernoulli\").fit(inference_method=...)` on "
             "the row-level data with Bambi's defaults otherwise"
             + (f": **{b_chains} chains** of {b_draws} draws (as the posteriors record them)" if bambi else "")
             + "; tuning steps, target_accept, cores and priors are left to Bambi and PyMC (from their source: "
             "1,000 tuning steps, target_accept 0.8, `cores = min(4, cpu_count // 2)`, `chains = max(2, cores)`; "
             "the run does not record them)"
             + (f"; the fit's CPU time / wall time was {b_busy}" if b_busy else "")
             + ". Then `model.predict(idata, kind=\"response_params\", data=population, inplace=False)` for each "
             "arm and the weighted mean per draw in numpy. Two variants: `inference_method=\"nutpie\"` and Bambi's "
             "default `inference_method=\"pymc\"` (PyMC's NUTS).")
    L.append("* Each case runs in a fresh Python process. *End to end* is from launching the process to "
             "having the estimates (imports, reading, building, compiling, sampling, predicting; for "
             "mrp-formula also writing the run folder). *Fit* is the wall time of the fit call (model "
             "compilation + tuning + sampling). *Peak memory* is the larger of the process's peak RSS "
             "(`ru_maxrss` from `wait4`) and the process tree's proportional set size sampled every 0.1 s "
             "(pages a child shares with its parent counted once); it includes the "
             "interpreter and the imported libraries"
             + (f" (for scale: the prediction cases below held {_mb(min(before))} to {_mb(max(before))} before "
                "their step, with the imports, the posterior and the table loaded)" if before else "")
             + ". Bambi sizes whose predicted time (fixed cost + cost per row, from the two largest measured "
             f"sizes) exceeded the budget of {res['budget_seconds'] / 60:.0f} minutes were skipped.")
    return L


def write_report(res: dict, path: Path) -> None:
    m = res["machine"]
    L = []
    L.append("# Benchmarks: mrp-formula vs plain Bambi on one A/B model")
    L.append("")
    L.append("Real MRP models (the MRP primer, a CCES-scale simulation) and what each speed lever gave: "
             "[benchmarks-mrp.md](benchmarks-mrp.md) (`benchmarks/bench_mrp.py`).")
    L.append("")
    L.append(f"Generated by `{'.venv/bin/python benchmarks/bench_ab.py --quick' if res['quick'] else 'make bench'}`"
             f" (`benchmarks/bench_ab.py`), {res['started']} – {res.get('finished', 'unfinished')}. "
             "The measured numbers below come from that one run; the set-up figures from the simulated design "
             "(`benchmarks/data.py`).")
    if res.get("note"):
        L.append("")
        L.append(f"**Note:** {res['note']}")
    L.append("")
    L.append(f"**Machine:** {m.get('cpus')} cores ({m.get('cpu_model', '?')}), "
             f"{m.get('mem_total_gb', 0):.0f} GB RAM, Python {m.get('python')}; "
             + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
             + ". Wall times depend on whatever else ran on the machine: the 1-minute load average before "
             f"each case is in the raw JSON (`benchmarks/out/results{'-quick' if res['quick'] else ''}.json`) and "
             "summed up under Observations.")
    L.append("")
    start, end = res.get("package_start"), res.get("package_end")
    if start and end and start != end:
        changed = sorted(k for k in set(start) | set(end) if start.get(k) != end.get(k))
        L.append(f"**Warning: the package's source changed while this benchmark ran** ({', '.join(changed)}), so "
                 "later cases may have run other code than earlier ones.")
        L.append("")
    L.append("## Set-up")
    L.append("")
    L += _setup(res)
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured | verdict |")
    L.append("| --- | --- | --- |")
    for target, measured, verdict in verdicts(res):
        L.append(f"| {target} | {measured} | {verdict} |")
    L.append("")

    L.append("## Side by side: both tools at each size")
    L.append("")
    L.append("Each tool in a fresh process, *end to end* as defined above; min ESS/s = the smallest bulk ESS of "
             "any model parameter per second of fit wall time (details in the next section). *x mrp* = that "
             "Bambi time / mrp-formula's; *mrp x* = mrp-formula's ESS/s / that Bambi ESS/s.")
    L.append("")
    L += side_by_side(res)
    L.append("")

    L.append("## Fitting: wall time, peak memory, sampling efficiency")
    L.append("")
    L.append("min ESS = the smallest bulk ESS over every element of every model parameter (`az.ess`, "
             "method bulk); ESS/s divides it by the fit wall time; ESS/CPU-s by the CPU time (user + system) "
             "of the fit, which corrects for how many cores each tool kept busy. Leapfrog steps/draw = mean `n_steps` "
             "of the kept draws (the cost of one draw in gradient evaluations). Estimand min ESS = the smallest "
             "bulk ESS of the per-draw click rates and lift (what an MRP analysis reports).")
    L.append("")
    L.append("| rows | tool | end to end | fit | fit CPU | peak memory | fitted rows/cells | chains | min ESS (param) | "
             "ESS/s | ESS/CPU-s | max R-hat | divergences | leapfrog steps/draw | estimand min ESS | lift (sd) |")
    L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: "
             "| --- |")
    sizes = sorted({r["n"] for r in res["mrp_fit"]} | {r["n"] for v in res["bambi_fit"].values() for r in v})
    tools = [("mrp-formula (nutpie, cells)", res["mrp_fit"]), ("Bambi + nutpie (rows)", res["bambi_fit"]["nutpie"]),
             ("Bambi + PyMC NUTS (rows, default)", res["bambi_fit"]["pymc"])]
    for n in sizes:
        for name, rows in tools:
            r = next((x for x in rows if x["n"] == n), None)
            if r is None:
                continue
            st = _status(r)
            if st:
                L.append(f"| {_n(n)} | {name} | {st} | | | | | | | | | | | | | |")
                continue
            rate = r["min_ess_bulk"] / r["fit_seconds"]
            cpu = r["min_ess_bulk"] / r["fit_cpu_seconds"] if r.get("fit_cpu_seconds") else None
            e = r["estimates"]
            L.append(f"| {_n(n)} | {name} | {_f(r['e2e_seconds'])} s | {_f(r['fit_seconds'])} s | "
                     f"{_f(r.get('fit_cpu_seconds'))} s | {_mb(r['peak_rss_mb'])} | {r.get('cells_fitted', r.get('rows')):,} | {r['chains']} | "
                     f"{r['min_ess_bulk']:,.0f} ({_code(r['min_ess_param'])}) | {_f(rate)} | {_f(cpu)} | "
                     f"{r['max_rhat']:.3f} | {r['divergences']} | {_f(r.get('mean_steps_per_draw'))} | "
                     f"{_f(r.get('estimand_min_ess'), 0)} | {e['lift']:.4f} ({e['lift_sd']:.4f}) |")
    L.append("")
    L.append(f"(truth: lift {res['truth']['lift']:.4f})")
    L.append("")
    mrp_ok = [r for r in res["mrp_fit"] if r.get("status") == "ok"]
    if mrp_ok:
        L.append("mrp-formula's time by step (seconds; from the run's manifest, plus the import time):")
        L.append("")
        L.append("| rows | import | prepare (read + collapse) | fit (build + compile + sample) | poststratify | "
                 "checks | run total | parameterization | mass matrix |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for r in mrp_ok:
            par = ", ".join(f"{_code(k)}: {v}" for k, v in r["parameterization"].items())
            L.append(f"| {_n(r['n'])} | {_f(r['import_seconds'])} | {_f(r['prepare_seconds'])} | "
                     f"{_f(r['fit_seconds'])} | {_f(r['poststratify_seconds'])} | {_f(r['checks_seconds'])} | "
                     f"{_f(r['total_seconds'])} | {par} | {r.get('mass_matrix', 'diagonal').replace('_', '-')} |")
        L.append("")
    b_ok = [r for v in res["bambi_fit"].values() for r in v if r.get("status") == "ok"]
    if b_ok:
        L.append("Plain Bambi's time by step (seconds):")
        L.append("")
        L.append("| rows | sampler | import | read | build | fit | predict + weighted mean |")
        L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        for s, rows in res["bambi_fit"].items():
            for r in rows:
                if r.get("status") == "ok":
                    L.append(f"| {_n(r['n'])} | {s} | {_f(r['import_seconds'])} | {_f(r['read_seconds'])} | "
                             f"{_f(r['build_seconds'])} | {_f(r['fit_seconds'])} | {_f(r['poststratify_seconds'])} |")
        L.append("")

    d = _design(res)
    base = next((r for r in res["mrp_fit"] if r["n"] == res.get("base_n") and r.get("status") == "ok"), None)
    counted = [r["draws"] for k in ("mrp", "bambi") for r in res["poststrat"][k] if r.get("draws")]
    draws = (f"{_span(counted, '{:,}')} draws" if counted
             else f"{base['chains'] * base['draws']:,} draws" if base else "the posterior's draws")
    L.append(f"## Poststratification of big populations ({draws})")
    L.append("")
    L.append(f"Posterior: the {res.get('poststrat_posterior', '?')} above"
             + (f" ({base['chains']} chains x {base['draws']:,} draws)" if base else "") + ". The population "
             "tables have the model's variables plus columns the model does not use (a district id, household "
             "type, income band), one row per district, so each row is a distinct cell of the table. "
             f"Each cell is predicted under {len(d['scenarios'])} scenarios ({', '.join(d['scenarios'])}), as the "
             "spec's estimands need. "
             "Both prediction cases run under an address-space limit (`RLIMIT_AS`) of "
             f"{res.get('mem_limit_gb') or MEM_LIMIT_GB:.0f} GB.")
    L.append("")
    block = next((r["block"] for r in res["poststrat"]["mrp"] if r.get("block")), None)
    L.append("* **mrp poststratify**: `mrp_formula.poststrat.poststratify` over the rows as given (no collapse) "
             "with the real `CellPredictor` (its `weighted_sums`) and the default block"
             + (f" (`DEFAULT_BLOCK` = {_n(block)} values held per chunk)" if block else "") + ".")
    L.append("* **Bambi predict**: `model.predict(posterior, kind=\"response_params\", data=table, "
             "inplace=False)` per arm on the same Bambi model (the aggregated one mrp-formula fitted) and the same "
             "posterior, then the weighted mean per draw in numpy.")
    L.append("* **mrp run (cached fit)**: a full `mrp_formula.run` of a spec whose `population.source` is the "
             "big table: it reads it, collapses it to the model's variables (at most "
             f"{d['population']['cells']:,} cells, one per gender x age x region) and poststratifies; "
             "the fit comes from the cache.")
    L.append("")
    L.append("| population rows | method | time | peak memory | memory before the step | lift |")
    L.append("| ---: | --- | ---: | ---: | ---: | --- |")
    for m_ in res["config"]["pop_sizes"]:
        big = res["poststrat"].get("bambi_big_limit")
        for name, key in (("mrp poststratify (chunked)", "mrp"), ("Bambi predict", "bambi"),
                          ("Bambi predict, {lim:.0f} GB limit (what it really needs)", "big"),
                          ("mrp run, cached fit (collapse + poststratify)", "run")):
            if key == "big":
                if not big or big["m"] != m_:
                    continue
                name = name.format(lim=big["mem_limit_gb"])
                r = big
            else:
                r = next((x for x in res["poststrat"][key] if x["m"] == m_), None)
            if r is None:
                continue
            st = _status(r)
            if st:
                extra = f" after {r['seconds_until_oom']:.1f} s" if r.get("seconds_until_oom") else ""
                L.append(f"| {_n(m_)} | {name} | {st}{extra} | {_mb(r.get('peak_rss_mb'))} | "
                         f"{_mb(r.get('rss_before_mb'))} | |")
                continue
            if key == "run":
                time_txt = (f"{_f(r['e2e_seconds'])} s end to end (prepare {_f(r['prepare_seconds'])} s, "
                            f"poststratify {_f(r['poststratify_seconds'], 2)} s; "
                            f"{r['population_rows']:,} rows -> {r['population_cells']:,} cells)")
                L.append(f"| {_n(m_)} | {name} | {time_txt} | {_mb(r['peak_rss_mb'])} | | {r['lift']:.4f} |")
            else:
                time_txt = f"{_f(r['poststratify_seconds'])} s"
                if key == "mrp":
                    time_txt += f" (+ {_f(r['predictor_seconds'], 2)} s predictor set-up)"
                L.append(f"| {_n(m_)} | {name} | {time_txt} | {_mb(r['peak_rss_mb'])} | "
                         f"{_mb(r.get('rss_before_mb'))} | {r['estimates']['lift']:.4f} |")
    L.append("")
    L.append("\"Memory before the step\" is the process RSS after imports, the plan, the posterior and the "
             "table were loaded; peak memory is the whole process's peak.")
    L.append("")

    L.append("## Re-run with changed estimands (fit cached)")
    L.append("")
    L.append("`.venv/bin/mrp run SPEC --out DIR --json --no-progress --set ...` as a subprocess, so interpreter "
             f"start-up and imports count; the spec is the {_n(res.get('base_n', 100_000))}-row one, whose fit "
             "the earlier run cached.")
    L.append("")
    L.append("The generated specs set `report.plots = false`; the last row (if present) turns the default "
             "plots back on, for information, and is not part of the target.")
    L.append("")
    L.append("| change | wall time | fit reused | exit code | run total (manifest) |")
    L.append("| --- | ---: | --- | ---: | ---: |")
    for r in res["rerun"]:
        tot = (r.get("timings") or {}).get("total")
        L.append(f"| `--set {' '.join(r['change'])}` | {_f(r['wall_seconds'])} s | {r.get('fit_reused')} | "
                 f"{r['exit_code']} | {_f(tot)} s |")
    L.append("")
    if res.get("skipped"):
        L.append("Skipped: " + "; ".join(f"{s['what']} ({s['why']})" for s in res["skipped"]))
        L.append("")
    L.append("## Observations (computed from this run's results)")
    L.append("")
    for note in observations(res):
        L.append(f"* {note}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + "\n")
    print(f"wrote {path}", flush=True)
