"""`manifest.json`: how the numbers of a folder were made, built the same way by every command.

Every manifest starts with the tool's version, the spec's name and the spec (path, SHA-256 and the
`--set` overrides applied on top), then the command's own sections in the order given, then the
versions of the packages that made the numbers, the notes, the warnings and the seconds per step.
`mrp run`'s sections (`run_sections`) are described in docs/outputs.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from mrp_formula import __version__
from mrp_formula.data.tables import Tables
from mrp_formula.model.plan import FitPlan, versions
from mrp_formula.output.files import sha256_file, sha256_text
from mrp_formula.spec.tree import FRAME_SOURCE, LoadedSpec, spec_files, tomllib


def frame_sha256(df) -> str:
    """The content hash of a DataFrame given in memory (its columns, dtypes and values)."""
    import hashlib

    import pandas as pd

    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    return h.hexdigest()


def spec_entry(loaded: LoadedSpec, overrides: Sequence[str] = ()) -> dict:
    """The spec file (its text's SHA-256), the overrides applied on top of it, the files it extends
    and the spec as the run used it (``resolved``: ``extends`` merged, overrides applied, paths
    absolute), which the run folder's readers take instead of its spec.toml, the file alone."""
    extends = [str(p) for p in spec_files(loaded.path)[1:]] if "extends" in _top_keys(loaded.text) else []
    return {"path": str(loaded.path), "sha256": sha256_text(loaded.text), "overrides": list(overrides),
            "extends": extends, "resolved": json.loads(json.dumps(loaded.raw, default=str))}


def _top_keys(text: str) -> set[str]:
    try:
        return set(tomllib.loads(text))
    except Exception:  # noqa: BLE001 - a spec that loaded parses; nothing to say otherwise
        return set()


def input_files(loaded: LoadedSpec) -> dict:
    """Path and SHA-256 of every data, population, join, calibration and adjacency file the spec reads
    (those that exist; an adjacency table under ``adjacency.<variable>``); a DataFrame given in memory
    has the path ``(DataFrame)`` and its content hash."""
    spec = loaded.spec
    files = {"data": loaded.resolve(spec.data.source)}
    if spec.population.source:
        files["population"] = loaded.resolve(spec.population.source)
    for i, j in enumerate(spec.join):
        files[f"join[{i}]"] = loaded.resolve(j.source)
    if spec.calibrate is not None:
        files["calibrate"] = loaded.resolve(spec.calibrate.source)
    for var, structure in spec.model.structure.items():
        if getattr(structure, "adjacency", None):
            files[f"adjacency.{var}"] = loaded.resolve(structure.adjacency)
    frames = loaded.frames or {}
    return {**{k: {"path": str(p), "sha256": sha256_file(p)} for k, p in files.items()
               if k not in frames and p.exists()},
            **{k: {"path": FRAME_SOURCE, "sha256": frame_sha256(df)} for k, df in frames.items()}}


def sampler_entry(loaded: LoadedSpec, fit_plan: FitPlan | None = None) -> dict:
    """The sampler's settings; with the fit plan, the mass matrix and why."""
    fit = loaded.spec.fit
    out = {"name": fit.sampler, "draws": fit.draws, "tune": fit.tune, "chains": fit.chains,
           "target_accept": fit.target_accept}
    if fit_plan is not None:
        out.update(mass_matrix=fit_plan.mass_matrix, mass_matrix_reason=fit_plan.mass_matrix_reason)
    return out


def run_sections(loaded: LoadedSpec, tables: Tables, fit_plan: FitPlan, inputs: dict | None = None) -> dict:
    """What `mrp run` records of its inputs (``inputs``: their hashes when they were read, else now),
    the fit plan and the tables (docs/outputs.md)."""
    spec = loaded.spec
    fp = fit_plan
    return {
        "inputs": input_files(loaded) if inputs is None else inputs,
        "seed": spec.fit.seed,
        "sampler": sampler_entry(loaded, fp),
        "model": {"formula": spec.model.formula, "fitted_formula": fp.formula, "family": fp.family,
                  "aggregated": fp.aggregated, "rows_in": fp.rows_in, "cells_fitted": fp.cells,
                  "parameterization": fp.parameterization, "centring_weight": fp.centring,
                  "structure": [sp.to_json() for sp in fp.structures],
                  "formulas": {name: rhs for name, rhs in fp.formulas}},
        "priors": [p.to_json() for p in fp.priors],
        "prior_scale": fp.prior_scale,
        "tables": tables.stats,
        "new_levels": {k: list(v) for k, v in tables.new_levels.items()},
        "new_level_weight_share": tables.new_level_share,
    }


def manifest(loaded: LoadedSpec | None, sections: Mapping, *, overrides: Sequence[str] = (), notes: Sequence = (),
             warnings: Sequence | None = None, timings: Mapping[str, float] | None = None) -> dict:
    """The manifest of a folder: the head (version, name, spec), ``sections`` in their order, then the
    package versions, ``notes``, ``warnings`` (when the command has any kind of them) and ``timings``
    (seconds per step). ``loaded`` is None for a command over several specs (`mrp compare`): each is
    then in its own section, and the overrides applied to all of them are recorded at the top."""
    out: dict = {"mrp_formula": __version__}
    if loaded is not None:
        out.update(name=loaded.spec.name, spec=spec_entry(loaded, overrides))
    else:
        out["overrides"] = list(overrides)
    out.update(sections)
    out["versions"] = versions()
    out["notes"] = list(notes)
    if warnings is not None:
        out["warnings"] = list(warnings)
    if timings is not None:
        out["timings_seconds"] = {k: float(v) for k, v in timings.items()}
    return out
