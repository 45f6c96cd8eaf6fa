"""Spec -> tables: the sample and the population cells, read, renamed, recoded, joined,
checked against the formula and the estimands, and frozen.

Every problem found is collected and raised at once as a :class:`DataError`
(or :class:`SpecError` when the spec names something that cannot exist).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mrp_formula.notes import Note
from mrp_formula.spec.families import FAMILIES
from mrp_formula.errors import DataError, MrpError, Problem, ProblemList, SpecError, did_you_mean
from mrp_formula.spec.formula import FormulaInfo
from mrp_formula.spec.levels import canon, canon_series
from mrp_formula.spec.levels import natural_sort as _natural_sort
from mrp_formula.data.population import WEIGHT, independent_joint, rake
from mrp_formula.spec.tree import LoadedSpec

FREQ = "mrp_rows"  # count of identical sample rows, when DuckDB collapsed them on reading


@dataclass(frozen=True)
class Variable:
    name: str
    categorical: bool
    levels: tuple[str, ...] = ()  # sample levels in model order (categorical only)


@dataclass(frozen=True)
class Tables:
    """The prepared inputs of the model and of poststratification."""

    sample: pd.DataFrame  # one row per observation (or cell), model columns only
    population: pd.DataFrame  # unique cells of the population variables, weight column WEIGHT
    variables: dict[str, Variable]
    population_vars: tuple[str, ...]
    new_levels: dict[str, tuple[str, ...]]  # group factor -> population levels absent from the sample
    new_level_share: dict[str, float]  # group factor -> share of population weight on new levels
    notes: tuple[Note, ...] = ()
    stats: dict = field(default_factory=dict)
    weights: str | None = None  # column of frequency weights in `sample`, if any


# ----------------------------------------------------------------------------- reading


def read_table(path: Path, query: str | None, *, key: str, file: str, line: int | None,
               query_line: int | None = None) -> pd.DataFrame:
    """CSV, Parquet or a DuckDB database (with ``query``); errors name the key and the file."""
    if not path.exists():
        raise DataError(Problem(f"file not found: {path}", key=key, file=file, line=line,
                                hint="paths are relative to the spec file"))
    suffix = path.suffix.lower()
    try:
        if query is not None or suffix in (".duckdb", ".db"):
            return _read_duckdb(path, query, key=key, file=file, line=line, query_line=query_line)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".tsv", ".gz"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", low_memory=False)
    except MrpError:
        raise
    except Exception as exc:
        raise DataError(Problem(f"cannot read {path.name}: {exc}", key=key, file=file, line=line)) from None
    raise DataError(Problem(f"unsupported file type '{suffix}'", key=key, file=file, line=line,
                            hint="use .csv, .parquet, or a DuckDB file with `query`"))


def _duckdb_reader(path: Path) -> str:
    """A DuckDB table function over a CSV or Parquet file; CSV types are guessed like pandas does
    (numbers and text; words such as yes/no stay text)."""
    literal = "'" + str(path).replace("'", "''") + "'"  # DDL takes no bound parameters
    if path.suffix.lower() in (".parquet", ".pq"):
        return f"read_parquet({literal})"
    return f"read_csv({literal}, auto_type_candidates = ['BIGINT', 'DOUBLE', 'VARCHAR'])"


QUERY_ALLOWED = ("one read-only SELECT (WITH ... SELECT, VALUES and FROM-first queries are SELECTs too) over "
                 "the file the spec names")


def check_query(query: str, *, key: str, file: str, line: int | None) -> str:
    """The text of ``query`` when it is a single SELECT statement, by DuckDB's own parser; a
    :class:`SpecError` otherwise (a spec is untrusted input: its SQL may only read).

    A query DuckDB cannot parse is returned as it is: running it reports the syntax error
    (nothing runs, as parsing precedes execution)."""
    import duckdb

    where = {"key": key, "file": file, "line": line}
    hint = ("a query cannot write or copy files, attach databases, read files the spec does not name, install or "
            "load extensions, or change settings (COPY, ATTACH, INSTALL, LOAD, PRAGMA, SET, CREATE, ... are refused)")
    try:
        statements = duckdb.extract_statements(query)
    except Exception:  # a syntax error: reported with DuckDB's message when the query is run
        return query
    if not statements:
        raise SpecError(Problem(f"the query is empty; it must be {QUERY_ALLOWED}", hint=hint, **where))
    if len(statements) > 1:
        kinds = ", ".join(_statement_kind(st) for st in statements)
        raise SpecError(Problem(f"the query holds {len(statements)} statements ({kinds}); it must be "
                                f"{QUERY_ALLOWED}", hint=hint, **where))
    if statements[0].type != duckdb.StatementType.SELECT:
        raise SpecError(Problem(f"the query is a {_statement_kind(statements[0])} statement; it must be "
                                f"{QUERY_ALLOWED}", hint=hint, **where))
    return statements[0].query.strip().rstrip(";").strip()


def _statement_kind(statement) -> str:
    """The statement's keyword as written (COPY, ATTACH, INSTALL, ...), else DuckDB's statement type."""
    words = re.findall(r"[A-Za-z_]+", re.sub(r"--[^\n]*|/\*.*?\*/", " ", statement.query, flags=re.S))
    return words[0].upper() if words else statement.type.name


def _sandbox(path: Path):
    """A DuckDB connection that can read ``path`` and nothing else: external access off except for
    that one file, no extension installed or loaded on demand, configuration locked. A CSV or
    Parquet file is the view ``source``; a DuckDB file is opened read-only."""
    import duckdb

    path = path.resolve()
    settings = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    is_db = path.suffix.lower() in (".duckdb", ".db")
    con = duckdb.connect(str(path), read_only=True, config=settings) if is_db else duckdb.connect(config=settings)
    try:
        if not is_db:
            literal = "'" + str(path).replace("'", "''") + "'"
            con.execute(f"SET allowed_paths = [{literal}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        if not is_db:
            con.execute(f"CREATE TEMP VIEW source AS SELECT * FROM {_duckdb_reader(path)}")
    except BaseException:
        con.close()
        raise
    return con


def _read_duckdb(path: Path, query: str | None, *, key: str, file: str, line: int | None,
                 query_line: int | None = None) -> pd.DataFrame:
    import duckdb

    suffix = path.suffix.lower()
    query_key = key.rsplit(".", 1)[0] + ".query"
    if query is None and suffix in (".duckdb", ".db"):
        raise DataError(Problem("a DuckDB database needs `query` to say what to read", key=key,
                                file=file, line=line, hint='e.g. query = "SELECT * FROM survey"'))
    query = check_query(query if query is not None else "SELECT * FROM source", key=query_key, file=file,
                        line=query_line or line)
    con = _sandbox(path)
    try:
        return con.execute(query).df()
    except duckdb.PermissionException as exc:
        msg = str(exc).split("\n")[0]
        raise SpecError(Problem(f"the query may only read the file the spec names: {msg}", key=query_key,
                                file=file, line=query_line or line,
                                hint=f"it must be {QUERY_ALLOWED}: the table `source`, or the tables of the "
                                     f"DuckDB file")) from None
    except Exception as exc:
        msg = str(exc).split("\n")[0]
        hint = ("the file is available as the table `source`, e.g. SELECT * FROM source"
                if suffix not in (".duckdb", ".db") else "check the table and column names")
        raise DataError(Problem(f"the query failed: {msg}", key=query_key,
                                file=file, line=query_line or line, hint=hint)) from None
    finally:
        con.close()


def _read_collapsed(loaded: LoadedSpec, info: FormulaInfo) -> tuple[pd.DataFrame, list[str]] | None:
    """Read only the columns the model needs, with identical rows counted (``FREQ``), in DuckDB.

    Used for bernoulli/binomial models (whose likelihood only needs the counts), so a source of
    millions of rows never reaches pandas row by row. Returns None when it does not apply (other
    families, user weights, aggregate = "never", a column missing, a query that fails: the plain
    path then reports it). Rows come in a fixed order (ORDER BY ALL), whatever DuckDB's threads do.
    """
    spec = loaded.spec
    if not FAMILIES[spec.model.family].aggregatable or spec.data.weights or spec.model.aggregate == "never":
        return None
    if loaded.frame("data") is not None:
        return None  # in memory already: counted in pandas (count_identical), to the same canonical form
    path = loaded.resolve(spec.data.source)
    if not path.exists() or path.suffix.lower() not in (".csv", ".parquet", ".pq", ".duckdb", ".db"):
        return None
    back = {v: k for k, v in spec.data.rename.items()}
    wanted = list(info.response_vars) + list(info.rhs_vars)
    for j in spec.join:
        wanted = [w for w in wanted if w not in j.columns] + list(j.on)
    cols = list(dict.fromkeys(back.get(c, c) for c in wanted))
    suffix = path.suffix.lower()
    if suffix in (".duckdb", ".db") and spec.data.query is None:
        return None
    try:
        query = check_query(spec.data.query or "SELECT * FROM source", key="data.query", file=str(loaded.path),
                            line=loaded.line("data", "query"))
        con = _sandbox(path)
        try:
            con.execute(f"CREATE TEMP VIEW mrp_input AS {query}")
            present = [r[0] for r in con.execute("DESCRIBE mrp_input").fetchall()]
            if any(c not in present for c in cols) or FREQ in present:
                return None
            quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
            df = con.execute(f"SELECT {quoted}, COUNT(*) AS {FREQ} FROM mrp_input GROUP BY ALL ORDER BY ALL").df()
            return df, present
        finally:
            con.close()
    except Exception:
        return None  # the plain reader reports the problem with its context


def read_source(loaded: LoadedSpec, section: str) -> pd.DataFrame:
    """A section's table ("data" or "population"): its file, or the DataFrame given in memory
    (with the section's ``query`` run over it as the table ``source``, as over a file)."""
    table = getattr(loaded.spec, section)
    file, line, query_line = str(loaded.path), loaded.line(section, "source"), loaded.line(section, "query")
    df = loaded.frame(section)
    if df is None:
        return read_table(loaded.resolve(table.source), table.query, key=f"{section}.source", file=file,
                          line=line, query_line=query_line)
    if table.query is None:
        return df.copy()
    import duckdb

    query = check_query(table.query, key=f"{section}.query", file=file, line=query_line)
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        con.register("source", df)
        con.execute("SET enable_external_access = false")
        return con.execute(query).df()
    except Exception as exc:
        raise DataError(Problem(f"the query over the {section} DataFrame failed: {exc}", key=f"{section}.query",
                                file=file, line=query_line,
                                hint="the DataFrame is the table `source`, e.g. SELECT * FROM source")) from None
    finally:
        con.close()


def sample_name(loaded: LoadedSpec) -> str:
    return "the data DataFrame" if loaded.frame("data") is not None else "the sample"


def population_name(loaded: LoadedSpec) -> str:
    return "the population DataFrame" if loaded.frame("population") is not None else "the population table"


# ----------------------------------------------------------------------------- preparing


def _rename(df: pd.DataFrame, mapping: dict[str, str], section: str, loaded: LoadedSpec,
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


def _recode(df: pd.DataFrame, recode: dict, section: str, loaded: LoadedSpec, problems: ProblemList) -> pd.DataFrame:
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


def _join(df: pd.DataFrame, side: str, loaded: LoadedSpec, problems: ProblemList,
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
        if not ok or bad_cols:
            continue
        left_keys, right_keys = list(join.on), list(join.on.values())
        right = table[right_keys + list(join.columns)].copy()
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
        clash = [c for c in join.columns if c in left.columns]
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


def prepare(loaded: LoadedSpec, info: FormulaInfo) -> Tables:
    """Read and check the sample and the population; raise with every problem found."""
    spec = loaded.spec
    file = str(loaded.path)
    problems = ProblemList(file=file)
    notes: list[Note] = []
    join_cache: dict = {}

    # --- the spec's SQL: one read-only SELECT each, checked before anything is read
    for section in ("data", "population"):
        query = getattr(spec, section).query
        if query is not None:
            try:
                check_query(query, key=f"{section}.query", file=file, line=loaded.line(section, "query"))
            except SpecError as exc:
                problems.extend(exc.problems)
    problems.raise_if_any(SpecError)

    # --- sample
    weights = spec.data.weights
    collapsed = _read_collapsed(loaded, info)  # identical rows counted by DuckDB, when the model allows it
    if collapsed is not None:
        raw, present = collapsed
        replaced = [d for src, d in spec.data.rename.items() if d in present and src in present]
        if replaced:
            notes.append(Note("data.rename", f"data.rename replaces existing column(s) {', '.join(map(repr, replaced))}"))
        weights = FREQ
        rows_in = int(raw[FREQ].sum())
        notes.append(Note("data.collapsed", f"read {rows_in} sample rows as {len(raw)} distinct rows (DuckDB)"))
    else:
        raw = read_source(loaded, "data")
        rows_in = len(raw)
    sample = _rename(raw, spec.data.rename, "data", loaded, problems, notes)
    sample = _join(sample, "sample", loaded, problems, join_cache)
    sample = _recode(sample, spec.data.recode, "data", loaded, problems)

    needed = list(dict.fromkeys(list(info.response_vars) + list(info.rhs_vars)))
    if weights == FREQ:
        needed.append(FREQ)
    elif weights:
        if spec.data.weights not in sample.columns:
            problems.add(f"weights column '{spec.data.weights}' is not a column of {sample_name(loaded)}",
                         key="data.weights",
                         line=loaded.line("data", "weights"), hint=did_you_mean(spec.data.weights, sample.columns))
        else:
            w = pd.to_numeric(sample[spec.data.weights], errors="coerce")
            if w.isna().any() or (w < 0).any() or (np.mod(w.fillna(0), 1) != 0).any():
                problems.add(f"frequency weights in '{spec.data.weights}' must be whole numbers >= 0",
                             key="data.weights", line=loaded.line("data", "weights"),
                             hint="a weight of 3 counts a row three times; survey (design) weights are not "
                                  "frequency weights: " + SURVEY_HINT)
            elif w.sum() <= 0:
                problems.add(f"the frequency weights in '{spec.data.weights}' sum to zero", key="data.weights",
                             line=loaded.line("data", "weights"), hint="a weight of 3 counts a row three times")
            else:
                sample[spec.data.weights] = w
        needed.append(spec.data.weights)
    for var in needed:
        if var in sample.columns or var == weights:
            continue
        role = "response" if var in info.response_vars else "predictor"
        problems.add(f"{role} '{var}' is not a column of {sample_name(loaded)}", key="model.formula",
                     line=loaded.line("model", "formula"), hint=did_you_mean(var, sample.columns))
    problems.raise_if_any(DataError)
    sample = sample[needed].copy()

    # missing values
    na = sample.isna()
    count = sample[weights].to_numpy(dtype=float) if weights else np.ones(len(sample))
    dropped = {c: int(count[na[c].to_numpy()].sum()) for c in na.columns if na[c].any()}
    if dropped:
        if spec.data.missing == "error":
            detail = ", ".join(f"{c}: {n}" for c, n in dropped.items())
            problems.add(f"missing values in model columns ({detail})", key="data.missing",
                         line=loaded.line("data", "missing") or loaded.line("data"),
                         hint='set `missing = "drop"` in [data] to drop those rows')
        else:
            keep = ~na.any(axis=1).to_numpy()
            sample = sample.loc[keep].reset_index(drop=True)
            notes.append(Note("data.missing_dropped", f"dropped {int(count[~keep].sum())} of {rows_in} sample rows with missing values "
                         f"({', '.join(f'{c}: {n}' for c, n in dropped.items())})"))
            count = count[keep]
    if len(sample) == 0:
        problems.add("no sample rows left", key=loaded.source_label("data"), line=loaded.line("data", "source"))
    problems.raise_if_any(DataError)

    _check_response(sample, info, spec.model.family, loaded, problems, notes)
    if spec.data.weights and spec.data.weights_kind != "frequency":
        _check_frequency_weights(sample, spec.data.weights, info, spec.model.family, loaded, problems)
        problems.raise_if_any(DataError)
    if weights and not FAMILIES[spec.model.family].aggregatable:
        # Frequency weights for families fitted row by row: each row repeated that many times
        # (exact; binary families sum them into cells instead).
        w = sample[weights].to_numpy(dtype=np.int64)
        sample = sample.loc[sample.index.repeat(w)].drop(columns=[weights]).reset_index(drop=True)
        count = np.ones(len(sample))
        notes.append(Note("data.frequency_weights", f"frequency weights in '{weights}': {len(sample)} weighted rows fitted"))
        weights = None

    # variable roles
    variables: dict[str, Variable] = {}
    for var in info.rhs_vars:
        categorical = (var in info.factor_vars or var in spec.model.levels
                       or not pd.api.types.is_numeric_dtype(sample[var])
                       or pd.api.types.is_bool_dtype(sample[var]))
        if categorical:
            sample[var] = canon_series(sample[var])
            present = set(sample[var])
            if var in spec.model.levels:
                order = list(spec.model.levels[var])
                absent = sorted(present - set(order))
                if absent:
                    problems.add(f"levels {absent} of '{var}' occur in the sample but are not listed",
                                 key=f"model.levels.{var}", line=loaded.line("model", "levels", var),
                                 hint="list every level; the first is the reference")
                unused = [lv for lv in order if lv not in present]
                structured = getattr(spec.model.structure.get(var), "kind", "iid") != "iid"
                if unused and not structured:  # a structured group's order also places population levels
                    problems.add(f"level(s) {unused} of '{var}' do not occur in the sample",
                                 key=f"model.levels.{var}", line=loaded.line("model", "levels", var),
                                 hint=did_you_mean(unused[0], present))
                order = [lv for lv in order if lv in present]
            else:
                order = _natural_sort(present)
            variables[var] = Variable(var, True, tuple(order))
        else:
            variables[var] = Variable(var, False)
    if FAMILIES[spec.model.family].has_categories:
        resp = info.response_vars[0]
        sample[resp] = canon_series(sample[resp])
        present = set(sample[resp])
        order = list(spec.model.levels.get(resp, _natural_sort(present)))
        absent = sorted(present - set(order))
        if absent:
            problems.add(f"response levels {absent} occur in the sample but are not listed",
                         key=f"model.levels.{resp}", line=loaded.line("model", "levels", resp),
                         hint="list every category, in order")
        elif len(present) < 2:
            problems.add(f"the {spec.model.family} response '{resp}' needs at least two categories",
                         key="model.formula", line=loaded.line("model", "formula"))
        else:
            sample[resp] = pd.Categorical(sample[resp], categories=[lv for lv in order if lv in present],
                                          ordered=True)
    for var in spec.model.levels:
        if var not in info.rhs_vars and var not in info.response_vars:
            problems.add(f"'{var}' is not a predictor in the formula", key=f"model.levels.{var}",
                         line=loaded.line("model", "levels", var), hint=did_you_mean(var, info.rhs_vars))
    problems.raise_if_any(DataError)
    for var, v in variables.items():
        if v.categorical:
            sample[var] = pd.Categorical(sample[var], categories=list(v.levels), ordered=True)
    # One canonical form whatever the file's layout: binary outcomes as distinct rows with their count
    # (however the rows were read, repeated or weighted), every sample in a fixed row order.
    if FAMILIES[spec.model.family].aggregatable and (weights or spec.model.aggregate != "never"):
        sample, weights = count_identical(sample, weights), FREQ
    sample = canonical_order(sample)

    # --- population
    population, pop_notes, pop_stats = _population(loaded, info, sample, variables, problems, join_cache,
                                                   weights)
    notes += pop_notes
    problems.raise_if_any(DataError)

    data_problems = ProblemList(file=file)
    _check_estimands(loaded, info, variables, population, problems, data_problems,
                     pop_stats.get("population_columns", []))
    _check_declared_new(loaded, info, problems)
    if data_problems:
        raise DataError(problems.items + data_problems.items)
    problems.raise_if_any(SpecError)

    new_levels, shares = _new_levels(info, sample, population, loaded, problems, notes)
    problems.raise_if_any(DataError)
    for factor, levels in new_levels.items():
        notes.append(Note("population.new_levels", f"{len(levels)} population level(s) of '{factor}' have no sample "
                     f"({', '.join(levels[:8])}{' ...' if len(levels) > 8 else ''}; "
                     f"{shares[factor]:.1%} of the population weight): " + _new_level_source(spec, factor),
                     "warning"))
    stats = {"sample_rows_in": rows_in, "sample_rows_used": int(count.sum()), "dropped_missing": dropped}
    stats.update(pop_stats)
    return Tables(sample=sample, population=population, variables=variables,
                  population_vars=tuple(c for c in population.columns if c != WEIGHT),
                  new_levels=new_levels, new_level_share=shares, notes=tuple(notes), stats=stats,
                  weights=weights)


def _check_response(sample: pd.DataFrame, info: FormulaInfo, family: str, loaded: LoadedSpec,
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
            if ("psi" in FAMILIES[family].auxiliary and var == info.response_vars[0]
                    and "psi" not in loaded.spec.model.formulas):  # a formula of psi models the share per cell
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
                problems.add(f"{msg}: whole numbers from {values[0]:g} to {values[-1]:g}, like counts",
                             hint='for counts use family = "poisson" or "negativebinomial", for successes out of '
                                  'trials p(successes, trials) with family = "binomial"; or fix the values that '
                                  "are not 0/1", **where)
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
    """A hurdle or zero-inflated family has one psi (share of non-zeros) for every cell; when the
    share of non-zero outcomes clearly differs between the levels of a predictor (a chi-square
    test of independence, p < ``ZERO_SHARE_P``), the model puts that difference into the amounts."""
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


def _population(loaded, info, sample, variables, problems, join_cache, weights=None):
    spec = loaded.spec
    pop_spec = spec.population
    notes, stats = [], {}
    contrast_vars = {v for e in spec.estimands.values() for v in (e.contrast or {})}
    by_vars = {v for e in spec.estimands.values() for v in e.by}
    if pop_spec.margins is not None:
        for var, levels in pop_spec.margins.items():
            key = f"population.margins.{var}"
            line = loaded.line("population", "margins", var)
            values = np.array(list(levels.values()), dtype=float)
            if (values < 0).any() or not np.isfinite(values).all():
                problems.add("shares and counts must be non-negative numbers", key=key, line=line,
                             got=str(levels))
            elif values.sum() <= 0:
                problems.add("the weights sum to zero", key=key, line=line)
            elif (values <= 1).all() and abs(values.sum() - 1) > 1e-6:
                problems.add(f"shares must sum to 1 (they sum to {values.sum():.6g})", key=key, line=line,
                             hint="fix the shares, or give counts")
            if var not in variables and var not in by_vars:
                problems.add(f"'{var}' is neither a model predictor nor a `by` variable", key=key, line=line,
                             hint=did_you_mean(var, list(variables)))
        if problems:
            return pd.DataFrame(), notes, stats
        margins = {v: {canon(k): w for k, w in lv.items()} for v, lv in pop_spec.margins.items()}
        if pop_spec.joint == "rake":
            miss = [(v, lv) for v, m in margins.items() for lv in m if v in sample and lv not in set(sample[v].astype(str))]
            for v, lv in miss:
                problems.add(f"level '{lv}' of '{v}' has no sample rows, so raking cannot reach it",
                             key=f"population.margins.{v}", line=loaded.line("population", "margins", v),
                             hint='use joint = "independent"')
            absent = [v for v in margins if v not in sample.columns]
            for v in absent:
                problems.add(f"raking needs '{v}' in the sample", key=f"population.margins.{v}",
                             line=loaded.line("population", "margins", v), hint='use joint = "independent"')
            for v, m in margins.items():
                if v not in sample.columns:
                    continue
                unlisted = _natural_sort(set(sample[v].astype(str)) - set(m))
                if unlisted:
                    shown = ", ".join(f"'{lv}'" for lv in unlisted[:10]) + (" ..." if len(unlisted) > 10 else "")
                    problems.add(f"sample level(s) {shown} of '{v}' are not in the margins, so raking cannot "
                                 f"weight them", key=f"population.margins.{v}",
                                 line=loaded.line("population", "margins", v),
                                 hint=f"recode them onto listed levels (data.recode.{v} = {{ {unlisted[0]} = "
                                      f"\"...\" }}), or add them to the margins with their population share")
            if problems:
                return pd.DataFrame(), notes, stats
            count = sample[weights].astype(float) if weights else pd.Series(1.0, index=sample.index)
            seed_cells = sample.assign(**{WEIGHT: count}).groupby(list(margins), observed=True)[WEIGHT].sum()
            seed_cells = seed_cells.reset_index()
            for v in margins:
                seed_cells[v] = seed_cells[v].astype(str)
            result = rake(seed_cells, margins)
            stats.update(rake_iterations=result.iterations, rake_max_error=result.max_error)
            notes.append(Note("population.raked", f"raked the sample's joint of {', '.join(margins)} to the margins in "
                         f"{result.iterations} iterations (max error {result.max_error:.1e})"))
            if not result.converged:
                problems.add(f"raking did not converge (max error {result.max_error:.2e})",
                             key="population.joint", line=loaded.line("population", "joint"))
            cells = result.cells
        else:
            cells = independent_joint(margins)
        stats["population_rows"] = int(len(cells))
    else:
        raw = read_source(loaded, "population")
        stats["population_rows"] = int(len(raw))
        cells = _rename(raw, pop_spec.rename, "population", loaded, problems, notes)
        cells = _join(cells, "population", loaded, problems, join_cache)
        cells = _recode(cells, pop_spec.recode, "population", loaded, problems)
        if pop_spec.weight is not None:
            if pop_spec.weight not in cells.columns:
                problems.add(f"weight column '{pop_spec.weight}' is not in {population_name(loaded)}",
                             key="population.weight", line=loaded.line("population", "weight"),
                             hint=did_you_mean(pop_spec.weight, cells.columns))
                w = pd.Series(1.0, index=cells.index)
            else:
                w = _check_weights(cells[pop_spec.weight], pop_spec.weight, loaded, problems)
            cells = cells.assign(**{WEIGHT: w})
        else:
            cells = cells.assign(**{WEIGHT: 1.0})
    stats["population_columns"] = [c for c in cells.columns if c != WEIGHT]

    keep = [v for v in list(variables) + sorted(by_vars | contrast_vars) if v in cells.columns]
    keep = list(dict.fromkeys(keep))
    cells = cells[keep + [WEIGHT]].copy()
    na = cells[keep].isna().any(axis=1)
    if na.any():
        if pop_spec.missing == "drop":
            notes.append(Note("population.missing_dropped", f"dropped {int(na.sum())} population rows with missing values"))
            cells = cells.loc[~na]
        else:
            detail = ", ".join(f"{c}: {int(n)}" for c, n in cells[keep].isna().sum().items() if n)
            problems.add(f"missing values in population column(s) ({detail})", key="population.missing",
                         line=loaded.line("population", "missing") or loaded.line("population"),
                         hint='set `missing = "drop"` in [population]')
    if problems:
        return pd.DataFrame(), notes, stats
    for var in keep:
        v = variables.get(var)
        if v is None or v.categorical:
            cells[var] = canon_series(cells[var])
        else:
            cells[var] = pd.to_numeric(cells[var], errors="coerce")
            if cells[var].isna().any():
                problems.add(f"population column '{var}' must be numeric, as in the sample", key="population",
                             line=loaded.line("population"))
    if problems:
        return pd.DataFrame(), notes, stats
    cells = canonical_order(cells)  # sums in a fixed order: the cells do not depend on the table's row order
    cells = cells.groupby(keep, observed=True, sort=True)[WEIGHT].sum().reset_index() if keep else \
        pd.DataFrame({WEIGHT: [cells[WEIGHT].sum()]})
    cells = cells.loc[cells[WEIGHT] > 0].reset_index(drop=True)
    stats["population_cells"] = int(len(cells))
    return cells, notes, stats


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


SURVEY_HINT = ("MRP does the weighting itself: model the design variables (strata, the variables the weights "
               "were built from) as predictors and let the population table weight the cells")
SURVEY_MEAN_WEIGHT = 10  # from this mean weight on, the weights are checked for signs of survey weights


def _check_frequency_weights(sample: pd.DataFrame, name: str, info: FormulaInfo, family: str, loaded,
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
    if family == "gaussian" or (pd.api.types.is_float_dtype(y.dtype) and not FAMILIES[family].binary):
        distinct = y.nunique()
        if distinct > 20 and distinct >= 0.5 * n_rows:
            reasons.append(f"the outcome '{y.name}' takes {distinct} distinct values on {n_rows} rows, yet each "
                           f"row would stand for about {total / n_rows:.0f} observations of exactly that value")
    if FAMILIES[family].binary and info.rhs_vars:
        rhs = [c for c in info.rhs_vars if c in sample.columns]
        succ = y.to_numpy(dtype=float)
        trials = np.ones(n_rows) if family == "bernoulli" else sample[info.response_vars[1]].to_numpy(dtype=float)
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


def _check_weights(col: pd.Series, name: str, loaded, problems) -> pd.Series:
    """Counts or shares: numbers >= 0, not all zero; bad rows are named (1-based, as in a spreadsheet)."""
    w = pd.to_numeric(col, errors="coerce")
    where = {"key": "population.weight", "line": loaded.line("population", "weight")}
    for label, mask in (("missing or not a number", w.isna()), ("negative", w < 0),
                        ("infinite", np.isinf(w.fillna(0)))):
        if mask.any():
            rows = [int(i) + 1 for i in np.flatnonzero(mask.to_numpy())[:5]]
            values = [repr(v) for v in col[mask].head(5)]
            problems.add(f"{int(mask.sum())} weight(s) in '{name}' are {label} (rows {rows}: {', '.join(values)})",
                         hint="weights are counts or shares >= 0", **where)
    if not problems.items and w.sum() <= 0:
        problems.add(f"the weights in '{name}' sum to zero", hint="give counts or shares > 0", **where)
    return w.fillna(0).clip(lower=0).astype(float)


def _check_estimands(loaded, info, variables, population, problems, data_problems, pop_columns):
    """Estimands against the population: spec mistakes go to ``problems`` (exit 3), tables that
    lack a column to ``data_problems`` (exit 4)."""
    spec = loaded.spec
    analyst_set = {v for e in spec.estimands.values() for v in list(e.at) + list(e.contrast or {})}
    pop_vars = set(population.columns) - {WEIGHT}
    source = "population.margins" if spec.population.margins is not None else loaded.source_label("population")
    where_pop = loaded.line(*source.split(" ")[0].split("."))
    lacking: dict[str, list[str]] = {}
    for name, est in spec.estimands.items():
        base = ("estimands", name)
        for var in est.by:
            if var in pop_vars:
                continue
            key, line = f"estimands.{name}.by", loaded.line(*base, "by")
            if var in variables:
                if var in analyst_set:
                    problems.add(f"'{var}' is not a population variable: the estimands set it", key=key,
                                 line=line, hint=f"to report each level use at = {{ {var} = [...] }}")
                continue  # a model variable the population lacks: reported once, below
            close = did_you_mean(var, pop_columns)
            if close.startswith("did you mean"):
                problems.add(f"'{var}' is not a population variable", key=key, line=line, hint=close)
            else:
                data_problems.add(f"{population_name(loaded)} has no column '{var}'", key=key, line=line,
                                  hint=f"add it to the population table, or remove it from `by`; {close}")
        set_vars = dict(est.at)
        if est.contrast:
            set_vars.update(est.contrast)
        for var, levels in set_vars.items():
            where = "contrast" if est.contrast and var in est.contrast else "at"
            key = f"estimands.{name}.{where}.{var}"
            if var not in variables:
                problems.add(f"'{var}' is not a predictor in the formula", key=key, line=loaded.line(*base, where),
                             hint=did_you_mean(var, variables))
                continue
            v = variables[var]
            if not v.categorical:
                continue
            for lv in levels:
                if lv not in v.levels:
                    problems.add(f"level '{lv}' of '{var}' does not occur in the sample", key=key,
                                 line=loaded.line(*base, where), hint=did_you_mean(lv, v.levels))
        for var in info.vars_used(est.exclude):
            if var not in pop_vars and var not in set_vars:
                lacking.setdefault(var, []).append(name)
        for term in est.exclude:
            if term not in info.prior_names:
                problems.add(f"'{term}' is not a term of the model", key=f"estimands.{name}.exclude",
                             line=loaded.line(*base, "exclude"), hint=did_you_mean(term, info.prior_names))
    for var, names in lacking.items():
        if not names:
            continue
        if len(names) == len(spec.estimands):  # no estimand sets it: the table lacks it
            data_problems.add(f"the model uses '{var}', which the population lacks", key=source, line=where_pop,
                         hint=f"add a '{var}' column to the population (or a rename), or set it in every "
                              f"estimand: at = {{ {var} = [...] }}")
        else:
            for name in names:
                problems.add(f"the model uses '{var}', which the population lacks and this estimand does not set",
                             key=f"estimands.{name}", line=loaded.line("estimands", name),
                             hint=f"set it: at = {{ {var} = [...] }}")
    # common categorical predictors cannot take levels the model never saw
    group_only = set(info.factor_vars) - set(info.common_vars)
    for var, v in variables.items():
        if v.categorical and var in pop_vars and var not in group_only:
            unknown = sorted(set(population[var]) - set(v.levels))
            if unknown:
                key = f"population.margins.{var}" if spec.population.margins is not None else "population"
                line = loaded.line(*key.split("."))
                close = did_you_mean(unknown[0], v.levels)
                data_problems.add(f"population level(s) {unknown[:8]} of '{var}' are not in the sample, and '{var}' "
                             f"is a common (non-group) predictor", key=key, line=line,
                             hint=(close + "; " if close.startswith("did you mean") else "")
                             + f"recode them onto sample levels, or model '{var}' as a group term (1|{var})")


def _check_declared_new(loaded, info, problems) -> None:
    """``population.declared_new`` names group factors of the formula (a spec error otherwise)."""
    factors = list(dict.fromkeys(g.factor for g in info.group_terms))
    for factor in loaded.spec.population.declared_new:
        if factor not in factors:
            problems.add(f"'{factor}' is not a group factor of the formula", key=f"population.declared_new.{factor}",
                         line=loaded.line("population", "declared_new", factor) or
                         loaded.line("population", "declared_new"),
                         hint=did_you_mean(factor, factors) if factors else "the formula has no group term (1|g)")


def _new_level_source(spec, factor: str) -> str:
    kind = getattr(spec.model.structure.get(factor), "kind", "iid")
    if kind == "iid":
        return "their effects are drawn from the fitted group distribution"
    return f"their effects come from the {kind} structure of model.structure.{factor}"


def _new_levels(info, sample, population, loaded, problems, notes):
    """Population levels of each group factor that the sample lacks, and their weight share.

    A new level that looks like a typo of a sample level the population lacks (``R3`` vs ``R03``,
    ``South`` vs ``south``) is an error unless ``population.declared_new`` lists it: its weight
    would otherwise silently get a drawn effect instead of the sample level's."""
    pop_spec = loaded.spec.population
    declared = {f: {canon(lv) for lv in levels} for f, levels in pop_spec.declared_new.items()}
    new, shares = {}, {}
    total = population[WEIGHT].sum()
    for g in info.group_terms:
        if g.factor in new or not all(v in population.columns for v in g.factor_vars):
            continue
        pop_keys = factor_keys(population, g.factor_vars)
        seen = set(factor_keys(sample, g.factor_vars))
        single = len(g.factor_vars) == 1
        if pop_spec.margins is not None and single and g.factor in pop_spec.margins:
            where = {"key": f"population.margins.{g.factor}", "line": loaded.line("population", "margins", g.factor)}
        else:
            where = {"key": "population", "line": loaded.line("population")}
        mine = declared.get(g.factor, set())
        decl_where = {"key": f"population.declared_new.{g.factor}",
                      "line": loaded.line("population", "declared_new", g.factor)
                      or loaded.line("population", "declared_new")}
        for lv in sorted(mine & seen):
            problems.add(f"level '{lv}' of '{g.factor}' is declared new but occurs in the sample", **decl_where,
                         hint="remove it from declared_new")
        for lv in sorted(mine - seen - set(pop_keys)):
            problems.add(f"level '{lv}' of '{g.factor}' is declared new but is not in the population", **decl_where,
                         hint=did_you_mean(lv, sorted(set(pop_keys) - seen)) or "remove it from declared_new")
        mask = ~pop_keys.isin(seen)
        if mask.any():
            levels = tuple(_natural_sort(set(pop_keys[mask])))
            new[g.factor] = levels
            shares[g.factor] = float(population.loc[mask, WEIGHT].sum() / total)
            unweighted = sorted(seen - set(pop_keys))  # sample levels the population never names
            for lv in levels:
                if lv in mine:
                    continue
                close = [s for s in unweighted if s.lower() == lv.lower()] or \
                    difflib.get_close_matches(lv, unweighted, n=1, cutoff=0.75)
                if close:
                    share = float(population.loc[(pop_keys == lv).to_numpy(), WEIGHT].sum() / total)
                    recode = (f"population.recode.{g.factor} = {{ {lv} = \"{close[0]}\" }}" if single
                              else "population.recode")
                    problems.add(f"population level '{lv}' of '{g.factor}' ({share:.1%} of the population weight) "
                                 f"is not in the sample, and sample level '{close[0]}' is not in the population: "
                                 f"a typo?", **where,
                                 hint=f"recode one onto the other ({recode}), or, if '{lv}' really has no sample, "
                                      f"declare it new: population.declared_new = {{ {g.factor} = [\"{lv}\"] }}")
            undeclared = [lv for lv in levels if lv not in mine]
            if pop_spec.new_levels == "error" and undeclared:
                problems.add(f"population levels of '{g.factor}' absent from the sample: "
                             f"{', '.join(undeclared[:10])}", key="population.new_levels",
                             line=loaded.line("population", "new_levels"),
                             hint='set new_levels = "sample" to draw their effects from the fitted distribution, '
                                  'or list them in population.declared_new')
    return new, shares


def factor_keys(df: pd.DataFrame, factor_vars) -> pd.Series:
    """The level label of a (possibly interacted) group factor per row, as Bambi names it: ``"1:0"``."""
    cols = [df[v].astype(str) for v in factor_vars]
    out = cols[0]
    for c in cols[1:]:
        out = out + ":" + c
    return out.reset_index(drop=True)
