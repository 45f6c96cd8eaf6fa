"""A batch's variant fitted on other data than the spec (a smaller file here) cannot enter the
LOO comparison: it is left out, with the reason naming it by its run, and the other variants are
compared and stacked all the same."""

from __future__ import annotations

import textwrap

import pytest
from conftest import AB_SPEC

from mrp_formula.commands import batch as b

pytestmark = pytest.mark.slow

SPEC = (textwrap.dedent(AB_SPEC).lstrip().replace("draws = 300", "draws = 100").replace("tune = 300", "tune = 150")
        + '[variants.tight]\n"model.priors.treatment" = "Normal(0, 0.1)"\n'
        + '[variants.half]\n"data.source" = "half.csv"\n')


def test_a_variant_on_other_data_is_left_out_of_the_comparison_not_the_others(tmp_path):
    from generate import simulate

    data = simulate(n=600, seed=5)
    data.to_csv(tmp_path / "clicks.csv", index=False)
    data.head(300).to_csv(tmp_path / "half.csv", index=False)
    (tmp_path / "ab.toml").write_text(SPEC)
    res = b.batch([tmp_path / "ab.toml"], out=tmp_path / "out", workers=1)
    assert {r.run: r.exit_code for r in res.records} == {"ab": 0, "ab.tight": 0, "ab.half": 0}
    assert all(r.status in b.SUCCEEDED for r in res.records)
    (cmp,) = res.comparisons
    assert cmp.table is not None and set(cmp.table["model"]) == {"ab", "ab.tight"}
    (left,) = [n for n in cmp.notes if "left out of the LOO comparison" in n]
    assert "not comparable with ab: ab.half (" in left
    assert "ab.half (ab.toml) is fitted on 300 observations but ab (ab.toml) on 600" in left


def test_variants_on_the_same_other_data_are_compared_among_themselves(tmp_path):
    """The spec on one file, two variants on another: the two variants are comparable with each
    other, so they are compared (and stacked), and the spec is the one left out."""
    from generate import simulate

    data = simulate(n=600, seed=5)
    data.to_csv(tmp_path / "clicks.csv", index=False)
    data.head(300).to_csv(tmp_path / "half.csv", index=False)
    (tmp_path / "ab.toml").write_text(SPEC.replace("[variants.tight]", '[variants.half_tight]\n"data.source" = "half.csv"'))
    res = b.batch([tmp_path / "ab.toml"], out=tmp_path / "out", workers=1)
    (cmp,) = res.comparisons
    assert cmp.table is not None and set(cmp.table["model"]) == {"ab.half_tight", "ab.half"}
    (left,) = [n for n in cmp.notes if "left out of the LOO comparison" in n]
    assert "not comparable with ab.half_tight: ab (" in left
    assert cmp.stacked is not None
