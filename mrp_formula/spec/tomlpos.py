"""Where each key of a TOML file is: a light line scanner, so errors can say FILE:LINE.

``tomllib`` keeps no positions. This scanner tracks ``[table]`` and ``[[array]]`` headers
(with per-array indices), dotted and quoted keys, and skips multi-line strings. Keys inside
inline tables resolve to the line of the key that holds the table.
"""

from __future__ import annotations

import re
import tomli as tomllib  # TOML 1.1 (multi-line inline tables, as in the grammar)

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SYNTAX_AT = re.compile(r"\(at line (\d+), column (\d+)\)")


def _parse_key(text: str, i: int) -> tuple[list[str], int] | None:
    """Parse a (dotted) key starting at ``text[i]``; return its parts and the index after it."""
    parts: list[str] = []
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return None
        ch = text[i]
        if ch in "\"'":
            j = text.find(ch, i + 1)
            while ch == '"' and j > 0 and text[j - 1] == "\\":
                j = text.find(ch, j + 1)
            if j < 0:
                return None
            parts.append(text[i + 1 : j])
            i = j + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                return None
            parts.append(m.group(0))
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, i


def key_lines(text: str) -> dict[Path, int]:
    """Map each key path (``("model", "priors", "1|gender")``) to its 1-based line."""
    lines: dict[Path, int] = {}
    table: Path = ()
    array_counts: dict[Path, int] = {}
    in_multiline: str | None = None
    depth = 0  # brackets and braces still open in a multi-line value
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if depth > 0:
            depth += _balance(line)
            continue
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            parsed = _parse_key(line, 2)
            if parsed:
                base = tuple(parsed[0])
                idx = array_counts.get(base, -1) + 1
                array_counts[base] = idx
                table = base + (idx,)
                lines.setdefault(base, lineno)
                lines[table] = lineno
            continue
        if line.startswith("["):
            parsed = _parse_key(line, 1)
            if parsed:
                table = _resolve_arrays(tuple(parsed[0]), array_counts)
                lines.setdefault(table, lineno)
                for k in range(1, len(table)):
                    lines.setdefault(table[:k], lineno)
            continue
        parsed = _parse_key(line, 0)
        if parsed and parsed[1] < len(line) and line[parsed[1]] == "=":
            path = table + tuple(parsed[0])
            for k in range(len(table) + 1, len(path) + 1):
                lines.setdefault(path[:k], lineno)
            rest = line[parsed[1] + 1 :]
            for q in ('"""', "'''"):
                if rest.count(q) == 1:
                    in_multiline = q
            if not in_multiline:
                depth = max(0, _balance(rest))
    return lines


def _balance(text: str) -> int:
    """Brackets and braces opened minus closed, outside strings and comments."""
    n, quote = 0, None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            n += 1
        elif ch in "]}":
            n -= 1
    return n


def _resolve_arrays(path: Path, counts: dict[Path, int]) -> Path:
    """``[join.options]`` inside ``[[join]]`` refers to the latest element of the array."""
    out: list[str | int] = []
    for part in path:
        out.append(part)
        if tuple(out) in counts:
            out.append(counts[tuple(out)])
    return tuple(out)


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path`` or of its nearest ancestor that has one."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def syntax_error_position(exc: tomllib.TOMLDecodeError) -> tuple[int | None, str]:
    """Line number and bare message of a TOML syntax error (Python 3.12 has no .lineno)."""
    msg = str(exc)
    m = _SYNTAX_AT.search(msg)
    line = getattr(exc, "lineno", None) or (int(m.group(1)) if m else None)
    bare = _SYNTAX_AT.sub("", msg).strip()
    return line, bare
