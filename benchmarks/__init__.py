"""The A/B benchmark of mrp-formula against plain Bambi, as a small package.

The flow, one module per step:

* ``settings`` -- where things go (``benchmarks/out/``) and the sizes of a full and a quick run;
* ``data`` -- the simulated design: true effects, sample and population compositions, the
  Parquet files and the generated specs;
* ``measure`` -- wall time, CPU time, peak memory (``wait4``'s RSS, and the process tree's
  proportional set size in /proc, which counts the pages a forked child shares once), the
  address-space limit, sampling efficiency; runs one case in a fresh interpreter;
* ``cases`` -- what runs inside that interpreter (``python -m benchmarks.cases PARAMS``): an
  mrp-formula fit, a plain Bambi fit, poststratification both ways, a run with a cached fit;
* ``orchestrate`` -- generates the data, runs every case and saves ``results.json``;
* ``report`` -- writes the markdown from the results alone;
* ``bench_ab.py`` -- the command line (``make bench``).
"""
