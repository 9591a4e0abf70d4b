"""Precision-recall curve as a PNG (drawn with PIL, no matplotlib) and a JSON report writer.

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
from PIL import Image, ImageDraw, ImageFont

from copynce_fast.eval.metrics import PRCurve

CurveLike = Union[PRCurve, tuple]  # a PRCurve or (recall, precision) arrays

# left, top, right, bottom margins in pixels around the plot area
MARGINS = (64, 36, 24, 52)
PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
_GRID = (225, 225, 225)
_INK = (0, 0, 0)


def data_to_pixel(recall: float, precision: float, size: tuple[int, int]) -> tuple[int, int]:
    """Pixel (x, y) of the data point (recall, precision) in a plot of ``size = (width, height)``."""
    w, h = size
    left, top, right, bottom = MARGINS
    x = left + recall * (w - left - right - 1)
    y = (h - bottom - 1) - precision * (h - top - bottom - 1)
    return int(round(x)), int(round(y))


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _as_xy(curve: CurveLike) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, PRCurve):
        return curve.recall, curve.precision
    recall, precision = (np.asarray(a, dtype=np.float64) for a in curve)
    if recall.shape != precision.shape or recall.ndim != 1:
        raise ValueError(f"curve must be (recall, precision) 1-D arrays of equal length, got {recall.shape} "
                         f"and {precision.shape}")
    return recall, precision


def _pixel_path(recall: np.ndarray, precision: np.ndarray, size: tuple[int, int]) -> list[tuple[int, int]]:
    """Curve vertices in pixels with consecutive repeats dropped (millions of points -> a few thousand)."""
    w, h = size
    left, top, right, bottom = MARGINS
    x = np.rint(left + np.clip(recall, 0, 1) * (w - left - right - 1)).astype(np.int64)
    y = np.rint((h - bottom - 1) - np.clip(precision, 0, 1) * (h - top - bottom - 1)).astype(np.int64)
    keep = np.ones(len(x), dtype=bool)
    keep[1:] = (x[1:] != x[:-1]) | (y[1:] != y[:-1])
    return list(zip(x[keep].tolist(), y[keep].tolist()))


def plot_pr_curve(path: str | Path, curves: CurveLike | Mapping[str, CurveLike], *,
                  size: tuple[int, int] = (640, 480), title: str | None = None, line_width: int = 2) -> Path:
    """Draw one or several precision-recall curves into a PNG.

    Args:
        path: output ``.png``.
        curves: a :class:`~copynce_fast.eval.metrics.PRCurve`, a ``(recall, precision)`` pair of arrays,
            or a mapping ``label -> curve`` (one colour each, from ``PALETTE``, with a legend).
        size: (width, height) in pixels, at least 200 × 150.
        title: drawn above the plot.
        line_width: curve width in pixels.

    Returns:
        The written path.
    """
    w, h = size
    if w < 200 or h < 150:
        raise ValueError(f"size must be at least (200, 150), got {size!r}")
    named = dict(curves) if isinstance(curves, Mapping) else {"": curves}
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    font = _font(12)
    left, top, right, bottom = MARGINS
    x0, y0 = data_to_pixel(0, 0, size)
    x1, y1 = data_to_pixel(1, 1, size)

    for i in range(6):  # grid and tick labels every 0.2
        v = i / 5
        gx, _ = data_to_pixel(v, 0, size)
        _, gy = data_to_pixel(0, v, size)
        draw.line([(gx, y1), (gx, y0)], fill=_GRID)
        draw.line([(x0, gy), (x1, gy)], fill=_GRID)
        draw.text((gx, y0 + 6), f"{v:.1f}", fill=_INK, font=font, anchor="mt")
        draw.text((x0 - 6, gy), f"{v:.1f}", fill=_INK, font=font, anchor="rm")
    draw.rectangle([x0, y1, x1, y0], outline=_INK)
    draw.text(((x0 + x1) // 2, h - 8), "recall", fill=_INK, font=font, anchor="md")
    draw.text((4, top // 2 - 4), "precision", fill=_INK, font=font, anchor="lm")
    if title:
        draw.text((w // 2, 4), title, fill=_INK, font=_font(14), anchor="mt")

    for i, (label, curve) in enumerate(named.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = _pixel_path(*_as_xy(curve), size)
        if len(pts) == 1:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        elif pts:
            draw.line(pts, fill=colour, width=line_width, joint="curve")
        if label:  # legend, bottom-left inside the plot, where PR curves rarely go
            ly = y0 - 12 - 16 * (len(named) - 1 - i)
            draw.line([(x0 + 8, ly), (x0 + 28, ly)], fill=colour, width=3)
            draw.text((x0 + 34, ly), label, fill=_INK, font=font, anchor="lm")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


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
