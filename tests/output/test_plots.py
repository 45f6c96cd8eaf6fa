"""Plots of a run from synthetic tables: no sampling. Every file is written, is a PNG of a
sensible size, and the odd cases (no contrasts, categories, 60 groups, no PPC, no raw values,
no posterior) give the figures that make sense for them."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import pandas as pd
import xarray as xr

from mrp_formula.output import plots as P
from mrp_formula.poststrat.estimands import NULL, interval

PNG = b"\x89PNG\r\n\x1a\n"
CHAINS, DRAWS = 2, 200
RNG = np.random.default_rng(7)


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG, f"{path.name} is not a PNG"
    return struct.unpack(">II", head[16:24])


def check_pngs(paths, folder, names):
    assert sorted(p.name for p in paths) == sorted(names)
    for p in paths:
        assert p.parent == folder / "plots" and p.exists()
        w, h = png_size(p)
        assert 300 <= w <= 4000 and 200 <= h <= 6000, (p.name, w, h)
        assert p.stat().st_size > 10_000, p.name


def tables(spec, *, ci_prob=0.9, ci_kind="eti", group_cols=(), categories=False, ropes=None, raw=True):
    """spec: list of (estimand, {group col: level}, category, scale, draws) -> (estimands, draws)."""
    ropes = ropes or {}
    rows, long = [], []
    for est, groups, cat, scale, x in spec:
        lo, hi = interval(x, ci_prob, ci_kind)
        rec = {"estimand": est, **{c: groups.get(c) for c in group_cols}}
        if categories:
            rec["category"] = cat
        rec.update(scale=scale or "", mean=x.mean(), median=float(np.median(x)), sd=x.std(), lower=lo, upper=hi,
                   ci_prob=ci_prob, ci_kind=ci_kind, p_above_null=np.nan, p_in_rope=np.nan)
        if scale:
            rec["p_above_null"] = float(np.mean(x > NULL[scale]))
            if est in ropes:
                rec["p_in_rope"] = float(np.mean((x >= ropes[est][0]) & (x <= ropes[est][1])))
        shift = RNG.normal(0, 0.03)
        rec.update(raw=rec["median"] + shift if raw else np.nan, weighted=rec["median"] - shift if raw else np.nan,
                   ess_bulk=400.0, r_hat=1.0)
        rows.append(rec)
        d = pd.DataFrame({"chain": np.repeat(np.arange(CHAINS), DRAWS), "draw": np.tile(np.arange(DRAWS), CHAINS),
                          "estimand": est, **{c: groups.get(c) for c in group_cols}})
        if categories:
            d["category"] = cat
        d["value"] = x
        long.append(d)
    return pd.DataFrame(rows), pd.concat(long, ignore_index=True)


def rate(mean, sd=0.02):
    return np.clip(RNG.normal(mean, sd, CHAINS * DRAWS), 1e-4, 1 - 1e-4)


def posterior(n_groups=4):
    s = (CHAINS, DRAWS)
    ds = xr.Dataset({
        "Intercept": (("chain", "draw"), RNG.normal(-1, 0.1, s)),
        "treatment": (("chain", "draw", "treatment_dim"), RNG.normal(0.5, 0.1, s + (1,))),
        "big": (("chain", "draw", "big_dim"), RNG.normal(0, 1, s + (12,))),
        "1|g_sigma": (("chain", "draw"), np.abs(RNG.normal(0.5, 0.1, s))),
        "1|g": (("chain", "draw", "g__factor_dim"), RNG.normal(0, 0.5, s + (n_groups,))),
        "p": (("chain", "draw", "__obs__"), RNG.uniform(size=s + (5,))),
    }, coords={"chain": np.arange(CHAINS), "draw": np.arange(DRAWS), "treatment_dim": ["b"],
               "g__factor_dim": [f"g{i}" for i in range(n_groups)]})
    return xr.DataTree.from_dict({"posterior": ds})


def ppc_table(levels, *, category=None):
    rows = []
    for var, levs in levels.items():
        for i, lv in enumerate(levs):
            obs = 0.2 + 0.01 * i
            pred = obs + RNG.normal(0, 0.01)
            rows.append({"variable": var, "level": lv, "units": 50.0 + i, "observed": obs, "predicted": pred,
                         "lower": pred - 0.02, "upper": pred + 0.02, "inside": abs(pred - obs) <= 0.02})
    out = pd.DataFrame(rows)
    if category:
        out = pd.concat([out.assign(category=c) for c in category], ignore_index=True)
        out = out[["variable", "level", "category"] + [c for c in out if c not in ("variable", "level", "category")]]
    return out


ALL = ["estimands.png", "forest.png", "raw_vs_mrp.png", "trace.png", "ppc.png"]


@pytest.mark.slow  # draws every figure of a run (seconds)
def test_ab_test_with_contrast_and_rope(tmp_path):
    ropes = {"lift": (0.98, 1.02)}
    c, t = rate(0.05, 0.005), rate(0.08, 0.008)
    spec = [("click_rate", {"arm": "control"}, None, None, c),
            ("click_rate", {"arm": "treatment"}, None, None, t),
            ("lift", {"arm": "treatment vs control"}, None, "ratio", t / c)]
    est, draws = tables(spec, group_cols=("arm",), ropes=ropes)
    paths = P.write_plots(tmp_path, estimands=est, draws=draws, posterior=posterior(),
                          ppc=ppc_table({"arm": ["control", "treatment"], "gender": ["f", "m"]}),
                          ci_prob=0.94, ci_kind="hdi", ropes=ropes)
    check_pngs(paths, tmp_path, ALL)


def test_no_contrasts_and_levels_read_back_from_csv(tmp_path):
    spec = [("rate", {"region": r}, None, None, rate(0.3 + 0.05 * i)) for i, r in enumerate([1, 2, 3])]
    spec.append(("national", {}, None, None, rate(0.35)))
    est, draws = tables(spec, group_cols=("region",))
    draws["region"] = draws["region"].map(lambda v: None if v is None else str(v))
    est.to_csv(tmp_path / "estimands.csv", index=False)
    est = pd.read_csv(tmp_path / "estimands.csv")  # region 1.0, 2.0, NaN; scale NaN
    rows = P._rows(est, draws)
    assert all(len(r.draws) == CHAINS * DRAWS for r in rows)
    assert [r.level_text for r in rows] == ["1", "2", "3", ""] and not any(r.is_contrast for r in rows)
    paths = P.write_plots(tmp_path, estimands=est, draws=draws, posterior=None, ppc=None,
                          ci_prob=0.9, ci_kind="eti", ropes={})
    check_pngs(paths, tmp_path, ["estimands.png", "forest.png", "raw_vs_mrp.png"])


@pytest.mark.slow  # draws every figure of a run (seconds)
def test_categories(tmp_path):
    spec = []
    for g in ("f", "m"):
        for k, cat in enumerate(("x", "y")):
            spec.append(("share", {"gender": g}, cat, None, rate(0.3 + 0.4 * k)))
    for k, cat in enumerate(("x", "y")):
        spec.append(("overall", {}, cat, None, rate(0.3 + 0.4 * k)))
    spec.append(("overall", {}, "mean", None, RNG.normal(2.1, 0.1, CHAINS * DRAWS)))
    spec.append(("gap", {"gender": "f vs m"}, "x", "difference", RNG.normal(0.05, 0.02, CHAINS * DRAWS)))
    est, draws = tables(spec, group_cols=("gender",), categories=True, ropes={"gap": (-0.01, 0.01)}, raw=False)
    titles = [b.title for b in P._blocks(P._rows(est, draws), ungrouped=False)]
    assert titles == ["share by gender, category x", "share by gender, category y", "overall by category",
                      "overall: expected category value", "gap: f vs m, category x"]
    paths = P.write_plots(tmp_path, estimands=est, draws=draws, posterior=None,
                          ppc=ppc_table({"gender": ["f", "m"]}, category=["x", "y"]),
                          ci_prob=0.95, ci_kind="eti", ropes={"gap": (-0.01, 0.01)})
    check_pngs(paths, tmp_path, ["estimands.png", "forest.png", "ppc.png"])


@pytest.mark.slow  # draws every figure of a run (seconds)
def test_sixty_groups_go_to_the_forest(tmp_path):
    states = [f"S{i:02d}" for i in range(60)]
    spec = [("support", {"state": s}, None, None, rate(0.2 + 0.005 * i)) for i, s in enumerate(states)]
    spec += [("gap", {"state": s, "sex": "f vs m"}, None, "difference", RNG.normal(0.01 * (i % 7 - 3), 0.02, 400))
             for i, s in enumerate(states[:20])]
    spec.append(("national", {}, None, None, rate(0.35)))
    est, draws = tables(spec, group_cols=("state", "sex"), ropes={"gap": (-0.01, 0.01)})
    paths = P.write_plots(tmp_path, estimands=est, draws=draws, posterior=None,
                          ppc=ppc_table({"state": states, "sex": ["f", "m"]}), ci_prob=0.9, ci_kind="eti",
                          ropes={"gap": (-0.01, 0.01)})
    # only 'national' as a density; both breakdowns in the forest
    check_pngs(paths, tmp_path, [n for n in ALL if n != "trace.png"])
    w, h = png_size(tmp_path / "plots" / "forest.png")
    assert w > 1200 and h > 1200  # two columns: 60 and 20 labelled rows
    blocks = P._blocks(P._rows(est, draws), ungrouped=False)
    assert [b.title for b in blocks] == ["support by state", "gap: f vs m, by state"]
    assert [P._sort(b, lambda r: r.point).sorted_ for b in blocks] == [True, True]


@pytest.mark.slow  # draws every figure of a run (seconds)
def test_many_small_estimands_are_paginated(tmp_path):
    spec = [(f"e{i:02d}", {}, None, None, rate(0.1 + 0.02 * i)) for i in range(13)]
    est, draws = tables(spec, raw=False)
    paths = P.write_plots(tmp_path, estimands=est, draws=draws, posterior=None, ppc=None,
                          ci_prob=0.9, ci_kind="hdi", ropes={})
    check_pngs(paths, tmp_path, ["estimands_1.png", "estimands_2.png"])  # 7 + 6 panels


def test_no_ppc_no_raw_no_posterior(tmp_path):
    spec = [("rate", {"arm": a}, None, None, rate(0.3 + 0.1 * i)) for i, a in enumerate("abc")]
    est, draws = tables(spec, group_cols=("arm",), raw=False)
    paths = P.write_plots(tmp_path, estimands=est, draws=draws, posterior=None, ppc=None,
                          ci_prob=0.9, ci_kind="eti", ropes={})
    check_pngs(paths, tmp_path, ["estimands.png", "forest.png"])
    # raw missing for some rows only: the figure is written (those rows are marked "(no sample)")
    est.loc[0, "raw"] = 0.31
    paths = P._raw_vs_mrp(P._rows(est, draws), 0.9, "eti", tmp_path / "plots")
    check_pngs(paths, tmp_path, ["raw_vs_mrp.png"])
    assert P.write_plots(tmp_path / "b", estimands=est.iloc[:0], draws=draws.iloc[:0], posterior=None,
                         ppc=pd.DataFrame(), ci_prob=0.9, ci_kind="eti", ropes={}) == []


def test_hyperparameters_skip_group_offsets_and_big_factors():
    ds = posterior(60)["posterior"].to_dataset()
    chosen, left_out = P._hyperparameters(ds)
    assert [name for name, _ in chosen] == ["Intercept", "treatment[b]", "1|g_sigma"]
    assert all(x.shape == (CHAINS, DRAWS) for _, x in chosen)
    assert left_out == ["big (12 values)"]


def test_degenerate_draws_do_not_break_the_density(tmp_path):
    """One row whose draws are all equal, one without draws: panels with a note, no crash."""
    est = pd.DataFrame([{"estimand": e, "scale": "", "median": 0.3, "lower": 0.3, "upper": 0.3,
                         "raw": np.nan, "weighted": np.nan} for e in ("constant", "missing")])
    draws = pd.DataFrame({"chain": 0, "draw": np.arange(400), "estimand": "constant", "value": 0.3})
    paths = P.write_plots(tmp_path, estimands=est, draws=draws, posterior=None, ppc=None,
                          ci_prob=0.9, ci_kind="eti", ropes={})
    check_pngs(paths, tmp_path, ["estimands.png"])


def _trace_posterior(n: int, long_names: bool = False) -> xr.DataTree:
    s = (CHAINS, DRAWS)
    name = "1|a_rather_long_grouping_variable:another_one_{}_sigma" if long_names else "1|g{}_sigma"
    ds = xr.Dataset({name.format(i): (("chain", "draw"), np.abs(RNG.normal(0.5, 0.1, s)) * 10.0 ** (i % 5 - 2))
                     for i in range(n)}, coords={"chain": np.arange(CHAINS), "draw": np.arange(DRAWS)})
    return xr.DataTree.from_dict({"posterior": ds})


@pytest.mark.parametrize("n, long_names", [(1, False), (3, False), (P.MAX_TRACE + 4, True)])
def test_trace_grid_keeps_every_label_clear(n, long_names):
    """The trace figure has a fixed grid (no layout engine): every title and tick label stays
    inside the figure, and no row's tick labels run into the next row's title."""
    sink = P.FigureSink()
    P._trace(_trace_posterior(n, long_names), sink)
    (_, fig), = sink.figures
    assert fig.get_layout_engine() is None
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    page = fig.bbox
    rows = fig.axes[0::2]
    for ax in fig.axes:
        for label in [ax.title, *ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label]:
            if label.get_text() and label.get_visible():
                box = label.get_window_extent(renderer)
                assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
                    label.get_text()
    suptitle = fig._suptitle.get_window_extent(renderer)
    assert suptitle.y0 > rows[0].title.get_window_extent(renderer).y1
    for upper, lower in zip(rows, rows[1:]):
        ticks = min(t.get_window_extent(renderer).y0 for t in upper.get_xticklabels() if t.get_text())
        assert ticks > lower.title.get_window_extent(renderer).y1


def test_a_contrasts_typed_levels_are_not_row_labels():
    """The draws carry a contrast's two levels as `first` and `second`: a row read "female vs male,
    female, male" and its title "first = female, second = male" (the trial)."""
    x = RNG.normal(0.1, 0.02, CHAINS * DRAWS)
    est, draws = tables([("gap", {"sex": "female vs male", "region": r}, None, "difference", x) for r in "ab"],
                        group_cols=("sex", "region"))
    est = est.assign(first="female", second="male")
    draws = draws.assign(first="female", second="male")
    (block,) = P._blocks(P._rows(est, draws), ungrouped=True)
    assert block.title == "gap: female vs male, by region" and block.labels == ["a", "b"]
