"""What a long job says while it runs: the phase it is in, and the sampler's chains.

The commands call a :class:`Reporter` at each phase and hand its ``chains`` method to the sampler
as a callback; ``cli.py`` decides how it looks (a line per phase without a terminal, a rich
display on one, nothing with ``--quiet``). The default, :data:`SILENT`, says nothing, so the
library API prints nothing unless asked to.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChainState:
    """One chain's progress, as the sampler reports it (a snapshot, safe to keep)."""

    chain: int
    finished: int  # draws done, warmup included
    total: int  # warmup + draws
    divergences: int  # divergent transitions so far (warmup included)
    tuning: bool  # still in warmup
    started: bool


class Reporter:
    """Says nothing; subclasses show phases and chains. ``phase`` is called once as each phase
    begins (``checking spec``, ``reading data``, ``compiling model``, ``sampling ...``,
    ``poststratifying``, ``writing``), ``chains`` repeatedly while sampling (from the sampler's
    thread), ``done`` once at the end."""

    def start(self) -> None:
        """A run begins (``mrp watch`` runs many): its clock starts again."""

    def phase(self, name: str) -> None:
        pass

    def chains(self, states: tuple[ChainState, ...]) -> None:
        pass

    def done(self) -> None:
        pass


SILENT = Reporter()


def sampling_phase(chains: int, draws: int) -> str:
    return f"sampling {chains} chain{'s' if chains != 1 else ''} x {draws} draws"
