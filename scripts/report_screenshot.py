"""Screenshot of a run folder's report.html in headless Chromium (the docs' report_*.png).

    python scripts/report_screenshot.py RUN_DIR OUT.png [--until SECTION | --height PIXELS] [--width 1200]

Uses Debian's chromium at /usr/bin/chromium through Playwright (never Playwright's own browser
download); the page down to the end of the section ``--until`` (an id: question, headline,
decisions, raw-vs-mrp, ...) or its top ``--height`` pixels (0: the whole page), saved as a
palette PNG to keep the file small.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--height", type=int, default=1700, help="pixels from the top; 0 for the whole page")
    ap.add_argument("--until", help="crop at the end of the section with this id")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    page_file = (a.run_dir / "report.html") if a.run_dir.is_dir() else a.run_dir
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": a.width, "height": a.height or 900})
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        png = page.screenshot(full_page=True)
        if a.until:
            box = page.locator(f"section#{a.until}").bounding_box()
            if box is None:
                raise SystemExit(f"no section with id {a.until!r} in {page_file}")
            a.height = int(box["y"] + box["height"] + 16)
        browser.close()
    img = Image.open(io.BytesIO(png)).convert("RGB")
    if a.height:
        img = img.crop((0, 0, img.width, min(a.height, img.height)))
    img = img.quantize(256, method=Image.Quantize.FASTOCTREE)  # keeps the small saturated marks
    a.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(a.out, optimize=True)
    print(f"wrote {a.out} ({img.width}x{img.height}, {a.out.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
