"""The compile cache (mrp_formula/model/compiled.py): nutpie's compiled functions are stored on
the first fit of a model and loaded on the next, and the draws are those of nutpie's own
compile, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from mrp_formula import steps
from mrp_formula.model.compiled import SOURCE_KEY, CompileRecord, cached_wrappers, wrapper_key


def test_keys_name_the_graph_the_dimensions_and_the_wrapper_source():
    a = wrapper_key("logp", "g1", 7)
    assert SOURCE_KEY in a and "g1" in a and a.endswith("-7")
    assert len({a, wrapper_key("logp", "g2", 7), wrapper_key("logp", "g1", 8), wrapper_key("expand", "g1", 7)}) == 4


def _pymc_model(ab_dir):
    bm = steps.build(steps.plan(ab_dir / "ab.toml"))
    bm.build()
    return bm.backend.model


def _draws(compiled, seed=3):
    import nutpie

    tr = nutpie.sample(compiled, draws=50, tune=50, chains=2, cores=1, seed=seed, progress_bar=False)
    return np.asarray(tr.posterior["Intercept"].values)


@pytest.mark.slow  # compiles and samples
def test_second_compile_loads_and_draws_equal_nutpies_own(ab_dir):
    import nutpie
    import pytensor

    model = _pymc_model(ab_dir)
    with pytensor.config.change_flags(numba__fastmath=False):
        first = CompileRecord()
        with cached_wrappers(first):
            a = nutpie.compile_pymc_model(model)
        second = CompileRecord()
        with cached_wrappers(second):
            b = nutpie.compile_pymc_model(model)
        own = nutpie.compile_pymc_model(model)  # nutpie's closures, no cache
    assert first.status in ("compiled", "loaded") and second.status == "loaded", (first, second)
    assert first.keys == second.keys and len(first.keys) == 2
    np.testing.assert_array_equal(_draws(a), _draws(own))
    np.testing.assert_array_equal(_draws(b), _draws(own))


@pytest.mark.slow  # compiles
def test_numba_options_fall_back_to_nutpies_compile(ab_dir):
    import nutpie

    record = CompileRecord()
    with cached_wrappers(record):
        nutpie.compile_pymc_model(_pymc_model(ab_dir), error_model="numpy")
    assert record.status == "not cached: numba options given"



_FRESH = """
import sys
import numba, numpy as np
numba.config.CACHE_DIR = sys.argv[1]
sys.path.insert(0, sys.argv[1])
from mrp_cached import finite_sum, finite_mean
from mrp_formula.model.compiled import _load_cached
sig = "float64(float64, float64)"
loaded = _load_cached(finite_sum, sig)
if sys.argv[2] == "first":
    assert loaded is None  # not cached yet: nothing compiled
else:
    assert loaded.cache_hits == 1 and loaded.ctypes(1.0, 2.0) == 3.0
# numba compiles as usual afterwards, with every implementation (np.all, np.isfinite)
assert numba.cfunc(sig, cache=True)(finite_sum).ctypes(2.0, 2.0) == 4.0
assert numba.cfunc(sig)(finite_mean).ctypes(1.0, 3.0) == 2.0
print("ok")
"""


def test_cached_callbacks_are_loaded_never_compiled_and_numba_compiles_fully_after(tmp_path):
    import subprocess
    import sys

    (tmp_path / "mrp_cached.py").write_text(
        "import numpy as np\n\n"
        "def finite_sum(a, b):\n    x = np.array([a, b])\n    return x.sum() if np.all(np.isfinite(x)) else 0.0\n\n"
        "def finite_mean(a, b):\n    x = np.array([a, b])\n    return x.mean() if np.all(np.isfinite(x)) else 0.0\n")
    for which in ("first", "second"):  # fresh processes: numba's target is set up once a process
        out = subprocess.run([sys.executable, "-c", _FRESH, str(tmp_path), which], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == "ok"
