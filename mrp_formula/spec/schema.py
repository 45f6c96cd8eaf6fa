"""Editor support: the JSON Schema of a spec and the key reference, both made from ``spec.Spec``.

``json_schema()`` is what ``mrp schema`` prints and what ``mrp_formula/mrp-spec.schema.json`` holds
(Taplo / Even Better TOML read it through a ``#:schema`` first line); ``reference_markdown()`` is
``docs/spec.md``. Regenerate both after changing ``spec/tree.py``::

    .venv/bin/mrp schema -o mrp_formula/mrp-spec.schema.json
    .venv/bin/python -m mrp_formula.spec.schema --markdown docs/spec.md
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import get_origin

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from mrp_formula.system import write_text_atomic  # noqa: F401 (the CLI's schema/init write through it)
from mrp_formula.spec.priors import DISTRIBUTIONS, reference_markdown as distributions_markdown
from mrp_formula.spec.tree import STRUCTURE_KINDS, Spec, _inner_model, _level, _prior, _structure

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "mrp-spec.schema.json"  # beside the package: specs point editors at it
TITLE = "mrp-formula spec"
DESCRIPTION = ("A multilevel regression and poststratification analysis: the sample, the model, "
               "how to fit it, the population and the estimands to report.")

LEVEL = {"type": ["string", "number", "boolean"], "description": "A level; 1, 1.0 and \"1\" are the same level."}
PRIOR = {
    "description": 'A prior: "Normal(0, HalfNormal(0.5))" or { dist = "Normal", mu = 0, sigma = 1 }.',
    "anyOf": [
        {"type": "string", "examples": ["Normal(0, 1)", "Normal(0, HalfNormal(0.5))"]},
        {"type": "object", "required": ["dist"],
         "properties": {"dist": {"enum": list(DISTRIBUTIONS), "description": "Distribution name."}},
         "additionalProperties": {"type": ["number", "string", "object"],
                                  "description": "A parameter: a number or a prior (string or table)."}},
    ],
}
# Rules the model validators check on the merged spec; like required keys they apply only
# to a spec without `extends` (its base may hold the rest).
RULES = {
    "PopulationSpec": {"oneOf": [{"required": ["source"]}, {"required": ["margins"]}]},
    "EstimandSpec": {"dependencies": {"rope": ["contrast"]},
                     "properties": {"contrast": {"minProperties": 1, "maxProperties": 1,
                                                 "additionalProperties": {"minItems": 2, "maxItems": 2}}}},
}

# The same rules in words, for the reference.
NOTES = {
    "PopulationSpec": "Give either `source` (a cell table) or `margins`, not both.",
    "EstimandSpec": ("`contrast` names one variable and two different levels, and that variable may "
                     "not also be in `at`; `rope` is `[low, high]` with low < high and needs a `contrast`."),
}


class TomlJsonSchema(GenerateJsonSchema):
    """Pydantic's generator adapted to TOML: no null, levels and priors as written, draft-07."""

    def nullable_schema(self, schema):  # TOML has no null: `X | None = None` is an optional X
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema):
        out = super().default_schema(schema)
        if "default" in out and out["default"] is None:
            del out["default"]
        return out

    def function_before_schema(self, schema):  # the values as written in TOML, before parsing
        function = schema["function"]["function"]
        if function is _level:
            return dict(LEVEL)
        if function is _prior:
            return copy.deepcopy(PRIOR)
        if function is _structure:  # `age = "rw1"` is short for `age = { kind = "rw1" }`
            return {"anyOf": [{"type": "string", "enum": list(STRUCTURE_KINDS)},
                              super().function_before_schema(schema)]}
        return super().function_before_schema(schema)

    def field_title_should_be_set(self, schema):  # "Ci Prob" adds nothing to the description
        return False

    def tuple_schema(self, schema):  # draft-07 spells a fixed-length array `items: [...]`
        out = super().tuple_schema(schema)
        if "prefixItems" in out:
            out["items"] = out.pop("prefixItems")
        return out

    def generate(self, schema, mode="validation"):
        out = super().generate(schema, mode=mode)
        out["if"] = {"required": ["extends"]}
        out["else"] = _required_only(out, out["$defs"])
        del out["title"], out["description"]
        return {"$schema": "http://json-schema.org/draft-07/schema#", "title": TITLE,
                "description": DESCRIPTION, **out}


def _required_only(node: dict, defs: dict, seen: dict | None = None) -> dict:
    """Move ``required`` (and :data:`RULES`) out of ``node`` into a skeleton of the same shape.

    A spec that ``extends`` another may leave any key to its base, so the root checks the
    skeleton only when ``extends`` is absent; types and unknown keys are checked always.
    """
    seen = {} if seen is None else seen
    name = node.get("$ref", "").rpartition("/")[2]
    if name:
        if name not in seen:
            seen[name] = {}  # a recursive definition ends here
            seen[name] = _required_only(defs[name], defs, seen) | RULES.get(name, {})
        return seen[name]
    out = {"required": node.pop("required")} if "required" in node else {}
    props = {k: s for k, v in node.get("properties", {}).items() if (s := _required_only(v, defs, seen))}
    if props:
        out["properties"] = props
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict) and (s := _required_only(node[key], defs, seen)):
            out[key] = s
    return out


def json_schema() -> dict:
    """The JSON Schema (draft-07) of a spec file."""
    return Spec.model_json_schema(by_alias=True, schema_generator=TomlJsonSchema)


# --------------------------------------------------------------------------- reference


INTRO = """\
# Spec reference

A spec is one TOML file; this page lists every key it may hold. It is generated from the field
descriptions in `mrp_formula/spec/tree.py`: edit those, then run
`.venv/bin/python -m mrp_formula.spec.schema --markdown docs/spec.md` (a test fails while this page
is stale). The grammar with worked examples is in `docs/spec-language.md`.

Start a spec with `mrp init NAME.toml`. Its first line, `#:schema <path>/mrp-spec.schema.json`,
points TOML editors (Taplo, VS Code's Even Better TOML) at the JSON Schema shipped in the package,
for completion, hover help and checks as you type (`mrp schema` prints it). `mrp check` checks
the rest: files, columns, levels, terms.

Paths are relative to the spec file. Keys not listed here are errors. A spec with `extends`
may leave any key, required or not, to the spec it extends.

Value types:

- **level**: a string, number or boolean naming a level of a variable; `1`, `1.0` and `"1"` are
  the same level.
- **prior**: a string such as `"Normal(0, HalfNormal(0.5))"` or a table such as
  `{ dist = "Normal", mu = 0, sigma = { dist = "HalfNormal", sigma = 0.5 } }`; positional
  arguments take the parameter names in PyMC's order. Distributions: {dists} (their parameters are
  under [Distributions](#distributions)). A prior inside a prior (a hyperprior) is for group terms.
- **table of X**: a TOML table whose keys you choose (variables, terms, estimand names).
"""


def _type(s: dict) -> str:
    if s.get("anyOf") == PRIOR["anyOf"]:
        return "prior"
    if s.get("type") == LEVEL["type"]:
        return "level"
    if "$ref" in s:
        return "table"
    if "anyOf" in s or "oneOf" in s:
        return " or ".join(_type(x) for x in s.get("anyOf", s.get("oneOf")))
    if "enum" in s or "const" in s:
        return "string"
    t = s.get("type")
    if t == "array":
        items = s.get("items", {})
        if isinstance(items, list):
            return "[" + ", ".join(_type(x) for x in items) + "]"
        return f"array of {_type(items)}"
    if t == "object":
        inner = s.get("additionalProperties")
        if not isinstance(inner, dict):
            return "table"
        kind = _type(inner)
        return f"table of ({kind})" if " or " in kind else f"table of {kind}"
    return {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean"}.get(t, "any")


def _allowed(s: dict) -> str:
    if "oneOf" in s:  # a value or a table of the same values
        each = [_branch(x.get("additionalProperties", x)) for x in s["oneOf"]]
        return "; ".join(dict.fromkeys(part for a in each if a for part in a.split("; ")))
    parts = []
    if "enum" in s or "const" in s:
        parts.append(", ".join(f"`{json.dumps(v)}`" for v in s.get("enum", [s.get("const")])))
    for key, op in (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤")):
        if key in s:
            parts.append(f"{op} {s[key]}")
    if "minProperties" in s:
        parts.append(f"at least {s['minProperties']}")
    return "; ".join(parts)


def _branch(s: dict) -> str:
    """One branch of a choice: its values, or a number's range in words."""
    if "oneOf" in s:
        return _allowed(s)
    if s.get("type") in ("number", "integer") and "enum" not in s:
        bounds = _allowed(s)
        return f"a {s['type']} {bounds.replace('; ', ' and ')}" if bounds else ""
    return _allowed(s)


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.default if field.default_factory is None else field.default_factory()
    if value is None or isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(model: type[BaseModel], props: dict, names: list[str]) -> list[str]:
    rows = ["| key | type | default | allowed | description |", "| --- | --- | --- | --- | --- |"]
    for name in names:
        field = model.model_fields[name]
        key = field.alias or name
        s = props[key]
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{key}`", _type(s), _default(field), _allowed(s), field.description or "")) + " |")
    return rows


def _section_header(name: str, field) -> str:
    origin = get_origin(field.annotation)
    if origin is list:
        return f"[[{name}]]"
    if origin is dict:
        return f"[{name}.NAME]"
    return f"[{name}]"


def reference_markdown() -> str:
    """``docs/spec.md``: every key by TOML section, with type, default, allowed values, description."""
    schema = json_schema()
    defs = schema["$defs"]
    intro = INTRO.replace("{dists}", ", ".join(f"`{d}`" for d in DISTRIBUTIONS))
    out = [intro]
    top = [n for n, f in Spec.model_fields.items() if _inner_model(f.annotation) is None]
    out += ["## Top level", "", "Keys before the first `[section]`.", ""]
    out += _table(Spec, schema["properties"], top)
    for name, field in Spec.model_fields.items():
        model = _inner_model(field.annotation)
        if model is None:
            continue
        header = _section_header(name, field)
        need = "Required" if field.is_required() else "Optional"
        if get_origin(field.annotation) is list:
            need = "Optional, repeatable"
        extra = f" {field.description}" if field.description else ""
        note = f" {NOTES[model.__name__]}" if model.__name__ in NOTES else ""
        out += ["", f"## `{header}`", "", f"{need}. {model.__doc__.strip()}{extra}{note}", ""]
        out += _table(model, defs[model.__name__]["properties"], list(model.model_fields))
    out += ["", "## Distributions", "",
            "Priors take these distributions (PyMC's names and parameters). A parameter is a number, or for "
            "a group term's prior a prior itself whose values fit the parameter (`Normal(0, HalfNormal(1))`; "
            "`Normal(0, Normal(0, 1))` is refused, a standard deviation is positive).", "",
            distributions_markdown()]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- starter spec

STARTER = """\
#:schema {schema}
# A starter spec in the style of an A/B test: edit it, then `mrp check {file}` and `mrp run {file}`.
# Every key is described in docs/spec.md, and on hover in editors that read the line above.
name = {name}
description = "Click-through by arm, standardised to a 50/50 gender population"

[data]
source = "clicks.csv"                        # CSV, Parquet or DuckDB; paths are relative to this file
# rename = { source_column = "model_name" }
# missing = "drop"                           # rows with a missing model variable: drop | error

[model]
formula = "clicked ~ treatment + (1 | gender)"
family = "bernoulli"                         # binomial | gaussian | poisson | negativebinomial | categorical | cumulative
levels.treatment = ["control", "treatment"]  # first level is the reference

[model.priors]                               # per model term
Intercept = "Normal(0, 1.5)"
treatment = "Normal(0, 1)"
"1|gender" = "Normal(0, HalfNormal(0.5))"    # a table form works too:
# "1|gender" = { dist = "Normal", mu = 0, sigma = { dist = "HalfNormal", sigma = 0.5 } }

[fit]
sampler = "nutpie"                           # nutpie | pymc | numpyro | blackjax
draws = 1000
chains = 4
seed = 2026                                  # same spec and seed, same numbers

[population.margins]                          # only the shares are known here; with a cell table
gender = { female = 0.5, male = 0.5 }        # write [population] source = "cells.csv", weight = "count"

[estimands.click_rate]                        # population-average click probability
at = { treatment = ["control", "treatment"] } # each arm applied to the whole population

[estimands.lift]
contrast = { treatment = ["treatment", "control"] }   # A vs B
scale = "ratio"                               # difference | ratio | odds_ratio
rope = [0.98, 1.02]                           # region of practical equivalence, on the scale

[report]
ci_prob = 0.94
ci_kind = "hdi"                               # hdi | eti
"""


def schema_ref(spec_path: str | Path) -> str:
    """The packaged schema as seen from the folder of ``spec_path`` (for ``#:schema``)."""
    try:
        return Path(os.path.relpath(SCHEMA_FILE, Path(spec_path).resolve().parent)).as_posix()
    except ValueError:  # another drive on Windows
        return SCHEMA_FILE.as_uri()


def starter_spec(spec_path: str | Path) -> str:
    """The commented spec ``mrp init`` writes; its first line is the ``#:schema`` directive."""
    path = Path(spec_path)
    return (STARTER.replace("{schema}", schema_ref(path)).replace("{file}", path.name)
            .replace("{name}", json.dumps(path.name.split(".")[0] or "analysis")))


# --------------------------------------------------------------------------- files


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mrp_formula.spec.schema", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="write the JSON Schema to FILE")
    parser.add_argument("--markdown", metavar="FILE", help="write the key reference to FILE")
    args = parser.parse_args(argv)
    if args.json:
        write_text_atomic(args.json, schema_text())
    if args.markdown:
        write_text_atomic(args.markdown, reference_markdown())
    if not (args.json or args.markdown):
        print(schema_text(), end="")


if __name__ == "__main__":
    main()
