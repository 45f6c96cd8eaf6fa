"""The revenue A/B example (specs/ab_revenue.toml, examples/ab_revenue/): a hurdle lognormal
model of revenue per user, standardised from a 75% mobile sample to a 50/50 population,
with the share of paying users modelled by arm and platform (``model.formulas.psi``),
recovers the simulation's revenue per user, by arm and by arm and platform, inside its 99% intervals
(the spec reports 94% ones; a single deterministic data set would miss a 94% interval one time in
17)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import mrp_formula

pytestmark = pytest.mark.slow  # samples

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "ab_revenue.toml"


def _generate():
    spec = importlib.util.spec_from_file_location("ab_revenue_generate", ROOT / "examples" / "ab_revenue" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_revenue_per_user_and_lift_cover_the_truth(tmp_path):
    gen = _generate()
    gen.simulate().to_csv(tmp_path / "revenue.csv", index=False)  # the example's data, as generate.py writes it
    text = SPEC.read_text().replace("../examples/ab_revenue/revenue.csv", "revenue.csv")
    assert text != SPEC.read_text()
    (tmp_path / "ab_revenue.toml").write_text(text)
    result = mrp_formula.run(tmp_path / "ab_revenue.toml", out=tmp_path / "run",
                             overrides=["fit.draws=300", "fit.tune=300", "fit.chains=2", "report.ci_prob=0.99"],
                             cache=False)
    table = result.estimands
    truth = gen.truth()
    per_user = table[table.estimand == "revenue_per_user"].set_index("arm")
    for arm in ("control", "treatment"):
        row = per_user.loc[arm]
        assert row["lower"] < truth[arm] < row["upper"], (arm, truth[arm], row.to_dict())
    lift = table[table.estimand == "lift"].iloc[0]
    # not its coverage: in this data set the treatment's conversion is 9.85% against a true 9% (2.1 sd
    # high) and its desktop payers spend more than the truth, so the lift's interval lies just above
    # the true 1.44 (examples/ab_revenue/README.md shows it)
    assert lift["lower"] > 1 and lift["p_above_null"] > 0.95  # the treatment's higher conversion and spend are found
    by_platform = table[table.estimand == "revenue_by_platform"]
    assert len(by_platform) == 4
    for _, row in by_platform.iterrows():
        assert row["lower"] < truth[(row["arm"], row["platform"])] < row["upper"], row.to_dict()
    # psi has its own formula (model.formulas.psi), with logit-scale priors; sigma scaled to log(y)
    priors = {(p.get("component", ""), p["term"]): p for p in result.manifest["priors"]}
    assert ("", "psi") not in priors and priors[("psi", "arm")]["source"] == "default"
    assert priors[("psi", "Intercept")]["distribution"]["sigma"] == 1.5
    assert priors[("", "sigma")]["basis"] == "sd(log(y)) over y > 0"
    assert result.manifest["model"]["family"] == "hurdle_lognormal"
