"""A simulated survey and its population table for the prediction and poststratification tests:
discrete and continuous predictors, many regions, some of them only in the population."""

from __future__ import annotations

import numpy as np
import pandas as pd


def survey_frames(rng: np.random.Generator, *, n_sample: int, n_pop: int, sample_regions: int, pop_regions: int,
                  digits: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sample, population): the sample has outcomes y (0/1), count and score; the population a
    count N per row; regions r0.. r{pop_regions - 1}, the last ones missing from the sample."""
    def frame(n, regions):
        return pd.DataFrame({
            "treatment": rng.choice(["control", "treatment"], n),
            "gender": rng.choice(["female", "male"], n),
            "age": rng.choice(["18-29", "30-44", "45-64", "65+"], n),
            "region": rng.choice(regions, n),
            "x": np.round(rng.normal(size=n), digits),
        })
    sample = frame(n_sample, [f"r{i}" for i in range(sample_regions)])
    sample["y"] = rng.integers(0, 2, n_sample)
    sample["count"] = rng.poisson(3, n_sample)
    sample["score"] = rng.normal(size=n_sample)
    pop = frame(n_pop, [f"r{i}" for i in range(pop_regions)])
    pop["N"] = rng.integers(1, 500, n_pop)
    return sample, pop
