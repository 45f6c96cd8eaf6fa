"""mrp-formula: multilevel regression and poststratification from a TOML spec."""

__version__ = "0.1.0"

__all__ = ["__version__", "check", "run"]


def run(path, *, data=None, population=None, out=None, overrides=(), **kwargs):
    """Run the spec at ``path`` end to end; return a :class:`mrp_formula.commands.run.RunResult`
    (in a notebook it displays as the report's summary).

    ``data`` and ``population`` are pandas DataFrames already in memory: each takes the place of
    the spec's ``data.source`` / ``population.source`` (which the spec may then leave out), with the
    same checks as a file; messages name ``data (DataFrame)``. ``overrides`` are what ``--set``
    takes: ``"fit.draws=300"``, a list of such strings, or a dict ``{"fit.draws": 300}``. Errors
    raise :class:`mrp_formula.errors.MrpError` subclasses (``SpecError``, ``DataError``, ...)
    listing every problem."""
    from mrp_formula.commands.run import run as _run

    return _run(path, out=out, overrides=_overrides(overrides), data=data, population=population, **kwargs)


def check(path, *, data=None, population=None, overrides=()):
    """Validate the spec at ``path`` short of sampling (with ``data``/``population`` DataFrames in
    place of its files, and ``overrides``, as in :func:`run`); return the prepared plan (its
    ``tables``, ``fit_plan`` and ``notes``), or raise with every problem found."""
    from mrp_formula.commands.check import check as _check

    return _check(path, overrides=_overrides(overrides), data=data, population=population)


def _overrides(overrides) -> tuple[str, ...]:
    """``--set`` strings from one string, a sequence of them, or a dict of dotted keys to values
    (written as TOML values: ``{"fit.draws": 300, "model.family": "poisson"}``)."""
    if overrides is None:
        return ()
    if isinstance(overrides, str):
        return (overrides,)
    if isinstance(overrides, dict):
        import json

        from mrp_formula.spec.tree import toml_key

        def value(v, key):
            if v is None:
                from mrp_formula.errors import Problem, UsageError

                raise UsageError(Problem("None has no TOML form", key=f"overrides[{key!r}]",
                                         hint="leave the key out to keep the spec's value"))
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, dict):
                return "{ " + ", ".join(f"{toml_key(k)} = {value(x, key)}" for k, x in v.items()) + " }"
            if isinstance(v, (list, tuple)):
                return "[" + ", ".join(value(x, key) for x in v) + "]"
            return json.dumps(v) if isinstance(v, str) else str(v)

        return tuple(f"{k}={value(v, k)}" for k, v in overrides.items())
    return tuple(overrides)
