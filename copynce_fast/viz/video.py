"""The picture of a video pair: the frame similarity matrix, with the copied segments found (and the truth).

Axes in seconds: reference time to the right, query time downwards (as the matrix reads). Each matrix cell
covers its two frames' ``[start, end]`` intervals, so a segment ``[query_start, query_end] × [ref_start,
ref_end]`` is drawn exactly over the cells it spans: found segments as solid boxes with their scores,
ground-truth segments (optional) as dashed boxes. Large matrices (an hour at 1 fps is 3600 × 3600) are
max-pooled to at most ``max_cells`` cells per side for display, so a thin copied diagonal stays visible.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from matplotlib.patches import Rectangle

from copynce_fast.viz.style import pixel_axes, pixel_figure, pt, save_png, styled

__all__ = ["plot_video_pair", "SegmentLike"]

_FOUND, _TRUTH = "#ff3030", "#ffffff"


class SegmentLike(Protocol):
    """A copied segment (``copynce_fast.video.segments.Match``)."""

    query_start: float
    query_end: float
    ref_start: float
    ref_end: float
    score: float


def _edges(ts: np.ndarray, name: str) -> np.ndarray:
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 2 or ts.shape[1] != 2 or len(ts) == 0:
        raise ValueError(f"{name} must be (N >= 1, 2) [start, end] seconds, got shape {ts.shape}")
    return np.r_[ts[:, 0], ts[-1, 1]]


def _pool(sim: np.ndarray, max_cells: int) -> tuple[np.ndarray, int, int]:
    """Max-pool ``sim`` by whole factors so that no side exceeds ``max_cells``; returns (pooled, fq, fr)."""
    fq, fr = -(-sim.shape[0] // max_cells), -(-sim.shape[1] // max_cells)
    if fq == fr == 1:
        return sim, 1, 1
    q, r = -(-sim.shape[0] // fq) * fq, -(-sim.shape[1] // fr) * fr
    padded = np.full((q, r), -np.inf, dtype=np.float32)
    padded[:sim.shape[0], :sim.shape[1]] = sim
    return padded.reshape(q // fq, fq, r // fr, fr).max(axis=(1, 3)), fq, fr


def plot_video_pair(path: str | Path, sim: np.ndarray, query_ts: np.ndarray, ref_ts: np.ndarray,
                    segments: Sequence[SegmentLike] = (), *, truth: Sequence[SegmentLike] = (),
                    title: str | None = None, size: tuple[int, int] = (760, 640), max_cells: int = 1000) -> Path:
    """Write the similarity matrix of a video pair with its segments as a PNG.

    Args:
        path: output PNG.
        sim: (Q, R) similarities of query frames (rows) to reference frames (columns).
        query_ts, ref_ts: (Q, 2) / (R, 2) frame ``[start, end]`` seconds.
        segments: found segments (solid boxes, score printed at the top-left corner).
        truth: ground-truth segments (dashed boxes).
        title: the line above the plot (default: the number of segments).
        size: (width, height) in pixels.
        max_cells: display resolution limit per side (max-pooling beyond it).

    Returns:
        ``path``.
    """
    sim = np.asarray(sim, dtype=np.float32)
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(f"sim must be a non-empty (Q, R) matrix, got shape {sim.shape}")
    qe, re_ = _edges(query_ts, "query_ts"), _edges(ref_ts, "ref_ts")
    if len(qe) - 1 != sim.shape[0] or len(re_) - 1 != sim.shape[1]:
        raise ValueError(f"sim {sim.shape} does not match {len(qe) - 1} query and {len(re_) - 1} reference frames")
    shown, fq, fr = _pool(sim, max_cells)
    qe = np.r_[qe[:-1:fq], qe[-1]]
    re_ = np.r_[re_[:-1:fr], re_[-1]]
    w, h = size
    fig = pixel_figure(w, h)
    with styled():
        ax = pixel_axes(fig, 70, 40, w - 190, h - 96)
        uniform = np.allclose(np.diff(qe), np.diff(qe)[0]) and np.allclose(np.diff(re_), np.diff(re_)[0])
        finite = shown[np.isfinite(shown)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if uniform:  # one image, exact cell edges
            art = ax.imshow(shown, extent=(re_[0], re_[-1], qe[-1], qe[0]), origin="upper", aspect="auto",
                            interpolation="nearest", cmap="viridis", vmin=lo, vmax=hi)
        else:  # scene-cut samples: cells of their own widths
            art = ax.pcolormesh(re_, qe, shown, cmap="viridis", vmin=lo, vmax=hi, shading="flat")
            ax.set_ylim(qe[-1], qe[0])
        ax.grid(False)
        for seg, colour, dash in [(t, _TRUTH, (0, (4, 3))) for t in truth] + [(s, _FOUND, "solid") for s in segments]:
            ax.add_patch(Rectangle((seg.ref_start, seg.query_start), seg.ref_end - seg.ref_start,
                                   seg.query_end - seg.query_start, fill=False, edgecolor=colour,
                                   linewidth=pt(2), linestyle=dash))
            if colour == _FOUND:
                ax.text(seg.ref_start, seg.query_start, f"{seg.score:.2f}", color="white", fontsize=pt(11),
                        va="bottom", ha="left", clip_on=True,
                        bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.5, "alpha": 0.85})
        ax.set_xlabel("reference time (s)")
        ax.set_ylabel("query time (s)")
        ax.set_title(title or f"{len(segments)} copied segment(s) found" +
                     (f", {len(truth)} true (dashed)" if truth else ""), loc="left")
        cax = pixel_axes(fig, w - 100, 40, 16, h - 96)
        fig.colorbar(art, cax=cax, label="frame similarity")
    return save_png(fig, path)
