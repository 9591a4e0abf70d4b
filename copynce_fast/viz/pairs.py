"""Pictures of traced training pairs: query | reference with lines from query patches to where they went.

One row per pair. Query patches are shaded by their invalid fraction (dark = no correspondence in the
reference); each line joins a query patch to the reference patch that received most of its pixels (from the
exact overlap counts), one colour per line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib import colormaps

from copynce_fast.viz.style import pixel_axes, pixel_figure, pt, save_png, styled

__all__ = ["TracedPair", "save_pairs"]

GAP = 12  # image pixels between query and reference (before scaling)
TITLE = 26  # figure pixels above each row for its title
ROW_GAP = 10  # figure pixels between rows


@dataclass
class TracedPair:
    """One pair to draw.

    Attributes:
        query, reference: [3, H, W] uint8 (or float in [0, 1]) images.
        counts_qr: [Lq, Lr + 1] overlap counts of this pair (last column = pixels with no correspondence).
        patch: patch size in pixels (both images are multiples of it).
        title: one line above the row ("" for none).
    """

    query: torch.Tensor
    reference: torch.Tensor
    counts_qr: torch.Tensor
    patch: int
    title: str = ""


def _hwc(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] uint8 or float in [0, 1] -> [H, W, 3] uint8."""
    a = x.detach().cpu()
    if a.is_floating_point():
        a = (a.clamp(0, 1) * 255).round()
    return a.to(torch.uint8).permute(1, 2, 0).numpy()


def _side_by_side(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """[max(Hq, Hr), Wq + GAP + Wr, 3] uint8 on white."""
    h = max(q.shape[0], r.shape[0])
    out = np.full((h, q.shape[1] + GAP + r.shape[1], 3), 255, dtype=np.uint8)
    out[:q.shape[0], :q.shape[1]] = q
    out[:r.shape[0], q.shape[1] + GAP:] = r
    return out


def _draw_pair(ax, pair: TracedPair, max_lines: int, seed: int) -> None:
    q, r = _hwc(pair.query), _hwc(pair.reference)
    p = pair.patch
    canvas = _side_by_side(q, r)
    ax.imshow(canvas, interpolation="nearest", extent=(0, canvas.shape[1], canvas.shape[0], 0))
    c = pair.counts_qr.detach().cpu().to(torch.float64)
    gq_h, gq_w = q.shape[0] // p, q.shape[1] // p
    gr_w = r.shape[1] // p
    # shade: one black RGBA texel per query patch, alpha = 0.63 × invalid fraction, stretched over the patch
    invalid = (c[:, -1] / c.sum(1).clamp_min(1)).numpy().reshape(gq_h, gq_w)
    shade = np.zeros((gq_h, gq_w, 4))
    shade[..., 3] = 0.63 * invalid
    ax.imshow(shade, interpolation="nearest", extent=(0, gq_w * p, gq_h * p, 0))
    best = c[:, :-1].argmax(1).numpy()
    valid = np.nonzero(c[:, :-1].max(1).values.numpy() > 0)[0]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(valid, size=min(max_lines, len(valid)), replace=False)) if len(valid) else []
    hues = colormaps["hsv"]
    for n, i in enumerate(chosen):
        qy, qx = divmod(int(i), gq_w)
        ry, rx = divmod(int(best[i]), gr_w)
        ax.plot([(qx + 0.5) * p, q.shape[1] + GAP + (rx + 0.5) * p], [(qy + 0.5) * p, (ry + 0.5) * p],
                color=hues(n / max(len(chosen), 1)), linewidth=pt(2), marker="o", markersize=pt(7),
                markerfacecolor="none", markeredgewidth=pt(2))
    ax.set_xlim(0, canvas.shape[1])
    ax.set_ylim(canvas.shape[0], 0)
    ax.set_axis_off()
    if pair.title:
        ax.set_title(pair.title, loc="left", fontsize=10, fontweight="normal", pad=4)


def save_pairs(pairs: Sequence[TracedPair], path: str | Path, *, scale: int = 3, max_lines: int = 40,
               seed: int = 0) -> Path:
    """Draw ``pairs`` one per row, each image enlarged ``scale`` times, into one PNG.

    Args:
        pairs: the pairs (:class:`TracedPair`), drawn top to bottom.
        path: output ``.png``.
        scale: figure pixels per image pixel.
        max_lines: at most this many query patches get a line (a seeded random choice among the traced ones).
        seed: seed of that choice.

    Returns:
        The written path.
    """
    if not pairs:
        raise ValueError("pairs: nothing to draw")
    if scale < 1:
        raise ValueError(f"scale: must be >= 1, got {scale}")
    boxes = []  # (width, height) in figure pixels of each row's image area
    for pair in pairs:
        hq, wq = pair.query.shape[-2:]
        hr, wr = pair.reference.shape[-2:]
        boxes.append((scale * (wq + GAP + wr), scale * max(hq, hr)))
    width = max(w for w, _ in boxes)
    height = sum(h + TITLE + ROW_GAP for _, h in boxes)
    with styled():
        fig = pixel_figure(width, height)
        top = 0
        for pair, (w, h) in zip(pairs, boxes):
            _draw_pair(pixel_axes(fig, 0, top + TITLE, w, h), pair, max_lines, seed)
            top += h + TITLE + ROW_GAP
    return save_png(fig, path)
