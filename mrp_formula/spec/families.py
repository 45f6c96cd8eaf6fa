"""The families as data: one frozen record per family, as Bambi keeps its families.

Every step that behaves differently by family asks the record (``FAMILIES[name].binary``,
``.categories``, ``.aggregatable``...) instead of comparing family names; a new family is one
record here plus its simulator. The simulators draw observations given the expected outcome per
row (and the family's auxiliary parameter per draw): ``mrp recover`` simulates data sets with
them and the posterior predictive check replicates group means with the same observation noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

Simulator = Callable[[np.ndarray, np.ndarray, "float | None", np.random.Generator], np.ndarray]
"""(mean per row, trials per row, auxiliary parameter or None, rng) -> one outcome per row."""


def _bernoulli(mu, trials, aux, rng):
    return (rng.random(len(mu)) < np.clip(mu, 0.0, 1.0)).astype("int64")


def _binomial(mu, trials, aux, rng):
    return rng.binomial(trials.astype("int64"), np.clip(mu, 0.0, 1.0)).astype("int64")


def _gaussian(mu, trials, aux, rng):
    return rng.normal(mu, aux)


def _poisson(mu, trials, aux, rng):
    return rng.poisson(mu).astype("int64")


def _negativebinomial(mu, trials, aux, rng):
    # Bambi's (and PyMC's) NegativeBinomial(mu, alpha): variance mu + mu^2 / alpha
    return rng.negative_binomial(aux, aux / (aux + np.asarray(mu))).astype("int64")


@dataclass(frozen=True)
class Family:
    """What the pipeline needs to know of a response family."""

    name: str
    link: str  # Bambi's default link, which predictions invert
    response: Literal["binary", "proportion", "count", "real", "category", "ordinal"]
    binary: bool = False  # a probability per row: odds ratios, decision numbers, binomial cells
    aggregatable: bool = False  # identical rows can be fitted as one binomial cell
    categories: Literal["", "categorical", "ordinal"] = ""  # one estimand per response category
    auxiliary: str = ""  # the family's own parameter in the posterior (sigma, alpha)
    simulate: Simulator | None = None  # None: recover and the PPC noise do not support it yet

    @property
    def has_categories(self) -> bool:
        return bool(self.categories)

    @property
    def fast_sums(self) -> bool:
        """Poststratified with the fused weighted sums (one expected value per cell and draw)."""
        return not self.categories


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("bernoulli", "logit", "binary", binary=True, aggregatable=True, simulate=_bernoulli),
    Family("binomial", "logit", "proportion", binary=True, aggregatable=True, simulate=_binomial),
    Family("gaussian", "identity", "real", auxiliary="sigma", simulate=_gaussian),
    Family("poisson", "log", "count", simulate=_poisson),
    Family("negativebinomial", "log", "count", auxiliary="alpha", simulate=_negativebinomial),
    Family("categorical", "softmax", "category", categories="categorical"),
    Family("cumulative", "logit", "ordinal", categories="ordinal", auxiliary="threshold"),
)}


def family(name: str) -> Family:
    """The record of a family the spec has already validated."""
    return FAMILIES[name]
