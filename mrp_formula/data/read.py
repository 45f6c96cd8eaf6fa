"""Reading the sources: CSV, Parquet or a DuckDB database; a spec's SQL is one read-only SELECT,
run where it can read only the file the spec names; binary outcomes counted as distinct rows by DuckDB."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mrp_formula.data.canonical import FREQ
from mrp_formula.errors import DataError, MrpError, Problem, SpecError
from mrp_formula.spec.families import FAMILIES
from mrp_formula.spec.formula import FormulaInfo
from mrp_formula.spec.tree import LoadedSpec


def read_table(path: Path, query: str | None, *, key: str, file: str, line: int | None,
               query_line: int | None = None) -> pd.DataFrame:
    """CSV, Parquet or a DuckDB database (with ``query``); errors name the key and the file."""
    if not path.exists():
        raise DataError(Problem(f"file not found: {path}", key=key, file=file, line=line,
                                hint="paths in a spec are relative to its file; a path given with --set, to the "
                                     "folder mrp runs in"))
    suffix = path.suffix.lower()
    try:
        if query is not None or suffix in (".duckdb", ".db"):
            return _read_duckdb(path, query, key=key, file=file, line=line, query_line=query_line)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".tsv", ".gz"):
            df = pd.read_csv(path, sep=_delimiter(path), low_memory=False)
            _check_delimiter(list(df.columns), path, key=key, file=file, line=line)
            return df
    except MrpError:
        raise
    except Exception as exc:
        raise DataError(Problem(f"cannot read {path.name}: {exc}", key=key, file=file, line=line)) from None
    raise DataError(Problem(f"unsupported file type '{suffix}'", key=key, file=file, line=line,
                            hint="use .csv, .parquet, or a DuckDB file with `query`"))


def _delimiter(path: Path) -> str:
    """A CSV's delimiter: a tab for .tsv (or .tsv.gz), else a comma; DuckDB and pandas read with the
    same one, so a file reads the same whichever reader the family takes."""
    return "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else ","


OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _check_delimiter(columns: list, path: Path, *, key: str, file: str, line: int | None) -> None:
    """A file read as one column whose name holds another delimiter (``a;b;c``) was written with
    that delimiter: say so, rather than report its columns missing."""
    if len(columns) != 1:
        return
    name = str(columns[0])
    found = [(d, word) for d, word in OTHER_DELIMITERS.items() if d in name and d != _delimiter(path)]
    if found:
        d, word = max(found, key=lambda f: name.count(f[0]))
        raise DataError(Problem(f"{path.name} reads as one column {name!r}: its columns are separated by {word}, "
                                f"not by {'tabs' if _delimiter(path) == chr(9) else 'commas'}", key=key, file=file,
                                line=line, hint="save it with commas as the separator (a tab-separated file may be "
                                                "named .tsv), or convert it to Parquet"))


def _duckdb_reader(path: Path) -> str:
    """A DuckDB table function over a CSV or Parquet file; CSV types are guessed like pandas does
    (numbers and text; words such as yes/no stay text), with pandas' delimiter and header row."""
    literal = "'" + str(path).replace("'", "''") + "'"  # DDL takes no bound parameters
    if path.suffix.lower() in (".parquet", ".pq"):
        return f"read_parquet({literal})"
    delim = "'\t'" if _delimiter(path) == "\t" else "','"
    return (f"read_csv({literal}, delim = {delim}, header = true, "
            f"auto_type_candidates = ['BIGINT', 'DOUBLE', 'VARCHAR'])")


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
        if suffix not in (".duckdb", ".db", ".parquet", ".pq"):  # a CSV as the view `source`: the same delimiter
            _check_delimiter([r[0] for r in con.execute("DESCRIBE source").fetchall()], path, key=key, file=file,
                             line=line)
        return con.execute(query).df()
    except MrpError:
        raise
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


def read_collapsed(loaded: LoadedSpec, info: FormulaInfo) -> tuple[pd.DataFrame, list[str]] | None:
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
