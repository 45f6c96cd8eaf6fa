"""The spec's operations on a table: rename, join, recode, missing values (every problem collected)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.data.canonical import FREQ
from mrp_formula.data.read import read_table
from mrp_formula.errors import ProblemList, did_you_mean
from mrp_formula.notes import Note
from mrp_formula.spec.levels import canon, canon_series
from mrp_formula.spec.tree import LoadedSpec


def rename_columns(df: pd.DataFrame, mapping: dict[str, str], section: str, loaded: LoadedSpec,
            problems: ProblemList, notes: list[Note]) -> pd.DataFrame:
    for src in mapping:
        if src not in df.columns:
            problems.add(f"column '{src}' does not exist in the {section} table", key=f"{section}.rename",
                         line=loaded.line(section, "rename"), hint=did_you_mean(src, df.columns))
    ok = {s: d for s, d in mapping.items() if s in df.columns}
    replaced = [d for d in ok.values() if d in df.columns and d not in ok]
    if replaced:
        notes.append(Note("data.rename", f"{section}.rename replaces existing column(s) {', '.join(map(repr, replaced))}"))
        df = df.drop(columns=replaced)
    return df.rename(columns=ok)


def recode_columns(df: pd.DataFrame, recode: dict, section: str, loaded: LoadedSpec, problems: ProblemList) -> pd.DataFrame:
    df = df.copy()
    for var, mapping in recode.items():
        if var not in df.columns:
            problems.add(f"column '{var}' does not exist", key=f"{section}.recode.{var}",
                         line=loaded.line(section, "recode", var), hint=did_you_mean(var, df.columns))
            continue
        col = canon_series(df[var])
        present = set(col.dropna())
        unknown = [k for k in mapping if canon(k) not in present]
        if unknown:
            problems.add(f"level(s) {', '.join(map(repr, unknown))} do not occur in column '{var}'",
                         key=f"{section}.recode.{var}", line=loaded.line(section, "recode", var),
                         hint=did_you_mean(unknown[0], present))
        table = {canon(k): v for k, v in mapping.items()}
        df[var] = col.map(lambda x, t=table: t.get(x, x) if x is not None else None)
    return df


def join_table(df: pd.DataFrame, side: str, loaded: LoadedSpec, problems: ProblemList,
          tables_cache: dict) -> pd.DataFrame:
    for i, join in enumerate(loaded.spec.join):
        line = loaded.line("join", i)
        key = f"join[{i}]"
        if i not in tables_cache:
            tables_cache[i] = read_table(loaded.resolve(join.source), None, key=f"{key}.source",
                                         file=str(loaded.path), line=line)
        table = tables_cache[i]
        bad_cols = [c for c in join.columns if c not in table.columns]
        for c in bad_cols:
            problems.add(f"column '{c}' is not in {Path(join.source).name}", key=f"{key}.columns", line=line,
                         hint=did_you_mean(c, table.columns))
        ok = True
        for left, right in join.on.items():
            if left not in df.columns:
                problems.add(f"key column '{left}' is not in the {side} table", key=f"{key}.on", line=line,
                             hint=did_you_mean(left, df.columns))
                ok = False
            if right not in table.columns:
                problems.add(f"key column '{right}' is not in {Path(join.source).name}", key=f"{key}.on",
                             line=line, hint=did_you_mean(right, table.columns))
                ok = False
        columns = [c for c in join.columns if c not in bad_cols]  # the good ones joined: no follow-on "not a column"
        if not ok or not columns:
            continue
        left_keys, right_keys = list(join.on), list(join.on.values())
        right = table[right_keys + columns].copy()
        for r in right_keys:
            right[r] = canon_series(right[r])
        if right.duplicated(right_keys).any():
            dup = right.loc[right.duplicated(right_keys), right_keys].head(3).to_dict("records")
            problems.add(f"the key is not unique in {Path(join.source).name} (e.g. {dup})", key=f"{key}.on",
                         line=line, hint="a joined table has one row per key")
            continue
        left = df.copy()
        tmp = [f"__key{j}" for j in range(len(left_keys))]
        for t, l in zip(tmp, left_keys):
            left[t] = canon_series(left[l])
        clash = [c for c in columns if c in left.columns]
        left = left.drop(columns=clash)
        merged = left.merge(right.rename(columns=dict(zip(right_keys, tmp))), on=tmp, how="left",
                            indicator=True)
        unmatched = (merged["_merge"] == "left_only") & merged[tmp].notna().all(axis=1)  # NA keys: `missing`
        missing = merged.loc[unmatched, tmp].drop_duplicates()
        if len(missing):
            keys = sorted({"/".join(str(v) for v in row) for row in missing.itertuples(index=False)})
            problems.add(f"{len(keys)} key(s) of the {side} have no match in {Path(join.source).name}: "
                         f"{', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''}", key=f"{key}.on", line=line,
                         hint="add the missing keys to the joined table or fix the key columns")
        df = merged.drop(columns=tmp + ["_merge"])
    return df


def drop_missing(sample: pd.DataFrame, weights: str | None, rows_in: int, loaded: LoadedSpec,
                 problems: ProblemList, notes: list[Note]) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """Rows with a missing value in a model column: dropped with a note (``data.missing = "drop"``)
    or with a problem (the caller's checks go on without them); both count the file's rows (and, with
    frequency weights, the weighted units). Returns the sample, the units each row counts (its
    weight, or 1) and the units missing per column."""
    spec = loaded.spec
    na = sample.isna()
    count = sample[weights].to_numpy(dtype=float) if weights else np.ones(len(sample))
    units = np.where(np.isnan(count), 1.0, count)  # a row without a weight counts once among the dropped
    dropped = {c: int(units[na[c].to_numpy()].sum()) for c in na.columns if na[c].any()}
    # the file's rows: a row of DuckDB's distinct rows counts FREQ of them; a user's weights count units
    weighted = bool(weights) and weights != FREQ
    rows = {c: int(na[c].sum()) for c in dropped} if weighted else dropped
    if dropped:
        if spec.data.missing == "error":
            def where(c: str) -> str:  # the file's rows (1-based, header not counted), unless DuckDB collapsed them
                if weights == FREQ:
                    return ""
                at = [int(i) + 1 for i in np.flatnonzero(na[c].to_numpy())[:5]]
                return f" in rows {at}{' ...' if na[c].sum() > 5 else ''}"
            detail = ", ".join(f"{c}: {n}{where(c)}" for c, n in rows.items())
            problems.add(f"missing values in model columns ({detail})", key="data.missing",
                         line=loaded.line("data", "missing") or loaded.line("data"),
                         hint='set `missing = "drop"` in [data] to drop those rows')
        else:
            gone = na.any(axis=1).to_numpy()
            n_rows = int(gone.sum()) if weighted else int(units[gone].sum())
            extra = (f" ({int(units[gone].sum())} of {int(np.nansum(count))} weighted units)" if weighted else "")
            notes.append(Note("data.missing_dropped", f"dropped {n_rows} of {rows_in} sample rows{extra} with missing "
                              f"values ({', '.join(f'{c}: {n}' for c, n in rows.items())})"))
        keep = ~na.any(axis=1).to_numpy()  # with an error too: the checks go on without those rows
        sample = sample.loc[keep].reset_index(drop=True)
        count = count[keep]
    return sample, count, dropped
