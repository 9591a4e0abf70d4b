"""Charts of numbers: line plots (loss curves), precision-recall curves and grouped bar charts (benchmarks).

Line plots use a fixed pixel layout (:data:`MARGINS` around the plot area), so :func:`data_to_pixel` can say
exactly where a PR-curve point lands in the PNG; bar charts let matplotlib fit their (variable) labels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
from matplotlib.ticker import FuncFormatter

from copynce_fast.viz.style import PALETTE, pixel_axes, pixel_figure, pt, save_png, styled

__all__ = ["plot_lines", "plot_pr_curve", "data_to_pixel", "bar_chart", "PALETTE", "MARGINS", "PR_LIMITS"]

# A curve: anything with ``.recall`` / ``.precision`` arrays (``eval.metrics.PRCurve``) or an (x, y) pair.
CurveLike = Union[Any, tuple]
# left, top, right, bottom margins in pixels around the plot area of a line plot
MARGINS = (72, 40, 24, 52)
# PR axes reach slightly past [0, 1] so a curve on precision 1 or recall 0 is not hidden by the frame.
PR_LIMITS = (-0.02, 1.02)


def _as_xy(curve: CurveLike) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(curve, "recall") and hasattr(curve, "precision"):
        x, y = curve.recall, curve.precision
    else:
        x, y = curve
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"curves: each curve must be (x, y) 1-D arrays of equal length, got {x.shape} and {y.shape}")
    return x, y


def _line_axes(fig, xlim=None, ylim=None):
    w, h = fig.bbox.width, fig.bbox.height
    left, top, right, bottom = MARGINS
    ax = pixel_axes(fig, left, top, w - left - right, h - top - bottom)
    if xlim is not None:
        ax.set_xlim(*xlim)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return ax


def _check_size(size) -> tuple[int, int]:
    w, h = (int(v) for v in size)
    if w < 200 or h < 150:
        raise ValueError(f"size: must be at least (200, 150) pixels, got {tuple(size)!r}")
    return w, h


def plot_lines(path: str | Path, curves: CurveLike | Mapping[str, CurveLike], *, size: tuple[int, int] = (640, 480),
               title: str | None = None, xlabel: str = "x", ylabel: str = "y", xlim=None, ylim=None,
               line_width: float = 2.5, legend_loc: str = "best") -> Path:
    """Draw one or several (x, y) curves into a PNG (axes fitted to the data unless ``xlim``/``ylim`` given).

    Args:
        path: output ``.png``.
        curves: an ``(x, y)`` pair of 1-D arrays (or a PR curve), or a mapping ``label -> curve`` (one colour
            each, from :data:`PALETTE` in order, with a legend).
        size: (width, height) of the PNG in pixels, at least 200 × 150.
        title, xlabel, ylabel: text around the plot.
        xlim, ylim: (min, max) of the axes.
        line_width: in pixels; 2.5 or more guarantees a fully painted pixel under every point of the curve.
        legend_loc: matplotlib legend location.

    Returns:
        The written path.
    """
    w, h = _check_size(size)
    named = dict(curves) if isinstance(curves, Mapping) else {"": curves}
    xy = {label: _as_xy(c) for label, c in named.items()}
    with styled():
        fig = pixel_figure(w, h)
        ax = _line_axes(fig)
        for label, (x, y) in xy.items():
            ax.plot(x, y, label=label or None, linewidth=pt(line_width), marker="o" if len(x) == 1 else None,
                    markersize=pt(6), solid_joinstyle="round", solid_capstyle="round")
        if xlim is not None:
            ax.set_xlim(*xlim)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title, loc="left")
        if any(xy):  # some curve has a label
            ax.legend(loc=legend_loc)
    return save_png(fig, path)


def plot_pr_curve(path: str | Path, curves: CurveLike | Mapping[str, CurveLike], *,
                  size: tuple[int, int] = (640, 480), title: str | None = None, line_width: float = 2.5) -> Path:
    """Draw one or several precision-recall curves (recall on x, precision on y, over :data:`PR_LIMITS`).

    ``curves``: a PR curve (``.recall``, ``.precision``), a ``(recall, precision)`` pair of arrays, or a mapping
    ``label -> curve``. See :func:`plot_lines` for the other arguments; :func:`data_to_pixel` locates points.
    """
    return plot_lines(path, curves, size=size, title=title, xlabel="recall", ylabel="precision", xlim=PR_LIMITS,
                      ylim=PR_LIMITS, line_width=line_width, legend_loc="lower left")


def data_to_pixel(recall: float, precision: float, size: tuple[int, int]) -> tuple[int, int]:
    """Pixel (column, row) of the data point (recall, precision) in a :func:`plot_pr_curve` PNG of ``size``."""
    w, h = _check_size(size)
    with styled():
        ax = _line_axes(pixel_figure(w, h), PR_LIMITS, PR_LIMITS)
        x, y = ax.transData.transform((recall, precision))  # display pixels, origin bottom-left
    return int(np.floor(x)), int(np.floor(h - y))


def bar_chart(path: str | Path, rows: Sequence[Mapping[str, Any]], *, category: str, value: str,
              series: str | None = None, title: str | None = None, ylabel: str | None = None,
              xlabel: str | None = None, log_scale: bool = False, size: tuple[int, int] = (800, 450),
              value_format: str = "{:.3g}") -> Path:
    """Grouped bar chart of table rows (e.g. benchmark results), one group per category, one bar per series.

    Args:
        path: output ``.png``.
        rows: mappings (one per measurement), e.g. ``{"op": "copynce", "impl": "triton", "ms": 0.41}``.
        category: key whose values label the groups on the x axis (first-seen order).
        value: key of the bar height (a number; rows where it is None or not finite are skipped).
        series: key whose values get one colour each inside a group, with a legend (None: one bar per group).
        title, ylabel, xlabel: text around the chart (``ylabel`` defaults to ``value``).
        log_scale: logarithmic y axis (timings spanning orders of magnitude).
        size: (width, height) in pixels, at least 200 × 150.
        value_format: format of the number printed on each bar.

    Returns:
        The written path.
    """
    w, h = _check_size(size)
    if not rows:
        raise ValueError("rows: nothing to draw")
    for key, name in ((category, "category"), (value, "value"), (series, "series")):
        if key is not None and any(key not in r for r in rows):
            raise ValueError(f"{name}: key {key!r} is missing from some rows")
    kept = [r for r in rows if r[value] is not None and np.isfinite(float(r[value]))]
    categories = list(dict.fromkeys(str(r[category]) for r in kept))
    groups = list(dict.fromkeys(str(r[series]) for r in kept)) if series else [""]
    heights = {(str(r[category]), str(r[series]) if series else ""): float(r[value]) for r in kept}
    width = 0.8 / len(groups)
    x = np.arange(len(categories))
    with styled():
        fig = pixel_figure(w, h)
        fig.set_layout_engine("constrained")
        ax = fig.add_subplot()
        ax.grid(axis="x", visible=False)
        for k, g in enumerate(groups):
            idx = [i for i, c in enumerate(categories) if (c, g) in heights]
            bars = ax.bar(x[idx] + (k - (len(groups) - 1) / 2) * width, [heights[categories[i], g] for i in idx],
                          width * 0.92, label=g or None)
            ax.bar_label(bars, labels=[value_format.format(b.get_height()) for b in bars], padding=2, fontsize=8)
        crowded = max(map(len, categories), default=0) * len(categories) > w / 8  # ~8 px per character
        ax.set_xticks(x, categories, rotation=30 if crowded else 0, ha="right" if crowded else "center")
        if log_scale:
            ax.set_yscale("log")
            top = max(heights.values(), default=1.0)
            ax.set_ylim(top=top * 1.6)  # room for the value labels: a constant factor on a log axis
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.1, 1, 10 rather than 10^k
        else:
            ax.margins(y=0.12)  # room for the value labels
        ax.set_ylabel(ylabel or value)
        if xlabel:
            ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title, loc="left")
        if series:  # outside the plot area: never on top of a bar or its label
            fig.legend(title=series, loc="outside right upper")
    return save_png(fig, path)
