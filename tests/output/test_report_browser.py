"""The report and the diff page in a real browser: headless Chromium (Debian's ``chromium`` at
/usr/bin/chromium, which .ci/run installs) driven by Playwright, never Playwright's own browser
download. Each page loads from a file with no console error and no request besides the document
itself, a screenshot is taken and its size checked, a table sorts when its header is clicked, the
filter box hides rows, every figure has rendered (a non-zero box with ink in it), the page reads
with scripts off, and print media hide the navigation and the filter boxes.

The synthetic run folder (tests/_runfolder.py) needs no sampling; the real run (a small survey
fitted by ``mrp_formula.run``, which writes report.html itself) is marked slow.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from _runfolder import STATES, make_run, state_means

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1200, "height": 900}

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed at "
                                                     "/usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.slow,  # a browser per test: out of the quick loop (make check), in make test and CI
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Loaded:
    """A page opened from a file, with every console message, page error and request it made."""

    def __init__(self, browser, path: Path, **context):
        self.url = path.resolve().as_uri()
        self.context = browser.new_context(viewport=VIEWPORT, **context)
        self.page = self.context.new_page()
        self.console, self.errors, self.requests = [], [], []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.url, wait_until="load")

    def close(self):
        self.context.close()

    def assert_clean(self):
        assert not self.errors, self.errors
        assert not [m for m in self.console if m[0] in ("error", "warning")], self.console
        assert self.requests == [self.url], self.requests  # the document itself, nothing else


def _ink(png: bytes) -> float:
    """The share of pixels that are not white."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    hist = img.histogram()
    return 1 - sum(hist[245:]) / (img.width * img.height)


def assert_figures_rendered(page, expected: int):
    svgs = page.locator("figure > svg")
    assert svgs.count() == expected
    for i in range(svgs.count()):
        el = svgs.nth(i)
        box = el.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50, (i, box)
        el.scroll_into_view_if_needed()
        assert _ink(el.screenshot()) > 0.005, f"figure {i} is blank"


def assert_screenshot(page, path: Path):
    from PIL import Image

    page.screenshot(path=str(path), full_page=True)
    img = Image.open(path)
    height = page.evaluate("document.documentElement.scrollHeight")
    assert img.width == VIEWPORT["width"] and img.height == height > VIEWPORT["height"]
    assert 20_000 < path.stat().st_size < 30_000_000
    assert _ink(path.read_bytes()) > 0.02


def column(page, table_id: str, index: int) -> list[str]:
    return page.eval_on_selector_all(f"#{table_id} tbody tr",
                                     f"rows => rows.map(r => r.cells[{index}].getAttribute('data-v') "
                                     f"?? r.cells[{index}].textContent.trim())")


def header_index(page, table_id: str, title: str) -> int:
    titles = page.eval_on_selector_all(f"#{table_id} thead th", "ths => ths.map(t => t.textContent.trim())")
    return titles.index(title)


def assert_sorts(page, table_id: str, title: str):
    """Clicking the header orders the rows by that column, ascending then descending."""
    i = header_index(page, table_id, title)
    before = column(page, table_id, i)
    values = [float(v) for v in before if v != ""]
    th = page.locator(f"#{table_id} thead th").nth(i)
    th.click()
    after = column(page, table_id, i)
    up = [float(v) for v in after if v != ""]
    assert up == sorted(values) and after != before
    assert after[len(up):] == [""] * (len(after) - len(up))  # missing values last
    assert th.get_attribute("aria-sort") == "ascending"
    th.click()
    down = [float(v) for v in column(page, table_id, i) if v != ""]
    assert down == sorted(values, reverse=True)
    assert th.get_attribute("aria-sort") == "descending"


# ----------------------------------------------------------------------------- synthetic run folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from mrp_formula.output.report import write_report

    folder = make_run(tmp_path_factory.mktemp("browser") / "synthetic")
    write_report(folder)
    return folder


def test_report_page_in_the_browser(browser, synthetic, tmp_path):
    view = Loaded(browser, synthetic / "report.html")
    page = view.page
    view.assert_clean()
    assert page.title() == "synthetic: MRP report"
    assert_screenshot(page, tmp_path / "report.png")
    # raw vs MRP, the support forest, the densities, the trace, the PPC
    assert_figures_rendered(page, 5)
    rows = page.locator("#t-est-support tbody tr")
    assert rows.count() == len(STATES)
    assert_sorts(page, "t-est-support", "mean")
    means = state_means(0)
    i = header_index(page, "t-est-support", "state")
    page.locator("#t-est-support thead th").nth(i).click()
    assert column(page, "t-est-support", i) == sorted(means)  # text columns sort as text ('01' < '10')
    # the filter box hides the rows that do not match
    box = page.locator('input[data-table="t-est-support"]')
    assert box.is_visible()
    box.fill("07")
    visible = page.locator("#t-est-support tbody tr:visible")
    assert visible.count() == 1 and visible.first.locator("td").first.inner_text() == "07"
    assert page.locator(".filter:has(input[data-table='t-est-support']) .shown").inner_text() == "1 of 51 rows"
    box.fill("")
    assert page.locator("#t-est-support tbody tr:visible").count() == len(STATES)
    # the navigation leads to the sections
    page.locator('nav a[href="#diagnostics"]').click()
    assert page.evaluate("location.hash") == "#diagnostics"
    view.assert_clean()
    view.close()


def test_report_reads_with_scripts_off_and_prints_cleanly(browser, synthetic):
    view = Loaded(browser, synthetic / "report.html", java_script_enabled=False)
    page = view.page
    assert page.locator("#t-est-support tbody tr").count() == len(STATES)
    assert page.locator("#t-est-support tbody tr:visible").count() == len(STATES)
    assert not page.locator(".filter").first.is_visible()  # a box that would do nothing is hidden
    assert page.locator(".card .value").first.is_visible()
    assert page.locator("figure > svg").count() == 5
    view.close()
    view = Loaded(browser, synthetic / "report.html")
    page = view.page
    page.emulate_media(media="print")
    assert not page.locator("nav").is_visible()
    assert not page.locator(".filter").first.is_visible()
    assert page.locator("#t-est-support").is_visible()
    pdf = page.pdf(format="A4")
    assert pdf[:4] == b"%PDF" and len(pdf) > 50_000
    view.assert_clean()
    view.close()


def test_report_fits_a_phones_width(browser, synthetic):
    """At 420 px the navigation wrapped nowhere and the page was 1,062 px wide (the trial)."""
    view = Loaded(browser, synthetic / "report.html")
    page = view.page
    page.set_viewport_size({"width": 420, "height": 900})
    assert page.evaluate("document.querySelector('nav').scrollWidth") <= 420
    assert page.evaluate("document.querySelector('header').scrollWidth") <= 420
    view.close()


def test_diff_page_in_the_browser(browser, synthetic, tmp_path):
    from mrp_formula.commands.diff import diff_runs, write_html

    moved = dict(state_means(0))
    moved["05"] += 0.06
    other = make_run(tmp_path / "other", states=moved, posterior=False)
    out = write_html(diff_runs(synthetic, other), tmp_path / "diff.html")
    view = Loaded(browser, out)
    page = view.page
    view.assert_clean()
    assert_screenshot(page, tmp_path / "diff.png")
    assert_figures_rendered(page, 1)
    assert_sorts(page, "t-diff", "shift (sd)")
    assert page.locator("#t-diff tbody tr").first.locator("td").nth(1).inner_text() == "state = 05"  # largest first
    view.close()


# ----------------------------------------------------------------------------- a real run


SURVEY = """
name = "survey"
description = "Support by region from a survey that over-represents the young"
[data]
source = "survey.csv"
[model]
formula = "yes ~ age + (1 | region)"
family = "bernoulli"
levels.age = ["old", "young"]
[model.priors]
"1|region" = "Normal(0, HalfNormal(1))"
[fit]
draws = 200
tune = 200
chains = 2
seed = 11
[population]
source = "census.csv"
weight = "count"
[estimands.support]
by = ["region"]
[estimands.overall]
[estimands.age_gap]
contrast = { age = ["young", "old"] }
rope = [-0.02, 0.02]
"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    import mrp_formula
    from conftest import simulate_survey

    d = tmp_path_factory.mktemp("real")
    sample, pop, _, _ = simulate_survey(n=1500, seed=4)
    sample[sample.region != "r6"].to_csv(d / "survey.csv", index=False)  # r6: no respondents
    pop.to_csv(d / "census.csv", index=False)
    (d / "survey.toml").write_text(textwrap.dedent(SURVEY).lstrip())
    result = mrp_formula.run(d / "survey.toml", out=d / "run")
    assert not [n for n in result.notes if "report.html was not written" in n], result.notes
    return result.out


@pytest.mark.slow
def test_report_of_a_real_run_in_the_browser(browser, real_run, tmp_path):
    assert (real_run / "report.html").is_file()  # mrp run writes it
    view = Loaded(browser, real_run / "report.html")
    page = view.page
    view.assert_clean()
    assert_screenshot(page, tmp_path / "real.png")
    # raw vs MRP, the forest of support by region, the densities, the trace, the PPC
    assert_figures_rendered(page, 5)
    table = pd.read_csv(real_run / "estimands.csv")
    support = table[table.estimand == "support"]
    assert page.locator("#t-est-support tbody tr").count() == len(support) == 6
    assert_sorts(page, "t-est-support", "mean")
    i = header_index(page, "t-est-support", "region")
    m = header_index(page, "t-est-support", "mean")
    regions = column(page, "t-est-support", i)
    assert regions == list(support.sort_values("mean", ascending=False)["region"])
    assert [float(v) for v in column(page, "t-est-support", m)] == sorted(support["mean"], reverse=True)
    # the question and the decision numbers are there, in words
    assert "yes ~ age + (1 | region)" in page.locator("#question").inner_text()
    decision = page.locator("#decisions").inner_text()
    assert "is higher for young than for old" in decision  # age is in the census: two parts of the population
    assert "young beats old" not in decision
    assert "region: r6" in page.locator("#coverage").inner_text()  # a population level without sample
    view.assert_clean()
    view.close()
