"""Shared fixtures: simulated data with a fixed seed, and helpers to write specs."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "ab_click"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def write(tmp_path):
    """write("name.toml", text) -> path; text is dedented."""

    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip())
        return p

    return _write


AB_SPEC = """
name = "ab"
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
draws = 300
tune = 300
chains = 2
seed = 1
[population.margins]
gender = { female = 0.5, male = 0.5 }
[estimands.click_rate]
at = { treatment = ["control", "treatment"] }
[estimands.lift]
contrast = { treatment = ["treatment", "control"] }
scale = "ratio"
rope = [0.98, 1.02]
"""


@pytest.fixture
def ab_dir(tmp_path):
    """A folder with clicks.csv (2,000 rows) and ab.toml."""
    from generate import simulate

    simulate(n=2000, seed=5).to_csv(tmp_path / "clicks.csv", index=False)
    (tmp_path / "ab.toml").write_text(textwrap.dedent(AB_SPEC).lstrip())
    return tmp_path


def simulate_survey(n=4000, seed=12):
    """A survey by region: 6 regions, an age band, outcome with region effects; the sample
    over-represents the young, the population table has counts per region x age."""
    rng = np.random.default_rng(seed)
    regions = [f"r{i}" for i in range(1, 7)]
    region_eff = dict(zip(regions, [-0.6, -0.3, 0.0, 0.2, 0.4, 0.7]))
    age_eff = {"young": 0.8, "old": -0.6}
    pop = pd.DataFrame([(r, a, int(rng.integers(20_000, 80_000)) if a == "old" else int(rng.integers(10_000, 40_000)))
                        for r in regions for a in age_eff], columns=["region", "age", "count"])
    region = rng.choice(regions, size=n)
    age = np.where(rng.random(n) < 0.7, "young", "old")
    eta = -0.2 + np.vectorize(region_eff.get)(region) + np.vectorize(age_eff.get)(age)
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    sample = pd.DataFrame({"region": region, "age": age, "yes": y})
    p = 1 / (1 + np.exp(-(-0.2 + pop["region"].map(region_eff) + pop["age"].map(age_eff))))
    truth = (pop.assign(p=p * pop["count"]).groupby("region")[["p", "count"]].sum())
    truth = (truth["p"] / truth["count"]).to_dict()
    overall = float((p * pop["count"]).sum() / pop["count"].sum())
    return sample, pop, truth, overall



# A test that samples (a posterior or a prior) must be marked ``slow``: `make check` leaves those
# out to stay under a minute. The sampler is wrapped once per session; a test that reaches it
# without the marker (in the test or in a fixture it sets up) fails, naming the fix.
_CURRENT: dict = {"item": None}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _CURRENT["item"] = item


def pytest_configure(config):
    from mrp_formula.model import sampler

    def guarded(fn):
        def wrapper(*args, **kwargs):
            item = _CURRENT["item"]
            if item is not None and item.get_closest_marker("slow") is None:
                raise AssertionError(f"{item.nodeid} samples: mark it @pytest.mark.slow "
                                     "(or `pytestmark = pytest.mark.slow` for the whole file)")
            return fn(*args, **kwargs)
        return wrapper

    sampler.fit = guarded(sampler.fit)
    sampler.sample_prior = guarded(sampler.sample_prior)


# `make check` runs the property tests with fewer examples (the quick loop); `make test` and CI
# with each test's own settings. A test's own `@settings(max_examples=...)` outranks any profile in
# hypothesis, so under "quick" each test's count is capped here (at most QUICK_EXAMPLES, never more
# than the test asks for).
from hypothesis import settings as _hypothesis_settings  # noqa: E402

QUICK_EXAMPLES = 5
_hypothesis_settings.register_profile("quick", max_examples=QUICK_EXAMPLES, deadline=None)


def pytest_collection_modifyitems(config, items):
    if config.getoption("hypothesis_profile", None) != "quick":
        return
    seen: set[int] = set()
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is None or id(test) in seen:
            continue
        seen.add(id(test))
        if own.max_examples > QUICK_EXAMPLES:
            test._hypothesis_internal_use_settings = _hypothesis_settings(own, max_examples=QUICK_EXAMPLES)


def without_figures(monkeypatch) -> None:
    """The report draws no figures (each costs seconds): for tests about the page's text."""
    from mrp_formula.output.report import document
    from mrp_formula.output.report import page as P

    monkeypatch.setattr(document, "_figures", lambda view, **_: {"densities": [], "raw_vs_mrp": [], "forest": {
        name: [] for name in P.breakdown_columns(view)}, "trace": [], "ppc": []})


@pytest.fixture
def no_figures(monkeypatch):
    """For tests about the page's text, files and commands: the figures are tested in
    test_report_html.py, and cost seconds each."""
    without_figures(monkeypatch)
