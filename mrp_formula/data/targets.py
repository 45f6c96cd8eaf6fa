"""Known population means of the outcome (``[calibrate]``): read, matched to the population's
levels and checked. Spec mistakes (a family or link that cannot be calibrated, ``by`` not a
population variable) are :class:`SpecError` (exit 3); a file or column that is missing, a
population level without a known value, or a value outside the outcome's range are
:class:`DataError` (exit 4). Known values for levels the population lacks are dropped with a note.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrp_formula.data.population import WEIGHT
from mrp_formula.data.read import read_table
from mrp_formula.data.tables import Tables
from mrp_formula.errors import DataError, ProblemList, SpecError, did_you_mean
from mrp_formula.notes import Note, warning
from mrp_formula.spec.families import FAMILIES
from mrp_formula.spec.levels import canon_series, natural_key
from mrp_formula.spec.tree import LoadedSpec

# Links whose calibration shift is supported, and the families' range of the outcome's mean.
CALIBRATED_LINKS = ("logit", "probit", "log", "identity")
_UNIT = ("bernoulli", "binomial")  # means in (0, 1)
_POSITIVE = ("poisson", "negativebinomial")  # means > 0


@dataclass(frozen=True)
class Targets:
    """The known mean of the outcome per level of ``by`` (every level of the population)."""

    by: str
    levels: tuple[str, ...]  # population levels (canonical text), in natural order
    values: np.ndarray  # (L,) known means
    link: str
    notes: tuple[Note, ...] = ()


def calibration_link(loaded: LoadedSpec) -> str:
    spec = loaded.spec
    return spec.model.link or FAMILIES[spec.model.family].link


def check_calibrate_spec(loaded: LoadedSpec) -> list:
    """Problems of ``[calibrate]`` that the spec alone shows (family and link)."""
    spec = loaded.spec
    problems = ProblemList(file=str(loaded.path))
    if spec.calibrate is None:
        return []
    family = spec.model.family
    link = calibration_link(loaded)
    if FAMILIES[family].has_categories:
        problems.add(f"calibration shifts one linear predictor per cell; the {family} family has several (one per "
                     f"category or threshold)", key="calibrate", line=loaded.line("calibrate"),
                     hint="remove [calibrate], or model a 0/1 outcome (bernoulli) for one category")
    elif FAMILIES[family].mean is not None:
        problems.add(f"calibration shifts the linear predictor so that the inverse link hits the known mean; the "
                     f"{family} family's expected outcome is not its inverse link (it also depends on "
                     f"{', '.join(FAMILIES[family].auxiliary) or 'other parameters'})",
                     key="calibrate", line=loaded.line("calibrate"),
                     hint="calibrate a family whose mean is the inverse link (bernoulli, binomial, poisson, "
                          "negativebinomial, gaussian, gamma, beta, t), or remove [calibrate]")
    elif link not in CALIBRATED_LINKS:
        problems.add(f"calibration supports the links {', '.join(CALIBRATED_LINKS)}, not '{link}'",
                     key="model.link", line=loaded.line("model", "link"),
                     hint="use the family's default link, or remove [calibrate]")
    return problems.items


def load_targets(loaded: LoadedSpec, tables: Tables) -> Targets | None:
    """The known means of ``[calibrate]`` for every level of ``by`` in the population (None
    without ``[calibrate]``)."""
    spec = loaded.spec
    cal = spec.calibrate
    if cal is None:
        return None
    file = str(loaded.path)
    spec_problems = ProblemList(file=file)
    spec_problems.extend(check_calibrate_spec(loaded))
    pop_vars = [v for v in tables.population.columns if v != WEIGHT]
    if cal.by not in pop_vars:
        spec_problems.add(f"'{cal.by}' is not a population variable", key="calibrate.by",
                          line=loaded.line("calibrate", "by"), hint=did_you_mean(cal.by, pop_vars))
    unset = [v for v in tables.variables if v not in pop_vars]  # set by the estimands alone (`at`, `contrast`)
    if unset:
        names = ", ".join(f"'{v}'" for v in unset)
        spec_problems.add(f"calibration matches the population as it is, and the population has no {names} (the "
                          f"estimands set {'it' if len(unset) == 1 else 'them'}): the shift would rest on a value "
                          f"of {names} chosen for you", key="calibrate", line=loaded.line("calibrate"),
                          hint=f"add {names} to the population (its share of each level), or remove [calibrate]")
    spec_problems.raise_if_any(SpecError)
    where = {"key": "calibrate.source", "line": loaded.line("calibrate", "source")}
    path = loaded.resolve(cal.source)
    table = read_table(path, None, key="calibrate.source", file=file, line=where["line"])
    problems = ProblemList(file=file)
    for col, key, other in ((cal.by, "calibrate.by", cal.column), (cal.column, "calibrate.column", cal.by)):
        if col not in table.columns:  # the other key's column is not what this one meant
            problems.add(f"{path.name} has no column '{col}'", key=key, line=loaded.line(*key.split(".")),
                         hint=did_you_mean(col, [c for c in table.columns if c != other]))
    problems.raise_if_any(DataError)
    pop_levels = sorted(set(canon_series(tables.population[cal.by]).dropna()), key=natural_key)
    keys = canon_series(table[cal.by])
    values = pd.to_numeric(table[cal.column], errors="coerce")
    where_col = {"key": "calibrate.column", "line": loaded.line("calibrate", "column")}
    bad = table[cal.column][values.isna()]
    if len(bad):
        problems.add(f"column '{cal.column}' of {path.name} has {len(bad)} missing or non-numeric value(s)",
                     got=repr(list(bad[:5])), hint="give a number for every level", **where_col)
    dup = sorted(set(keys[keys.duplicated()].dropna()), key=natural_key)
    if dup:
        problems.add(f"{path.name} has more than one row for level(s) {dup[:8]} of '{cal.by}'",
                     hint="keep one row per level", **where)
    known = dict(zip(keys, values))
    missing = [lv for lv in pop_levels if lv not in known]
    if missing:
        problems.add(f"{path.name} has no known value for population level(s) {missing[:8]} of '{cal.by}'"
                     + (f" (and {len(missing) - 8} more)" if len(missing) > 8 else ""),
                     hint=f"add a row for every level of '{cal.by}' in the population"
                          + (f"; {did_you_mean(missing[0], [k for k in known if k not in pop_levels])}"
                             if any(k not in pop_levels for k in known) else ""), **where)
    family = spec.model.family
    vals = np.array([known.get(lv, np.nan) for lv in pop_levels], dtype=float)
    ok = np.isfinite(vals)
    if family in _UNIT:
        out = [lv for lv, v, f in zip(pop_levels, vals, ok) if f and not 0 < v < 1]
        rng = "strictly between 0 and 1 (a share; no shift reaches 0 or 1)"
    elif family in _POSITIVE:
        out = [lv for lv, v, f in zip(pop_levels, vals, ok) if f and not v > 0]
        rng = f"positive (the {family} family's mean)"
    else:
        out = []
        rng = ""
    if out:
        problems.add(f"known value(s) of level(s) {out[:8]} of '{cal.by}' are outside the outcome's range: they "
                     f"must be {rng}", got=repr([known[lv] for lv in out[:8]]),
                     hint="is the column a percentage? give shares in (0, 1)" if family in _UNIT else "", **where_col)
    problems.raise_if_any(DataError)
    notes = []
    extra = sorted({k for k in keys.dropna() if k not in set(pop_levels)}, key=natural_key)
    if extra:
        notes.append(warning("calibrate.extra_levels",
                             f"calibrate: {path.name} has known values for {len(extra)} level(s) of '{cal.by}' that "
                             f"the population lacks ({', '.join(extra[:8])}); they are not used"))
    return Targets(by=cal.by, levels=tuple(pop_levels), values=vals, link=calibration_link(loaded),
                   notes=tuple(notes))
