"""posterior.nc of a run is the fit cache's file, copied, when the cache holds the run's posterior
unchanged (the same bytes ``to_netcdf`` writes); otherwise it is written from the posterior."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from mrp_formula.commands.run import _layout, _write_posterior
from mrp_formula.output.files import sha256_file


def _posterior(seed=0):
    rng = np.random.default_rng(seed)
    ds = xr.Dataset({"Intercept": (("chain", "draw"), rng.normal(size=(2, 50)))},
                    coords={"chain": [0, 1], "draw": np.arange(50)})
    return xr.DataTree.from_dict({"posterior": ds})


def _cache(tmp_path, posterior):
    entry = tmp_path / "cache" / "key"
    entry.mkdir(parents=True)
    posterior.to_netcdf(entry / "posterior.nc")
    (entry / "meta.json").write_text(json.dumps({"key": "key", "sha256": sha256_file(entry / "posterior.nc")}))
    return entry / "posterior.nc"


def test_the_cache_file_is_the_file_to_netcdf_would_write(tmp_path):
    post = _posterior()
    cached = _cache(tmp_path, post)
    _write_posterior(post, tmp_path / "copied.nc", cached, _layout(post))
    _write_posterior(post, tmp_path / "written.nc", None, _layout(post))
    assert (tmp_path / "copied.nc").read_bytes() == (tmp_path / "written.nc").read_bytes() == cached.read_bytes()
    assert (tmp_path / "copied.nc").stat().st_ino != cached.stat().st_ino  # a copy, not the cache's file


def test_a_changed_posterior_or_a_corrupt_cache_file_is_written_afresh(tmp_path):
    post = _posterior()
    cached = _cache(tmp_path, post)
    layout = _layout(post)
    post["posterior/extra"] = xr.DataArray(np.zeros((2, 50)), dims=("chain", "draw"))  # the run added to it
    _write_posterior(post, tmp_path / "a.nc", cached, layout)
    with xr.open_datatree(tmp_path / "a.nc", engine="h5netcdf") as back:
        assert "extra" in back["posterior"].data_vars
    other = _posterior(seed=1)
    raw = bytearray(cached.read_bytes())
    raw[-1] ^= 0xFF
    cached.write_bytes(bytes(raw))  # not what the cache recorded
    _write_posterior(other, tmp_path / "b.nc", cached, _layout(other))
    with xr.open_datatree(tmp_path / "b.nc", engine="h5netcdf") as back:
        np.testing.assert_array_equal(back["posterior"]["Intercept"].values, other["posterior"]["Intercept"].values)
