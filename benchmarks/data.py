"""The simulated design: true effects, who is in the sample and in the population, the files.

Model: ``clicked ~ treatment*gender + (1|age) + (1|region)``, bernoulli, 2 x 2 x 6 x 50 cells.
The data are simulated with a fixed seed from known effects; the sample over-represents women,
the young and some regions, so MRP has something to correct.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SEED = 20260424

FORMULA = "clicked ~ treatment*gender + (1|age) + (1|region)"
GENDERS = ["female", "male"]
ARMS = ["control", "treatment"]
AGES = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
REGIONS = [f"r{i:02d}" for i in range(1, 51)]
REGION_SD = 0.35  # the region effects are drawn from N(0, REGION_SD)
POPULATION_SIZE = 10_000_000  # people in the population cells
FIT = dict(draws=1000, tune=1000, chains=4)  # the [fit] table of the generated specs


def truth():
    """True effects (logit scale), fixed by the seed."""
    import numpy as np

    rng = np.random.default_rng([SEED, 1])
    return {
        "Intercept": -2.9,  # female, control, average age and region: about 5 %
        "treatment": 0.35,
        "gender": -0.40,  # male vs female
        "treatment:gender": 0.15,
        "age": np.array([0.45, 0.25, 0.05, -0.10, -0.25, -0.40]),
        "region": rng.normal(0.0, REGION_SD, len(REGIONS)),
    }


def _compositions():
    """Shares of the levels in the sample and in the population: they differ on purpose."""
    import numpy as np

    rng = np.random.default_rng([SEED, 2])
    return {
        "sample": {"gender": np.array([0.70, 0.30]),
                   "age": np.array([0.30, 0.28, 0.18, 0.12, 0.08, 0.04]),
                   "region": rng.dirichlet(np.ones(len(REGIONS)))},
        "population": {"gender": np.array([0.49, 0.51]),
                       "age": np.array([0.12, 0.17, 0.17, 0.16, 0.17, 0.21]),
                       "region": rng.dirichlet(np.full(len(REGIONS), 5.0))},
    }


def _prob(t, arm, gender, age, region):
    """Click probability from level indices (numpy arrays)."""
    import numpy as np

    eta = (t["Intercept"] + t["treatment"] * arm + t["gender"] * gender + t["treatment:gender"] * arm * gender
           + t["age"][age] + t["region"][region])
    return 1.0 / (1.0 + np.exp(-eta))


def write_sample(n: int, path: Path) -> None:
    """n rows of (user, treatment, gender, age, region, clicked); every level occurs at least once."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t, comp = truth(), _compositions()["sample"]
    rng = np.random.default_rng([SEED, 3, n])
    arm = (rng.random(n) < 0.5).astype(np.int8)
    gender = rng.choice(2, n, p=comp["gender"]).astype(np.int8)
    age = rng.choice(len(AGES), n, p=comp["age"]).astype(np.int8)
    region = rng.choice(len(REGIONS), n, p=comp["region"]).astype(np.int16)
    region[: len(REGIONS)] = np.arange(len(REGIONS))  # so that plain Bambi sees every level
    age[: len(AGES)] = np.arange(len(AGES))
    gender[:2], arm[:4] = [0, 1], [0, 1, 0, 1]
    clicked = (rng.random(n) < _prob(t, arm, gender, age, region)).astype(np.int8)

    def strings(idx, levels):
        return pa.DictionaryArray.from_arrays(pa.array(idx, type=pa.int32()), pa.array(levels)).cast(pa.string())

    table = pa.table({"user": pa.array(np.arange(1, n + 1)), "treatment": strings(arm, ARMS),
                      "gender": strings(gender, GENDERS), "age": strings(age, AGES),
                      "region": strings(region, REGIONS), "clicked": pa.array(clicked)})
    pq.write_table(table, path)


def population_cells():
    """The 2 x 6 x 50 population cells (treatment is set by the estimands) with counts."""
    import numpy as np
    import pandas as pd

    comp = _compositions()["population"]
    g, a, r = np.meshgrid(np.arange(2), np.arange(len(AGES)), np.arange(len(REGIONS)), indexing="ij")
    g, a, r = g.ravel(), a.ravel(), r.ravel()
    n = np.round(POPULATION_SIZE * comp["gender"][g] * comp["age"][a] * comp["region"][r]).astype(np.int64)
    return pd.DataFrame({"gender": np.array(GENDERS)[g], "age": np.array(AGES)[a],
                         "region": np.array(REGIONS)[r], "N": n}), (g, a, r)


def true_estimands() -> dict:
    import numpy as np

    t = truth()
    pop, (g, a, r) = population_cells()
    w = pop["N"].to_numpy(dtype=float)
    c = float(np.average(_prob(t, 0, g, a, r), weights=w))
    tr = float(np.average(_prob(t, 1, g, a, r), weights=w))
    return {"control": c, "treatment": tr, "lift": tr - c}


def design() -> dict:
    """The simulated design in numbers, for the report: what the data were made from."""
    t, comp = truth(), _compositions()
    pop, _ = population_cells()
    young = [AGES.index("18-24"), AGES.index("25-34")]

    def shares(c):
        return {"female": float(c["gender"][0]), "male": float(c["gender"][1]),
                "under_35": float(c["age"][young].sum()), "largest_region": float(c["region"].max())}

    return {"formula": FORMULA, "family": "bernoulli", "seed": SEED,
            "levels": {"treatment": len(ARMS), "gender": len(GENDERS), "age": len(AGES), "region": len(REGIONS)},
            "effects": {k: float(t[k]) for k in ("treatment", "gender", "treatment:gender")},
            "region_sd": REGION_SD, "sample": shares(comp["sample"]),
            "population": dict(shares(comp["population"]), cells=len(pop), people=int(pop["N"].sum())),
            "scenarios": list(ARMS), "fit": dict(FIT)}


def write_big_population(m: int, path: Path) -> None:
    """m population rows: the model variables plus columns the model does not use (a district
    id, a household type, an income band), so every row is a distinct cell of the table."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    comp = _compositions()["population"]
    rng = np.random.default_rng([SEED, 4, m])
    g = rng.choice(2, m, p=comp["gender"])
    a = rng.choice(len(AGES), m, p=comp["age"])
    r = rng.choice(len(REGIONS), m, p=comp["region"])

    def strings(idx, levels):
        return pa.DictionaryArray.from_arrays(pa.array(idx, type=pa.int32()), pa.array(levels)).cast(pa.string())

    hh = ["single", "couple", "family", "shared"]
    inc = [f"q{i}" for i in range(1, 6)]
    table = pa.table({"district": pa.array([f"d{i:08d}" for i in range(m)]),
                      "gender": strings(g, GENDERS), "age": strings(a, AGES), "region": strings(r, REGIONS),
                      "household": strings(rng.integers(0, 4, m), hh),
                      "income": strings(rng.integers(0, 5, m), inc),
                      "N": pa.array(rng.integers(1, 200, m))})
    pq.write_table(table, path)


def write_spec(path: Path, sample: Path, population: Path, name: str) -> None:
    text = f'''# generated by benchmarks/bench_ab.py
name = "{name}"

[data]
source = "{os.path.relpath(sample, path.parent)}"

[model]
formula = "{FORMULA}"
family = "bernoulli"
levels.treatment = ["control", "treatment"]
levels.gender = ["female", "male"]

[fit]
draws = {FIT["draws"]}
tune = {FIT["tune"]}
chains = {FIT["chains"]}
seed = {SEED}

[population]
source = "{os.path.relpath(population, path.parent)}"
weight = "N"

[estimands.click_rate]
at = {{ treatment = ["control", "treatment"] }}

[estimands.lift]
contrast = {{ treatment = ["treatment", "control"] }}

[report]
plots = false
'''
    path.write_text(text)


def generate(cfg: dict, out: Path) -> dict:
    """The samples, the population cells and the big population tables of a run, under out/data."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {"samples": {}, "big_pops": {}}
    t0 = time.perf_counter()
    for n in sorted(set(cfg["fit_sizes"]) | set(cfg["bambi_sizes"])):
        path = data / f"sample_{n}.parquet"
        write_sample(n, path)
        files["samples"][n] = path
    pop, _ = population_cells()
    files["population"] = data / "population_cells.parquet"
    pop.to_parquet(files["population"], index=False)
    for m in cfg["pop_sizes"]:
        path = data / f"population_{m}.parquet"
        write_big_population(m, path)
        files["big_pops"][m] = path
    print(f"generated data in {time.perf_counter() - t0:.1f} s", flush=True)
    return files
