"""Adjacency tables of spatial structures: a CSV with two columns, one pair of neighbouring levels
per row. A level without neighbours (an island) is a row whose second column is empty, or that
pairs the level with itself. Levels are matched by value like every level (``spec/levels.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mrp_formula.errors import DataError, Problem
from mrp_formula.spec.levels import canon


@dataclass(frozen=True)
class Adjacency:
    path: Path
    levels: frozenset[str]  # every level the table names
    pairs: tuple[tuple[str, str], ...]  # neighbours (a, b), a != b, each once, sorted
    header: tuple[str, ...] = ()  # the first row, read as the column names
    island_rows: frozenset[str] = frozenset()  # levels written as islands (an empty second cell, or paired with itself)

    def not_islands(self) -> tuple[str, ...]:
        """Levels written as islands that other rows give neighbours (so they are not islands)."""
        paired = {lv for pair in self.pairs for lv in pair}
        return tuple(sorted(self.island_rows & paired))


def read_adjacency(path: Path, *, key: str, file: str, line: int | None) -> Adjacency:
    """The table at ``path``; a missing or malformed file is a data error naming it."""
    where = {"key": key, "file": file, "line": line}
    if not path.is_file():
        raise DataError(Problem(f"adjacency file not found: {path}", **where,
                                hint="a CSV with two columns, one pair of neighbouring levels per row; paths in a "
                                     "spec are relative to its file, a path given with --set to the folder mrp "
                                     "runs in"))
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any reading failure is the file's problem
        raise DataError(Problem(f"cannot read the adjacency file {path.name}: {exc}", **where)) from None
    if table.shape[1] != 2:
        raise DataError(Problem(f"the adjacency file {path.name} has {table.shape[1]} column(s), not 2", **where,
                                got=", ".join(map(str, table.columns)),
                                hint="two columns with a header, e.g. `state,neighbour`, one pair per row"))
    levels, pairs, islands = set(), set(), set()
    for a, b in table.itertuples(index=False, name=None):
        a, b = a.strip(), b.strip()
        if not a and not b:
            continue
        if not a:
            a, b = b, a
        a = canon(a)
        levels.add(a)
        b = canon(b) if b else a
        levels.add(b)
        if a != b:
            pairs.add(tuple(sorted((a, b))))
        else:
            islands.add(a)
    return Adjacency(path=path, levels=frozenset(levels), pairs=tuple(sorted(pairs)), header=_header(table.columns),
                     island_rows=frozenset(islands))


def _header(columns) -> tuple[str, ...]:
    """The first row's cells as written, from the names pandas gave them: an empty cell is named
    "Unnamed: 1" (an island row `AK,`) and a repeated one "e.1" (`e,e`)."""
    names = [str(c).strip() for c in columns]
    out = []
    for name in names:
        if name.startswith("Unnamed:"):
            continue
        base = re.fullmatch(r"(.+)\.\d+", name)
        out.append(canon(base.group(1) if base and base.group(1) in names else name))
    return tuple(out)
