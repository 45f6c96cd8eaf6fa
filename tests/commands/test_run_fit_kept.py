"""A fit is stored in the fit cache while the page is drawn (`steps.posterior(store=False)`); a run
that fails or is interrupted after the fit keeps it all the same, and the next run reuses it."""

from __future__ import annotations

import pytest

import mrp_formula
from mrp_formula.model.cache import CACHE_DIR

FAST = ["fit.draws=50", "fit.tune=50", "fit.chains=2"]


@pytest.mark.slow  # samples
@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_run_stopped_after_the_fit_keeps_the_fit(ab_dir, monkeypatch, stop):
    import mrp_formula.commands.run as run_mod

    def broken(*_a, **_k):
        raise stop("stopped while poststratifying")

    monkeypatch.setattr(run_mod, "estimate", broken)
    with pytest.raises(stop):
        mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "run", overrides=FAST)
    assert not (ab_dir / "run").exists()  # nothing of the run was written
    monkeypatch.undo()
    result = mrp_formula.run(ab_dir / "ab.toml", out=ab_dir / "run", overrides=FAST)
    assert result.manifest["fit_cache"]["reused"] is True  # the stopped run's fit
    assert any((ab_dir / CACHE_DIR).glob("*/posterior.nc"))
