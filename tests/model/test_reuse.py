"""A fitted model reused (mrp_formula/model/reuse.py): the first fit of a model writes its recipe
and proves it on its own draws; the next fit of the same model samples from it without Bambi and
PyMC and draws the same bits as a fit through Bambi, for any seed; anything missing sends the fit
through Bambi again."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mrp_formula import steps
from mrp_formula.model import nuts, reuse
from mrp_formula.model.cache import fit_key, model_key
from mrp_formula.model.plan import versions

ROOT = Path(__file__).resolve().parents[2]
GAUSSIAN = """
name = "centred"
[data]
source = "rows.csv"
[model]
formula = "y ~ x + (1 | g)"
family = "gaussian"
[fit]
draws = 80
tune = 80
chains = 2
seed = 4
[population.margins]
g = { a = 0.25, b = 0.25, c = 0.25, d = 0.25 }
x = { "0" = 0.5, "1" = 0.5 }
[estimands.mean]
by = ["g"]
"""


def _gaussian(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    g = rng.choice(list("abcd"), 300)
    x = rng.integers(0, 2, 300)
    y = 2.0 + 0.7 * x + pd.Series(g).map({"a": -0.3, "b": 0.0, "c": 0.2, "d": 0.4}).to_numpy() + rng.normal(0, 1, 300)
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "centred.toml").write_text(textwrap.dedent(GAUSSIAN).lstrip())
    return tmp_path / "centred.toml"


def _fit(plan, root: Path):
    return steps.posterior(plan, [root], refit=True).fit.posterior


def _assert_same(a, b) -> None:
    assert list(a["posterior"].data_vars) == list(b["posterior"].data_vars)
    for name in a["posterior"].data_vars:
        assert a["posterior"][name].dims == b["posterior"][name].dims
        np.testing.assert_array_equal(a["posterior"][name].values, b["posterior"][name].values)
    assert list(a["sample_stats"].data_vars) == list(b["sample_stats"].data_vars)
    for name in ("diverging", "n_steps", "step_size", "energy", "logp"):
        np.testing.assert_array_equal(a["sample_stats"][name].values, b["sample_stats"][name].values)
    for name in ("mrp_gradients_tuning", "mrp_gradients_draws"):
        assert a["sample_stats"].attrs[name] == b["sample_stats"].attrs[name]


def _reuse(dt) -> str:
    return dt["sample_stats"].attrs["mrp_model_reuse"]


@pytest.mark.slow  # samples five times
@pytest.mark.parametrize("which", ["ab", "centred"])
def test_a_refit_reuses_the_model_and_draws_the_bits_of_a_fit_through_bambi(ab_dir, tmp_path, which):
    path = ab_dir / "ab.toml" if which == "ab" else _gaussian(tmp_path)
    plan = steps.plan(path, ("fit.draws=80", "fit.tune=80"))
    first, second = _fit(plan, tmp_path / "c1"), _fit(plan, tmp_path / "c1")
    assert (_reuse(first), _reuse(second)) == ("recorded", "reused")
    _assert_same(first, second)
    if which == "centred":  # Bambi shifted the intercept back: so did the recipe
        assert any(s.name == "Intercept" for s in _store(tmp_path / "c1", plan).shifts)
    # another seed and more draws: the same model, the same recipe, the bits of a fit through Bambi
    other = steps.plan(path, ("fit.draws=120", "fit.tune=90", "fit.seed=123"))
    assert model_key(other, versions()) == model_key(plan, versions())
    assert fit_key(other, versions()) != fit_key(plan, versions())
    reused, through_bambi = _fit(other, tmp_path / "c1"), _fit(other, tmp_path / "c2")
    assert (_reuse(reused), _reuse(through_bambi)) == ("reused", "recorded")
    _assert_same(reused, through_bambi)
    assert reused["posterior"].sizes["draw"] == 120


def _store(root: Path, plan) -> reuse.Recipe:
    recipe = reuse.RecipeStore(root / reuse.MODELS_DIR).load(model_key(plan, versions()))
    assert recipe is not None
    return recipe


@pytest.mark.slow  # samples twice, in fresh processes
def test_a_reused_fit_imports_neither_bambi_nor_pymc_nor_arviz(ab_dir):
    code = textwrap.dedent(f"""
        import json, sys
        import mrp_formula
        res = mrp_formula.run({str(ab_dir / 'ab.toml')!r}, out={str(ab_dir / 'run')!r}, refit=True,
                              overrides=("fit.draws=60", "fit.tune=60", "report.plots=false"))
        print(json.dumps({{"reuse": res.manifest["efficiency"]["model_reuse"],
                          "imported": sorted(m for m in ("bambi", "pymc", "arviz") if m in sys.modules),
                          "draws": res.draws["value"].tolist()}}))
        """)
    out = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT),
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                                   "MPLBACKEND": "Agg"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert out[0]["reuse"] == "recorded" and "bambi" in out[0]["imported"]
    assert {k: out[1][k] for k in ("reuse", "imported")} == {"reuse": "reused", "imported": []}
    assert out[1]["draws"] == out[0]["draws"]  # the callbacks loaded from the cache alone (compiled._load_cached): the same bits


@pytest.mark.slow  # samples three times
def test_without_its_compiled_callbacks_the_fit_goes_through_bambi_again(ab_dir, tmp_path):
    plan = steps.plan(ab_dir / "ab.toml", ("fit.draws=60", "fit.tune=60"))
    first = _fit(plan, tmp_path)
    recipe = _store(tmp_path, plan)
    for key in recipe.callbacks:
        for f in Path(recipe.folder).glob(f"*{key}*"):
            f.unlink()
    again = _fit(plan, tmp_path)
    assert _reuse(again) == "recorded"  # through Bambi (which compiled them again), and recorded anew
    assert again["sample_stats"].attrs["mrp_compile_cache"] == "compiled"
    _assert_same(first, again)
    assert _reuse(_fit(plan, tmp_path)) == "reused"


@pytest.mark.slow  # samples twice
def test_a_recipe_that_does_not_reproduce_the_fit_is_not_kept(ab_dir, tmp_path, monkeypatch):
    plan = steps.plan(ab_dir / "ab.toml", ("fit.draws=60", "fit.tune=60"))
    real = reuse.assemble

    def off_by_a_bit(*args, **kwargs):
        dt = real(*args, **kwargs)
        ds = dt["posterior"].to_dataset()
        ds["Intercept"] = ds["Intercept"] + 1e-15
        dt["posterior"] = ds
        return dt

    monkeypatch.setattr(reuse, "assemble", off_by_a_bit)
    first = _fit(plan, tmp_path)
    assert _reuse(first) == "not recorded: posterior/Intercept: differs"
    assert reuse.RecipeStore(tmp_path / reuse.MODELS_DIR).load(model_key(plan, versions())) is None
    assert _reuse(_fit(plan, tmp_path)).startswith("not recorded")  # through Bambi again


def _tiny_recipe(**over) -> reuse.Recipe:
    import xarray as xr

    dt = xr.DataTree.from_dict({
        "posterior": xr.Dataset({"b": (("chain", "draw", "g"), np.zeros((1, 1, 2)))},
                                coords={"chain": [0], "draw": [0], "g": np.array(["x", "y"], dtype=object)},
                                attrs={"created_at": "then", "n": np.int64(3)}),
        "observed_data": xr.Dataset({"y": (("__obs__",), np.array([1, 0, 1]))}, coords={"__obs__": [0, 1, 2]})})
    fields = dict(callbacks=("k1", "k2"), folder="/nowhere", n_dim=3, n_expanded=5, names=("a", "b_offset", "b"),
                  starts=(0, 1, 3), stops=(1, 3, 5), shapes=((), (2,), (2,)), dims={"b": ["g"]},
                  coords={"g": ["x", "y"], "__obs__": [0, 1, 2]}, reparameterized=("a",), jitter=(1, 0),
                  base=np.array([0.5, 0.0, 0.0]), shifts=(reuse.Shift("a", ("b",), np.array([0.25])),),
                  template=reuse.template_of(dt))
    return reuse.Recipe(**(fields | over))


def test_a_recipe_is_read_back_as_it_was_written(tmp_path):
    recipe = _tiny_recipe()
    store = reuse.RecipeStore(tmp_path)
    seen = []
    assert store.keep("k", recipe, lambda r: seen.append(r) or []) == "recorded"
    back = store.load("k")
    assert back is not None and seen
    for r in (back, seen[0]):
        assert (r.callbacks, r.names, r.shapes, r.jitter, r.dims) == (recipe.callbacks, recipe.names, recipe.shapes,
                                                                       recipe.jitter, recipe.dims)
        np.testing.assert_array_equal(r.base, recipe.base)
        post = next(g for g in r.template if g.name == "posterior")
        assert post.dims == {"b": ("chain", "draw", "g")} and post.coords["g"][1].dtype == object
        assert list(post.coords["g"][1]) == ["x", "y"]
        data = next(g for g in r.template if g.name == "observed_data")
        np.testing.assert_array_equal(data.values["y"], [1, 0, 1])


def test_a_damaged_or_refused_recipe_is_never_used(tmp_path):
    store = reuse.RecipeStore(tmp_path)
    assert store.keep("k", _tiny_recipe(), lambda r: ["posterior/b: differs"]) == "not recorded: posterior/b: differs"
    assert store.load("k") is None and not list(tmp_path.iterdir())
    assert store.keep("k", _tiny_recipe(), lambda r: []) == "recorded"
    (tmp_path / "k" / "recipe.json").write_text((tmp_path / "k" / "recipe.json").read_text().replace("k1", "kX"))
    assert store.load("k") is None  # the checksum does not match
    assert store.load("absent") is None


def test_the_initial_point_is_the_support_point_plus_jitter_from_the_chains_seed():
    recipe = _tiny_recipe()
    point = reuse.initial_point(recipe)(42)
    children = np.random.SeedSequence(42).spawn(2)
    a = 0.5 + np.random.Generator(np.random.PCG64(children[1])).uniform(-1, 1, size=())
    b = np.random.Generator(np.random.PCG64(children[0])).uniform(-1, 1, size=(2,))
    np.testing.assert_array_equal(point, np.concatenate([[a], b]))
    assert reuse.find_jitter(recipe.base, (0, 1), (1, 3), ((), (2,)), reuse.initial_point(recipe), 7) == (1, 0)


def test_the_seed_nutpie_takes_is_pymcs_for_the_first_chain():
    from pymc.util import get_random_generator

    for seed, chains in ((1, 4), (2004, 2), (0, 1)):
        assert nuts.chain_seed(seed, chains) == int(get_random_generator(seed).spawn(chains)[0].integers(2**30))


def test_nutpie_is_imported_without_arviz():
    code = ("import sys; from mrp_formula.model import nuts; nuts.import_nutpie(); "
            "print('arviz' in sys.modules, 'nutpie' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT),
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert out.stdout.split() == ["False", "True"], out.stderr[-1000:]


def test_skipped_statistics_follow_nutpies_settings():
    settings = json.dumps({"settings": {"store_gradient": True, "adapt_options": {"mass_matrix_options": {}}}})
    skipped = reuse.skipped(settings)
    assert "gradient" not in skipped and "mass_matrix_inv" in skipped and "unconstrained_draw" in skipped


def test_an_interrupt_cancels_the_sampler_and_is_raised_never_a_partial_fit():
    from mrp_formula.model import nuts

    calls = []

    class Sampler:
        def wait(self):
            raise KeyboardInterrupt

        def abort(self):  # what nutpie.sample returns on an interrupt: the draws so far
            calls.append("abort")
            return "partial"

        def cancel(self):
            calls.append("cancel")

    class Nutpie:
        @staticmethod
        def sample(compiled, **kwargs):
            return Sampler()

    with pytest.raises(KeyboardInterrupt):
        nuts.run(Nutpie, None, {})
    assert calls == ["cancel"]


def test_a_fit_with_fewer_draws_than_asked_is_an_interrupt():
    import numpy as np
    import xarray as xr

    from mrp_formula.steps import _check_complete

    class F:
        chains, draws = 2, 100

    def tree(chains, draws):
        post = xr.Dataset({"a": (("chain", "draw"), np.zeros((chains, draws)))})
        return xr.DataTree.from_dict({"posterior": post})

    _check_complete(tree(2, 100), F)
    for short in ((2, 40), (1, 100), (2, 0)):
        with pytest.raises(KeyboardInterrupt, match="asked for"):
            _check_complete(tree(*short), F)
