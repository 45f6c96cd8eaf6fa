"""Cached fits: a posterior is reused while the model part of the spec and the fitted data are
unchanged. The key hashes everything that changes the posterior; the entry stores the key and
the file's checksum, so a stale or corrupt entry is detected and never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mrp_formula import __version__
from mrp_formula.output.files import sha256_file
from mrp_formula.system import exchange, new_dir, owner_gone, remove_tree, rename_new, room_for

CACHE_DIR = ".mrp-cache"
# how a model is handed to the sampler, where that changes the draws and nothing else in the key
# does: 2 = intercepts and slopes sampled in units of their prior (``sampler.prior_scaled``)
SAMPLING_REVISION = 2


def _model_parts(plan, versions: dict[str, str]) -> dict:
    """What the compiled model depends on: the fitted data, formula, family, link, priors,
    parameterization, structure and the stack's versions (not the fit's settings)."""
    fp = plan.fit_plan
    spec = plan.loaded.spec
    data_hash = hashlib.sha256(pd.util.hash_pandas_object(fp.data, index=False).to_numpy().tobytes())
    data_hash.update(repr([(c, str(t)) for c, t in fp.data.dtypes.items()]).encode())
    for c in fp.data.columns:
        if isinstance(fp.data[c].dtype, pd.CategoricalDtype):
            data_hash.update(repr(list(fp.data[c].cat.categories)).encode())
    parts = {
        "data": data_hash.hexdigest(),
        "formula": fp.formula,
        "family": fp.family,
        "link": spec.model.link,
        "priors": {k: str(v) for k, v in sorted(spec.model.priors.items())},
        "resolved_priors": [p.to_json() for p in getattr(fp, "priors", ())],  # defaults come from the rows
        "parameterization": fp.parameterization,
        "versions": {k: versions.get(k) for k in ("bambi", "pymc", "nutpie", "pytensor")},
        "mrp_formula": __version__,
        "sampling": SAMPLING_REVISION,
    }
    if getattr(fp, "centring", None):  # only then: the keys of fits without partial terms stay as they were
        parts["centring"] = dict(sorted(fp.centring.items()))
    formulas = getattr(fp, "formulas", ())
    if formulas:  # only then: the keys of fits without them stay as they were
        parts["formulas"] = [list(f) for f in formulas]
    structures = getattr(fp, "structures", ())
    if structures:  # only then: the keys of fits without structure stay as they were
        parts["structure"] = [sp.key() for sp in structures]
    return parts


def _digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def fit_key(plan, versions: dict[str, str]) -> str:
    """Hash of the fitted data, formula, family, link, priors, parameterization and fit settings."""
    parts = _model_parts(plan, versions)
    parts |= {"mass_matrix": plan.fit_plan.mass_matrix, "fit": plan.loaded.spec.fit.model_dump()}
    return _digest(parts)


def model_key(plan, versions: dict[str, str]) -> str:
    """Hash of what the compiled model depends on, and the mass matrix (nutpie's statistics differ
    with it): the fit key without the fit's settings (a recipe of :mod:`mrp_formula.model.reuse`
    serves any seed, draws, chains or ``target_accept``)."""
    return _digest(_model_parts(plan, versions) | {"reuse": "recipe", "mass_matrix": plan.fit_plan.mass_matrix})


@dataclass(frozen=True)
class FitCache:
    root: Path

    def entry(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str):
        """The cached posterior DataTree, or None (with the reason) when absent, stale or corrupt."""
        import xarray as xr

        d = self.entry(key)
        meta_path, nc = d / "meta.json", d / "posterior.nc"
        if not meta_path.exists() or not nc.exists():
            return None, "no cached fit"
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != key:
                return None, "cached fit is stale (key mismatch)"
            if sha256_file(nc) != meta.get("sha256"):
                return None, "cached fit is corrupt (checksum mismatch); refitting"
            dt = xr.open_datatree(nc, engine="h5netcdf").load()
            dt.close() if hasattr(dt, "close") else None
            return dt, "reused the cached fit (model and data unchanged; --refit to force a new one)"
        except Exception as exc:  # unreadable: treat as corrupt
            return None, f"cached fit is unreadable ({type(exc).__name__}); refitting"

    def store(self, key: str, posterior, seconds: float) -> str:
        """Write atomically: a temporary folder renamed into place (exchanged with an entry that is
        there already: another process's store of the same key, a damaged entry, a file). A store
        that fails (a read-only or full disk, ``.mrp-cache`` a file) costs the next run its speed,
        never this run its results: '' when stored, else a note saying why not."""
        try:
            self._store(key, posterior, seconds)
        except Exception as exc:  # noqa: BLE001 - the cache is speed, not results
            return (f"the fit was not stored in the fit cache {self.root} ({type(exc).__name__}: {exc}); the "
                    f"results are complete, and the next run fits again")
        return ""

    def _store(self, key: str, posterior, seconds: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep()
        tmp = new_dir(self.root, ".tmp-")
        try:
            room_for(tmp / "posterior.nc", sum(node.dataset.nbytes for node in posterior.subtree))
            posterior.to_netcdf(tmp / "posterior.nc")
            meta = {"key": key, "sha256": sha256_file(tmp / "posterior.nc"), "fit_seconds": seconds}
            (tmp / "meta.json").write_text(json.dumps(meta))
            final = self.entry(key)
            try:
                rename_new(tmp, final)
                return
            except FileExistsError:
                exchange(tmp, final)  # tmp now holds what was there
            remove_tree(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                remove_tree(tmp)
            raise

    def sweep(self) -> None:
        """Remove the temporary folders of processes that were killed while storing a fit or a recipe."""
        for place in (self.root, self.root / "models"):
            self._sweep(place)

    @staticmethod
    def _sweep(place: Path) -> None:
        with contextlib.suppress(OSError):
            for entry in os.scandir(place):
                if entry.name.startswith(".tmp-") and owner_gone(entry.name) and entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        remove_tree(Path(entry.path))
