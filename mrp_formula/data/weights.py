"""Weights: frequency weights of the sample (survey weights refused) and the population's weights."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mrp_formula.data.read import sample_name
from mrp_formula.errors import ProblemList, did_you_mean
from mrp_formula.spec.families import FAMILIES
from mrp_formula.spec.formula import FormulaInfo


SURVEY_HINT = ("MRP does the weighting itself: model the design variables (strata, the variables the weights "
               "were built from) as predictors and let the population table weight the cells")
SURVEY_MEAN_WEIGHT = 10  # from this mean weight on, the weights are checked for signs of survey weights


def frequency_weights(sample: pd.DataFrame, name: str, loaded, problems: ProblemList) -> pd.DataFrame:
    """The sample with its frequency weights (column ``name``) as numbers: whole numbers >= 0, not all
    zero (a weight of 3 counts a row three times); problems otherwise."""
    if name not in sample.columns:
        problems.add(f"weights column '{name}' is not a column of {sample_name(loaded)}", key="data.weights",
                     line=loaded.line("data", "weights"), hint=did_you_mean(name, sample.columns))
        return sample
    col = sample[name]
    w = pd.to_numeric(col, errors="coerce")
    where = {"key": "data.weights", "line": loaded.line("data", "weights")}
    drop = loaded.spec.data.missing == "drop"  # rows without a weight are dropped with the other missing values
    said = False
    for label, mask, hint in (
            ("missing", col.isna() & (not drop), 'set `missing = "drop"` in [data] to drop those rows'),
            ("not a number", w.isna() & col.notna(), "a weight of 3 counts a row three times"),
            ("negative", w < 0, "a weight of 3 counts a row three times")):
        if mask.any():
            rows = [int(i) + 1 for i in col.index[mask.to_numpy()][:5]]  # the table's rows, as read
            problems.add(f"{int(mask.sum())} frequency weight(s) in '{name}' are {label} (rows {rows}, the header "
                         f"not counted: {', '.join(repr(v) for v in col[mask].head(5))})", hint=hint, **where)
            said = True
    if said:
        return sample
    if (np.mod(w.fillna(0), 1) != 0).any():
        problems.add(f"frequency weights in '{name}' must be whole numbers >= 0", **where,
                     hint="a weight of 3 counts a row three times; survey (design) weights are not "
                          "frequency weights: " + SURVEY_HINT)
    elif w.sum() <= 0:
        problems.add(f"the frequency weights in '{name}' sum to zero", key="data.weights",
                     line=loaded.line("data", "weights"), hint="a weight of 3 counts a row three times")
    else:
        sample[name] = w
    return sample


def check_frequency_weights(sample: pd.DataFrame, name: str, info: FormulaInfo, family: str, loaded,
                             problems: ProblemList) -> None:
    """Refuse weights that cannot be frequency weights (a row of weight w is w identical observations).

    Survey (expansion) weights multiply the trials and make every interval far too narrow, so when
    the weights multiply the sample at least ``SURVEY_MEAN_WEIGHT``-fold they must also look like
    counts of identical observations: rows distinct in the model's columns (a table of counts has
    one row per distinct combination), no continuous outcome repeated exactly w times, and for
    binary outcomes no more pure cells (every observation the same outcome) than chance gives.
    """
    sample = sample.loc[sample[name].to_numpy(dtype=float) > 0]  # rows that count zero times say nothing
    w = sample[name].to_numpy(dtype=float)
    n_rows, total = len(w), float(w.sum())
    if n_rows == 0 or total < SURVEY_MEAN_WEIGHT * n_rows:
        return
    reasons = []
    model_cols = [c for c in dict.fromkeys(list(info.response_vars) + list(info.rhs_vars)) if c in sample.columns]
    duplicated = sample.duplicated(model_cols, keep=False).to_numpy()
    if duplicated.mean() >= 0.1:
        reasons.append(f"{duplicated.mean():.0%} of the rows repeat another row in every model column, which a "
                       f"table of counts would have merged")
    y = sample[info.response_vars[0]]
    if FAMILIES[family].response == "real" or (pd.api.types.is_float_dtype(y.dtype) and not FAMILIES[family].binary):
        distinct = y.nunique()
        if distinct > 20 and distinct >= 0.5 * n_rows:
            reasons.append(f"the outcome '{y.name}' takes {distinct} distinct values on {n_rows} rows, yet each "
                           f"row would stand for about {total / n_rows:.0f} observations of exactly that value")
    if FAMILIES[family].binary and info.rhs_vars:
        rhs = [c for c in info.rhs_vars if c in sample.columns]
        succ = y.to_numpy(dtype=float)
        trials = np.ones(n_rows) if FAMILIES[family].response == "binary" else sample[info.response_vars[1]].to_numpy(dtype=float)
        cells = (pd.DataFrame({"s": succ * w, "n": trials * w}).groupby(
            [sample[c].astype(str).to_numpy() for c in rhs]).sum())
        p = cells["s"].sum() / max(cells["n"].sum(), 1e-300)
        big = cells[cells["n"] >= 20]
        if len(big) and 0.02 < p < 0.98:
            pure = (big["s"] <= 0) | (big["s"] >= big["n"])
            observed = float(big.loc[pure, "n"].sum() / big["n"].sum())
            with np.errstate(under="ignore"):
                chance = float(((p ** big["n"] + (1 - p) ** big["n"]) * big["n"]).sum() / big["n"].sum())
            if observed >= 0.5 and chance < 0.05:
                reasons.append(f"{observed:.0%} of the weight in cells of 20 or more would be cells where every "
                               f"observation has the same outcome, which at an overall rate of {p:.2f} happens "
                               f"by chance to {chance:.1%}")
    if reasons:
        problems.add(f"the weights in '{name}' do not look like frequency weights: they would make "
                     f"{total:.0f} observations of {n_rows} rows, and " + "; ".join(reasons),
                     key="data.weights", line=loaded.line("data", "weights"),
                     hint="survey (design) weights would make every interval far too narrow; " + SURVEY_HINT
                          + '. If each row really stands for that many identical observations, say so: '
                            'data.weights_kind = "frequency"')


def check_population_weights(col: pd.Series, name: str, loaded, problems) -> pd.Series:
    """Counts or shares: numbers >= 0, not all zero; bad rows are named (1-based, as in a spreadsheet)."""
    w = pd.to_numeric(col, errors="coerce")
    before = len(problems.items)  # the list may hold others' problems already (held ones)
    where = {"key": "population.weight", "line": loaded.line("population", "weight")}
    drop = '; missing = "drop" in [population] drops rows without a weight'
    for label, mask, more in (("missing", col.isna(), drop if loaded.spec.population.missing != "drop" else ""),
                              ("not a number", w.isna() & col.notna(), ""), ("negative", w < 0, ""),
                              ("infinite", np.isinf(w.fillna(0)), "")):
        if mask.any():
            rows = [int(i) + 1 for i in col.index[mask.to_numpy()][:5]]  # the table's rows, as read
            values = [repr(v) for v in col[mask].head(5)]
            problems.add(f"{int(mask.sum())} weight(s) in '{name}' are {label} (rows {rows}, the header not "
                         f"counted: {', '.join(values)})", hint="weights are counts or shares >= 0" + more, **where)
    if len(problems.items) == before and w.sum() <= 0:
        problems.add(f"the weights in '{name}' sum to zero", hint="give counts or shares > 0", **where)
    return w.fillna(0).clip(lower=0).astype(float)
