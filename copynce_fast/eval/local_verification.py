"""Local-crop verification views for the matcher (REFERENCE §7.4, "matcher LCE").

Each query is seen as 26 views and each reference as 10, built on the decoded original (W×H) with integer
box arithmetic like the reference, then each view is resized to S×S:

query (26, in this order)
    0       full image
    1       central third ``(W//3, H//3, 2W//3, 2H//3)``
    2-5     third-size crops with top-left corners (W//6 | W//2, H//6 | H//2):
            ``(W//6, H//6, W//2, H//2)``, ``(W//2, H//6, 5W//6, H//2)``, ``(W//6, H//2, W//2, 5H//6)``,
            ``(W//2, H//2, 5W//6, 5H//6)``
    6-9     quadrants TL, TR, BL, BR (split at W//2, H//2)
    10-18   the 3×3 grid cells (split at W//3, 2W//3 and H//3, 2H//3), row-major
    19-25   rotations by 45°, 90°, ..., 315° counter-clockwise (PIL ``rotate(angle, expand=True)``,
            bicubic, black fill)
reference (10)
    0       full image
    1-5     the same central third + four third-size crops as query views 1-5
    6-9     the same quadrants as query views 6-9

Boxes are ``(left, top, right, bottom)`` in PIL's crop convention (right/bottom exclusive). For images
narrower or shorter than 6 px a box can be empty; it is widened to 1 px (the reference would fail there).

A pair is scored by 35 matcher passes (:data:`PAIR_VIEWS`): every query view against the full reference (26)
and the full query against every other reference view (9); the score is the maximum sigmoid. The reference
re-encodes both images for each of the 35 passes; :mod:`copynce_fast.eval.matcher_eval` encodes each view
once (36 encoder passes per new query/reference pair instead of 70) and runs only the fusion 35 times.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PIL import Image

N_QUERY_VIEWS = 26
N_REFERENCE_VIEWS = 10
# (query view, reference view) index pairs, in the order the reference runs them
PAIR_VIEWS: tuple[tuple[int, int], ...] = tuple([(i, 0) for i in range(N_QUERY_VIEWS)]
                                                + [(0, j) for j in range(1, N_REFERENCE_VIEWS)])
ROTATIONS = (45, 90, 135, 180, 225, 270, 315)


@dataclass(frozen=True)
class ViewSpec:
    """One view: ``kind`` "full", "crop" (with ``box`` = (left, top, right, bottom)) or "rotate" (``angle``
    degrees counter-clockwise, canvas expanded)."""

    kind: Literal["full", "crop", "rotate"]
    box: tuple[int, int, int, int] | None = None
    angle: int = 0


def _crop(left: int, top: int, right: int, bottom: int) -> ViewSpec:
    return ViewSpec("crop", (left, top, max(right, left + 1), max(bottom, top + 1)))


def _thirds(w: int, h: int) -> list[ViewSpec]:
    """The central third and the four third-size crops around it (views 1-5 of both sides)."""
    return [
        _crop(w // 3, h // 3, 2 * w // 3, 2 * h // 3),
        _crop(w // 6, h // 6, w // 2, h // 2),
        _crop(w // 2, h // 6, 5 * w // 6, h // 2),
        _crop(w // 6, h // 2, w // 2, 5 * h // 6),
        _crop(w // 2, h // 2, 5 * w // 6, 5 * h // 6),
    ]


def _quadrants(w: int, h: int) -> list[ViewSpec]:
    return [_crop(0, 0, w // 2, h // 2), _crop(w // 2, 0, w, h // 2),
            _crop(0, h // 2, w // 2, h), _crop(w // 2, h // 2, w, h)]


def _check_size(width: int, height: int) -> None:
    if isinstance(width, bool) or isinstance(height, bool) or int(width) < 1 or int(height) < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")


def query_views(width: int, height: int) -> list[ViewSpec]:
    """The 26 query views of a ``width``×``height`` image (module docstring)."""
    _check_size(width, height)
    w, h = int(width), int(height)
    xs, ys = (0, w // 3, 2 * w // 3, w), (0, h // 3, 2 * h // 3, h)
    grid = [_crop(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(3) for c in range(3)]
    views = [ViewSpec("full"), *_thirds(w, h), *_quadrants(w, h), *grid,
             *(ViewSpec("rotate", angle=a) for a in ROTATIONS)]
    assert len(views) == N_QUERY_VIEWS
    return views


def reference_views(width: int, height: int) -> list[ViewSpec]:
    """The 10 reference views of a ``width``×``height`` image (module docstring)."""
    _check_size(width, height)
    views = [ViewSpec("full"), *_thirds(int(width), int(height)), *_quadrants(int(width), int(height))]
    assert len(views) == N_REFERENCE_VIEWS
    return views


def render_view(img: Image.Image, spec: ViewSpec) -> Image.Image:
    """The pixels of one view of an RGB image (before the S×S resize)."""
    if spec.kind == "full":
        return img
    if spec.kind == "crop":
        return img.crop(spec.box)
    if spec.kind == "rotate":
        return img.rotate(spec.angle, resample=Image.BICUBIC, expand=True)  # fill: black, as the reference
    raise ValueError(f"unknown view kind {spec.kind!r}")


def render_views(img: Image.Image, side: Literal["query", "reference"]) -> list[Image.Image]:
    """All local-verification views of ``img`` for ``side`` ("query": 26, "reference": 10)."""
    if side == "query":
        specs = query_views(img.width, img.height)
    elif side == "reference":
        specs = reference_views(img.width, img.height)
    else:
        raise ValueError(f"side must be 'query' or 'reference', got {side!r}")
    return [render_view(img, s) for s in specs]
