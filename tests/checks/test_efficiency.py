"""The efficiency block of the manifest: pure arithmetic over the counts the sampler leaves in
``sample_stats``' attributes (and, slow, that a real fit leaves them and stays reproducible)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from mrp_formula.checks.efficiency import efficiency, summary_line


def _tree(n_steps, attrs):
    chains, draws = n_steps.shape
    post = xr.Dataset({"b": (("chain", "draw"), np.zeros((chains, draws)))})
    stats = xr.Dataset({"n_steps": (("chain", "draw"), n_steps)}, attrs=attrs)
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def test_efficiency_from_the_counts():
    steps = np.array([[7, 9, 8, 8], [15, 15, 15, 15]], dtype=float)  # 92 gradient evaluations drawing
    attrs = {"mrp_gradients_tuning": 108, "mrp_gradients_draws": 92, "mrp_sampling_seconds": 0.5,
             "mrp_fit_seconds": 2.0, "mrp_parallel_chains": 2}
    eff = efficiency(_tree(steps, attrs), min_ess_parameters=6.0, min_ess_estimands=8.0)
    assert eff["gradient_evaluations"] == 200 and eff["gradient_evaluations_tuning"] == 108
    assert eff["leapfrog_steps_per_draw"] == pytest.approx(11.5)
    assert eff["seconds_per_gradient"] == pytest.approx(0.5 * 2 / 200)  # two chains at once
    assert eff["ess_per_second_parameters"] == pytest.approx(3.0)
    assert eff["ess_per_1000_gradients_estimands"] == pytest.approx(40.0)
    line = summary_line(eff)
    assert "200 gradient evaluations" in line and "5000 us per gradient" in line


def test_one_core_counts_every_chain_in_turn():
    attrs = {"mrp_gradients_tuning": 100, "mrp_gradients_draws": 100, "mrp_sampling_seconds": 1.0,
             "mrp_fit_seconds": 1.5, "mrp_parallel_chains": 1}
    eff = efficiency(_tree(np.ones((2, 3)), attrs), 1.0, math.nan)
    assert eff["seconds_per_gradient"] == pytest.approx(1.0 / 200)
    assert eff["ess_per_second_estimands"] is None and eff["ess_per_1000_gradients_estimands"] is None


def test_a_posterior_without_counts_gives_nulls_not_guesses():
    eff = efficiency(_tree(np.ones((1, 3)), {}), 100.0, 100.0)
    assert eff["gradient_evaluations"] is None and eff["seconds_per_gradient"] is None
    assert eff["ess_per_second_parameters"] is None and summary_line(eff) == ""


@pytest.mark.slow
def test_a_fit_counts_its_work_and_repeats_its_draws(ab_dir):
    """Two fits of the same spec and seed give the same draws, with the work counted."""
    import mrp_formula

    fast = ["fit.draws=60", "fit.tune=60", "fit.chains=2"]
    a = mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "a", overrides=fast, cache=False)
    b = mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "b", overrides=fast, cache=False)
    eff = a.manifest["efficiency"]
    assert eff["gradient_evaluations"] > eff["gradient_evaluations_tuning"] > 0
    assert eff["leapfrog_steps_per_draw"] >= 1 and eff["seconds_per_gradient"] > 0
    assert eff["fit_seconds"] >= eff["sampling_seconds"] > 0
    assert not any(g.startswith("warmup") for g in a.posterior.children)
    for name in a.posterior["posterior"].data_vars:
        np.testing.assert_array_equal(a.posterior["posterior"][name].values, b.posterior["posterior"][name].values)
