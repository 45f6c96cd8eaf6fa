"""The outcome against the family: what the outcome column holds, and whether the family fits it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.errors import DataError, ProblemList
from mrp_formula.notes import Note
from mrp_formula.spec.families import FAMILIES
from mrp_formula.spec.formula import FormulaInfo
from mrp_formula.spec.levels import natural_sort as _natural_sort
from mrp_formula.spec.tree import LoadedSpec


def check_outcome(sample: pd.DataFrame, info: FormulaInfo, family: str, loaded: LoadedSpec,
                    problems: ProblemList, notes: list[Note] | None = None) -> None:
    """Does the outcome fit the family? An error names what the outcome looks like and the family
    that fits it; a legal but doubtful choice (gaussian on a 0/1 outcome) is a note."""
    line = loaded.line("model", "formula")
    where = {"key": "model.formula", "line": line}
    notes = notes if notes is not None else []
    for var in info.response_vars:
        col = sample[var]
        if family not in ("categorical", "cumulative") and not (pd.api.types.is_numeric_dtype(col)
                                                                 or pd.api.types.is_bool_dtype(col)):
            # numbers and true/false held as text (data.recode writes text, DuckDB's distinct rows too)
            num = pd.to_numeric(col.map(lambda v: {"true": 1, "false": 0}.get(str(v).lower(), v)), errors="coerce")
            if not num.isna().any():
                sample[var] = num
        kind, values, shown = _outcome_kind(sample[var])
        if FAMILIES[family].support is not None:  # the record says which values fit (spec/families.py)
            _check_support(sample[var], var, FAMILIES[family], kind, shown, loaded, problems, where)
            # a hurdle's psi is its share of non-zeros (a zero-inflated family's share also moves with mu, so
            # a share that differs between levels says nothing against one psi); a formula of psi models it per cell
            if (family.startswith("hurdle_") and "psi" in FAMILIES[family].auxiliary
                    and var == info.response_vars[0] and "psi" not in loaded.spec.model.formulas):
                notes += _varying_zeros(sample, var, info, family)
        elif family == "bernoulli":
            if kind == "binary":
                continue
            msg = f"a bernoulli response must be 0/1 or true/false; '{var}' has {shown}"
            if kind == "text" and len(values) == 2:
                no, yes = values
                problems.add(msg, hint=f"recode it, e.g. data.recode.{var} = {{ {yes} = 1, {no} = 0 }}", **where)
            elif kind == "text":
                problems.add(f"{msg}: {len(values)} categories", hint=f'use family = "categorical" (or "cumulative" '
                             f"for ordered categories), or recode them to 0/1 with data.recode.{var}", **where)
            elif kind == "continuous":
                problems.add(f"{msg}: it looks continuous ({len(values)} distinct values from {values[0]:g} to "
                             f"{values[-1]:g})", hint=f'use family = "gaussian" for a continuous outcome, or make '
                             f"a 0/1 column in data.query, e.g. CAST({var} > 0 AS INTEGER)", **where)
            else:
                scale = len(values) <= 11 and values[0] >= 0  # a few whole numbers: a rating scale as likely as counts
                problems.add(f"{msg}: whole numbers from {values[0]:g} to {values[-1]:g}, like "
                             f"{'a rating scale or counts' if scale else 'counts'}",
                             hint=('for ordered categories (a 1-5 rating) use family = "cumulative", for counts use '
                                   if scale else "for counts use ")
                             + 'family = "poisson" or "negativebinomial", for successes out of trials '
                               'p(successes, trials) with family = "binomial"; or fix the values that are not 0/1',
                             **where)
        elif family in ("binomial", "poisson", "negativebinomial"):
            what = {"text": "is text", "continuous": "has values that are not whole numbers",
                    "negative": "has negative values"}.get(kind)
            if what:
                hint = ('use family = "gaussian" for a continuous outcome' if kind != "text" else
                        'for categories use family = "bernoulli" (two, recoded to 0/1) or "categorical"')
                problems.add(f"'{var}' must hold non-negative whole numbers for the {family} family; it {what}",
                             got=shown, hint=hint if family != "binomial" else "", **where)
            elif kind == "binary" and family != "binomial":
                notes.append(Note("family.binary_outcome", f"the {family} response '{var}' holds only 0 and 1: family = \"bernoulli\" models a "
                             f"0/1 outcome (a {family} rate is not held below 1)", "warning"))
        elif family == "gaussian":
            if kind == "text":
                hint = (f'for two outcomes use family = "bernoulli" after data.recode.{var} = '
                        f"{{ {values[1]} = 1, {values[0]} = 0 }}" if len(values) == 2 else
                        'for categories use family = "categorical" (or "cumulative" for ordered categories)')
                problems.add(f"a gaussian response must be numeric; '{var}' is text", got=shown, hint=hint, **where)
            elif kind == "binary":
                notes.append(Note("family.binary_outcome", f"the gaussian response '{var}' holds only 0 and 1: a linear probability model, "
                             f"whose predictions can leave [0, 1]; family = \"bernoulli\" models a 0/1 outcome", "warning"))
        elif family in ("categorical", "cumulative") and kind == "continuous":
            problems.add(f"a {family} response is a set of categories; '{var}' looks continuous "
                         f"({len(values)} distinct values from {values[0]:g} to {values[-1]:g})",
                         hint='use family = "gaussian" for a continuous outcome', **where)
    if family == "binomial" and info.is_proportion and len(info.response_vars) == 2 and not problems:
        s, n = info.response_vars
        if (sample[s] > sample[n]).any():
            problems.add(f"successes '{s}' exceed trials '{n}' in {int((sample[s] > sample[n]).sum())} rows",
                         key="model.formula", line=line)
    problems.raise_if_any(DataError)


def _check_support(col: pd.Series, var: str, fam, kind: str, shown: str, loaded: LoadedSpec,
                   problems: ProblemList, where: dict) -> None:
    """Values of the outcome outside the family's support: how many, the first rows (1-based, as
    in a spreadsheet, of the sample as read) and values, and what to use instead."""
    sup = fam.support
    source = getattr(loaded.spec.data, "source", None)
    source = f" in {Path(str(source)).name}" if source else ""
    if kind == "text":
        problems.add(f"the {fam.name} response '{var}'{source} must be numeric ({sup.text}); it is text", got=shown,
                     hint='for categories use family = "bernoulli" (two, recoded to 0/1) or "categorical"', **where)
        return
    y = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    checks = [("missing or not a finite number", ~np.isfinite(y), "drop or fill those rows in data.query")]
    finite = np.where(np.isfinite(y), y, 0.0)
    below = (finite < sup.lower) if sup.closed else (finite <= sup.lower)
    checks.append((f"{'below' if sup.closed else 'at or below'} {sup.lower:g}", below & np.isfinite(y),
                   sup.below_hint))
    checks.append((f"at or above {sup.upper:g}", (finite >= sup.upper) & np.isfinite(y), sup.above_hint))
    if sup.whole:
        checks.append(("not whole numbers", (finite != np.round(finite)) & np.isfinite(y), sup.fraction_hint))
    for label, bad, hint in checks:
        if bad.any():
            rows = [int(i) + 1 for i in np.flatnonzero(bad)[:5]]
            vals = ", ".join(f"{v:g}" for v in y[bad][:5])
            problems.add(f"the {fam.name} family needs {sup.text}: {int(bad.sum())} value(s) of '{var}'{source} are "
                         f"{label} (rows {rows}: {vals})", hint=hint, **where)


ZERO_SHARE_P = 1e-3  # a share of non-zeros this unlikely to be equal across a predictor's levels is noted


def _varying_zeros(sample: pd.DataFrame, var: str, info: FormulaInfo, family: str) -> list[Note]:
    """A hurdle family has one psi (its share of non-zeros) for every cell; when the share of
    non-zero outcomes clearly differs between the levels of a predictor (a chi-square test of
    independence, p < ``ZERO_SHARE_P``), the model puts that difference into the amounts."""
    from scipy.stats import chi2_contingency

    y = pd.to_numeric(sample[var], errors="coerce")
    if y.isna().any():
        return []
    nonzero = (y > 0).to_numpy()
    out = []
    for x in info.rhs_vars:
        col = sample[x]
        if x not in sample or col.nunique() < 2 or col.nunique() > 50:
            continue
        table = pd.crosstab(col.astype(str).to_numpy(), nonzero)
        if table.shape[1] < 2:
            continue
        p = float(chi2_contingency(table.to_numpy())[1])
        if p < ZERO_SHARE_P:
            shares = (table[True] / table.sum(axis=1)).sort_index()
            lo, hi = shares.idxmin(), shares.idxmax()
            out.append(Note("family.constant_psi",
                            f"the share of non-zero '{var}' differs between the levels of '{x}' ({shares[lo]:.3g} for "
                            f"{lo}, {shares[hi]:.3g} for {hi}; chi-square p = {p:.2g}), but the {family} family has one "
                            f"psi (share of non-zeros) for every cell: its estimands put that difference into the "
                            f"amounts. Give psi a formula: model.formulas.psi = \"~ {x}\"",
                            "warning"))
    return out


def _outcome_kind(col: pd.Series) -> tuple[str, list, str]:
    """What an outcome column holds: ``binary`` (0/1, true/false), ``counts`` (whole numbers >= 0),
    ``negative`` (whole numbers, some negative), ``continuous`` or ``text``; with its distinct values
    (sorted) and the first five of them as shown in messages."""
    values = pd.unique(col)
    if pd.api.types.is_bool_dtype(col):
        kind, values = "binary", sorted(int(v) for v in values)
    else:
        num = pd.to_numeric(pd.Series(values), errors="coerce")
        if num.isna().any():
            kind, values = "text", _natural_sort({str(v) for v in values})
        else:
            values = sorted(float(v) for v in num)
            whole = all(float(v).is_integer() for v in values)
            kind = ("continuous" if not whole else "negative" if values[0] < 0
                    else "binary" if set(values) <= {0.0, 1.0} else "counts")
    shown = [f"{v:g}" if isinstance(v, float) else str(v) for v in values[:5]]
    return kind, values, str(shown)[:-1] + (", ...]" if len(values) > 5 else "]")
