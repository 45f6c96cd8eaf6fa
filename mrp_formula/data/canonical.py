"""The sample in one canonical form: identical rows counted, rows in a fixed order, group-factor
level labels, so that no result depends on row order or file layout."""

from __future__ import annotations

import numpy as np
import pandas as pd


FREQ = "mrp_rows"  # count of identical sample rows, when DuckDB collapsed them on reading


def count_identical(sample: pd.DataFrame, weights: str | None) -> pd.DataFrame:
    """Distinct rows with their count (``FREQ``): the sum of their frequency weights, or of 1 a row.
    Rows that count zero times are dropped; categorical columns keep their levels."""
    keys = [c for c in sample.columns if c not in (weights, FREQ)]
    w = sample[weights].to_numpy(dtype=float) if weights else np.ones(len(sample))
    out = (sample[keys].assign(**{FREQ: w})
           .groupby(keys, observed=True, sort=True, dropna=False)[FREQ].sum().reset_index())
    out = out.loc[out[FREQ] > 0].reset_index(drop=True)
    out[FREQ] = out[FREQ].round().astype("int64")
    for k in keys:
        if isinstance(sample[k].dtype, pd.CategoricalDtype):
            out[k] = pd.Categorical(out[k], categories=sample[k].cat.categories, ordered=sample[k].cat.ordered)
    return out


def canonical_order(df: pd.DataFrame) -> pd.DataFrame:
    """The rows sorted by every column (categoricals by level order, numbers by value, anything else
    by its text), so that results do not depend on the order in which the rows were read."""
    if len(df) < 2 or not len(df.columns):
        return df.reset_index(drop=True)
    keys = {}
    for i, c in enumerate(df.columns):
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            keys[i] = col.cat.codes.to_numpy()
        elif pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
            keys[i] = col.to_numpy()
        else:
            keys[i] = col.map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x))
                              else f"{type(x).__name__}:{x}").to_numpy()
    frame = pd.DataFrame(keys)
    order = frame.sort_values(list(keys), kind="mergesort", na_position="last").index.to_numpy()
    return df.iloc[order].reset_index(drop=True)


def factor_keys(df: pd.DataFrame, factor_vars) -> pd.Series:
    """The level label of a (possibly interacted) group factor per row, as Bambi names it: ``"1:0"``."""
    cols = [df[v].astype(str) for v in factor_vars]
    out = cols[0]
    for c in cols[1:]:
        out = out + ":" + c
    return out.reset_index(drop=True)
