"""`make demo` prints the simulated truth beside the estimates (examples/ab_click/generate.py --truth-vs)."""

from __future__ import annotations

import pytest
from generate import simulate, truth, truth_vs

HEAD = "estimand,treatment,scale,mean,median,sd,lower,upper,ci_prob,ci_kind\n"


def test_truth_beside_the_estimates(tmp_path):
    (tmp_path / "estimands.csv").write_text(HEAD + "click_rate,control,,0.048,0.048,0.005,0.04,0.056,0.94,hdi\n"
                                                   "click_rate,treatment,,0.09,0.09,0.005,0.08,0.1,0.94,hdi\n"
                                                   "lift,treatment vs control,ratio,1.6,1.6,0.2,1.2,2.0,0.94,hdi\n")
    assert truth() == pytest.approx({"control": 0.05, "treatment": 0.075, "lift": 1.5})
    lines = truth_vs(tmp_path)
    assert lines[1].split()[:4] == ["click_rate", "[control]", "0.05", "0.048"] and lines[1].endswith("yes")
    assert lines[2].split()[2] == "0.075" and lines[2].endswith("NO")  # 0.075 is outside 0.08 to 0.1
    assert lines[3].startswith("lift") and lines[3].endswith("yes")


@pytest.mark.slow
def test_the_demo_passes_its_own_checks(tmp_path):
    """The quick start's spec, as shipped, gives numbers its own report calls ok: no divergence
    (at target_accept 0.9 its 2-level gender sd gave 1-6 at seeds 1-3 and 2026), R-hat and ESS
    within the report's thresholds."""
    import mrp_formula
    from conftest import ROOT

    clicks = tmp_path / "clicks.csv"  # the data `make demo` generates (generate.py's defaults)
    simulate().to_csv(clicks, index=False)
    result = mrp_formula.run(ROOT / "specs" / "ab_click.toml", out=tmp_path / "run", cache=False,
                             overrides=[f"data.source={clicks}"])
    assert result.diagnostics.divergences == 0
    assert result.failed == ()
