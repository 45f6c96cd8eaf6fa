"""One manifest builder for every command: the head and tail every manifest.json shares, and
`mrp run`'s keys as docs/outputs.md lists them. No sampling: the plan of a spec is enough."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mrp_formula
from mrp_formula.output.manifest import input_files, manifest, run_sections, spec_entry

ROOT = Path(__file__).resolve().parents[2]
RUN_ONLY = {"diagnostics", "fit_cache", "efficiency", "coverage"}  # sections `mrp run` adds from its checks
FOLDER_KEYS = {"written_by", "files"}  # added when the folder is committed (output/files.py)
OPTIONAL = {"calibrate"}  # only when the spec asks for it ([calibrate])


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    from generate import simulate

    d = tmp_path_factory.mktemp("m")
    simulate(n=400, seed=3).to_csv(d / "clicks.csv", index=False)
    spec = (ROOT / "specs" / "ab_click.toml").read_text()
    spec = re.sub(r'source = "[^"]*clicks[^"]*"', 'source = "clicks.csv"', spec)
    (d / "ab.toml").write_text(spec)
    return mrp_formula.check(d / "ab.toml", overrides=["fit.seed=3"])


def documented_keys() -> set[str]:
    text = (ROOT / "docs" / "outputs.md").read_text()
    table = text.split("## `manifest.json`", 1)[1].split("\n## ", 1)[0]
    return {k for row in re.findall(r"^\| (.+?) \|", table, re.M) for k in re.findall(r"`([a-z_]+)`", row)}


def test_run_manifest_has_the_documented_keys(plan):
    m = manifest(plan.loaded, {**run_sections(plan.loaded, plan.tables, plan.fit_plan),
                               **{k: {} for k in RUN_ONLY}},
                 overrides=["fit.seed=3"], notes=["a"], warnings=[], timings={"fit": 1.23456})
    assert set(m) | FOLDER_KEYS | OPTIONAL == documented_keys()
    assert list(m)[:3] == ["mrp_formula", "name", "spec"]
    assert list(m)[-4:] == ["versions", "notes", "warnings", "timings_seconds"]
    assert m["spec"] == spec_entry(plan.loaded, ["fit.seed=3"]) and m["spec"]["overrides"] == ["fit.seed=3"]
    assert m["timings_seconds"] == {"fit": 1.23456}
    assert m["seed"] == plan.loaded.spec.fit.seed == 3
    assert m["sampler"]["mass_matrix"] == plan.fit_plan.mass_matrix
    assert m["model"]["cells_fitted"] == plan.fit_plan.cells and m["tables"] == plan.tables.stats


def test_inputs_name_every_file_read_with_its_hash(plan):
    import hashlib

    files = input_files(plan.loaded)
    assert set(files) == {"data"}  # margins, no population file; no join
    data = Path(files["data"]["path"])
    assert files["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


def test_inputs_name_each_adjacency_table_by_its_variable(plan, tmp_path):
    """An icar or bym2 structure's adjacency table is read by the run: its hash is in the inputs
    (under adjacency.<variable>), so a rerun of `mrp batch` sees it change."""
    from mrp_formula.spec.tree import load_spec

    (tmp_path / "adj.csv").write_text("a,b\nfemale,male\n")
    spec = tmp_path / "spatial.toml"
    spec.write_text(f'extends = "{plan.loaded.path}"\nname = "spatial"\n'
                    '[model.structure]\ngender = { kind = "icar", adjacency = "adj.csv" }\n')
    files = input_files(load_spec(spec))
    assert set(files) == {"data", "adjacency.gender"}
    assert files["adjacency.gender"]["path"] == str((tmp_path / "adj.csv").resolve())


def test_a_command_over_several_specs_records_the_overrides_at_the_top():
    m = manifest(None, {"specs": [], "loo": {}}, overrides=["fit.draws=10"], notes=(), warnings=["w"])
    assert "name" not in m and "spec" not in m and m["overrides"] == ["fit.draws=10"]
    assert list(m) == ["mrp_formula", "overrides", "specs", "loo", "versions", "notes", "warnings"]


def test_the_spec_entry_holds_the_spec_as_run_and_the_files_it_extends(plan, tmp_path):
    """A spec that extends another: its text is only its own keys, so the manifest keeps the spec as
    the run used it (merged, overrides applied), which the page and `mrp diff` read."""
    entry = plan.loaded
    assert spec_entry(entry)["extends"] == [] and spec_entry(entry)["resolved"]["model"]["family"] == "bernoulli"
    child = entry.path.parent / "child.toml"
    child.write_text('extends = "ab.toml"\nname = "child"\n[fit]\ndraws = 50\n')
    loaded = mrp_formula.check(child, overrides=["fit.seed=5"]).loaded
    e = spec_entry(loaded, ["fit.seed=5"])
    assert e["extends"] == [str(entry.path)]
    assert e["resolved"]["fit"]["draws"] == 50 and e["resolved"]["fit"]["seed"] == 5
    assert set(e["resolved"]["estimands"]) == set(entry.spec.estimands) and e["resolved"]["name"] == "child"
