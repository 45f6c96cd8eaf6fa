"""Editor support: the JSON Schema, the key reference, `mrp schema` and `mrp init`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import tomli as tomllib  # TOML 1.1, as spec.py reads it (the primer uses a multi-line inline table)
from typer.testing import CliRunner

from mrp_formula.cli import app
from mrp_formula.spec.schema import SCHEMA_FILE, json_schema, reference_markdown
from mrp_formula.spec.tree import Spec, _inner_model, load_spec

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR = ROOT / "docs" / "spec-language.md"
SHIPPED = sorted(ROOT.glob("specs/*.toml")) + sorted(ROOT.glob("examples/**/*.toml"))
runner = CliRunner()


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator, doc) -> list[str]:
    return [e.message for e in validator.iter_errors(doc)]


def _grammar_examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", GRAMMAR.read_text(), re.S)


def test_packaged_schema_is_current():
    stale = "stale: run `.venv/bin/mrp schema -o mrp_formula/mrp-spec.schema.json`"
    assert SCHEMA_FILE.exists(), stale
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), stale


def test_docs_reference_is_current():
    stale = "stale: run `.venv/bin/python -m mrp_formula.spec.schema --markdown docs/spec.md`"
    path = ROOT / "docs" / "spec.md"
    assert path.exists() and path.read_text() == reference_markdown(), stale


def test_reference_lists_every_key():
    text = (ROOT / "docs" / "spec.md").read_text()
    for section in ("[data]", "[[join]]", "[model]", "[fit]", "[population]", "[estimands.NAME]", "[report]"):
        assert f"## `{section}`" in text
    for name, field in Spec.model_fields.items():
        model = _inner_model(field.annotation)
        if model is None:
            assert f"| `{field.alias or name}` |" in text, f"top-level `{name}` missing from docs/spec.md"
            continue
        assert re.search(rf"^## `\[+{name}[].]", text, re.M), f"section `{name}` missing from docs/spec.md"
        for key, sub in model.model_fields.items():
            assert f"| `{sub.alias or key}` |" in text, f"`{name}.{key}` missing from docs/spec.md"


def test_schema_shape():
    schema = json_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["title"] and schema["description"]
    assert "null" not in json.dumps(schema)
    model = schema["$defs"]["ModelSpec"]["properties"]
    assert model["family"]["enum"][0] == "bernoulli"


def test_grammar_examples_validate(validator):
    examples = _grammar_examples()
    assert len(examples) >= 4
    for text in examples:
        assert _errors(validator, tomllib.loads(text)) == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_specs_validate(validator, path):
    assert _errors(validator, tomllib.loads(path.read_text())) == []


def test_rejects_unknown_key_and_bad_family(validator):
    doc = tomllib.loads(_grammar_examples()[0])
    doc["data"]["filtr"] = "x"
    doc["model"]["family"] = "bernouli"
    errors = " | ".join(_errors(validator, doc))
    assert "'filtr' was unexpected" in errors and "'bernouli' is not one of" in errors


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.pop("name"), "'name' is a required property"),
    (lambda d: d["fit"].update(draws=0), "less than or equal to the minimum of 0"),
    (lambda d: d["model"]["priors"].update(x={"mu": 0}), "is not valid under any of the given schemas"),
    (lambda d: d["model"]["levels"].update(x=[{"a": 1}]), "is not of type"),
    (lambda d: d["population"].update(source="cells.csv"), "is valid under each of"),
    (lambda d: d["estimands"]["click_rate"].update(rope=[0, 1]), "'contrast' is a dependency of 'rope'"),
])
def test_rejects(validator, change, expected):
    doc = tomllib.loads(_grammar_examples()[0])
    change(doc)
    assert any(expected in e for e in _errors(validator, doc)), _errors(validator, doc)


def test_levels_and_priors_as_written(validator):
    doc = tomllib.loads(_grammar_examples()[0])
    doc["model"]["levels"]["age"] = [1, 2.5, True, "x"]
    doc["model"]["priors"]["age"] = {"dist": "Normal", "mu": 0, "sigma": {"dist": "HalfNormal", "sigma": 1}}
    assert _errors(validator, doc) == []


def test_extends_may_leave_required_keys_to_the_base(validator):
    assert _errors(validator, {"extends": "base.toml", "fit": {"draws": 200}}) == []
    assert _errors(validator, {"extends": "base.toml", "fitt": {}}) != []


def test_schema_command_prints_json():
    r = runner.invoke(app, ["schema"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == json_schema()


def test_schema_command_writes_file(tmp_path):
    out = tmp_path / "s.json"
    r = runner.invoke(app, ["schema", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and json.loads(out.read_text()) == json_schema()
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_init_writes_a_valid_spec(tmp_path, validator):
    path = tmp_path / "sub" / "ab.mrp.toml"
    r = runner.invoke(app, ["init", str(path)])
    assert r.exit_code == 0, r.output
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("#:schema ")
    assert (path.parent / first.removeprefix("#:schema ")).resolve() == SCHEMA_FILE.resolve()
    assert load_spec(path).spec.name == "ab"
    assert _errors(validator, tomllib.loads(text)) == []


def test_init_refuses_to_overwrite(tmp_path):
    path = tmp_path / "ab.toml"
    path.write_text("keep me")
    r = runner.invoke(app, ["init", str(path)])
    assert r.exit_code == 2
    assert str(path) in r.stderr and "--force" in r.stderr
    assert path.read_text() == "keep me"
    r = runner.invoke(app, ["init", str(path), "--force"])
    assert r.exit_code == 0, r.output
    assert path.read_text().startswith("#:schema")
