"""The run's figures as inline SVG: the figures of ``mrp_formula.output.plots`` rendered to SVG
text that a page embeds (no file, no request).

Every SVG gets its own id prefix, since matplotlib names glyphs and clip paths alike in every
figure and one page holds many. Lines with many points (the trace plot) are rasterised inside
the SVG as palette PNGs, which keeps a page of 51 states and several estimands under a megabyte.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from matplotlib.figure import Figure

RASTER_ABOVE = 400  # a line with more points than this is drawn as an image inside the SVG
RASTER_DPI = 110

_ID = re.compile(r'\bid="([^"]+)"')
_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=\s]+)")


def _smaller_png(b64: str) -> str:
    """A rasterised part as a palette PNG (lines on white need few colours): about a third of the bytes."""
    import base64

    from PIL import Image

    raw = base64.b64decode("".join(b64.split()))
    out = io.BytesIO()
    Image.open(io.BytesIO(raw)).convert("RGBA").quantize(64, method=Image.Quantize.FASTOCTREE).save(
        out, format="PNG", optimize=True)
    best = out.getvalue() if len(out.getvalue()) < len(raw) else raw
    return base64.b64encode(best).decode("ascii")


@dataclass(frozen=True)
class Svg:
    name: str  # the PNG this figure is in the run folder's plots/ (forest.png, ...)
    markup: str  # '<svg ...>...</svg>'; '' when the figure could not be drawn
    error: str = ""


def to_svg(fig: Figure, prefix: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), ids prefixed with ``prefix``."""
    import matplotlib
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D

    for line in fig.findobj(Line2D):
        if len(line.get_xdata(orig=False)) > RASTER_ABOVE:
            line.set_rasterized(True)
    for coll in fig.findobj(Collection):
        if sum(len(p.vertices) for p in coll.get_paths()) > 20 * RASTER_ABOVE:
            coll.set_rasterized(True)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "mrp-report", "svg.image_inline": True}):
        fig.savefig(buf, format="svg", dpi=RASTER_DPI, facecolor="white", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = _PNG.sub(lambda m: "data:image/png;base64," + _smaller_png(m.group(1)), svg)
    ids = set(_ID.findall(svg))
    if ids:
        def sub(m: re.Match) -> str:
            return m.group(0).replace(m.group(1), prefix + m.group(1)) if m.group(1) in ids else m.group(0)

        svg = re.sub(r'\bid="([^"]+)"', sub, svg)
        svg = re.sub(r'(xlink:href|href)="#([^"]+)"',
                     lambda m: f'{m.group(1)}="#{prefix + m.group(2)}"' if m.group(2) in ids else m.group(0), svg)
        svg = re.sub(r'url\(#([^)]+)\)',
                     lambda m: f"url(#{prefix + m.group(1)})" if m.group(1) in ids else m.group(0), svg)
    # scale with the page: keep the viewBox, let CSS set the size
    svg = re.sub(r'^<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                 lambda m: f'<svg{m.group(1)} width="{m.group(2)}pt" height="{m.group(3)}pt" role="img"',
                 svg, count=1)
    return svg.strip()


class Counter:
    """Unique id prefixes for the figures of one page."""

    def __init__(self, stem: str = "f") -> None:
        self.stem, self.n = stem, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.stem}{self.n}-"


def draw(kinds, counter: Counter, **kwargs) -> list[Svg]:
    """``plots.figures(kinds, **kwargs)`` as SVG; a figure that fails costs its place, never the page."""
    from mrp_formula.output.plots import figures

    try:
        figs = figures(kinds, **kwargs)
    except Exception as exc:  # a figure is a report, not a result
        return [Svg(",".join(kinds), "", f"{type(exc).__name__}: {exc}")]
    out = []
    for name, fig in figs:
        try:
            out.append(Svg(name, to_svg(fig, counter())))
        except Exception as exc:
            out.append(Svg(name, "", f"{type(exc).__name__}: {exc}"))
    return out
