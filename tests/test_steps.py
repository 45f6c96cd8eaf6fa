"""mrp_formula.steps: the inputs' hashes are those of the content the run read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mrp_formula import steps
from mrp_formula.errors import DataError
from mrp_formula.spec.tree import load_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def spec(tmp_path):
    from generate import simulate

    simulate(n=300, seed=1).to_csv(tmp_path / "clicks.csv", index=False)
    text = re.sub(r'source = "[^"]*clicks[^"]*"', 'source = "clicks.csv"', (ROOT / "specs" / "ab_click.toml").read_text())
    (tmp_path / "ab.toml").write_text(text)
    return tmp_path / "ab.toml"


def test_the_plan_records_the_hashes_of_what_it_read(spec):
    import hashlib

    plan = steps.plan(spec)
    assert plan.inputs["data"]["sha256"] == hashlib.sha256((spec.parent / "clicks.csv").read_bytes()).hexdigest()


def test_a_file_saved_while_it_was_read_is_refused_naming_it(spec):
    """`mrp watch`'s trial: a population saved during a rerun gave numbers of the old content and a
    manifest hash of the new one."""
    loaded = load_spec(spec)
    data = spec.parent / "clicks.csv"

    def read_then_someone_saves():
        out = data.read_text()
        data.write_text(out + out.splitlines()[-1] + "\n")
        return out

    with pytest.raises(DataError) as e:
        steps.read_inputs(loaded, read_then_someone_saves)
    (p,) = e.value.problems
    assert "clicks.csv changed while it was being read" in p.message and p.key == "data.source"
    assert steps.read_inputs(loaded, lambda: 1)[0] == 1  # read again, once saved: the run goes on


def test_a_problem_of_a_key_an_extended_spec_wrote_is_placed_there(spec):
    """The child drops `(1 | gender)` from the formula; the prior of `1|gender` is the base's: said
    at the base's line, with how to drop it (the trial: placed at the child's [model], with "did you
    mean" another term)."""
    from mrp_formula.errors import SpecError

    child = spec.parent / "child.toml"
    child.write_text('extends = "ab.toml"\nname = "child"\n[model]\nformula = "clicked ~ treatment"\n')
    with pytest.raises(SpecError) as e:
        steps.plan(child)
    (p,) = [p for p in e.value.problems if p.key == 'model.priors."1|gender"']
    line = next(i for i, t in enumerate(spec.read_text().splitlines(), 1) if t.startswith('"1|gender"'))
    assert (p.file, p.line) == (str(spec), line)
    assert "child.toml extends this file" in p.hint and "did you mean" not in p.hint
