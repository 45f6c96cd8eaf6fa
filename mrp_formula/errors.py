"""One exception hierarchy. Every user mistake becomes a :class:`Problem` with a place,
a key, what is wrong and how to fix it; the CLI prints them and exits with the class's code.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

# Documented exit codes (docs/cli.md): 0 ok, 1 internal error, 2 usage,
# 3 invalid spec, 4 data or population problem, 5 diagnostics failed under --strict, 6 the output
# could not be written (a read-only place, a full disk, no permission, a folder another command is
# writing), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): earlier results untouched.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SPEC = 3
EXIT_DATA = 4
EXIT_DIAGNOSTICS = 5
EXIT_OUTPUT = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process the signal ended


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input."""

    message: str
    key: str = ""
    file: str = ""
    line: int | None = None
    hint: str = ""
    got: str | None = None
    snippet: str = ""  # e.g. the formula reprinted with the bad part marked

    @property
    def place(self) -> str:
        """The file as messages name it, the same form whichever step found the problem: relative to
        the current folder when the file is inside it, else absolute (a label that is no file, such
        as "data (DataFrame)", as it is)."""
        return shown_path(self.file)

    def render(self) -> str:
        where = self.place
        if where and self.line:
            where = f"{where}:{self.line}"
        parts = [f"{where}: "] if where else []  # a problem of no file (a diagnostic, an option) names none
        if self.key:
            parts.append(f"{self.key}: ")
        parts.append(self.message)
        if self.got is not None:
            parts.append(f" (got {self.got})")
        if self.hint:
            parts.append(f"; {self.hint}")
        text = "".join(parts)
        if self.snippet:
            text += "\n" + "\n".join("    " + s for s in self.snippet.splitlines())
        return text

    def to_json(self) -> dict:
        return {
            "file": self.place,
            "line": self.line,
            "key": self.key,
            "message": self.message,
            "got": self.got,
            "hint": self.hint,
        }


def shown_path(file: str) -> str:
    """``file`` relative to the current folder when it is an existing file inside it, absolute when
    it is one elsewhere, unchanged when it names no file."""
    if not file:
        return file
    try:
        path = Path(file)
        if not path.is_file():
            return file
        full = path.resolve()
        here = Path(os.getcwd()).resolve()
        return str(full.relative_to(here)) if full.is_relative_to(here) else str(full)
    except (OSError, ValueError):
        return file


class MrpError(Exception):
    """Base of every error the tool raises on purpose."""

    exit_code = EXIT_INTERNAL

    def __init__(self, problems: Problem | str | Iterable[Problem]):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        # in the order of the file, as a reader goes through it (problems of no line after those of
        # their file that have one; different files, and problems of no file, keep their order)
        problems = list(problems)
        files = list(dict.fromkeys(p.file for p in problems))
        self.problems: tuple[Problem, ...] = tuple(sorted(
            problems, key=lambda p: (files.index(p.file), p.line is None, p.line or 0)))
        super().__init__("\n".join(p.render() for p in self.problems))


class UsageError(MrpError):
    exit_code = EXIT_USAGE


class SpecError(MrpError):
    """The spec file is invalid (syntax, keys, types, formula, priors, estimands)."""

    exit_code = EXIT_SPEC


class DataError(MrpError):
    """The sample data or the population table does not fit the spec."""

    exit_code = EXIT_DATA


class FitError(MrpError):
    """The sampler failed; wraps the backend's exception with context."""

    exit_code = EXIT_INTERNAL


class OutputError(MrpError):
    """The results cannot be written where they are to go: a read-only place, a full disk, no
    permission, another command writing the same folder. Nothing earlier is lost."""

    exit_code = EXIT_OUTPUT


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, systemd, Slurm, ``kill``), raised where an interrupt would be, so that
    it is cleaned up after as Ctrl-C is (:func:`mrp_formula.system.terminate_as_interrupt`)."""


class DiagnosticsError(MrpError):
    """A convergence check failed under --strict."""

    exit_code = EXIT_DIAGNOSTICS


@dataclass
class ProblemList:
    """Collects problems so that all of them are reported at once."""

    file: str = ""
    items: list[Problem] = field(default_factory=list)

    def add(self, message: str, *, key: str = "", line: int | None = None, **kw) -> None:
        self.items.append(Problem(message, key=key, file=kw.pop("file", self.file), line=line, **kw))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    def raise_if_any(self, cls: type[MrpError]) -> None:
        if self.items:
            raise cls(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` most likely meant: one that differs only in case, else the closest by
    difflib (as written, then with the case set aside); None when none is close."""
    choices = sorted({str(c) for c in choices})
    word = str(word)
    close = ([c for c in choices if c.lower() == word.lower() and c != word]  # a case-only typo ('f' for 'F')
             or difflib.get_close_matches(word, choices, n=1, cutoff=0.6))
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)]
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``did you mean 'x'?`` hint, or a list of what is allowed when nothing is close."""
    choices = sorted({str(c) for c in choices})
    close = closest(word, choices)
    if close is not None:
        return f"did you mean '{close}'?"
    if not choices:
        return ""
    shown = ", ".join(f"'{c}'" for c in choices[:SHOWN])
    more = f" (and {len(choices) - SHOWN} more)" if len(choices) > SHOWN else ""
    return f"expected one of {shown}{more}"


SHOWN = 20  # choices listed when none is close: every family, the columns of most tables
