"""A view: the chain of geometric stages that turns an original image into an edited copy.

A ``View`` is what an augmentation plan knows about geometry. Two views of one original (query and reference,
or two copies) are related through the original: ``trace_path(a, b)`` is the list of steps that takes a point
of view ``a`` back to the original and forward into view ``b``, with the canvas each step must land in.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from copynce_fast.pixtrace.stages import Stage, _check_hw, fill_inverses

__all__ = ["View", "TracePath", "trace_path", "path_steps", "SNAP"]

# Points are snapped to 1/SNAP px before any floor / inside test, so results do not depend on float precision.
SNAP = 256.0


@dataclass(frozen=True)
class View:
    """An edited copy of an original of size ``source_hw``: its geometric stages, in order.

    Args:
        source_hw: (height, width) of the original.
        stages: the geometric stages, first applied first; each one's ``in_hw`` is the previous ``out_hw``.
        occluder: optional bool mask [H, W] in the view's own (final) frame, True where the view shows no
            content of the original (text, emoji, strokes, erasing, an opaque paste on top).
    """

    source_hw: tuple[int, int]
    stages: tuple[Stage, ...] = ()
    occluder: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "source_hw", _check_hw("source_hw", self.source_hw))
        object.__setattr__(self, "stages", tuple(self.stages))
        hw = self.source_hw
        for k, st in enumerate(self.stages):
            if not isinstance(st, Stage):
                raise ValueError(f"stages[{k}]: expected a Stage, got {type(st).__name__}")
            if st.in_hw != hw:
                raise ValueError(f"stages[{k}] ({st.name}): in_hw {st.in_hw} does not match the previous canvas {hw}")
            hw = st.out_hw
        fill_inverses(self.stages)  # executors and trace paths invert every stage of a view: one LAPACK call
        if self.occluder is not None:
            occ = np.asarray(self.occluder, dtype=bool)
            if occ.shape != hw:
                raise ValueError(f"occluder: expected a mask of shape {hw}, got {occ.shape}")
            object.__setattr__(self, "occluder", occ)

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.stages[-1].out_hw if self.stages else self.source_hw

    def then(self, stage: Stage) -> "View":
        """This view followed by one more stage (occluders must be added after the last stage)."""
        if self.occluder is not None:
            raise ValueError("stage: cannot add a stage after an occluder; warp the mask with occluder_after()")
        return View(self.source_hw, self.stages + (stage,))

    def with_occluder(self, mask: np.ndarray | None) -> "View":
        """This view with an occluder mask in its final frame (OR-ed with an existing one)."""
        if mask is None:
            return self
        mask = np.asarray(mask, dtype=bool)
        if self.occluder is not None:
            mask = mask | self.occluder
        return View(self.source_hw, self.stages, mask)

    def matrix(self) -> np.ndarray:
        """The composed homography original -> view (validity of intermediate canvases not included)."""
        m = np.eye(3)
        for st in self.stages:
            m = st.matrix @ m
        return m

    def map_to_source(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map points of this view back to the original. xy [N, 2] (x, y) -> (xy_src [N, 2], valid [N] bool)."""
        path = trace_path(self, View(self.source_hw))
        return path.map_points(xy, src_occluder=self.occluder)

    def map_from_source(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map points of the original into this view. xy [N, 2] -> (xy_view [N, 2], valid [N] bool)."""
        path = trace_path(View(self.source_hw), self)
        return path.map_points(xy, dst_occluder=self.occluder)


@dataclass(frozen=True)
class TracePath:
    """Steps taking points of a source view to a destination view through their shared original.

    ``matrices[t]`` maps the point after step t-1 to the point after step t; the point after step t must lie
    inside ``canvases[t]`` = (H, W), else the correspondence is invalid.
    """

    matrices: np.ndarray  # [T, 3, 3] float64
    canvases: np.ndarray  # [T, 2] int64 (H, W)
    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]

    def padded(self, num_steps: int) -> "TracePath":
        """The same path with identity steps appended (for batching paths of different lengths)."""
        t = len(self.matrices)
        if num_steps < t:
            raise ValueError(f"num_steps: {num_steps} is shorter than the path ({t} steps)")
        mats = np.concatenate([self.matrices, np.broadcast_to(np.eye(3), (num_steps - t, 3, 3))])
        canv = np.concatenate([self.canvases, np.broadcast_to(np.array(self.dst_hw), (num_steps - t, 2))])
        return TracePath(mats, canv.astype(np.int64), self.src_hw, self.dst_hw)

    def map_points(self, xy, src_occluder=None, dst_occluder=None) -> tuple[np.ndarray, np.ndarray]:
        """Map points (x, y) [N, 2] along the path in float64 with the snapping rule.

        Returns (xy_dst [N, 2], valid [N]). Occluders, if given, invalidate points whose source or destination
        pixel is occluded.
        """
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        valid = np.ones(len(xy), dtype=bool)
        if src_occluder is not None:
            valid &= _mask_lookup(src_occluder, xy)
        p = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        for m, (h, w) in zip(self.matrices, self.canvases):
            p = p @ m.T
            den = p[:, 2:3]
            valid &= den[:, 0] > 0  # behind the horizon of a perspective map
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(den > 0, p / np.where(den > 0, den, 1.0), 0.0)
            valid &= _inside(p[:, 0], p[:, 1], h, w)
        out = p[:, :2]
        if dst_occluder is not None:
            valid &= _mask_lookup(dst_occluder, out, valid)
        return out, valid


def snap(v: np.ndarray) -> np.ndarray:
    """Snap coordinates to 1/SNAP px, as integers in 1/SNAP units (round half to even)."""
    return np.rint(v * SNAP)


def pixel_index(v: np.ndarray) -> np.ndarray:
    """The pixel index a continuous coordinate falls in, after snapping."""
    return np.floor_divide(snap(v), SNAP).astype(np.int64)


def _inside(x, y, h, w) -> np.ndarray:
    sx, sy = snap(x), snap(y)
    return (sx >= 0) & (sx < w * SNAP) & (sy >= 0) & (sy < h * SNAP)


def _mask_lookup(mask: np.ndarray, xy: np.ndarray, valid=None) -> np.ndarray:
    """True where the point's pixel is NOT occluded (points outside the mask count as not occluded)."""
    h, w = mask.shape
    col, row = pixel_index(xy[:, 0]), pixel_index(xy[:, 1])
    ok = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    if valid is not None:
        ok &= valid
    free = np.ones(len(xy), dtype=bool)
    free[ok] = ~mask[row[ok], col[ok]]
    return free


def path_steps(src: View, dst: View) -> tuple[list, list]:
    """The steps of ``trace_path(src, dst)`` as lists: (matrices [3, 3] float64, canvases (H, W)); empty when
    neither view has a stage. Raises ValueError when the views are of different originals."""
    if src.source_hw != dst.source_hw:
        raise ValueError(f"dst: views of different originals (source_hw {src.source_hw} vs {dst.source_hw})")
    back = src.stages[::-1]  # back to the original: each step lands in that stage's input canvas
    mats = [st.inverse for st in back] + [st.matrix for st in dst.stages]
    canv = [st.in_hw for st in back] + [st.out_hw for st in dst.stages]  # forward into dst: output canvases
    return mats, canv


def trace_path(src: View, dst: View) -> TracePath:
    """The steps from view ``src`` back to the original and forward into view ``dst``.

    Both views must be views of the same original (same ``source_hw``). ``trace_path(q, r)`` gives q->r
    correspondences, ``trace_path(r, q)`` r->q, and two copies of one original give copy<->copy.
    """
    mats, canv = path_steps(src, dst)
    if not mats:
        mats, canv = [np.eye(3)], [src.source_hw]
    return TracePath(np.stack(mats), np.array(canv, dtype=np.int64), src.out_hw, dst.out_hw)
