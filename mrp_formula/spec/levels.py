"""Levels are matched by value: ``1``, ``1.0`` and ``"1"`` are the same level."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def canon(value) -> str:
    """The canonical text of a level: integral numbers lose their ``.0``; booleans are lower case."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer() and text.lstrip("+-").replace(".", "", 1).isdigit():
        return str(int(number))
    return text


def canon_series(s: pd.Series) -> pd.Series:
    """A column as canonical level strings; missing values stay missing."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    mask = s.isna()
    if pd.api.types.is_float_dtype(s.dtype) and not mask.any() and np.all(np.mod(s.to_numpy(), 1) == 0):
        out = s.astype("int64").astype(str)
    else:
        uniques = pd.unique(s[~mask])
        mapping = {u: canon(u) for u in uniques}
        out = s.map(mapping)
    out = out.astype(object)
    out[mask] = None
    return out


def natural_key(level) -> tuple:
    """Sort key of a level's text: numbers first, in numeric order ("2" before "10"), then text."""
    try:
        return (0, float(level), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(level))


def natural_sort(levels) -> list:
    return sorted(levels, key=natural_key)
