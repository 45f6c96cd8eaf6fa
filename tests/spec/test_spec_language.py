"""docs/spec-language.md cannot rot: its examples pass `mrp check` on the data shipped in the
repository, the shipped specs it shows are shown as shipped, and its links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mrp_formula
from mrp_formula.spec.tree import load_spec

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "spec-language.md"
REFERENCE = ROOT / "docs" / "spec.md"
TEXT = DOC.read_text()
EXAMPLES = re.findall(r"```toml\n(.*?)```", TEXT, re.S)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of the repository's layout as far as the examples need it: they are written as if
    saved in docs/, with the A/B click log simulated as `make demo` does, and the primer's files
    (data and primer.toml) seen through a link."""
    from generate import simulate  # examples/ab_click, on the path through conftest

    root = tmp_path_factory.mktemp("repo")
    (root / "docs").mkdir()
    (root / "examples" / "ab_click").mkdir(parents=True)
    simulate().to_csv(root / "examples" / "ab_click" / "clicks.csv", index=False)
    (root / "examples" / "mrp_primer").symlink_to(ROOT / "examples" / "mrp_primer", target_is_directory=True)
    (root / "examples" / "calibration").symlink_to(ROOT / "examples" / "calibration", target_is_directory=True)
    return root


def _write(tree: Path, i: int) -> Path:
    path = tree / "docs" / f"example_{i}.toml"
    path.write_text(EXAMPLES[i])
    return path


def test_the_examples_cover_the_sections():
    assert len(EXAMPLES) >= 4
    joined = "\n".join(EXAMPLES)
    for needle in ("[[join]]", "[population.margins]", 'joint = "rake"', "weight = ", "query = ", "recode.",
                   "extends = ", "contrast = ", "exclude = ", "by = ", "at = ", "rope = ", "dist = "):
        assert needle in joined, f"no example shows `{needle}`"


@pytest.mark.parametrize("i", range(len(EXAMPLES)))
def test_example_passes_mrp_check(tree, i):
    """`mrp check` (everything short of sampling) on each example, on the repository's data."""
    plan = mrp_formula.check(_write(tree, i))
    assert plan.loaded.spec.estimands
    assert len(plan.tables.population) > 0 and len(plan.tables.sample) > 0


def test_first_example_is_the_shipped_ab_spec():
    assert EXAMPLES[0] == (ROOT / "specs" / "ab_click.toml").read_text()


def test_primer_example_is_the_shipped_primer(tree):
    """The same spec as examples/mrp_primer/primer.toml once paths are resolved (comments aside)."""
    i = next(i for i, text in enumerate(EXAMPLES) if 'name = "same-sex-marriage-2004"' in text)
    shown = load_spec(_write(tree, i)).raw
    shipped = load_spec(ROOT / "examples" / "mrp_primer" / "primer.toml").raw
    assert shown == shipped


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than '-' and '_' dropped, spaces -> '-'."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        out.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return out


def test_links_lead_somewhere():
    own, reference = _anchors(TEXT), _anchors(REFERENCE.read_text())
    links = re.findall(r"\]\(([^)\s]*)\)", TEXT)
    assert links
    for link in links:
        target, _, anchor = link.partition("#")
        if target == "":
            assert anchor in own, f"no heading for #{anchor}"
        elif target == "spec.md":
            assert not anchor or anchor in reference, f"docs/spec.md has no heading for #{anchor}"
        else:
            assert (DOC.parent / target).exists(), f"{link} does not exist"


def test_docs_point_only_inside_the_repository():
    outside = ("../" + "shared", "shared/" + "design", "shared/" + "data")
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/**/*.md"),
             *ROOT.glob("examples/**/*.toml"), *ROOT.glob("specs/*.toml"), *ROOT.glob("mrp_formula/*.py")]
    for path in files:
        text = path.read_text()
        for needle in outside:
            assert needle not in text, f"{path.relative_to(ROOT)} points outside the repository ({needle})"
