"""Line plots (loss curves, precision-recall curves) as PNGs (drawn with PIL, no matplotlib) and a JSON report writer.

The plot maps recall to x and precision to y, both over [0, 1], inside a fixed-margin plot area
(:func:`data_to_pixel` is the exact mapping, so tests and callers can locate points).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Mapping, Union

import numpy as np
from PIL import Image, ImageDraw

from copynce_fast.eval.metrics import PRCurve
from copynce_fast.utils.device import default_font

CurveLike = Union[PRCurve, tuple]  # a PRCurve or (recall, precision) arrays

# left, top, right, bottom margins in pixels around the plot area
MARGINS = (64, 36, 24, 52)
PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
_GRID = (225, 225, 225)
_INK = (0, 0, 0)


def data_to_pixel(recall: float, precision: float, size: tuple[int, int]) -> tuple[int, int]:
    """Pixel (x, y) of the data point (recall, precision) in a PR plot of ``size = (width, height)``."""
    x, y = _to_pixel(np.array([recall]), np.array([precision]), size, (0.0, 1.0), (0.0, 1.0))
    return int(x[0]), int(y[0])


def _to_pixel(x, y, size, xlim, ylim) -> tuple[np.ndarray, np.ndarray]:
    w, h = size
    left, top, right, bottom = MARGINS
    fx = (np.clip(x, *xlim) - xlim[0]) / max(xlim[1] - xlim[0], 1e-30)
    fy = (np.clip(y, *ylim) - ylim[0]) / max(ylim[1] - ylim[0], 1e-30)
    px = np.rint(left + fx * (w - left - right - 1)).astype(np.int64)
    py = np.rint((h - bottom - 1) - fy * (h - top - bottom - 1)).astype(np.int64)
    return px, py




def _as_xy(curve: CurveLike) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, PRCurve):
        return curve.recall, curve.precision
    x, y = (np.asarray(a, dtype=np.float64) for a in curve)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"curve must be (x, y) 1-D arrays of equal length, got {x.shape} and {y.shape}")
    return x, y


def _pixel_path(x: np.ndarray, y: np.ndarray, size, xlim, ylim) -> list[tuple[int, int]]:
    """Curve vertices in pixels with consecutive repeats dropped (millions of points -> a few thousand)."""
    px, py = _to_pixel(x, y, size, xlim, ylim)
    keep = np.ones(len(px), dtype=bool)
    keep[1:] = (px[1:] != px[:-1]) | (py[1:] != py[:-1])
    return list(zip(px[keep].tolist(), py[keep].tolist()))


def _nice_limits(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    return lo - pad, hi + pad


def plot_lines(path: str | Path, curves: CurveLike | Mapping[str, CurveLike], *, size: tuple[int, int] = (640, 480),
               title: str | None = None, xlabel: str = "x", ylabel: str = "y", xlim=None, ylim=None,
               line_width: int = 2) -> Path:
    """Draw one or several (x, y) curves into a PNG (axes fitted to the data unless ``xlim``/``ylim`` given).

    Args:
        path: output ``.png``.
        curves: an ``(x, y)`` pair of arrays (or a PRCurve), or a mapping ``label -> curve`` (one colour each,
            from ``PALETTE``, with a legend).
        size: (width, height) in pixels, at least 200 × 150.
        title, xlabel, ylabel: text drawn around the plot.
        xlim, ylim: (min, max) of the axes.

    Returns:
        The written path.
    """
    w, h = size
    if w < 200 or h < 150:
        raise ValueError(f"size must be at least (200, 150), got {size!r}")
    named = dict(curves) if isinstance(curves, Mapping) else {"": curves}
    xy = {label: _as_xy(c) for label, c in named.items()}
    all_x = np.concatenate([x for x, _ in xy.values()]) if xy else np.zeros(0)
    all_y = np.concatenate([y for _, y in xy.values()]) if xy else np.zeros(0)
    xlim = tuple(xlim) if xlim is not None else _nice_limits(all_x)
    ylim = tuple(ylim) if ylim is not None else _nice_limits(all_y)
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    font = default_font(12)
    (x0,), (y0,) = _to_pixel(np.array([xlim[0]]), np.array([ylim[0]]), size, xlim, ylim)
    (x1,), (y1,) = _to_pixel(np.array([xlim[1]]), np.array([ylim[1]]), size, xlim, ylim)

    for i in range(6):  # grid and tick labels at 6 evenly spaced values
        vx = xlim[0] + (xlim[1] - xlim[0]) * i / 5
        vy = ylim[0] + (ylim[1] - ylim[0]) * i / 5
        (gx,), (gy,) = _to_pixel(np.array([vx]), np.array([vy]), size, xlim, ylim)
        draw.line([(gx, y1), (gx, y0)], fill=_GRID)
        draw.line([(x0, gy), (x1, gy)], fill=_GRID)
        draw.text((gx, y0 + 6), f"{vx:.3g}", fill=_INK, font=font, anchor="mt")
        draw.text((x0 - 6, gy), f"{vy:.3g}", fill=_INK, font=font, anchor="rm")
    draw.rectangle([x0, y1, x1, y0], outline=_INK)
    draw.text(((x0 + x1) // 2, h - 8), xlabel, fill=_INK, font=font, anchor="md")
    top = MARGINS[1]
    draw.text((4, top // 2 - 4), ylabel, fill=_INK, font=font, anchor="lm")
    if title:
        draw.text((w // 2, 4), title, fill=_INK, font=default_font(14), anchor="mt")

    for i, (label, (cx, cy)) in enumerate(xy.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = _pixel_path(cx, cy, size, xlim, ylim)
        if len(pts) == 1:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        elif pts:
            draw.line(pts, fill=colour, width=line_width, joint="curve")
        if label:  # legend, bottom-left inside the plot
            ly = y0 - 12 - 16 * (len(xy) - 1 - i)
            draw.line([(x0 + 8, ly), (x0 + 28, ly)], fill=colour, width=3)
            draw.text((x0 + 34, ly), label, fill=_INK, font=font, anchor="lm")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def plot_pr_curve(path: str | Path, curves: CurveLike | Mapping[str, CurveLike], *,
                  size: tuple[int, int] = (640, 480), title: str | None = None, line_width: int = 2) -> Path:
    """Draw one or several precision-recall curves (recall on x, precision on y, both over [0, 1]) into a PNG.

    ``curves``: a :class:`~copynce_fast.eval.metrics.PRCurve`, a ``(recall, precision)`` pair of arrays, or a
    mapping ``label -> curve``. See :func:`plot_lines` for the other arguments.
    """
    return plot_lines(path, curves, size=size, title=title, xlabel="recall", ylabel="precision", xlim=(0.0, 1.0),
                      ylim=(0.0, 1.0), line_width=line_width)


def to_jsonable(obj):
    """Dataclasses, numpy scalars / arrays, paths, tuples and dict keys made JSON-serialisable;
    non-finite floats become None (strict JSON has no NaN)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_report(path: str | Path, report, **extra) -> Path:
    """Write ``report`` (a dict or dataclass, e.g. :class:`~copynce_fast.eval.metrics.Metrics`) plus
    ``extra`` keys as indented JSON. Returns the path."""
    data = to_jsonable(report)
    if not isinstance(data, dict):
        raise ValueError(f"report must be a dict or a dataclass, got {type(report).__name__}")
    data.update(to_jsonable(extra))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path
