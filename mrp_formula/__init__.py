"""mrp-formula: multilevel regression and poststratification from a TOML spec."""

__version__ = "0.1.0"

__all__ = ["__version__", "check", "run"]


def run(path, *, out=None, overrides=(), **kwargs):
    """Run the spec at ``path`` end to end; return a :class:`mrp_formula.commands.run.RunResult`."""
    from mrp_formula.commands.run import run as _run

    return _run(path, out=out, overrides=overrides, **kwargs)


def check(path, *, overrides=()):
    """Validate the spec at ``path`` short of sampling; return the prepared plan."""
    from mrp_formula.commands.check import check as _check

    return _check(path, overrides=overrides)
