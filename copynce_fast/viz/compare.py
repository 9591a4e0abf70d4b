"""The comparison picture of two images: where the model thinks the copied region is, and matched patches.

Layout (pixels; :func:`canvas_size`): a header line of ``HEADER`` px with the score, then query and reference
side by side, each resized to ``panel`` × ``panel`` (the S×S view the model saw) with ``GAP`` px between them.
Each panel carries ``1 − entropy`` as a heat overlay (dark blue 0 → red 0.5 → yellow 1, blended with weight
``alpha``), and lines join the centres of matched patches (the strongest third in green, the rest in blue).

The panels are placed pixel for pixel (``figimage``, no resampling), so the heat colours in the PNG are exact;
matplotlib draws the lines, markers and the header on top.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from PIL import Image

from copynce_fast.viz.style import pixel_axes, pixel_figure, pt, render, styled

__all__ = ["render_comparison", "canvas_size", "HEADER", "GAP", "HEAT"]

HEADER = 30  # pixels above the panels
GAP = 16  # pixels between the panels
# Heat ramp of 1 - entropy: 0 -> dark blue, 0.5 -> red, 1 -> yellow.
HEAT = LinearSegmentedColormap.from_list("copy_heat", np.array([[20, 30, 120], [200, 30, 40], [255, 230, 60]]) / 255)
_STRONG, _WEAK = "#00c850", "#00a0ff"  # line colours: strongest third, the rest


class ComparisonLike(Protocol):
    """What the picture needs of a comparison result (``Comparison`` of the inference code)."""

    score: float
    kind: str  # "matcher" or "descriptor"
    query_entropy: np.ndarray  # (hq, wq) in [0, 1]
    reference_entropy: np.ndarray  # (hr, wr) in [0, 1]
    matches: Sequence[tuple[int, int, float]]  # (query patch, reference patch, cosine), strongest first


def canvas_size(panel: int) -> tuple[int, int]:
    """(width, height) of the picture :func:`render_comparison` draws for a given panel side."""
    return 2 * panel + GAP, panel + HEADER


def _heat(entropy: np.ndarray, panel: int) -> np.ndarray:
    """(panel, panel, 3) float RGB in [0, 255] of ``1 - entropy``, bilinearly upsampled from the patch grid."""
    v = 1.0 - np.asarray(entropy, dtype=np.float32)
    up = np.asarray(Image.fromarray(v).resize((panel, panel), Image.BILINEAR), dtype=np.float64)
    return np.rint(HEAT(np.clip(up, 0.0, 1.0))[..., :3] * 255.0)


def _overlay(img: Image.Image, entropy: np.ndarray, panel: int, alpha: float) -> np.ndarray:
    """(panel, panel, 3) uint8: the image resized to the panel, blended with its heat map."""
    base = np.asarray(img.convert("RGB").resize((panel, panel), Image.BICUBIC), dtype=np.float64)
    mixed = (1 - alpha) * base + alpha * _heat(entropy, panel)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _patch_centre(index: int, grid: tuple[int, int], panel: int, x0: float) -> tuple[float, float]:
    """(x, y) in picture pixels (origin top-left) of the centre of patch ``index`` of a row-major grid."""
    h, w = grid
    return x0 + (index % w + 0.5) * panel / w, HEADER + (index // w + 0.5) * panel / h


def _header(ax, text: str, room: float) -> None:
    """The header line at 13 px, shrunk until it fits ``room`` pixels (glyph sizes move in steps, so measure)."""
    renderer = ax.figure.canvas.get_renderer()
    size = pt(13)
    for _ in range(20):
        t = ax.text(6, HEADER / 2, text, fontsize=size, va="center", ha="left", clip_on=True)
        wide = t.get_window_extent(renderer).width
        if wide <= room:
            return
        t.remove()
        size = min(size * room / wide, size * 0.95)
    ax.text(6, HEADER / 2, text, fontsize=size, va="center", ha="left", clip_on=True)


def render_comparison(query: Image.Image, reference: Image.Image, cmp: ComparisonLike, *, panel: int = 384,
                      alpha: float = 0.45, lines: int = 16, title: str | None = None) -> Image.Image:
    """Draw the comparison picture (module docstring).

    Args:
        query, reference: the two images (any size; each is resized to the panel).
        cmp: the comparison result (:class:`ComparisonLike`).
        panel: side of each image panel in pixels, at least 32.
        alpha: weight of the heat overlay in [0, 1] (1 = heat only).
        lines: number of matches drawn (strongest first).
        title: header text (default: the score and a legend of the picture).

    Returns:
        An RGB ``PIL.Image`` of :func:`canvas_size` ``(panel)``.
    """
    if panel < 32:
        raise ValueError(f"panel: must be at least 32 pixels, got {panel}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: must be in [0, 1], got {alpha}")
    width, height = canvas_size(panel)
    label = "copy probability" if cmp.kind == "matcher" else "descriptor cosine"
    text = title or f"{label} {cmp.score:.4f}   heat: 1 - affinity entropy   lines: mutual nearest patches"
    with styled():
        fig = pixel_figure(width, height)
        # figimage offsets count from the bottom-left corner; origin="upper" keeps the image's first row on top;
        # zorder -1 puts the panels under the axes that carries the lines.
        fig.figimage(_overlay(query, cmp.query_entropy, panel, alpha), 0, 0, origin="upper", zorder=-1)
        fig.figimage(_overlay(reference, cmp.reference_entropy, panel, alpha), panel + GAP, 0, origin="upper",
                     zorder=-1)
        ax = pixel_axes(fig, 0, 0, width, height)  # one transparent axes in picture pixels, y down
        ax.set_axis_off()
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        _header(ax, text, room=width - 12)
        strong = max(1, lines // 3)
        for rank, (i, j, _) in enumerate(list(cmp.matches)[:lines]):
            x0, y0 = _patch_centre(i, cmp.query_entropy.shape, panel, 0.0)
            x1, y1 = _patch_centre(j, cmp.reference_entropy.shape, panel, panel + GAP)
            ax.plot([x0, x1], [y0, y1], color=_STRONG if rank < strong else _WEAK, linewidth=pt(2), marker="o",
                    markersize=pt(7), markerfacecolor="none", markeredgewidth=pt(2))
    return render(fig)
