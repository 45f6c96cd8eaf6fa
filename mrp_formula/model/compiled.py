"""The compile cache of a fit: nutpie's C callbacks kept on disk, keyed by the model's structure.

nutpie samples through two C functions (the log density with its gradient, and the expansion of
a draw into the model's variables) that it builds with ``numba.cfunc`` around PyTensor's compiled
graph. PyTensor caches its graph's machine code on disk, keyed by the graph, but nutpie's two
wrappers are closures that numba cannot key, so every process compiled them again: about 5 s of
a 7 s compile on the primer, paid by every run and every refit.

Here the wrappers are written as source with no closure, and each is registered under a key made
of PyTensor's own key for the graph it calls (the graph's operations, shapes and constant data,
and the fastmath flag), the dimensions and this module's wrapper source. PyTensor's numba cache
locator then finds them in PyTensor's compile directory: the same model structure and data load
the compiled wrappers instead of compiling them. The wrappers are nutpie's, line for line, so the
draws are the same bit for bit.

Only :mod:`mrp_formula.model.sampler` uses this, around nutpie's compile. When the model has
shared data (nutpie passes those through a side channel) or PyTensor offers no key for the graph,
or anything here fails, nutpie's own compile runs instead: the cache is a speed-up, never a
different result."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field

LOGP_SRC = '''
def logp_numba(dim, x_, out_, logp_, user_data_):
    if dim != N_DIM:
        return -1
    try:
        x = numba.carray(x_, (N_DIM,))
        out = numba.carray(out_, (N_DIM,))
        logp = numba.carray(logp_, ())
        logp_val, grad = inner(x)
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
'''

EXPAND_SRC = '''
def expand_numba(dim, expanded, x_, out_, user_data_):
    if dim != N_DIM:
        return -1
    if expanded != N_EXPANDED:
        return -1
    try:
        x = numba.carray(x_, (N_DIM,))
        out = numba.carray(out_, (N_EXPANDED,))
        (values,) = inner(x)
        out[...] = values
    except Exception:
        return -2
    return 0
'''

# a change to the wrappers' source is a new key
SOURCE_KEY = hashlib.sha256((LOGP_SRC + EXPAND_SRC).encode()).hexdigest()[:16]


@dataclass
class CompileRecord:
    """What happened to the wrappers of the last compile: 'loaded' (from the cache), 'compiled'
    (and stored), or 'not cached: <why>' (nutpie's own compile ran)."""

    status: str = "not compiled"
    keys: list[str] = field(default_factory=list)
    folder: str = ""  # where numba keeps them (PyTensor's compile directory)


def wrapper_key(kind: str, graph_key: str, *dims: int) -> str:
    """The cache key of one wrapper: what it calls (PyTensor's key of the graph), its dimensions
    and the wrapper source."""
    return f"mrp-nutpie-{kind}-{SOURCE_KEY}-{graph_key}-" + "-".join(str(d) for d in dims)


def _compile_cached(model, pymc_initial_point_fn, record: CompileRecord, original, var_names=None, **kwargs):
    """nutpie's ``_compile_pymc_model_numba`` with cacheable wrappers (see the module's doc)."""
    import numba
    import numpy as np
    from nutpie import compile_pymc as cp
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, NUMBA_CACHE_PATH, compile_numba_function_src

    def fallback(why: str):
        record.status = f"not cached: {why}"
        return original(model, pymc_initial_point_fn, var_names=var_names, **kwargs)

    if kwargs:
        return fallback("numba options given")
    try:
        (n_dim, n_expanded, logp_fn_pt, expand_fn_pt, initial_point_fn, shape_info,
         reparameterized_names) = cp._make_functions(model, mode="NUMBA", compute_grad=True, join_expanded=True,
                                                     pymc_initial_point_fn=pymc_initial_point_fn,
                                                     var_names=var_names)
    except Exception as exc:  # noqa: BLE001 - nutpie's own path reports it
        return fallback(f"{type(exc).__name__}")
    if logp_fn_pt.get_shared() or expand_fn_pt.get_shared():
        return fallback("the model has shared data")
    logp_fn, expand_fn = logp_fn_pt.vm.jit_fn, expand_fn_pt.vm.jit_fn
    logp_key = CACHED_SRC_FUNCTIONS.get(getattr(logp_fn, "py_func", None))
    expand_key = CACHED_SRC_FUNCTIONS.get(getattr(expand_fn, "py_func", None))
    if logp_key is None or expand_key is None:
        return fallback("PyTensor has no cache key for the graph")
    keys = [wrapper_key("logp", logp_key, n_dim), wrapper_key("expand", expand_key, n_dim, n_expanded)]
    try:
        user_data = cp.make_user_data({}, {})
        # a module numba can import when it loads the wrappers back
        env = {"__name__": __name__, "numba": numba, "np": np, "N_DIM": n_dim, "N_EXPANDED": n_expanded}
        logp_py = compile_numba_function_src(LOGP_SRC, "logp_numba", env | {"inner": logp_fn}, cache_key=keys[0])
        expand_py = compile_numba_function_src(EXPAND_SRC, "expand_numba", env | {"inner": expand_fn},
                                               cache_key=keys[1])
        _, logp_sig = cp._make_c_logp_func(n_dim, logp_fn, user_data, [], {})
        _, expand_sig = cp._make_c_expand_func(n_dim, n_expanded, expand_fn, user_data, {}, {})
        logp_c = numba.cfunc(logp_sig, cache=True)(logp_py)
        expand_c = numba.cfunc(expand_sig, cache=True)(expand_py)
        dims, coords = cp._prepare_dims_and_coords(model, shape_info, reparameterized_names)
        compiled = cp.CompiledPyMCModel(
            _n_dim=n_dim, dims=dims, _coords=coords,
            _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
            compiled_logp_func=logp_c, compiled_expand_func=expand_c, initial_point_func=initial_point_fn,
            shared_data={}, shared_var_keys={}, user_data=user_data, n_expanded=n_expanded, shape_info=shape_info,
            logp_func=logp_fn_pt, expand_func=expand_fn_pt, reparameterized_names=reparameterized_names)
    except Exception as exc:  # noqa: BLE001 - e.g. a damaged cache entry: nutpie's own compile
        return fallback(f"{type(exc).__name__}: {exc}"[:200])
    record.status = "loaded" if logp_c.cache_hits and expand_c.cache_hits else "compiled"
    record.keys = keys
    record.folder = str(NUMBA_CACHE_PATH)
    return compiled


@contextlib.contextmanager
def cached_wrappers(record: CompileRecord):
    """While open, nutpie compiles PyMC models with the cached wrappers; ``record`` says what
    happened."""
    from nutpie import compile_pymc as cp

    original = cp._compile_pymc_model_numba

    def compile_numba(model, pymc_initial_point_fn, var_names=None, **kwargs):
        return _compile_cached(model, pymc_initial_point_fn, record, original, var_names=var_names, **kwargs)

    cp._compile_pymc_model_numba = compile_numba
    try:
        yield record
    finally:
        cp._compile_pymc_model_numba = original


# ----------------------------------------------------------------------------- loading the wrappers alone


def load_callbacks(keys, n_dim: int, n_expanded: int):
    """The two wrappers of an earlier compile, loaded from the compile cache under ``keys``
    (:class:`CompileRecord`) as C callbacks; None when either is not there. Nothing is compiled
    and no graph is needed: the PyTensor function they call is inside their machine code (numba
    imports the PyTensor modules it was compiled in, not Bambi or PyMC)."""
    import numba
    import numpy as np
    from nutpie import compile_pymc as cp
    from pytensor.link.numba.cache import compile_numba_function_src

    out = []
    for src, name, key in ((LOGP_SRC, "logp_numba", keys[0]), (EXPAND_SRC, "expand_numba", keys[1])):
        env = {"__name__": __name__, "numba": numba, "np": np, "N_DIM": n_dim, "N_EXPANDED": n_expanded,
               "inner": None}
        py = compile_numba_function_src(src, name, env, cache_key=key)
        sig = (cp._make_c_logp_func(n_dim, None, cp.make_user_data({}, {}), [], {}) if name == "logp_numba" else
               cp._make_c_expand_func(n_dim, n_expanded, None, cp.make_user_data({}, {}), {}, {}))[1]
        try:
            c = _load_cached(py, sig)
        except Exception:  # noqa: BLE001 - an unreadable cache entry: the fit goes through Bambi
            return None
        if c is None:
            return None
        out.append(c)
    return tuple(out)


def _load_cached(py, sig):
    """``numba.cfunc(sig, cache=True)(py)`` when numba's cache holds it, else None: what
    ``CFunc.compile`` does on a cache hit, and never a compile (on a miss, numba would compile the
    wrapper without the PyTensor function it calls)."""
    from numba.core import sigutils
    from numba.core.ccallback import CFunc

    c = CFunc(py, sigutils.normalize_signature(sig), locals={}, options={})
    c.enable_caching()
    with _loading_only():
        loaded = c._cache.load_overload(c._sig, c._targetdescr.target_context)
    if loaded is None:
        return None
    c._cache_hits += 1
    c._library = loaded.library
    c._wrapper_name = loaded.fndesc.llvm_cfunc_wrapper_name
    c._wrapper_address = c._library.get_pointer_to_function(c._wrapper_name)
    return c


@contextlib.contextmanager
def _loading_only():
    """numba refreshes its CPU target before it looks in its cache: it imports every implementation
    module that compiling needs (0.27 s a process on a two-core machine) and that loading machine
    code does not. Inside, the refresh does what loading needs: the runtime (NRT) the code calls,
    and the symbols numba's hashing adds to LLVM's table (the only ones the implementation modules
    add; the others are there once the target exists; a symbol missing at load would stop the
    process, LLVM's JIT does not raise). Nothing may compile inside (:func:`_load_cached` never
    does): it holds numba's compiler lock, so no other thread compiles meanwhile, and whatever
    numba compiles later refreshes the target fully itself (``numba.core.compiler``)."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target
    from numba.core.runtime import rtsys

    context = cpu_target.target_context

    def refresh() -> None:
        import numba.cpython.hashing  # noqa: F401 - adds the hash secrets' symbols

        rtsys.initialize(context)

    with global_compiler_lock:
        context.refresh = refresh  # shadows the method on this instance
        try:
            yield
        finally:
            del context.refresh
