"""The sampler (mrp_formula/model/sampler.py): nutpie is called straight from the built PyMC model,
skipping ``pm.sample``'s step-method assignment, and must draw what Bambi's own ``fit`` draws."""

from __future__ import annotations

import numpy as np
import pytest

from mrp_formula import steps
from mrp_formula.model import sampler


def _through_bambi(plan, low_rank: bool):
    import pytensor

    f = plan.loaded.spec.fit
    nuts = {"low_rank_modified_mass_matrix": True} if low_rank else None
    model = steps.build(plan)
    with pytensor.config.change_flags(numba__fastmath=False):
        return model.fit(inference_method="nutpie", draws=f.draws, tune=f.tune, chains=f.chains,
                         cores=sampler._cores(f.chains), random_seed=f.seed, target_accept=f.target_accept,
                         discard_tuned_samples=False, progressbar=False, nuts=nuts)


@pytest.mark.slow  # compiles and samples twice
@pytest.mark.parametrize("mass_matrix", ["diagonal", "low_rank"])
def test_direct_nutpie_draws_what_bambis_fit_draws(ab_dir, mass_matrix):
    plan = steps.plan(ab_dir / "ab.toml", ("fit.draws=60", "fit.tune=60", "fit.chains=2", "fit.seed=17"))
    ours = sampler.fit(steps.build(plan), plan.loaded, mass_matrix=mass_matrix).posterior
    theirs = _through_bambi(plan, mass_matrix == "low_rank")
    assert sorted(ours["posterior"].data_vars) == sorted(theirs["posterior"].data_vars)
    for name in theirs["posterior"].data_vars:
        np.testing.assert_array_equal(ours["posterior"][name].values, theirs["posterior"][name].values)
        assert ours["posterior"][name].dims == theirs["posterior"][name].dims
    for stat in ("diverging", "n_steps", "step_size"):
        np.testing.assert_array_equal(ours["sample_stats"][stat].values, theirs["sample_stats"][stat].values)
    # the tuning draws were counted, then dropped
    assert ours["sample_stats"].attrs["mrp_gradients_tuning"] == int(theirs["warmup_sample_stats"]["n_steps"].sum())
    assert not [g for g in ours.children if g.startswith("warmup_")]


@pytest.mark.slow
def test_progress_reaches_the_callback_as_chain_states(ab_dir):
    from mrp_formula.progress import ChainState

    plan = steps.plan(ab_dir / "ab.toml", ("fit.draws=30", "fit.tune=30", "fit.chains=2"))
    seen = []
    sampler.fit(steps.build(plan), plan.loaded, on_progress=seen.append)
    assert seen and all(isinstance(c, ChainState) for snap in seen for c in snap)
    assert {c.chain for c in seen[-1]} == {0, 1}
    assert all(c.finished == c.total == 60 for c in seen[-1])
