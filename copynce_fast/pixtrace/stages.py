"""Geometric stages: one 3x3 homography from an input canvas to an output canvas.

Pixel convention (used by every executor and by PixTrace; see DEVELOPING.md): pixel ``(row, col)`` covers
``[col, col+1) x [row, row+1)`` in continuous ``(x, y)`` coordinates, its centre is ``(col+0.5, row+0.5)``,
and a stage maps homogeneous column vectors ``(x, y, 1)`` of its input canvas to its output canvas. With this
convention resize, flips and rotations about the image centre are exact rational maps, the same ones that
PIL, OpenCV and DALI implement when they sample at pixel centres.

The region of the output that shows input content is implicit: an output point shows content iff its
pre-image lies inside the input canvas. Padding, pastes into a larger canvas and rotations therefore need no
extra bookkeeping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Stage", "identity", "crop", "resize", "resized_crop", "hflip", "vflip", "rotate", "shear", "affine",
    "perspective", "pad", "paste", "snap_angle", "perspective_matrix", "fill_inverses",
]


def _check_hw(name: str, hw) -> tuple[int, int]:
    if type(hw) is tuple and len(hw) == 2:  # the common case, without the generic conversion below
        h, w = hw
        if type(h) is int and type(w) is int and h > 0 and w > 0:
            return hw
    try:
        h, w = (int(v) for v in hw)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (height, width), got {hw!r}") from None
    if h <= 0 or w <= 0 or (h, w) != tuple(hw):
        raise ValueError(f"{name}: expected positive integer (height, width), got {hw!r}")
    return h, w


@dataclass(frozen=True)
class Stage:
    """One geometric edit: ``matrix`` maps input-canvas points to output-canvas points.

    Args:
        matrix: (3, 3) float64 homography, input (x, y, 1) -> output (x', y', w'); must be finite and invertible.
        in_hw: (height, width) of the input canvas in pixels.
        out_hw: (height, width) of the output canvas in pixels.
        name: what produced it (for repr and debugging only).

    ``inverse`` (the (3, 3) float64 ``np.linalg.inv(matrix)``) is computed on first use, or for all stages of a
    :class:`~copynce_fast.pixtrace.view.View` at once by :func:`fill_inverses` -- the same bits either way.
    """

    matrix: np.ndarray
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    name: str = "stage"

    def __post_init__(self):
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape != (3, 3):
            raise ValueError(f"matrix: expected shape (3, 3), got {m.shape}")
        # Checks on the 9 numbers as Python floats: a plan makes a few stages per view, and numpy's per-call
        # overhead on a 3x3 array was most of their cost.
        v = m.ravel().tolist()
        if not all(map(math.isfinite, v)):
            raise ValueError(f"matrix: must be finite, got {m.tolist()}")
        # Relative conditioning test: a homography this close to singular folds the plane.
        scale = max(map(abs, v))
        if scale == 0 or not _conditioned(m, v, scale):
            raise ValueError(f"matrix: singular homography for stage {self.name!r}: {m.tolist()}")
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "in_hw", _check_hw("in_hw", self.in_hw))
        object.__setattr__(self, "out_hw", _check_hw("out_hw", self.out_hw))

    @property
    def inverse(self) -> np.ndarray:
        """(3, 3) float64 inverse of ``matrix`` (output canvas -> input canvas); computed once."""
        inv = self.__dict__.get("_inverse")
        if inv is None:
            inv = np.linalg.inv(self.matrix)
            object.__setattr__(self, "_inverse", inv)
        return inv

    def inverted(self) -> "Stage":
        """The stage that undoes this one (output canvas -> input canvas)."""
        return Stage(self.inverse, self.out_hw, self.in_hw, name=f"inv({self.name})")


_DET_MIN = 1e-12  # |det(matrix / max |entry|)| below this: singular


def _conditioned(m: np.ndarray, v: list, scale: float) -> bool:
    """``|np.linalg.det(m / scale)| >= _DET_MIN``, decided by the closed-form determinant where it is clear.

    Entries of ``m / scale`` are at most 1 in magnitude, so the closed form and LAPACK's LU agree to ~1e-15
    (measured: 7e-16 on 30k plan and random matrices); within twice the threshold LAPACK decides, as before.
    """
    a, b, c, d, e, f, g, h, i = (x / scale for x in v)
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if abs(det) >= 2 * _DET_MIN:
        return True
    return bool(abs(np.linalg.det(m / scale)) >= _DET_MIN)


def fill_inverses(stages) -> None:
    """Compute the inverses ``stages`` do not hold yet in one batched ``np.linalg.inv`` call.

    LAPACK inverts each matrix of a stack on its own, so every inverse has the bits of a call of its own
    (tests/test_pixtrace_geometry.py checks it); one call costs ~2x one matrix instead of ~1x per matrix.
    """
    todo = [s for s in stages if "_inverse" not in s.__dict__]
    if len(todo) < 2:
        return  # zero or one: computed when used
    for s, inv in zip(todo, np.linalg.inv(np.stack([s.matrix for s in todo]))):
        object.__setattr__(s, "_inverse", inv)


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _scale(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def identity(hw) -> Stage:
    hw = _check_hw("hw", hw)
    return Stage(np.eye(3), hw, hw, "identity")


def crop(in_hw, top: int, left: int, height: int, width: int) -> Stage:
    """Crop the box (top, left, height, width); parts of the box outside the input show nothing."""
    return Stage(_translate(-left, -top), in_hw, (height, width), "crop")


def resize(in_hw, out_hw) -> Stage:
    """Scale the whole canvas to ``out_hw`` (centre-aligned: x' = x * W_out / W_in)."""
    h, w = _check_hw("in_hw", in_hw)
    oh, ow = _check_hw("out_hw", out_hw)
    return Stage(_scale(ow / w, oh / h), (h, w), (oh, ow), "resize")


def resized_crop(in_hw, top: float, left: float, height: float, width: float, out_hw) -> Stage:
    """Crop the (possibly fractional) box and scale it to ``out_hw`` (RandomResizedCrop)."""
    if not (height > 0 and width > 0):
        raise ValueError(f"height/width: crop box must be non-empty, got {height}x{width}")
    oh, ow = _check_hw("out_hw", out_hw)
    m = _scale(ow / width, oh / height) @ _translate(-left, -top)
    return Stage(m, in_hw, (oh, ow), "resized_crop")


def hflip(in_hw) -> Stage:
    h, w = _check_hw("in_hw", in_hw)
    return Stage(np.array([[-1.0, 0.0, w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), (h, w), (h, w), "hflip")


def vflip(in_hw) -> Stage:
    h, w = _check_hw("in_hw", in_hw)
    return Stage(np.array([[1.0, 0.0, 0.0], [0.0, -1.0, h], [0.0, 0.0, 1.0]]), (h, w), (h, w), "vflip")


def snap_angle(angle: float, tolerance: float = 22.5) -> float:
    """The reference's snapping RandomAffine: an angle within ``tolerance`` degrees of a right angle becomes it."""
    nearest = 90.0 * round(angle / 90.0)
    return float(nearest % 360.0) if abs(angle - nearest) <= tolerance else float(angle % 360.0)


def _rotation_linear(angle: float) -> np.ndarray:
    # Counter-clockwise on screen for positive angles (PIL / torchvision); y points down, hence the signs.
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def _about_center(linear: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    cx, cy = center
    return _translate(cx, cy) @ linear @ _translate(-cx, -cy)


def rotate(in_hw, angle: float, center: tuple[float, float] | None = None) -> Stage:
    """Rotate by ``angle`` degrees counter-clockwise about ``center`` (default: canvas centre); same canvas.

    Right angles are exact: the matrix entries are snapped to {-1, 0, 1} so that rotated pixel centres land on
    pixel centres of a square canvas.
    """
    h, w = _check_hw("in_hw", in_hw)
    lin = _rotation_linear(angle)
    lin[:2, :2] = np.where(np.abs(lin[:2, :2]) < 1e-12, 0.0, lin[:2, :2])
    lin[:2, :2] = np.where(np.abs(np.abs(lin[:2, :2]) - 1) < 1e-12, np.sign(lin[:2, :2]), lin[:2, :2])
    return Stage(_about_center(lin, center or (w / 2, h / 2)), (h, w), (h, w), "rotate")


def shear(in_hw, shear_x: float = 0.0, shear_y: float = 0.0, center: tuple[float, float] | None = None) -> Stage:
    """Shear by angles (degrees) along x then y about ``center``; same canvas."""
    h, w = _check_hw("in_hw", in_hw)
    if not (abs(shear_x) < 89.0 and abs(shear_y) < 89.0):
        raise ValueError(f"shear_x/shear_y: must be within (-89, 89) degrees, got {shear_x}, {shear_y}")
    u, v = math.tan(math.radians(shear_x)), math.tan(math.radians(shear_y))
    lin = np.array([[1.0, u, 0.0], [v, 1.0 + u * v, 0.0], [0.0, 0.0, 1.0]])
    return Stage(_about_center(lin, center or (w / 2, h / 2)), (h, w), (h, w), "shear")


def affine(in_hw, matrix, out_hw=None) -> Stage:
    """A general affine map given as a (2, 3) or (3, 3) matrix in pixel coordinates."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    # np.allclose(m[2], [0, 0, 1]) (rtol 1e-5, atol 1e-8), on three Python floats
    if m.shape != (3, 3) or not all(abs(x - y) <= 1e-8 + 1e-5 * abs(y)
                                    for x, y in zip(m[2].tolist(), (0.0, 0.0, 1.0))):
        raise ValueError(f"matrix: expected an affine (2, 3) or (3, 3) matrix, got {m.tolist()}")
    return Stage(m, in_hw, out_hw if out_hw is not None else in_hw, "affine")


def perspective_matrix(src_pts, dst_pts) -> np.ndarray:
    """The homography taking 4 source points (x, y) to 4 destination points (4-point DLT, exact solve)."""
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.shape != (4, 2) or dst.shape != (4, 2):
        raise ValueError(f"src_pts/dst_pts: expected shape (4, 2), got {src.shape} and {dst.shape}")
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for k, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[2 * k] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * k + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * k], b[2 * k + 1] = u, v
    try:
        h = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise ValueError("src_pts/dst_pts: degenerate quadrilateral (three points collinear?)") from None
    return np.append(h, 1.0).reshape(3, 3)


def perspective(in_hw, src_pts, dst_pts, out_hw=None) -> Stage:
    """Perspective warp that moves ``src_pts`` to ``dst_pts`` (torchvision RandomPerspective semantics)."""
    return Stage(perspective_matrix(src_pts, dst_pts), in_hw, out_hw if out_hw is not None else in_hw,
                 "perspective")


def pad(in_hw, top: int, bottom: int, left: int, right: int) -> Stage:
    """Pad with an empty border (the padding shows no input content)."""
    h, w = _check_hw("in_hw", in_hw)
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"top/bottom/left/right: padding must be >= 0, got {(top, bottom, left, right)}")
    return Stage(_translate(left, top), (h, w), (h + top + bottom, w + left + right), "pad")


def paste(in_hw, canvas_hw, top: float, left: float, height: float, width: float) -> Stage:
    """Scale the image into the box (top, left, height, width) of a new canvas (the copy inside another image)."""
    h, w = _check_hw("in_hw", in_hw)
    if not (height > 0 and width > 0):
        raise ValueError(f"height/width: paste box must be non-empty, got {height}x{width}")
    m = _translate(left, top) @ _scale(width / w, height / h)
    return Stage(m, (h, w), canvas_hw, "paste")
