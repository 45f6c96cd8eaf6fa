"""A fitted model reused: nutpie samples it again without Bambi, PyMC or PyTensor's rewriting.

A fit through Bambi (:mod:`mrp_formula.model.sampler`) imports Bambi and PyMC (about 2.5 s, most
of it ArviZ, which both import), builds the model, and has PyTensor rewrite the graphs nutpie
compiles before their machine code can be found in the compile cache (about 1.5 s): on a small
model that is most of a refit. What nutpie needs to sample the same model again is small: the two
compiled C callbacks (the log density with its gradient, and a draw's expansion; already kept in
the compile cache by :mod:`mrp_formula.model.compiled`), the variables' names and shapes, the
initial point, and how Bambi lays out the result. The first fit of a model writes that down: a
:class:`Recipe`, kept under the model's key (data, formula, family, priors, parameterization,
versions; not the fit's settings, so another seed, more draws or another ``target_accept``
reuse it). The next fit of the same model loads the callbacks from the compile cache, starts
every chain where PyMC would (the support point plus PyMC's U(-1, 1) jitter, from the same seeds),
runs nutpie's sampler, and lays the raw trace out as Bambi does.

A recipe is kept only when it is proven on the fit that wrote it: the recipe is written, read back,
and the fit's own raw trace laid out by it must equal Bambi's posterior and sample statistics bit
for bit, and its initial points PyMC's for every seed the sampler asked for and a few more.
Anything that fails later (a callback missing from the compile cache, a damaged recipe, another
nutpie) sends the fit through Bambi again: reuse is a speed-up, never a different result.

Imports neither Bambi nor PyMC; :mod:`mrp_formula.model.sampler` writes recipes."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrp_formula.model import nuts
from mrp_formula.model.compiled import load_callbacks
from mrp_formula.system import exchange, new_dir, remove_tree, rename_new

REVISION = 1
FILES = ("recipe.json", "arrays.npz")
MODELS_DIR = "models"
# nutpie's sample statistics that its settings leave out of the DataTree (nutpie.sample._extract)
SKIPPED_UNLESS = {
    "store_gradient": ["gradient"],
    "store_unconstrained": ["unconstrained_draw"],
    "adapt_options.mass_matrix_options.store_mass_matrix": ["mass_matrix_inv", "mass_matrix_eigvals",
                                                            "mass_matrix_stds"],
    "store_divergences": ["divergence_start", "divergence_end", "divergence_momentum", "divergence_start_gradient"],
    "store_transformed": ["transformed_position", "transformed_gradient", "transformation_mu"],
}


class Unusable(Exception):
    """The recipe cannot sample here; the fit goes through Bambi instead."""


@dataclass(frozen=True)
class Shift:
    """Bambi's intercept of mean-centred common predictors, shifted back after sampling
    (``backend._clean_results``): ``name -= mean(X) @ [terms]`` per draw (and response level)."""

    name: str
    terms: tuple[str, ...]
    xmean: np.ndarray
    response_dims: tuple[str, ...] = ()
    response_levels: int = 0


@dataclass(frozen=True)
class Layout:
    """One group of Bambi's result: its variables' dims, its coordinates and attributes, and
    (for the data groups, which no draw changes) its values."""

    name: str
    attrs: dict
    dims: dict  # variable -> its dims, in Bambi's order
    coords: dict  # coordinate -> (dims, values)
    values: dict = field(default_factory=dict)  # variable -> array: the data groups only


@dataclass(frozen=True)
class Recipe:
    """What nutpie needs to sample a compiled model again, and how Bambi lays out its draws.

    ``names``/``starts``/``stops``/``shapes``: nutpie's variables (the unconstrained ones first,
    filling ``n_dim``, then the expanded ones); ``jitter``: per unconstrained variable, the index
    of the random generator PyMC's initial point draws its U(-1, 1) jitter from (spawned from the
    chain's seed), or None; ``base``: the initial point without jitter; ``template``: Bambi's
    result, group by group (:class:`Layout`)."""

    callbacks: tuple[str, str]
    folder: str
    n_dim: int
    n_expanded: int
    names: tuple[str, ...]
    starts: tuple[int, ...]
    stops: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]
    dims: dict
    coords: dict
    reparameterized: tuple[str, ...]
    jitter: tuple
    base: np.ndarray
    shifts: tuple[Shift, ...]
    template: tuple[Layout, ...] = field(repr=False)


# ----------------------------------------------------------------------------- the initial point


def initial_point(recipe: Recipe):
    """PyMC's initial point as nutpie asks for it: ``seed -> flat array`` (the support point in
    the unconstrained space, plus U(-1, 1) jitter from ``SeedSequence(seed).spawn(k)[i]``)."""
    free = [(slice(a, b), shape, k) for a, b, shape, k in zip(recipe.starts, recipe.stops, recipe.shapes,
                                                               recipe.jitter)]
    n_rngs = 1 + max((k for *_, k in free if k is not None), default=0)

    def point(seed):
        children = np.random.SeedSequence(seed).spawn(n_rngs)
        flat = recipe.base.copy()
        for sl, shape, k in free:
            if k is not None:
                jitter = np.random.Generator(np.random.PCG64(children[k])).uniform(-1, 1, size=shape)
                flat[sl] = (recipe.base[sl].reshape(shape) + jitter).ravel()
        return flat

    return point


def find_jitter(base: np.ndarray, starts, stops, shapes, point_fn, seed) -> tuple:
    """For each unconstrained variable, the generator its jitter comes from in ``point_fn(seed)``
    (PyMC's initial point function), found by trying each; None where there is no jitter."""
    point = point_fn(seed)
    children = np.random.SeedSequence(seed).spawn(len(starts) + 8)
    out = []
    for a, b, shape in zip(starts, stops, shapes):
        want, b0 = point[a:b], base[a:b].reshape(shape)
        if np.array_equal(want, base[a:b]):
            out.append(None)
            continue
        k = next((k for k, c in enumerate(children)
                  if np.array_equal((b0 + np.random.Generator(np.random.PCG64(c)).uniform(-1, 1, size=shape)).ravel(),
                                    want)), None)
        if k is None:
            raise Unusable(f"the initial point of {a}:{b} is not PyMC's support point plus U(-1, 1) jitter")
        out.append(k)
    return tuple(out)


# ----------------------------------------------------------------------------- the callbacks


def callbacks(recipe: Recipe):
    """The two C callbacks from the compile cache; :class:`Unusable` when either is missing (a
    reused model is never compiled: the function they call is not here)."""
    found = load_callbacks(recipe.callbacks, recipe.n_dim, recipe.n_expanded)
    if found is None:
        raise Unusable("the compiled callbacks are not in the compile cache")
    return found


def compiled_model(recipe: Recipe):
    """nutpie's compiled PyMC model, rebuilt from the recipe (no PyMC, no PyTensor graph)."""
    import pandas as pd

    nutpie = nuts.import_nutpie()
    from nutpie import compile_pymc as cp

    logp_c, expand_c = callbacks(recipe)
    shape_info = (list(recipe.names), [slice(a, b) for a, b in zip(recipe.starts, recipe.stops)],
                  [np.asarray(s, dtype=np.int64) for s in recipe.shapes])
    return nutpie, cp.CompiledPyMCModel(
        _n_dim=recipe.n_dim, dims={k: tuple(v) for k, v in recipe.dims.items()},
        _coords={k: pd.Index(v) for k, v in recipe.coords.items()},
        _shapes={n: tuple(s) for n, s in zip(recipe.names, recipe.shapes)},
        compiled_logp_func=logp_c, compiled_expand_func=expand_c, initial_point_func=initial_point(recipe),
        shared_data={}, shared_var_keys={}, user_data=cp.make_user_data({}, {}), n_expanded=recipe.n_expanded,
        shape_info=shape_info, logp_func=None, expand_func=None, reparameterized_names=list(recipe.reparameterized))


# ----------------------------------------------------------------------------- the layout of a trace


def skipped(settings: str | None) -> list[str]:
    """The statistics nutpie leaves out for these settings (as ``nutpie.sample._extract``)."""
    tree = json.loads(settings)["settings"] if settings else {}
    out = []
    for path, names in SKIPPED_UNLESS.items():
        node = tree
        for part in path.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if not node:
            out += names
    return out


def columns(raw, skip: list[str]):
    """nutpie's raw trace as arrays ``(chain, draw, ...)``: draws and statistics after tuning and
    during it, and each column's dims (``nutpie.sample._arrow_to_arviz``, short of ArviZ)."""
    from nutpie.sample import _add_arrow_data

    draws, stats = raw.get_arrow_trace()
    n = len(draws)
    tuning = [int(s.column("tuning").to_numpy().sum()) for s in stats]
    max_tune = max(tuning)
    max_post = max(d.num_rows - t for d, t in zip(draws, tuning))
    post, post_stats, tune_stats, dims = {}, {}, {}, {}
    for i, (d, s) in enumerate(zip(draws, stats)):
        _add_arrow_data(post, max_post, d.slice(tuning[i], d.num_rows - tuning[i]), i, n, dims, [])
        _add_arrow_data(tune_stats, max_tune, s.slice(0, tuning[i]), i, n, dims, skip)
        _add_arrow_data(post_stats, max_post, s.slice(tuning[i], s.num_rows - tuning[i]), i, n, dims, skip)
    return post, post_stats, tune_stats, dims


def _group(layout: Layout, arrays: dict, dims: dict, n_chains: int, n_draws: int, attrs: dict):
    import xarray as xr

    coords = {"chain": (("chain",), np.arange(n_chains)), "draw": (("draw",), np.arange(n_draws))}
    coords |= {k: v for k, v in layout.coords.items() if k not in ("chain", "draw")}
    out = {}
    for name, want in layout.dims.items():
        if name not in arrays:
            raise Unusable(f"the trace has no {name}")
        values = arrays[name]
        src = ("chain", "draw", *dims.get(name, []))
        if len(src) != values.ndim or set(src) != set(want):
            raise Unusable(f"the dims of {name} are not known")
        out[name] = xr.DataArray(values, dims=src).transpose(*want)
    used = {d for v in out.values() for d in v.dims}
    return xr.Dataset(out, coords={k: v for k, v in coords.items() if set(v[0]) <= used}, attrs=attrs)


def _data_group(layout: Layout):
    import xarray as xr

    return xr.Dataset({k: (layout.dims[k], v) for k, v in layout.values.items()}, coords=layout.coords,
                      attrs=dict(layout.attrs))


def _shift(posterior, shifts: tuple[Shift, ...]):
    """Bambi's intercept shift (``PyMCModel._clean_results``), in its order of operations."""
    for s in shifts:
        shape, dims = (posterior.sizes["chain"], posterior.sizes["draw"]), ("chain", "draw")
        if s.response_dims:
            shape += (s.response_levels,)
            dims += s.response_dims
        stacked = posterior.stack(samples=dims)
        coefs = np.vstack([np.atleast_2d(stacked[name].values) for name in s.terms])
        posterior[s.name] = posterior[s.name] - np.dot(s.xmean, coefs).reshape(shape)
    return posterior


def assemble(recipe: Recipe, raw, settings: str | None, seconds: float):
    """The raw trace as Bambi's posterior of the model (tuning statistics kept for counting)."""
    import xarray as xr

    post, post_stats, tune_stats, dims = columns(raw, skipped(settings))
    n_chains, n_draws = next(iter(post.values())).shape[:2]
    now = datetime.datetime.now(datetime.UTC).isoformat()
    groups = {}
    for layout in recipe.template:
        name, attrs = layout.name, dict(layout.attrs)
        if "created_at" in attrs:
            attrs["created_at"] = now
        if name == "posterior":
            attrs["sampling_time"] = float(seconds)
            if settings:
                attrs["tuning_steps"] = json.loads(settings)["settings"].get("num_tune", attrs.get("tuning_steps"))
            groups[name] = _shift(_group(layout, post, dims, n_chains, n_draws, attrs), recipe.shifts)
        elif name == "sample_stats":
            if settings:
                attrs["inference_library_settings"] = settings
            groups[name] = _group(layout, post_stats, dims, n_chains, n_draws, attrs)
        else:
            groups[name] = _data_group(layout)
    if "n_steps" in tune_stats:
        groups["warmup_sample_stats"] = xr.Dataset({"n_steps": (("chain", "draw"), tune_stats["n_steps"])})
    return xr.DataTree.from_dict(groups)


def differences(expected, got) -> list[str]:
    """Where ``got`` (a DataTree) differs from ``expected`` in any group's variables, dims,
    dtypes, values or coordinates (attributes aside); [] when they are the same bit for bit."""
    out = []
    for name, node in expected.children.items():
        if name.startswith("warmup_"):
            continue
        if name not in got.children:
            out.append(f"no group {name}")
            continue
        a, b = node.to_dataset(), got[name].to_dataset()
        if list(a.data_vars) != list(b.data_vars):
            out.append(f"{name}: variables {list(a.data_vars)} != {list(b.data_vars)}")
            continue
        for v in list(a.data_vars) + list(a.coords):
            if v not in b.variables:
                out.append(f"{name}/{v}: missing")
            elif not _same(a[v], b[v]):
                out.append(f"{name}/{v}: differs")
    return out


def _same(a, b) -> bool:
    if a.dims != b.dims or a.dtype != b.dtype or a.shape != b.shape:
        return False
    x, y = a.values, b.values
    if x.dtype.kind == "O":
        return [repr(v) for v in x.ravel()] == [repr(v) for v in y.ravel()]
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))


# ----------------------------------------------------------------------------- a fit of a reused model


def fit(recipe: Recipe, f, *, mass_matrix: str, on_progress=None):
    """Sample the recipe's model with the spec's ``[fit]``: the posterior as a fit through Bambi
    gives it, with the work counted. :class:`Unusable` when the recipe cannot sample here."""
    start = time.perf_counter()
    cores = nuts.cores(f.chains)
    callback = nuts.forward_progress(on_progress) if on_progress is not None else None
    # as a fit through Bambi: library output to stderr, library warnings off, one BLAS thread each
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), nuts.one_thread_each():
        warnings.simplefilter("ignore")
        nutpie, compiled = compiled_model(recipe)
        raw, sampler, seconds = nuts.run(nutpie, compiled, nuts.sample_kwargs(f, cores=cores, mass_matrix=mass_matrix,
                                                                             callback=callback))
        dt = assemble(recipe, raw, nuts.settings_json(sampler), seconds)
    return nuts.with_work_counted(dt, seconds=time.perf_counter() - start, cores=cores, compile_cache="loaded",
                                  model_reuse="reused")


# ----------------------------------------------------------------------------- the store


def template_of(dt) -> tuple[Layout, ...]:
    """Bambi's result as layouts: every group's variables, dims, coordinates and attributes, and
    the values of the data groups (those without draws)."""
    out = []
    for name, node in dt.children.items():
        if name.startswith("warmup_"):
            continue
        ds = node.to_dataset()
        drawn = "draw" in ds.dims
        out.append(Layout(name=name, attrs=dict(ds.attrs), dims={k: tuple(v.dims) for k, v in ds.data_vars.items()},
                          coords={k: (tuple(c.dims), c.values) for k, c in ds.coords.items()},
                          values={} if drawn else {k: v.values for k, v in ds.data_vars.items()}))
    return tuple(out)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class RecipeStore:
    """Recipes on disk, one folder per model key: written whole in one rename, checked by
    checksum when read."""

    root: Path

    def entry(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> Recipe | None:
        """The recipe of ``key``, or None (absent, another revision, damaged)."""
        d = self.entry(key)
        try:
            meta = json.loads((d / "meta.json").read_text())
            if meta.get("key") != key or meta.get("revision") != REVISION:
                return None
            if any(_sha256(d / f) != meta["sha256"].get(f) for f in FILES):
                return None
            return _read(d)
        except Exception:  # noqa: BLE001 - absent or unreadable: the fit goes through Bambi
            return None

    def keep(self, key: str, recipe: Recipe, proof) -> str:
        """Write ``recipe``, read it back, and keep it only if ``proof(read_back)`` finds no
        difference (a list of them); the note says which."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = new_dir(self.root, ".tmp-")
        try:
            _write(tmp, recipe)
            wrong = proof(_read(tmp))
            if wrong:
                shutil.rmtree(tmp, ignore_errors=True)
                return "not recorded: " + "; ".join(wrong)[:300]
            meta = {"key": key, "revision": REVISION, "sha256": {f: _sha256(tmp / f) for f in FILES}}
            (tmp / "meta.json").write_text(json.dumps(meta))
            final = self.entry(key)
            try:
                rename_new(tmp, final)
            except FileExistsError:  # another process's recipe, or a damaged one: exchanged, then removed
                exchange(tmp, final)
                remove_tree(tmp)
            return "recorded"
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _plain(values) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]


def _json(value):
    """Attributes as JSON (numpy scalars and arrays as Python values)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _coord_doc(dims, values: np.ndarray) -> dict:
    if values.dtype.kind not in "OUSbiuf":
        raise TypeError(f"coordinates of dtype {values.dtype} are not kept")
    return {"dims": list(dims), "dtype": "object" if values.dtype.kind in "OUS" else values.dtype.str,
            "values": [str(v) for v in values.ravel()] if values.dtype.kind in "OUS" else values.ravel().tolist(),
            "shape": list(values.shape)}


def _coord(doc: dict):
    dtype = object if doc["dtype"] == "object" else np.dtype(doc["dtype"])
    values = np.empty(len(doc["values"]), dtype=object) if dtype is object else None
    if values is not None:
        values[:] = doc["values"]
    else:
        values = np.asarray(doc["values"], dtype=dtype)
    return tuple(doc["dims"]), values.reshape(doc["shape"])


def _write(d: Path, r: Recipe) -> None:
    arrays = {"base": r.base, **{f"xmean{i}": s.xmean for i, s in enumerate(r.shifts)}}
    groups = []
    for g in r.template:
        for k, v in g.values.items():
            if v.dtype.kind == "O":
                raise TypeError(f"{g.name}/{k} holds Python objects")
            arrays[f"{g.name}/{k}"] = v
        groups.append({"name": g.name, "attrs": g.attrs, "dims": {k: list(v) for k, v in g.dims.items()},
                       "coords": {k: _coord_doc(*v) for k, v in g.coords.items()}, "values": list(g.values)})
    doc = {"callbacks": list(r.callbacks), "folder": r.folder, "n_dim": r.n_dim, "n_expanded": r.n_expanded, "names": list(r.names),
           "starts": list(r.starts), "stops": list(r.stops), "shapes": [list(s) for s in r.shapes],
           "dims": {k: list(v) for k, v in r.dims.items()}, "coords": {k: _plain(v) for k, v in r.coords.items()},
           "reparameterized": list(r.reparameterized), "jitter": list(r.jitter),
           "shifts": [{"name": s.name, "terms": list(s.terms), "response_dims": list(s.response_dims),
                       "response_levels": s.response_levels} for s in r.shifts], "groups": groups}
    (d / "recipe.json").write_text(json.dumps(doc, default=_json))
    np.savez(d / "arrays.npz", **arrays)


def _read(d: Path) -> Recipe:
    doc = json.loads((d / "recipe.json").read_text())
    with np.load(d / "arrays.npz", allow_pickle=False) as arrays:
        base = arrays["base"]
        xmeans = [arrays[f"xmean{i}"] for i in range(len(doc["shifts"]))]
        template = tuple(Layout(name=g["name"], attrs=g["attrs"], dims={k: tuple(v) for k, v in g["dims"].items()},
                                coords={k: _coord(c) for k, c in g["coords"].items()},
                                values={k: arrays[f"{g['name']}/{k}"] for k in g["values"]})
                         for g in doc["groups"])
    shifts = tuple(Shift(name=s["name"], terms=tuple(s["terms"]), xmean=x, response_dims=tuple(s["response_dims"]),
                         response_levels=int(s["response_levels"])) for s, x in zip(doc["shifts"], xmeans))
    return Recipe(callbacks=tuple(doc["callbacks"]), folder=doc["folder"], n_dim=int(doc["n_dim"]), n_expanded=int(doc["n_expanded"]),
                  names=tuple(doc["names"]), starts=tuple(doc["starts"]), stops=tuple(doc["stops"]),
                  shapes=tuple(tuple(s) for s in doc["shapes"]), dims=doc["dims"], coords=doc["coords"],
                  reparameterized=tuple(doc["reparameterized"]), jitter=tuple(doc["jitter"]), base=base,
                  shifts=shifts, template=template)
