"""The markdown of benchmarks/bench_mrp.py, written from its saved results alone."""

from __future__ import annotations

from pathlib import Path


def _f(v, fmt="{:.1f}", none="–"):
    return none if v is None else fmt.format(v)


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _load(r) -> str:
    la = r.get("load_before")
    return _f(la, "{:.1f}")


def _status(r: dict) -> str:
    """A case's status: a case's own ('ok', 'timeout', ...) or a CLI run's exit code."""
    return r.get("status") or ("ok" if r.get("exit_code") == 0 else f"exit {r.get('exit_code')}" if r else "not run")


def _ok(r: dict) -> bool:
    return _status(r) == "ok"


def _ratio(a, b):
    return None if not a or not b else b / a


LEVERS = """## What each lever gave (measured by hand, 2026-11-30 and 2026-12-01)

Measured with a profiling script (plan, build, `nutpie.compile_pymc_model`, `nutpie.sample`) on the
primer at 2 chains x 500 draws (tune 1,000, target_accept 0.95, seed 2004), while the load average
was 9-27 on 2 cores: the seconds are inflated 5-40x and only the load-free figures (leapfrog steps per
draw, effective draws per 1,000 gradient evaluations) compare.

| lever | result | kept |
| --- | --- | --- |
| geometry: all seven group terms non-centred, diagonal mass matrix (the choice before) | 89 leapfrog steps per draw; worst parameter (1\\|age) 0.42 ESS per 1,000 gradients (quick run, 2 x 200) | – |
| centre age, edu, region, poll (median information per level 218-396), diagonal | 34 steps per draw, 0 divergences, worst parameter (Intercept) 0.72 per 1,000 gradients: the intercept now trades off with the centred effects | – |
| the same, low-rank mass matrix | 30 steps per draw, 0 divergences, worst parameter (1\\|age:edu sigma) **4.4 per 1,000 gradients: 10x the old choice** | yes: `INFORMATION_CENTRED` 500 -> 200, and low-rank whenever a term is centred |
| the new choice on the primer as shipped (4 x 1,000, `mrp run --refit`, load about 7) | 30.2 steps per draw (was 88), 291,377 gradient evaluations (170,454 of them tuning), **3 divergences** (was 1; target 0), R-hat at most 1.012, estimands' smallest bulk ESS **2,501** (target 2,000), parameters' smallest **672** (1\\|age:edu sigma; was 443; target 1,000); 2.3 ESS per 1,000 gradients for the parameters, 8.6 for the estimands. Fit 302 s, run 420 s under that load: about 2.4x fewer gradient evaluations than before, so about 2.4x less sampling time on an idle machine; the 20 s target is not reached | yes |
| the same on a nearly idle machine (load 0.3, 23:33 UTC; fresh process, `mrp_spec` case) | **77 s end to end** (import 2, prepare 2, fit 51 of which sampling 40 and build + compile 11, checks 4, plots/report/writing the rest); identical draws to the loaded run (same divergences and ESS: reproducible across processes). 271 us per gradient (the issue measured 190 us with the old geometry; the cause of the rise, low-rank mass-matrix arithmetic or other load, is not isolated). Tuning takes 58 % of the gradient evaluations. Primer 2 x 500 (tune 500): 41 s end to end, fit 22 s, 1 divergence, estimand ESS 914, 30.8 steps per draw | – |
| side by side right after (load 1.2-3): plain Bambi, PyMC NUTS, same aggregated cells, 2 x 500 (tune 500), 0.95 | **320 s** end to end, 610 leapfrog steps per draw, 2 divergences, worst parameter (1\\|race:female) bulk ESS 2.6 (not converged): mrp-formula's 41 s is **7.9x** faster (target 10x) and converged | – |
| backend | nutpie 0.16.11 compiles PyMC models with numba or JAX only (no C path); JAX is not installed | numba (as before) |
| threads | BLAS/OpenMP limited to one thread per sampling thread while sampling (threadpoolctl); the draws are bit-identical to before (the golden primer numbers at 2 x 200 matched exactly) | yes |
| compile cost | nutpie builds two C callbacks with `numba.cfunc` around PyTensor's compiled graph; as closures they were never found in numba's cache ("uses dynamic globals"), so every process compiled them again: 5 of the 7 s of `nutpie.compile_pymc_model` on the primer | see the next row |
| compile cache (`model/compiled.py`, 2026-12-01) | the two callbacks written as source without closures and keyed by PyTensor's own key of the graph they call (plus the dimensions and the wrapper source); numba stores them in PyTensor's compile directory. The A/B demo refitted in a fresh process (`mrp run --refit`, load 3-4): fit 8.9 s the first time (`compile_cache: compiled`), **1.9 s** the next (`loaded`), the estimands identical; `tests/model/test_compile_cache.py` checks the draws equal nutpie's own compile bit for bit. The rest of a cached fit is Bambi building the model (about 2 s on the primer) and PyTensor rewriting the graph to find its key (about 2 s) | yes |
| one gather of all group effects | micro-benchmark of the primer's shape (3,693 cells, 7 terms of up to 50 levels, value and gradient, numba and C backends alike): seven gathers and their scatter-adds 96 us, one gather through a concatenated coefficient vector and a 3,693 x 7 index matrix 132 us, the element-wise part alone 64 us | no: slower |
| tuning length (counts, seeds 2004 and 7, 4 x 1,000) | tune 1,000: 291,377 and 282,782 gradient evaluations (170,000 while tuning), 3 and 14 divergences, min parameter ESS 672 and 506, min estimand ESS 2,501 and 2,662. tune 500: 226,521 and 227,594, 14 and 3 divergences, 578 and 632, 2,219 and 2,159. tune 300: 216,351 and 206,631 (26-29 % fewer), 2 and 1 divergences, 604 and 656, 1,876 and 2,337 | no change of the default (1,000): the saving is real but the estimand ESS fell under 2,000 in one of two runs, and the divergences do not follow the tuning length |
| region non-centred (the data nest region in state) | tune 300: 0 divergences at seeds 2004 and 7 (against 2 and 1), but the region sd's ESS fell to 407-602 (from 1,300-1,500), and at seed 11 one chain stuck (R-hat 2.85) | no |
| seed 11 (a robustness check of the shipped geometry) | with the shipped settings and `fit.seed = 11` one of the four chains sticks in a far part of the intercept/centred-effects ridge (intercept -5.5 against -1.3, step size 1e-4, tree depth at its limit): R-hat 1.60 at tune 1,000, 1.74 at tune 300. The run says so (R-hat and ESS fail the checks; `--strict` exits 5), but the geometry that made the primer fast is not robust to the seed. A diagonal mass matrix at seed 11 had not finished after 10 minutes and was stopped. Sum-to-zero group effects with a separate mean (the ridge's cause removed) are the next lever to try | open |
| post-fit work (cached primer fit, interleaved before/after, load 1-2.5) | classical raking on arrays: 2.15 -> 1.12 s; `posterior.nc` copied from the fit cache: 0.46 -> 0.01 s; a second process drawing the report's figures while the run draws the PNGs: +4 s of CPU and no wall-time gain on 2 cores (not kept). PNG plots (4.4 s) and the report (4.8 s, 5.6 s of it converting figures to SVG) remain the largest costs after the fit | raking and copy: yes |
| cost per gradient | see the gradient row above | – |

### Levers measured on 2026-12-01 (second session)

Measured with `benchmarks/geometry_primer.py MODE SEED ADAPT CHAINS DRAWS TUNE` (the primer built as MODE
says, then `nutpie.compile_pymc_model` and `nutpie.sample` with that seed; target_accept 0.95), one fit
after the other on the otherwise idle machine. "Per 1,000 gradients" is the smallest bulk ESS of any
parameter per 1,000 gradient evaluations (tuning included); higher is better.

| lever | result | kept |
| --- | --- | --- |
| sum-to-zero group effects with a separate mean (PyMC's `ZeroSumNormal`; the intercept then carries the mean of every term, so the intercept/centred-effects ridge of the seed-11 chain is gone) | 4 x 300 (tune 300), seeds 2004 and 11, per 1,000 gradients: **shipped** (iid effects, age/edu/region/poll centred, low-rank) 1.29 and 2.24, 0 divergences. **Sum-to-zero, centred as shipped**: seed 2004 did not finish in 150 s with either mass matrix, and at 4 x 1,000 (low-rank) took 478 s: 274 steps per draw, R-hat 1.60, the state sd's ESS 7 (a stuck chain); seed 11 (diagonal) 3.06, the best of all. **Every term non-centred sum-to-zero**: 0.44-0.66 (diagonal), 0.85-1.14 (low-rank), no stuck chain, the 4-level sds (edu, age) worst. **Every term centred sum-to-zero**: 0.05-0.23, R-hat 1.12-1.55 | no: no variant beats the shipped geometry at both seeds. Most likely (not shown): removing the intercept ridge leaves the region/state one, since region `dc` holds a single state (DC), whose effect the data cannot tell from its region's, and state nests in region throughout |
| centre `1\\|age:edu` too (median information per level under 200) | 4 x 1,000, seed 2004, low-rank: 455,258 gradient evaluations against 287,603 shipped, 37.8 steps per draw against 29.6, 4 divergences against 2, R-hat 1.058 against 1.006, the age:edu sd's ESS 119 against 663 | no |
| chains on the cores | the primer's gradient inside nutpie costs about 210 us on one thread (2 chains x 300 on one core: 13.3 s for 63,317 evaluations); the same 2 chains on both cores took 7.9 s, **1.68x** (two vCPUs of a KVM guest, so not 2x); 4 chains on 2 cores: 19.3 s for 126,743 evaluations, 152 us each in wall time | as before (chains over all cores) |
| the trace figure on a fixed grid (no constrained layout) | drawing the figures of a cached primer run folder one after the other: its PNG 2.07 -> 1.33 s (building it 0.57 -> 0.39 s), the report's SVG figures 4.56 -> 3.54 s in all. End to end the gain is inside this machine's noise: three cached primer runs each, before (f8652b3) and after, interleaved, took 17.1-20.9 s and 17.1-22.4 s in all (the `plots` step 5.2-6.7 s and 5.2-6.9 s). The layout of its title, rows and tick labels is pinned by a test | yes (correct and no slower) |
| the classical estimates' raking, every group at once (`data/population.rake_many`) | `raw_and_weighted` on the primer 1.46 -> 1.33 s: most states never reach the 1e-10 tolerance, so the loop runs its 1,000 iterations either way, now once for all states. Bit for bit the old weights (hypothesis tests against raking each group alone) | yes |
| `gc.freeze()` after the fit (the PyMC model's 400,000 objects kept out of the collector's scans while figures are drawn) | primer at 2 x 150, fitted in the run, two pairs interleaved: plots 5.0 and 4.6 s without, 4.1 and 4.6 s with; report 5.6 and 5.3 s without, 5.2 and 5.3 s with; 10-11 full collections in either | no: no gain beyond the noise |
| where the tuning goes (shipped primer, seed 2004) | 169,033 of the 287,603 gradient evaluations are tuning. The first 50 tuning draws take 45,077 of them (about 225 leapfrog steps per draw and chain, against 29.6 while drawing): the sampler starts with an identity mass matrix, while the slopes of the state-level percentages (p_evang, p_mormon, kerry_04) have posterior sds near 0.005. On the CCES case tuning is 76 % of the gradient evaluations (187,454 of 247,454). Tried by hand: the primer with those three predictors divided by their sd over the states (the same model: their default priors scale with them), seed 2004: the first 50 tuning draws took 28,265 gradient evaluations instead of 45,077, but the whole fit 279,651 instead of 287,603 (-2.8 %), smallest parameter ESS 751 | no: too small a gain to build |
| plain Bambi at CCES scale | see the note and the CCES rows above: Bambi's `predict` on 12,000 population cells with all 4,000 draws outgrew 23 GB (killed twice); predicting 100 draws at a time it took 117 s and peaked at 4.0 GB. mrp-formula's whole run peaked at 840 MB | – |
| seed 11, again | sum-to-zero effects (above) do not cure it: the ridge that stuck the chain is gone, another (region/state) stays. Not solved: a run that hits it says so (R-hat and ESS fail the checks, `--strict` exits 5) | open |

### Levers measured on 2026-12-01 (third session)

Fixed costs around the fit, measured on the otherwise idle machine; the sampler levers with the
shipped primer at 4 x 1,000 through `sampler.fit` (the seed as `fit.seed`, so as `mrp run` takes it).

| lever | result | kept |
| --- | --- | --- |
| nutpie called straight from the built PyMC model (`model/sampler._sample_nutpie`), not through Bambi's `fit` and `pm.sample` | `pm.sample` first assigns step methods, which builds the model's gradient graph only to see that NUTS fits, and throws it away (nutpie builds its own). The primer at 2 x 100, fresh processes, two each: fit 10.5 and 10.2 s before, 9.6 and 9.2 s after. The same variables, PyMC's seed for the first chain, PyMC's additions and Bambi's clean-up of the result: the draws are the same bit for bit (`tests/model/test_sampler.py`, both mass matrices) | yes |
| the page's trace figure from the posterior in memory | the report read `posterior.nc` back to draw the trace: 1.0 s on the primer (h5netcdf decoding). `mrp run` now hands the page the posterior it has; `mrp report FOLDER` still reads the file. The figure is the same markup either way (test) | yes |
| the PNGs drawn in a forked child while the page is written (`system.beside`) | both draw from memory and take 3-6 s each on the primer; on two cores the pair now takes the longer of the two. A cached primer run (fresh process, three each, interleaved): 20.0, 20.2, 17.9 s before, 15.4, 14.2, 14.3 s after. Only on Linux, with more than one core, and when no other Python thread runs (a lock held by one would never be released in the child); a child that fails or hangs costs a note, never the run. The process tree's memory is now measured as proportional set size, which counts the pages the child shares once: the shipped primer's tree peaked at 783 MB (its main process alone at 655 MB) | yes |
| the classical estimates computed in a forked child during the posterior predictive check (`system.beside`) | the `checks` step of a cached primer run (three runs each, from their manifests): 2.53, 2.46, 2.20 s before, 1.62, 1.71, 1.61 s after; `estimands.csv` and `ppc.csv` the same byte for byte. Should the child fail, the estimates are computed again in the run's own process, so its error is the one the user would have seen (test) | yes |
| group effects started at zero (PyMC jitters every free variable's start by U(-1, 1); here all but the group effects) | `fit.seed = 11`: no stuck chain (R-hat 1.013, 400,917 gradient evaluations, 2 divergences, smallest parameter ESS 390), where the shipped start did not finish in 400 s. But `fit.seed = 2004` and `7`: 361,565 and 340,463 gradient evaluations (shipped: 291,377 and 282,782), 25 and 17 divergences (shipped: 3 and 14), smallest parameter ESS 582 and 626 (shipped: 672 and 506) | no: worse at the two seeds that worked |
| where a refit's fixed cost goes (A/B demo, `--refit`, cache loaded) | 7.7 s in all: about 2 s starting Python and importing the run's modules; reading and planning 0.55 s; importing Bambi and PyMC and building the model 2.4 s (`import bambi` alone takes 2.3-2.8 s after PyMC, 2.1 s of it the whole of ArviZ, which `bambi.interpret` and nutpie both import); the fit 1.5 s, of which sampling 0.34 s and the rest PyTensor rewriting the five functions nutpie compiles (their machine code comes from the cache); the PNGs beside the page 1.2 s. Plain Bambi + nutpie by hand pays the same imports. A 3x refit needs a compiled model that samples without importing Bambi and PyMC | – |

### Levers measured on 2026-12-01 and 12-02 (fourth session)

The primer through `mrp run examples/mrp_primer/primer.toml --refit --no-progress --set fit.seed=S fit.tune=T
fit.draws=D report.plots=false`, one run after the other on the otherwise idle machine, figures from each
run's `manifest.json` (`efficiency`, `diagnostics`, `timings_seconds`).

| lever | result | kept |
| --- | --- | --- |
| intercepts and slopes with a fixed Normal prior sampled in units of their prior (`model/sampler.prior_scaled`: x = mu + sigma v, the sampler moves v; the same model, the log density changes by the constant log sigma) | The cause of the stuck chains: PyMC starts every free variable at U(-1, 1) on its own scale, and the slopes of the state-level percentages (posterior sds near 0.005) started hundreds of sds out; at seed 99 (tune 500) one chain kept the intercept at 11 and p_evang at -0.22 (1.7 million gradient evaluations, R-hat 1.59), seed 4 did not finish 4 x 200, seed 11 as above. With the change, 4 x 200 (tune 1,000), seeds 1-8 and 11: 173,000-205,000 gradient evaluations each, 0-3 divergences, R-hat 1.02-1.08 at those few draws, **no stuck chain**. As shipped (4 x 1,000, tune 1,000), seeds 2004 / 7 / 99 / 4: 301,046 / 292,000 / 281,000 / 279,000 gradient evaluations, 4 / 1 / 5 / 6 divergences, smallest parameter ESS 698 / 762 / 489 / 544, smallest estimand ESS 2,201 / 2,742 / 1,858 / 2,551 (before, seed 2004: 291,377, 3, 672, 2,501; seed 7: 282,782, 14, 506, 2,662). A slope of income in dollars (`tests/model/test_sampler.py`) was not recovered at all before (0.066 against a truth of 5.3e-5) | yes: robustness, at about the same efficiency |
| tuning 500 instead of 1,000, with the change above | seeds 2004 / 7 / 99 / 4: 246,000 / 230,000 / 203,000 / 213,000 gradient evaluations (about 20 % fewer), but 4 / **73** / 5 / 29 divergences and at seed 7 a smallest estimand ESS of **401** | no |
| the process ends with `os._exit` once the exit handlers have run and the streams are flushed (`cli._leave`, only when no other thread runs) | the interpreter's teardown of a fitted PyMC model took 0.5-0.7 s after every fit on 2026-12-01 (by hand). On 2026-12-02, the A/B demo `--refit` (compile cache loaded), three pairs interleaved, the console script against `main([...])` called from Python (the usual exit): 7.8, 7.5, 7.4 s against 9.0, 8.9, 8.7 s, **1.2-1.4 s** less. A test checks that the handlers run and the output is complete | yes |
| PyTensor's `traceback__limit = 0` while compiling | -0.08 s on the A/B refit | no: inside the noise |
| the A/B refit against plain Bambi + nutpie, fresh processes (idle machine, by hand) | mrp-formula 4.9-5.0 s (of which: 0.3 s reading and planning, 2.4 s for the posterior with importing Bambi and PyMC 1.2 s and the fit 0.9 s, sampling 0.2 s; figures beside the page 1.0 s); plain Bambi + nutpie 10.1-11.6 s: **2.0-2.3x** (target 3x). What is left is fixed cost both pay: Python and the imports (`import bambi` 1.2 s, 0.8 s of it ArviZ, which `bambi.interpret` and nutpie's sampling both import), PyTensor rewriting the five functions nutpie compiles (1.2-1.5 s when the machine code comes from the cache). Reaching 3x needs a compiled model kept with its data as inputs (not the constants Bambi builds), sampled without importing Bambi and PyMC: not built | – |
| robustness of the shipped rule at more seeds (4 x 200, tune 1,000) | seeds 9, 10, 12, 14, 15: 175,000-209,000 gradient evaluations, 0-1 divergences, R-hat 1.02-1.07 at those few draws. **Seed 13**: 35 divergences, all in one chain, which wandered to a race:female group sd of about 2 (the posterior's 95 % quantile is 0.66); at 4 x 1,000: 36 divergences, smallest parameter ESS 364, smallest estimand ESS 1,014. The run says so (the divergence check fails, with its advice) | open |
| `1\\|race:female` centred (8 levels, median information per level 65, so the rule leaves it non-centred) | 4 x 1,000, seeds 2004, 7, 99, 4, 13, 11, 9, 10 against the shipped rule at the same seeds: gradient evaluations 217,000-238,000 against 267,000-301,000 (**18 % fewer**), divergences 22 in all, at most 6 in a run, against 69 in all, at most 36 (seed 13: **0 against 36**); but smallest parameter ESS 335-638 (mean 471) against 364-762 (mean 599), and smallest estimand ESS 1,721-2,216 (mean 1,925; under 2,000 in six of eight) against 1,014-2,742 (mean 2,178; under 2,000 in two). Per 1,000 gradient evaluations the same (parameters 2.0 against 2.1, estimands 8.3 against 7.8). A rule that would centre it (the data's sd per level against a moment estimate of the group sd, rather than information alone) is the next thing to try. A spec can now set it per term: `model.parameterization = { "1\\|race:female" = "centered" }` (seed 13 through `mrp run --set`: the same 236,783 gradient evaluations and 0 divergences as above) | not as the default: fewer divergences at the cost of ESS per run; per term in the spec |
| nutpie's low-rank adaptation settings (passed to `nutpie.sample`; shipped primer, 4 x 1,000, seed 2004; shipped: 301,046 gradient evaluations, 187,231 of them tuning, 4 divergences, smallest parameter ESS 698, estimand ESS 2,201) | `mass_matrix_eigval_cutoff` 100 (fewer directions learnt): 368,940, 3 divergences, R-hat 1.067, parameter ESS **69**, estimand ESS 323. Cutoff 1.3 (more directions than the 2 nutpie sets): 308,894, 5, 728, 2,476. `mass_matrix_switch_freq` 40 (80 by default): 315,274, 3, 623, 3,041. The last two are inside the spread between seeds | no |
| target_accept 0.98 in the primer (0.95 shipped) | seed 2004: 406,272 gradient evaluations, 1 divergence, smallest parameter ESS 400, estimand ESS 1,686 (shipped: 301,046, 4, 698, 2,201); seed 13: 374,646, 1, 486, 1,900 (shipped: 279,060, 36, 364, 1,014). Smaller steps cost a third more gradients and still diverge | no |

### Levers measured on 2026-12-02 (fifth session, another machine: 2 cores, AMD EPYC)

The benchmark above ran on this machine; the rows before it on an Intel Xeon. The same spec and seed
give other draws here: OpenBLAS picks its `Haswell` kernels here and `SkylakeX` there, whose sums round
differently in the last bit, which the sampler amplifies (with `OPENBLAS_CORETYPE=SkylakeX` this machine
gives the numbers recorded there bit for bit; docs/outputs.md, Reproducibility). The shipped primer at
seed 2004 took 297,377 gradient evaluations here against 301,046 there. On one machine a run repeats
bit for bit (two primer runs at 2 x 500: 82,291 gradient evaluations each).

| lever | result | kept |
| --- | --- | --- |
| the hand-fused gradient reference made as tight as scalar code goes (`benchmarks/cases_mrp.case_gradient_cost`: one `exp` shared by the softplus and the sigmoid, one `log1p`, scratch arrays made once; was two `exp`) | by hand, one process (idle machine): the compiled model 158-161 us, the old loop 141 us, the new one 132-155 us; its element-wise math alone (softplus and sigmoid of 3,693 cells) 73-90 us. In the benchmark run above: 155, 105 and 55 us, the model **1.5x** the reference. numba here has no SVML (this llvmlite is not built with the patch, `python -m numba -s`), so `exp` and `log1p` are scalar libm calls, and they are half of the reference. What is left per gradient is that math: no cost-per-gradient lever remains on this stack | yes (the reference; the model unchanged) |
| `1\\|region` non-centred, measured again now that intercepts and slopes start in units of their prior (the earlier stuck chain at seed 11 came from the start, fixed since) | shipped primer, 4 x 1,000, seeds 2004 / 7 / 13 / 99, plots off: non-centred 307,013 / 314,588 / 312,224 / 306,036 gradient evaluations, 18 / 4 / 0 / 2 divergences, smallest parameter ESS 444 / 200 / 443 / 526 (the region sd each time), estimand ESS 1,347 / 858 / 2,559 / 2,370. Shipped (centred): 297,377 / 271,170 / 276,311 / 261,211, 6 / 9 / **85** / 6 divergences, 703 / 666 / 190 / 640, 1,876 / 2,434 / 335 / 2,784. Of the 6 divergences at seed 2004, 4 are at a region sd of 0.025-0.04 (its 5 % quantile is 0.093): the centred funnel's neck. The region sd's posterior spans both regimes (median information per level 305 times its variance: 0.2 at sd 0.025, 18 at the median 0.24), so neither form suits all of it | no |
| a moment estimate of each group sd for the centring rule (the next thing the rows above proposed) | the DerSimonian-Laird estimate from each term's level totals, on the primer: race:female 0.23, age 0.47, edu 0.42, age:edu 0.54, state 0.41, region 0.42, poll 0.20. These are marginal: the age:edu levels carry the age and edu effects (its posterior sd is 0.10) and the states their region's and the state predictors' (posterior 0.065), so information x sd^2 would centre age:edu, which was measured worse (the second session's row). A useful estimate needs the other terms fitted first (a pilot fit) | not built |
| what bounds the shipped primer's time | seed 2004 here: 297,377 gradient evaluations, 180,198 of them tuning, 211 us each inside the sampler (2 chains at a time on 2 cores): sampling 31 s of the 48 s. The 4,000 kept draws alone take 117,179 evaluations (29.3 leapfrog steps a draw), about 12 s at this cost on these 2 cores, and the rest of a run (imports, prepare, build, checks, figures, page) about 10 s. 20 s end to end would need fewer than about 15 steps a draw with almost no tuning, or a gradient under 100 us: no lever measured comes near | – |
| the primer at 2 x 500 measured as a user runs it (`mrp run`, a fresh CLI process) beside the Python API in a fresh interpreter (the case the table shows) | the CLI ends with `os._exit` once its output is flushed (fourth session), while the API's process tears the fitted PyMC model down; Bambi by hand pays its teardown as a user's script does. Both shown above; the ratio is the CLI's. With plots off, a primer run at 2 x 500 spends about 9 s outside the fit (CLI, this machine): Python and the CLI 1 s, prepare 0.8, importing Bambi/PyMC/nutpie and building 2.6, checks 0.9, the page 3.1 (its figures as SVG: trace 1.3 s, posterior predictive check 1.1 s). The page's figures drawn in a second process while plots are off: see the next row | the CLI figure: yes |
| the page's figures partly drawn in a forked child when no PNGs are drawn beside it (`report.plots = false`, and `mrp report`): the trace and raw-vs-MRP figures there, the others here (`output/report/document._figures`; each section numbers its own SVG ids, so the page is the same byte for byte, a test) | cached primer runs at 2 x 500, plots off, fresh processes, three pairs interleaved: the `report` step 2.87 / 2.52 / 2.62 s before, 1.72 / 1.76 / 1.93 s after; end to end 6.2 / 5.4 / 5.8 s before, 4.9 / 4.6 / 5.0 s after. Fresh fits (`--refit`) after: 16.1 and 17.2 s end to end, the page 2.1 and 1.7 s (2.0 s in the benchmark run above, 3.1 s in its run before the change). With PNGs (the default) nothing changes: they already take the second core | yes |
| where the A/B refit goes (benchmark run above, second refit, compile cache loaded: 5.9 s; Bambi + nutpie by hand 11.2 s, 1.9x) | prepare 0.44 s; importing and building 2.0 s, of which `import bambi` (`python -X importtime`) 2.85 s in that process: ArviZ 1.62 (nutpie imports it too), PyMC 0.53, sparse 0.50, formulae 0.36; the fit 1.37 s (sampling 0.2, PyTensor rewriting the graphs whose machine code is cached most of the rest); PNGs 1.23 s beside the page 1.16 s. A refit that skips Bambi, PyMC and the rewriting (PyTensor's rewritten functions pickled with the fit, nutpie's model rebuilt from them and our cached wrappers, the posterior laid out as the first fit's) would save about 2.5 s: about 3.4 s, 3.3x, by estimate. Not built: the posterior must equal Bambi's bit for bit, and Bambi's clean-up of nutpie's result is computation (the intercept shifted back for mean-centred predictors), not only layout (names, dims, coordinates, PyMC's additions), so it would have to be derived again and proven equal | not built |

### Levers measured on 2026-12-02 (sixth session, another machine again: 2 cores, AMD EPYC, about half as fast)

This machine ran the same A/B refit in 12.9-14.5 s that took 5.9 s in the fifth session's benchmark,
and plain Bambi + nutpie by hand in 26.6 s against 11.2 s: only ratios within one run compare.

| lever | result | kept |
| --- | --- | --- |
| a fitted model reused without Bambi, PyMC or ArviZ (`model/reuse.py`; the row above's "not built"): the first fit of a model writes a recipe (the keys of its two compiled callbacks in the compile cache, nutpie's variables, PyMC's initial point as the support point plus U(-1, 1) jitter from generators spawned from the chain's seed, Bambi's layout of the draws and its intercept shift for mean-centred predictors, the data groups), keyed by the model (data, formula, priors, parameterization, mass matrix, versions) and not by the fit's settings; the recipe is written, read back, and kept only if it lays the fit's own raw trace out exactly as Bambi did and starts chains exactly where PyMC does. The next fit loads the callbacks (numba finds their machine code; nothing is compiled), runs nutpie's sampler and lays the trace out | the A/B refit by hand, fresh CLI processes, one after the other: 12.9 / 14.5 / 13.6 s through Bambi (compile cache loaded; the `posterior` step 7.3-8.1 s, of which the fit 2.7-3.2 s) against **9.0-10.1 s** reused (the `posterior` step 2.7-3.4 s, the fit 2.0-2.5 s: numba's loading of the callbacks 1.1-1.7 s, of it about 0.9 s initialising numba's code generator and 0.4 s the PyTensor modules the callbacks' environment names, nutpie's import 0.35 s, sampling 0.1 s, the layout 0.3 s; the rest of the step is storing the fit, 0.7-1.4 s of xarray writing netCDF). The same estimands byte for byte. Every shipped spec and example (`specs/`, `examples/`) records a recipe and reuses it with identical draws; tests: `tests/model/test_reuse.py` (the A/B and a gaussian model with a centred predictor, the seed and draws changed, a fresh process imports neither Bambi, PyMC nor ArviZ, a missing callback or a recipe that does not reproduce goes through Bambi). Recording costs under the noise of a fit (A/B, 4 fits interleaved: 1.74 / 1.27 s without, 1.32 / 1.72 s with) | yes |
| the recipe's layout kept as a netCDF DataTree | reading it back took 1.9 s (xarray's decoding imports dask.array: 1.2 s); kept as JSON and one `.npz` instead: a few ms | no (JSON + npz) |
| importing the page's and the PNGs' modules (matplotlib, about 1 s) in a thread while a reused model loads and samples | five interleaved pairs of A/B refits: 10.1 / 10.5 / 10.7 / 10.7 / 10.9 s with against 9.6 / 10.1 / 10.1 / 10.8 / 11.1 s without: no gain (the loading holds the interpreter) | no |
| numba's cache locator of our own, to load the callbacks without importing PyTensor | numba imports the PyTensor modules named in the callbacks' environment while it loads them anyway (0.4 s): nothing saved | no |
| a forked child blocked for good (first seen in the test suite, then in the benchmark's first A/B refit: its PNGs were not written; reproduced in 2 of 3 fresh-compile refits, none with the code before this session's change in 3) | `py-spy dump` of the stuck child: the cyclic garbage collector, run inside matplotlib's drawing, freed an object of nutpie's that the parent had left in a reference cycle, and its native destructor waited on a futex for sampler threads that exist only in the parent. `system.beside` now freezes the caller's objects out of the child's collections (`gc.freeze` before the fork, `gc.unfreeze` in the parent): 0 hangs in 4 such refits, and the PNG child is faster (1.4-1.9 s against 1.9-2.7 s: its collections no longer walk the parent's heap); a test. And a child that has used no CPU time for 30 s is given up (`system.Beside.result`, a test): any other such hang costs 30 s, not the 900 s timeout | yes |

### Levers measured on 2026-12-02 (seventh session, the sixth session's machine)

Measured by hand with fresh `mrp run specs/ab_click.toml --refit` processes (the model reused), one after
the other, unless the row says otherwise; the benchmark's A/B figures above come from the same code.

| lever | result | kept |
| --- | --- | --- |
| where the reused A/B refit went before this session (7.7 s in the benchmark at 16:30; Bambi + nutpie 16.1 s, 2.1x) | the run's clock 6.4 s: prepare 0.8, the posterior 2.4 (of it 0.7 s xarray importing dask.array to check whether the draws are dask arrays, and 0.7-1.3 s storing the fit as netCDF, where xarray imports dask and distributed again to ask which scheduler writes), then the page 2.9 s beside the PNGs 2.3 s, each importing matplotlib (about 1 s) for itself after the fit; before the clock, 1.3 s of Python and imports. The second core idled through the prepare and the posterior | – |
| a child forked when the run starts (`system.ahead`) imports matplotlib, the page's and the PNGs' modules meanwhile; handed the staged folder and the posterior (pickled through a private temporary file), it writes the page while a child of its own draws the PNGs, and the run stores the fit and writes `posterior.nc` meanwhile (`steps.posterior(store=False)`, `steps.store_fit`; a run that fails after the fit still stores it) | the page 1.5-2.1 s and the PNGs 1.6-1.9 s in the A/B benchmark rounds, without matplotlib's import; with the next three rows the run's `total` from 6.4 to 3.7-4.5 s, end to end 7.7 s -> 4.5-6.2 s (benchmark rounds above: 5.25 s median against Bambi + nutpie's 14.27 s, 2.7x; at 17:26 5.27 against 16.76 s, 3.2x). Where no fork is possible (a notebook's threads, one core, not Linux) the run does as before; tests (`tests/test_system.py`: the import happens there, the work's answer and errors, work that does not pickle done as `beside` does, a child never handed work stopped and reaped) | yes |
| xarray's import of dask kept off a run (`system.without_dask`: `import dask` fails inside `mrp run` unless dask was imported before; xarray's cached answers about dask forgotten on leaving, so later code finds it) | the posterior step 2.4 -> 1.4-1.7 s, the fit's store about 1 s less CPU. The estimands byte for byte the same. Tests: inside, netCDF is written without dask; after, xarray chunks dask arrays again | yes |
| the modules the page and the PNGs imported after the work was handed over (`scipy.special` for the page's check probabilities and the trace's titles, imported twice, in the child and its PNG child: 0.2-0.3 s each; pyarrow's parquet reader; matplotlib's SVG backend) imported ahead too | the page step 2.7 -> 2.1 s in the benchmark rounds (5.67 -> 5.27 s end to end, median of three each) | yes |
| the garbage collector's first threshold in an `mrp` process that ends with its command: 100,000 allocations instead of 700 (`cli.COLLECT_RARELY`; not `watch`, not `batch`) | the A/B refit's main process ran 504 collections (0.5 s, 3 of them full ones at 0.12-0.14 s each), its children more; with the new threshold 41 in all. Interleaved fresh processes (through `main([...])`): A/B 7.2-8.9 s against 7.5-9.6 s (median 7.7 against 8.7); the shipped primer 58.5 s against 65.5 s, peak memory 500 MB against 504 MB. The older generations collected rarely too, (100,000, 50, 100): primer peak memory 611 MB | (100,000, 10, 10): yes |
| PNG compression level 1 instead of matplotlib's default | the A/B figures' PNG CPU time 2.35 against 2.36 s: none | no |
| the page's and the PNGs' figures drawn once, saved in both formats | each figure's building is 0.04-0.26 s of its 0.3-0.7 s (the rest is drawing, of which constrained layout 14 % and text 15 %, done per format); the page's forest figures are per breakdown and the PNG's are not, so they are not one to one | not built |
| the spec and the data prepared in a forked child while the run imports and initialises numba (1.1 s: loading the compiled callbacks imports numba's implementation modules) | not built: during the prepare the other core is busy importing the page's modules (the row above); on two cores a third process gains about 0.2 s by estimate | not built |

### Levers measured on 2026-12-02 (eighth session, the same machine)

Measured by hand with fresh `mrp run specs/ab_click.toml --refit` processes (the model reused), one after
the other, on the otherwise idle machine, unless the row says otherwise.

| lever | result | kept |
| --- | --- | --- |
| formulae imported without scipy.interpolate (`system.import_deferring`, `spec/formula.formulae`): formulae takes only `splev` from it, for `bs()`, which mrp-formula's formulas do not allow; scipy.interpolate imports scipy.optimize and parses docstrings. A stand-in hands formulae a function that imports scipy.interpolate at its first call | importing formulae after pandas 0.27 -> 0.01 s; the run's `prepare` 0.48 -> 0.20 s (`mrp check` gains the same); end to end 3.8 / 3.9 / 4.1 s -> 3.5 / 3.5 / 3.6 / 3.7 s. A formula's `bs()` through formulae gives the same design matrix (a test in fresh interpreters) | yes |
| the compiled callbacks loaded without numba's refresh of its whole CPU target (`model/compiled._load_cached`: what `CFunc.compile` does on a cache hit, None on a miss, never a compile; inside, the refresh initialises the runtime and adds the hash-secret symbols, the only ones numba's implementation modules add to LLVM's table) | the refresh imports every implementation module (0.27 s) that compiling needs and loading does not; PyTensor's numba modules, which loading imports, bring part of them anyway: the `fit` step 0.80-0.90 -> 0.66-0.77 s, end to end 3.3-3.65 s. The draws the same bit for bit (the reuse test in fresh processes). A helper session's review found that the first version let numba compile inside on a cache miss, with the partial target; refusing that compile instead left numba unable to type nutpie's wrapper in the fit through Bambi that followed in the same process (seen by hand). Now nothing is compiled inside: tests in fresh processes (a miss compiles nothing, and numba compiles fully after a miss and after a load) | yes |
| where the reused A/B refit goes now | before the run's clock 0.75 s of Python and imports (pandas 0.35, xarray 0.10, scipy.sparse 0.07, typer and rich 0.13: the run needs each); prepare 0.2; the posterior 0.7-0.8 (importing numba 0.22 and PyTensor 0.17, loading the callbacks with PyTensor's numba modules about 0.2, sampling 0.1-0.2, laying the draws out 0.1); after the hand-over 1.5 s in which three processes share the two cores: the page (its SVG figures 1.2 s of CPU), the PNGs (1.35-1.45 s: building the figures 0.3, drawing and encoding the rest) and the fit's store (0.2-0.45 s, netCDF). The child forked ahead has its imports done 0.2-0.8 s before the hand-over. What is left is the figures' CPU time | – |
| fonts and the page's templates warmed in the child forked ahead while it waits | the first figures of a process are not slower than later ones (PNG 1.41 and SVG 1.23 s cold against 1.34 and 1.21 s after a warm-up); the page's templates compile in 0.07 s | no: inside the noise |
| the spread of the A/B ratio | the same code gave 2.9x at 21:15 (refit 3.5 s, Bambi + nutpie 10.0 s) 2.6x at 21:34 (4.3 s against 11.4 s) and 3.1x at 21:38 (3.5 s against 10.8 s), when the same figure script ran 1.6x slower than an hour before: on a busy host the run, which spreads its work over both cores, loses more than Bambi's one-core script | – |

### Levers measured on 2026-12-03 (ninth session, the same kind of machine: 2 cores, AMD EPYC)

The fits table above ran on this session's code (the partial form included). The geometry rows were measured with
`benchmarks/geometry_primer.py MODE SEED low_rank 4 1000 1000` (the primer as shipped, 4 x 1,000,
target_accept 0.95; nutpie's seed as given), one fit after the other; `binary` is the choice before
this session (age, edu, region and poll centred, the rest non-centred). The last rows are `mrp run`
as a user runs it (fresh CLI processes, `fit.seed` as given).

| lever | result | kept |
| --- | --- | --- |
| `1\\|region` partially non-centred (Papaspiliopoulos, Roberts & Sköld 2007: `offset ~ N(0, sd^w)`, effects `sd^(1 - w) offset`), w = 0.5 (`p:1\\|region=0.5`): the region sd's posterior spans both the centred and the non-centred regime (the fifth session's row) | seeds 2004 / 13 / 7 / 11 / 99 / 2005: divergences 10 / 3 / 18 / 4 / 3 / 9 (binary) -> **2 / 1 / 1 / 1 / 1 / 5**; smallest parameter ESS 608 / 649 / 595 / 695 / 827 / 694 -> 722 / 662 / 643 / 761 / 685 / 736; gradient evaluations within 5 % (264,000-303,000 both) | see the next row |
| age:edu and race:female at w = 0.5 as well | seeds 2004 / 13: 2-3 and 1-2 divergences, smallest ESS 409-771 (the age:edu sd): no better than region alone | no |
| every term at w = I / (I + 200), I its median information per level (`pw:200`): the Gaussian optimum I s^2 / (1 + I s^2) of that paper with the effects' sd s taken as 1 / sqrt(200), where the binary rule switches; on the primer race:female 0.24, age 0.62, edu 0.66, age:edu 0.28, state 0.10, region 0.60, poll 0.52 | seeds 2004 / 7 / 13: divergences 10 / 18 / 3 (binary) -> **1 / 5 / 1**; smallest parameter ESS 608 / 595 / 649 -> **823 / 997 / 1,077**; per 1,000 gradient evaluations 2.14 / 2.25 / 2.37 -> **3.00 / 3.52 / 3.73**; gradient evaluations 284,073 / 263,852 / 273,237 -> 274,523 / 283,263 / 288,716 | yes: `model.plan.centring_weight`, rounded to two decimals; a group intercept is centred from w = 0.9 (I >= 1,800) and non-centred up to w = 0.1 (I <= 23), so data-rich and thin terms keep their form; only group intercepts with a Normal(0, sd) prior whose sd has a prior (slopes, fixed sds, structured terms and categorical families keep the binary rule). The effects' prior is Normal(0, sd) in every form (a test draws from the built model's prior) |
| the primer as shipped with the partial form, `mrp run` (fresh CLI, `fit.seed` 2004 / 7 / 13; the model compiled once, then reused) | divergences **1 / 1 / 1** (before: 6 / 9 / **85**); smallest parameter ESS 851 / 822 / 729 (703 / 666 / 190; target 1,000); estimands' smallest bulk ESS **2,990 / 2,802** / 1,783 (1,876 / 2,434 / 335; target 2,000); R-hat at most 1.006; 295,860 / 277,284 / 293,568 gradient evaluations, 30.3-30.8 leapfrog steps a draw; end to end 53.6 s (compiling and recording the model) and 39.1 / 42.0 s (the model reused), the sampling 29-33 s of it. The state estimates within Monte Carlo error of the binary choice's (largest difference 0.0021, 1.9 combined standard errors); the primer in tests/golden (2 x 200) within Monte Carlo error too, then recorded again | yes. The 20 s target stays out of reach: the sampling alone is 1.5x it (the previous session's row on what bounds the time) |
| the centring weight's scale: w = I / (I + I0) with I0 = 100, 300 or 400 instead of 200 (`pw:I0`) | seeds 2004 / 7 / 13. I0 = 100 (closer to centred): 1 / 8 / 0 divergences, smallest parameter ESS 458 / 314 / 530. I0 = 300: 0 / 0 / 2, 716 / 614 / 677, 288,000-302,000 gradient evaluations. I0 = 400: 0 / 0 / 0, 854 / 766 / 648, 305,000-332,000. I0 = 200 (above): 1 / 5 / 1, 823 / 997 / 1,077, 274,000-289,000. Through `mrp run` at `fit.seed` 2004 / 7 / 13, I0 = 400 gave 0 / 0 / 1 divergences, parameter ESS 840 / 882 / 668, estimand ESS 2,069 / 2,536 / 1,970 and 6 % more gradient evaluations, against I0 = 200's 1 / 1 / 1, 851 / 822 / 729, 2,990 / 2,802 / 1,783: fewer divergences, fewer effective draws of the estimands, inside the spread between seeds | 200 (the binary rule's threshold, where w = 0.5) |
| tuning 500 draws a chain instead of 1,000 with the partial form (`shipped`, tune 500) | seeds 2004 / 7 / 13: 227,417 / 232,938 / 225,581 gradient evaluations (18-20 % fewer), 0 / 1 / **9** divergences, smallest parameter ESS 897 / 754 / 605 | no: seed 13 diverges |
| the benchmark above against the eighth session's run (same kind of machine) | CCES scale: 0 divergences both; the smallest parameter ESS 649 -> **1,363**, per 1,000 gradient evaluations 2.58 -> **6.17**, estimand ESS 5,197 -> 5,727, end to end 219.6 -> 219.7 s (2.4x plain Bambi + nutpie). The primer at 2 x 500: 15.4x -> 11.8x plain Bambi + PyMC, the CLI run 14.7 -> 20.5 s at 299 us a gradient evaluation inside the sampler (212 us before); the same CLI run by hand right after, on the idle machine: 24.3 s compiling and recording the model, then **13.75 s** reused (78,457 gradient evaluations at 202 us): the benchmark's figure is the load of the case before it, not the partial form, whose cost per gradient the gradient case puts at 207 us (204 before) | – |
| the golden numbers' kernels | tests/golden recorded again with OpenBLAS's `Haswell` kernels (AVX2 and FMA), named in `tests/golden/recorded.json`, since this machine cannot run the `SkylakeX` ones of the first recording: `tests/commands/test_same_numbers.py` compares bit for bit wherever the CPU runs Haswell kernels, within Monte Carlo error elsewhere | yes |

### Levers measured on 2026-12-03 (tenth session, the same machine)

The geometry rows ran `benchmarks/geometry_primer.py shipped SEED low_rank 4 1000 1000` (the primer as
shipped, partial form; nutpie's seed as given), with `TARGET` for another target_accept and `NUTS` for
nutpie settings its keywords do not reach (`NUTS='{"trajectory_kind": "Microcanonical"}'`), one fit
after the other. The shipped reference, same script and seeds: 1 / 5 / 1 divergences, smallest
parameter ESS 823 / 997 / 1,077 (seed 2004 again this session: 1, 869, 286,831 gradient evaluations,
sampling 30.9 s: 215 us a gradient evaluation, two chains at a time).

| lever | result | kept |
| --- | --- | --- |
| target_accept 0.9 and 0.85 with the partial form (`mrp run --set fit.seed=S fit.target_accept=T`, seeds 2004 / 7 / 13) | 0.9: 188,695 / 180,386 / 190,650 gradient evaluations (a third fewer; 16-18 leapfrog steps a draw instead of 30), **8 / 3 / 1 divergences**, smallest parameter ESS 615 / 430 / 821, estimand ESS 1,653 / 1,221 / 1,578; end to end 28 s reused (sampling 20-21 s). 0.85: 163,000-179,000, **9 / 13 / 15** divergences, parameter ESS 393-549, estimand ESS 1,680-2,153; end to end 25-27 s. The shipped 0.95: 1 / 1 / 1, 851 / 822 / 729, 2,990 / 2,802 / 1,783, about 40 s | no: the time saved costs the divergence and ESS targets |
| NUTS with nutpie's microcanonical trajectory (`trajectory_kind = Microcanonical`: nuts-rs 0.18's "experimental microcanonical update", isokinetic (ESH) dynamics inside the same multinomial NUTS, exact in principle: each leaf weighted by its energy error including the kinetic change; not in nutpie's documented options) | target 0.95, seeds 2004 / 7 / 13: **0 / 0 / 0 divergences** (shipped 1 / 5 / 1), smallest parameter ESS 1,032 / 882 / 714 (823 / 997 / 1,077), 277,009 / 281,586 / 293,419 gradient evaluations, sampling 35.5 / 37.5 / 38.0 s: about 20 % more time per leapfrog step (256-266 us against 215). Target 0.9: 0 / 0 / 0 divergences, 182,000-194,000 gradient evaluations, sampling 20-25 s, but parameter ESS 599 / 516 / 588 | no: no divergences at any seed, but no more effective draws per second; an experimental option whose unbiasedness nuts-rs does not test. The next lever to try if divergences matter more than time |
| nutpie's adaptation settings (target 0.95, seeds 2004 / 7 / 13) | low-rank `eigval_cutoff` 1.5 (2 by default): 12 / 1 / 11 divergences, ESS 819 / 648 / 697. `gamma` 1e-3 (1e-5): **49** / 0 / 0, ESS 322 / 784 / 781. `early_window` 0.15 (0.3): 2 / 6 / 0, ESS 872 / 1,193 / 1,172. `mass_matrix_update_freq` 10 (20): 1 / 0 / 0, ESS 811 / 948 / 786. `step_size_window` 0.3 (0.15): 0 / 1 / 0, ESS 969 / 1,164 / 883, 288,000-299,000 gradient evaluations. None changes the gradient count by more than 5 % | no: every one inside the spread between seeds (the longer step-size window is the most even; three seeds cannot tell it from the default) |
| where a primer run goes when its fit is cached (`mrp run`, the fit reused from the cache, two runs) | 8.1-8.6 s end to end: prepare 0.65, reading the fit 0.65, poststratify 0.4, checks 1.4-1.7 (the posterior predictive check over 3,693 cells x 4,000 draws, the classical estimates in a forked child), writing 0.1, the page 3.6 and the PNGs 3.3-3.6 side by side, about 1 s of Python and imports before the clock. With sampling 29-33 s a refit cannot come under about 38 s on 2 cores | – |

### Levers measured on 2026-12-03 (eleventh session, the same machine)

| lever | result | kept |
| --- | --- | --- |
| PyTensor's JAX backend in nutpie (`compile_pymc_model(backend="jax")`, with JAX's own gradient (`BACKEND=jax`) or PyTensor's (`BACKEND=jax/pytensor`); JAX 0.12.0.1 installed for the measurement only, `PYTHONPATH=... BACKEND=... .venv/bin/python benchmarks/geometry_primer.py shipped 2004 low_rank C 200 200`) | one chain on one core (`CORES=1`): JAX's gradient 355 us a gradient evaluation (7.4 s for 20,855), PyTensor's gradient in JAX 289-300 us (7.8-8.1 s for 27,012), numba 156-179 us (2.6-3.0 s for 16,640). Two chains on two cores: JAX's gradient 9.0 s for 40,158 evaluations (224 us each in wall time, 448 us a chain), PyTensor's gradient in JAX 11.4 s for 45,579 (250 us), numba 3.1 s for 34,135 (91 us in wall time): nutpie calls a JAX model through Python, so the chains take turns holding the interpreter and the second core adds little. The jitted log density and PyTensor's gradient called in a loop from Python (dispatch and XLA together): 272 us, so XLA's CPU code is itself slower than numba's on this graph (its gathers and scatter-adds), not only the calls. Other rounding gives other draws (three different gradient counts for the same seed) | no: 2-5x slower per draw; JAX is not a dependency |
| the data as inputs of the compiled log density instead of constants (the issue's "data as inputs, so a new sample of the same structure reuses the compiled function"; `DATA=inputs` or `inputs_static` with `CORES=1 ... geometry_primer.py shipped 2004 low_rank 1 200 200`: the ten constants of 50 or more values in the primer's log density, the cells' seven index vectors, the design columns of the state-level predictors, successes and trials, made shared variables, which nutpie hands the compiled function at every call) | one chain on one core, two runs each: constants 174-179 us a gradient evaluation (2.9-3.0 s for 16,640); inputs with their shapes kept 224-290 us; inputs of any length (what a key without the data's size needs) 272-318 us: **1.3-1.8x the cost of every gradient**, with PyTensor and numba no longer specialising the gathers and scatter-adds to the known index vectors. Other arithmetic, so other draws (17,900 gradient evaluations for the same seed). On the shipped primer's 290,000 evaluations that is 6-20 s more sampling on 2 cores in every run, against the 5-14 s of compiling saved only when the sample changes (a refit of the same sample already loads its compiled model) | no: the compile cache stays keyed by the model's structure and data |
| four sampling threads for the four chains on two cores (`CORES=4`) instead of two threads taking the chains in turn (`mrp run`'s choice), `geometry_primer.py shipped SEED low_rank 4 1000 1000`, interleaved | seed 2004: 26.4 / 22.9 s against 27.1 / 24.4 s; seed 7: 23.9 / 23.4 s against 23.6 / 21.8 s; the draws the same. Inside the noise. (This machine ran faster today: the shipped primer through `mrp run --refit`, the model reused, **28.8 s** end to end, sampling 23.0 s at 155 us a gradient evaluation for 295,860 of them, 174,692 tuning; 37.3 s compiling and recording the model. 20 s would need about 180,000 evaluations at this cost: the kept draws alone take 121,000) | no |

### Levers measured on 2026-12-03 (twelfth session, the same machine)

| lever | result | kept |
| --- | --- | --- |
| nutpie's microcanonical Langevin sampler (`sampler="mclmc"`, nutpie 0.16.11, "experimental ... might eat your homework"; `SAMPLER=mclmc geometry_primer.py shipped 2004 ADAPT 4 1000 1000`) | low-rank mass matrix: sampling 123.1 s, max R-hat **1.129**, the state sd's bulk ESS **21** (the shipped NUTS: about 25 s, R-hat 1.006, smallest ESS 851). Diagonal: sampling 19.7 s, 0 divergences, max R-hat 1.032, smallest ESS **124** (the state sd; the intercept 250): 6.3 effective draws a second against NUTS's 35, and MCLMC without a Metropolis step is biased by its step size | no |
| the log density in single precision (`PYTENSOR_FLAGS=floatX=float32`, `CORES=1 ... geometry_primer.py shipped 2004 low_rank 1 200 200`, three pairs interleaved on the idle machine) | float64 3.0 / 3.7 / 3.7 s for 16,640 gradient evaluations (180-222 us each), float32 3.6 / 3.6 / 4.4 s for 17,324 (208-254 us): no faster (numba's scalar `exp` and `log1p` cost about the same in single precision here, and the sampler's own arithmetic stays double), and other rounding gives other draws | no |
"""


def recovery(estimates: dict | None, truth: dict[str, float]) -> dict | None:
    """How a case's state estimates ({state: [mean, sd, ...]}) meet the simulated truth."""
    if not estimates:
        return None
    common = [k for k in truth if k in estimates]
    if not common:
        return None
    err = [estimates[k][0] - truth[k] for k in common]
    return {"states": len(common), "max_error": max(abs(e) for e in err),
            "rmse": (sum(e * e for e in err) / len(err)) ** 0.5,
            "within_2sd": sum(abs(e) <= 2 * estimates[k][1] for e, k in zip(err, common))}


def write_report(res: dict, path: Path) -> None:
    c = res.get("cases", {})
    m = res.get("machine", {})
    L = ["# Benchmarks: real MRP models (issue 11)", ""]
    shared = max((r.get("load_before") or 0 for r in c.values()), default=0) > 2 * (m.get("cpus") or 2)
    L.append(f"Generated by `.venv/bin/python benchmarks/bench_mrp.py{' --quick' if res.get('quick') else ''}`, "
             f"{res.get('started')} – {res.get('finished', 'unfinished')}, every case in a fresh interpreter, one "
             "after the other in this one run. "
             + ("**The machine was shared**: the 1-minute load average before each case is in the last column (2 "
                "cores; a load of 10 means each process got about a fifth of a core), so wall times are upper "
                "bounds and only the side-by-side ratios and the load-free figures (ESS per 1,000 gradient "
                "evaluations, leapfrog steps per draw) carry over to an idle machine." if shared else
                "The 1-minute load average before each case is in the last column: no more than the cases' own "
                "processes make (one case at a time, its chains on both cores)."))
    L.append("")
    if res.get("note"):
        L.append(f"**Note:** {res['note']}")
        L.append("")
    L.append(f"**Machine:** {m.get('cpus')} cores ({m.get('cpu_model', '?')}), Python {m.get('python')}; "
             + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) + ".")
    L.append("")
    L.append("## Fits")
    L.append("")
    L.append("| case | status | end to end s | fit s | divergences | min estimand bulk ESS | min parameter ESS | "
             "steps/draw | us/gradient | ESS/1,000 grads (params) | peak MB | load |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in c.items():
        if label == "gradient_cost" or label.startswith("ab_refit_cli"):  # (in the lines below the table)
            continue
        eff = r.get("efficiency") or {}
        diag = r.get("diagnostics") or {}
        est_ess = diag.get("estimand_min_ess_bulk", r.get("estimand_min_ess"))
        par_ess = r.get("min_ess_param_min_ess_bulk", r.get("min_ess_bulk", diag.get("min_ess_bulk")))
        div = diag.get("divergences", r.get("divergences"))
        fit_s = _get(r, "timings", "fit") if r.get("timings") else r.get("fit_seconds")
        spd = eff.get("leapfrog_steps_per_draw", r.get("mean_steps_per_draw"))
        L.append(f"| {label} | {_status(r)} | {_f(r.get('e2e_seconds') or r.get('wall_seconds'))} | "
                 f"{_f(fit_s)} | {_f(div, '{:.0f}')} | {_f(est_ess, '{:.0f}')} | {_f(par_ess, '{:.0f}')} | "
                 f"{_f(spd)} | {_f(eff.get('seconds_per_gradient') and eff['seconds_per_gradient'] * 1e6, '{:.0f}')} | "
                 f"{_f(eff.get('ess_per_1000_gradients_parameters'), '{:.2f}')} | {_f(r.get('peak_rss_mb'), '{:.0f}')} | "
                 f"{_load(r)} |")
    L.append("")
    mrp, cli, bam = (c.get(k, {}) for k in ("primer_2chains_mrp", "primer_2chains_cli", "primer_2chains_bambi_pymc"))
    cache = (mrp.get("efficiency") or {}).get("compile_cache")

    def against_bambi(r) -> str:  # a ratio only when both finished: a stopped case's seconds are not its time
        return f"{_f(_ratio(r.get('wall_seconds'), bam.get('wall_seconds')))}x" if _ok(r) and _ok(bam) else \
            f"no ratio (mrp-formula: {_status(r)}, Bambi: {_status(bam)})"

    reused = (mrp.get("efficiency") or {}).get("model_reuse")
    api = (f"mrp-formula's Python API in a fresh interpreter {_f(mrp.get('wall_seconds'))} s"
           + (f" (compile cache: {cache}; model: {reused})" if cache else "") + f", {against_bambi(mrp)}")
    if cli:
        L.append(f"* **Primer, 2 chains, target_accept 0.95**: `mrp run` (fresh CLI process, as a user runs it; "
                 f"model: {_get(cli, 'efficiency', 'model_reuse') or '–'}) "
                 f"{_f(cli.get('wall_seconds'))} s, plain Bambi (PyMC NUTS, same aggregated cells, a fresh "
                 f"process) {_f(bam.get('wall_seconds'))} s: **{against_bambi(cli)}** (target 10x). The same run "
                 f"through {api}: that process also pays the interpreter's teardown of the fitted model (the CLI "
                 "skips it, `cli._leave`; Bambi by hand pays it), and the two fits' own speed differs from run to run.")
    else:
        L.append(f"* **Primer, 2 chains, target_accept 0.95**: {api}; plain Bambi (PyMC NUTS, same aggregated "
                 f"cells) {_f(bam.get('wall_seconds'))} s (target 10x).")
    ab = [c.get(f"ab_refit_cli_{i}", {}) for i in (1, 2)]
    abb = c.get("ab_bambi_nutpie", {})
    if ab[1]:
        cache = [_get(r, "efficiency", "compile_cache") or "–" for r in ab]
        reuse = [_get(r, "efficiency", "model_reuse") or "–" for r in ab]
        if res.get("ab_compiled_callbacks_removed") is not None:
            L.append(f"* Before the first A/B refit the compiled callbacks were removed from the compile cache "
                     f"({res['ab_compiled_callbacks_removed']} files; PyTensor's own kernels kept, as Bambi + nutpie "
                     f"by hand finds them) and the model's recipe with them ({res.get('ab_recipes_removed', '–')}), "
                     "so the first refit builds the model through Bambi, compiles them and records the recipe, and "
                     "the second reuses both.")
        L.append(f"* **A/B refit** (`mrp run --refit`, fresh CLI process): {_f(ab[0].get('wall_seconds'))} s the first "
                 f"time (fit {_f(_get(ab[0], 'timings', 'fit'))} s, compile cache: {cache[0]}, model: {reuse[0]}), "
                 f"{_f(ab[1].get('wall_seconds'))} s the second (fit {_f(_get(ab[1], 'timings', 'fit'))} s, "
                 f"compile cache: {cache[1]}, model: {reuse[1]}); "
                 f"Bambi + nutpie by hand on the same cells {_f(abb.get('wall_seconds'))} s: "
                 f"**{_f(_ratio(ab[1].get('wall_seconds'), abb.get('wall_seconds')))}x** (target 3x)."
                 + (f" The second refit and Bambi + nutpie ran {len(res['ab_rounds'])} times, one after the other "
                    f"(s: {', '.join(_f(r.get('mrp')) + ' and ' + _f(r.get('bambi_nutpie')) for r in res['ab_rounds'])}); "
                    "the figures above are each one's median." if res.get("ab_rounds") else ""))
    g = c.get("gradient_cost", {})
    if g.get("status") == "ok":
        L.append(f"* **Cost per gradient** on the primer's {g.get('cells'):,} cells ({g.get('parameters')} parameters): "
                 f"the compiled model {_f(g.get('model_us'), '{:.0f}')} us, hand-written numpy "
                 f"{_f(g.get('numpy_us'), '{:.0f}')} us, a fused numba loop {_f(g.get('fused_us'), '{:.0f}')} us "
                 f"(one exp and one log1p a cell; agrees with numpy: {g.get('fused_matches_numpy')}), of which the "
                 f"element-wise math alone (softplus and sigmoid of every cell, scalar libm: this llvmlite has no "
                 f"vectorised exp) {_f(g.get('elementwise_us'), '{:.0f}')} us: the model is "
                 f"**{_f(g.get('model_over_fused'))}x** the hand-fused reference (target 3x). Timed one after the other "
                 f"in one process (load {_load(g)}).")
    cm = c.get("cces_mrp", {})
    if cm:
        cc = res.get("cces", {})
        L.append(f"* **CCES scale**: {cc.get('respondents', 0):,} simulated respondents in {cc.get('cells', 0):,} "
                 f"distinct cells, a population of {cc.get('population_cells', 0):,} cells; mrp-formula "
                 f"{_f(cm.get('wall_seconds'))} s, plain Bambi + nutpie {_f(c.get('cces_bambi_nutpie', {}).get('wall_seconds'))} s, "
                 f"plain Bambi + PyMC {_f(c.get('cces_bambi_pymc', {}).get('wall_seconds'))} s "
                 f"({c.get('cces_bambi_pymc', {}).get('status', 'not run')}).")
        per_s = []
        for label in ("cces_mrp", "cces_bambi_nutpie", "cces_bambi_pymc"):
            r = c.get(label, {})
            ess = _get(r, "diagnostics", "estimand_min_ess_bulk") or r.get("estimand_min_ess")
            if r.get("status") == "ok" and ess and r.get("wall_seconds"):
                per_s.append(f"{label} {ess / r['wall_seconds']:.1f}")
        if per_s:
            L.append(f"  mrp-formula is **{_f(_ratio(cm.get('wall_seconds'), c.get('cces_bambi_nutpie', {}).get('wall_seconds')))}x** "
                     "faster than plain Bambi + nutpie end to end. Smallest estimand bulk ESS per second of wall time: "
                     + ", ".join(per_s) + ".")
        truth = cc.get("truth")
        if truth:
            for label in ("cces_mrp", "cces_bambi_nutpie", "cces_bambi_pymc"):
                rec = recovery(c.get(label, {}).get("estimates"), truth)
                if rec:
                    L.append(f"  {label}: state estimates against the simulated truth: largest error "
                             f"{rec['max_error']:.4f}, root mean square {rec['rmse']:.4f}, "
                             f"{rec['within_2sd']} of {rec['states']} states within 2 posterior sd.")
        peaks = cm.get("peak_rss_mb_by_step")
        if peaks:
            L.append("  Peak memory by step (mrp-formula, MB, high-water mark after the step): "
                     + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) + ".")
    L.append("")
    L.append(LEVERS)
    path.write_text("\n".join(L) + "\n")
