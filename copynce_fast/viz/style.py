"""The one look of every picture, and figures sized in pixels that never touch pyplot.

Every figure is a ``matplotlib.figure.Figure`` with its own ``FigureCanvasAgg``: nothing here imports
``matplotlib.pyplot`` or calls ``matplotlib.use``, so drawing works headless (no display, no GUI toolkit) and a
user's own pyplot backend and open figures are left alone. The style is applied with ``rc_context`` around
creation and rendering, never to the global ``rcParams``.

Sizes are in pixels at ``DPI``; line widths and font sizes are given in pixels too and converted here
(matplotlib thinks in points: 1 pt = DPI / 72 px).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["DPI", "PALETTE", "INK", "GRID", "STYLE", "styled", "pixel_figure", "pixel_axes", "pt", "render",
           "save_png"]

DPI = 100
# Colour-blind-friendly tab10 colours, in the order the curves of one plot get them (RGB 0-255).
PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
INK = (0, 0, 0)
GRID = (220, 220, 220)


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


STYLE = {
    "font.family": "DejaVu Sans",  # bundled with matplotlib: no system fonts, no network
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.edgecolor": _hex(INK),
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "axes.axisbelow": True,  # grid under the data
    "axes.prop_cycle": cycler(color=[_hex(c) for c in PALETTE]),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": _hex(GRID),
    "grid.linewidth": 0.7,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": True,
    "legend.framealpha": 0.9,
    "legend.edgecolor": "#cccccc",
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "agg.path.chunksize": 10000,  # PR curves can have millions of vertices: Agg renders them in chunks
}


def styled():
    """Context manager applying :data:`STYLE` (and only inside it): wrap both the creation of artists (they read
    rcParams when made) and the rendering."""
    return matplotlib.rc_context(STYLE)


def pt(px: float) -> float:
    """A length in pixels as matplotlib points at :data:`DPI`."""
    return float(px) * 72.0 / DPI


def pixel_figure(width: int, height: int) -> Figure:
    """A white ``Figure`` of exactly ``width`` × ``height`` pixels with an Agg canvas attached.

    Agg truncates ``inches * dpi`` to an int, so a thousandth of a pixel is added against float round-off.
    """
    if width < 1 or height < 1:
        raise ValueError(f"width, height: expected positive pixel sizes, got {width}x{height}")
    fig = Figure(figsize=((width + 1e-3) / DPI, (height + 1e-3) / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def pixel_axes(fig: Figure, left: float, top: float, width: float, height: float, **kwargs):
    """Axes placed by pixel box (``left``, ``top`` from the figure's top-left corner, ``width`` × ``height``)."""
    W, H = fig.bbox.width, fig.bbox.height
    return fig.add_axes((left / W, 1.0 - (top + height) / H, width / W, height / H), **kwargs)


def render(fig: Figure) -> Image.Image:
    """Draw ``fig`` and return it as an RGB ``PIL.Image`` of the figure's pixel size."""
    with styled():
        fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return Image.fromarray(rgba[..., :3].copy())


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG of its exact pixel size (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with styled():
        fig.savefig(path, format="png", dpi=DPI)
    return path
