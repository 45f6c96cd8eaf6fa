"""mrp-formula: multilevel regression and poststratification from a TOML spec."""

__version__ = "0.1.0"

__all__ = ["__version__", "check", "run"]


def run(path, *, data=None, population=None, out=None, overrides=(), **kwargs):
    """Run the spec at ``path`` end to end; return a :class:`mrp_formula.commands.run.RunResult`
    (in a notebook it displays as the report's summary).

    ``data`` and ``population`` are pandas DataFrames already in memory: each takes the place of
    the spec's ``data.source`` / ``population.source`` (which the spec may then leave out), with the
    same checks as a file; messages name ``data (DataFrame)``. Errors raise
    :class:`mrp_formula.errors.MrpError` subclasses (``SpecError``, ``DataError``, ...) listing
    every problem."""
    from mrp_formula.commands.run import run as _run

    return _run(path, out=out, overrides=overrides, data=data, population=population, **kwargs)


def check(path, *, data=None, population=None, overrides=()):
    """Validate the spec at ``path`` short of sampling (with ``data``/``population`` DataFrames in
    place of its files, as in :func:`run`); return the prepared plan."""
    from mrp_formula.commands.check import check as _check

    return _check(path, overrides=overrides, data=data, population=population)
