"""The predictions of every cell equal Bambi's own ``predict`` on the same draws, family by family
(draws from the built model's prior stand in for a posterior: no sampling; Bambi's own predict
fails on a categorical model's draws with an xarray AlignmentError, so that family is checked
against the model graph's own probabilities instead). A cumulative model's
common terms once read the wrong design columns here (their slices were left where they were
before the intercept was removed) and every contrast of a common predictor came out exactly 0."""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from _survey import survey_frames
from mrp_formula.predict.cells import CellPredictor, design
from mrp_formula.steps import build, plan as prepared_plan

CASES = {
    "cumulative": ("age", "cumulative", "age ~ treatment + x + (1|region)", 'levels.age = ["18-29", "30-44", "45-64", "65+"]'),
    "cumulative, factor before a numeric": ("age", "cumulative", "age ~ gender + treatment + x + (1|region)",
                                            'levels.age = ["18-29", "30-44", "45-64", "65+"]'),
    "bernoulli": ("y", "bernoulli", "y ~ treatment + gender + x + (1|region)", ""),
    "poisson": ("count", "poisson", "count ~ treatment + x + (1|region)", ""),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cell_predictions_are_bambis(case, tmp_path):
    response, family, formula, levels = CASES[case]
    plan, model, prior = _plan_model_prior(tmp_path, formula, family, levels)
    per_row = [v for v in prior.data_vars if "__obs__" in prior[v].dims]  # the prior's own predictions
    prior = prior.drop_vars(per_row)
    unused = [d for d in prior.dims if d not in ("chain", "draw") and not any(d in prior[v].dims for v in prior.data_vars)]
    draws = xr.DataTree.from_dict({"posterior": prior.drop_dims(unused)})
    fp = plan.fit_plan
    mine = CellPredictor(design(fp.data, fp.formula, fp.family, plan.loaded.spec.model.link), draws, plan.tables,
                         plan.info, seed=3, threads=1)
    cells = plan.tables.population.head(60)
    ours = mine.predict(cells)
    theirs = model.predict(draws, kind="response_params", data=_for_bambi(cells, fp.data), inplace=False)["posterior"]
    name = {"cumulative": "p", "bernoulli": "p", "poisson": "mu"}[family]
    arr = np.asarray(theirs[name])  # (chain, draw, cell[, category])
    expected = arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:])
    got = ours[..., : expected.shape[2]] if expected.ndim == 3 else ours  # ours adds the mean category
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def _for_bambi(cells: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """The cells with the fitted data's categories, as Bambi reads new data."""
    out = cells.copy()
    for c in out.columns:
        if c in data and isinstance(data[c].dtype, pd.CategoricalDtype):
            out[c] = pd.Categorical(out[c].astype(str), categories=data[c].cat.categories)
    return out


def _plan_model_prior(tmp_path, formula: str, family: str, levels: str = ""):
    """The plan of a survey spec (row by row), its built Bambi model and 40 draws of its prior."""
    sample, pop = survey_frames(np.random.default_rng(11), n_sample=300, n_pop=200, sample_regions=8,
                                pop_regions=8, digits=3)
    assert set(sample["age"]) == {"18-29", "30-44", "45-64", "65+"}
    sample.to_csv(tmp_path / "sample.csv", index=False)
    pop.to_csv(tmp_path / "pop.csv", index=False)
    (tmp_path / "spec.toml").write_text(textwrap.dedent(f"""
        name = "vs-bambi"
        [data]
        source = "sample.csv"
        [model]
        formula = "{formula}"
        family = "{family}"
        aggregate = "never"
        {levels}
        [population]
        source = "pop.csv"
        weight = "N"
        [estimands.m]
        """))
    plan = prepared_plan(tmp_path / "spec.toml")
    model = build(plan)
    model.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = model.prior_predictive(draws=40, random_seed=4)["prior"]
    return plan, model, prior.to_dataset() if hasattr(prior, "to_dataset") else prior


def test_categorical_cell_predictions_are_the_model_graphs_own(tmp_path):
    """Bambi's predict fails on a categorical model's draws, so the reference is the model graph
    itself: the prior predictive's per-row probabilities `p` (K categories) at the sample's rows,
    from the same draws, with the intercept uncentred as Bambi does after a fit."""
    plan, _, prior = _plan_model_prior(tmp_path, "age ~ treatment + x + (1|region)", "categorical")
    p = np.asarray(prior["p"])  # (chain, draw, row, category): the graph's own probabilities
    post = prior.drop_vars([v for v in prior.data_vars if "__obs__" in prior[v].dims])
    fp = plan.fit_plan
    x_mean = float(fp.data["x"].mean())
    t_mean = float((fp.data["treatment"].astype(str) == "treatment").mean())
    post["Intercept"] = post["Intercept"] - x_mean * post["x"] - t_mean * post["treatment"].isel(treatment_dim=0)
    unused = [d for d in post.dims if d not in ("chain", "draw") and not any(d in post[v].dims for v in post.data_vars)]
    draws = xr.DataTree.from_dict({"posterior": post.drop_dims(unused)})
    mine = CellPredictor(design(fp.data, fp.formula, fp.family, plan.loaded.spec.model.link), draws, plan.tables,
                         plan.info, seed=3, threads=1)
    rows = fp.data[["treatment", "x", "region"]].astype({"treatment": str, "region": str}).reset_index(drop=True)
    ours = mine.predict(rows)
    expected = p.reshape(p.shape[0] * p.shape[1], *p.shape[2:])
    assert ours.shape[:2] == expected.shape[:2] and expected.shape[2] == 4
    np.testing.assert_allclose(ours[..., :4], expected, rtol=1e-9, atol=1e-12)
