"""Typed notes: what a step tells the user about the run, with a level and a stable code.

A ``Note`` is a string (its text, so it prints, joins and serialises as before) that also
carries ``level`` (``info`` or ``warning``) and ``code`` (a stable identifier such as
``srm.mismatch``). Code that reacts to a note asks for its code or level, never its wording.
"""

from __future__ import annotations

from typing import Iterable, Literal

Level = Literal["info", "warning"]


class Note(str):
    """A note's text, with its ``code`` and ``level``."""

    code: str
    level: Level

    def __new__(cls, code: str, text: str, level: Level = "info") -> "Note":
        obj = super().__new__(cls, text)
        obj.code = code
        obj.level = level
        return obj

    def __getnewargs__(self):  # pickling (recover's worker processes)
        return (self.code, self.text, self.level)

    @property
    def text(self) -> str:
        return str.__str__(self)

    def to_json(self) -> dict:
        return {"level": self.level, "code": self.code, "text": self.text}


def info(code: str, text: str) -> Note:
    return Note(code, text, "info")


def warning(code: str, text: str) -> Note:
    return Note(code, text, "warning")


def as_note(value: str, code: str = "note") -> Note:
    """A plain string as an info note (notes from places not yet typed)."""
    return value if isinstance(value, Note) else Note(code, value)


def with_code(notes: Iterable[str], code: str) -> list[Note]:
    return [n for n in notes if isinstance(n, Note) and n.code == code]


# Notes of level "warning" that a run's own checks judge (the coverage check: new levels): they stay
# notes; every other one is listed with the run's warnings (and `mrp check`'s).
JUDGED = ("population.new_levels",)


def is_warning(note) -> bool:
    """Whether a note of the data or the model is listed as a warning."""
    return getattr(note, "level", "") == "warning" and getattr(note, "code", "") not in JUDGED


def interval_name(prob: float, kind: str) -> str:
    """An interval's name in words: "95% ETI", "99.9% HDI" (not "100%")."""
    return f"{100 * float(prob):.3g}% {str(kind).upper()}"


def share_of_draws(p: float) -> str:
    """A probability estimated as a share of posterior draws, in words: "62.5%"; never "100.0%" or
    "0.0%", which would claim certainty that a finite number of draws cannot show (">99.9%", "<0.1%")."""
    p = float(p)
    if p != p:
        return "n/a"
    if p > 0.999:
        return ">99.9%"
    if p < 0.001:
        return "<0.1%"
    return f"{100 * p:.1f}%"
