"""From a plan's stages to what an executor renders: composed warps, canvas tests and layer weights.

Rendering rule (the one that makes geometry exact): pixel (r, c) of a view shows the original at the point
PixTrace maps its centre to; pixels whose trace leaves any intermediate canvas show the fill (black, or the
other image where one is composited). A view is rendered as at most two warped layers:

    final = Q * [ (a + b * C) * P * copy + (d + g * C) * other ]

- ``copy``  = the copy's original warped by ``copy_matrix`` (view -> original), black outside the original;
- ``other`` = the overlay image warped by ``other_matrix`` (view -> other original), black outside it;
- ``P``, ``Q``, ``C`` = canvas tests (1 inside, 0 outside): ``P`` the intermediate canvases only the copy passes
  (before the composite), ``Q`` those both layers pass (at and after the composite), ``C`` the coverage of the
  composited layer (the copy's paste box for "beneath", the other image's box for "above");
- (a, b, d, g) = (1, 0, 0, 0) without overlay, (0, alpha, 1, -alpha) beneath, (1, -alpha, 0, alpha) above.

A canvas test is a 3x3 matrix (view -> that canvas) and the canvas size; tests implied by later ones (a stage
whose output shows only input content: resize, crop inside, flips) are dropped. All matrices are the
plan's pixtrace stages, composed -- PixTrace maps points with the same ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from copynce_fast.data.plan import AugmentPlan
from copynce_fast.data.resize import resize_antialiased
from copynce_fast.pixtrace.stages import Stage
from copynce_fast.pixtrace.view import SNAP

__all__ = ["CanvasTest", "LayerGeometry", "layer_geometry", "canvas_mask", "warp_coords", "sample_nearest",
           "sample_bilinear", "prefilter_scale", "antialiased_source"]


@dataclass(frozen=True)
class CanvasTest:
    """Points p of the view with ``matrix @ p`` (after homogeneous division) inside [0, W) x [0, H)."""

    matrix: np.ndarray  # [3, 3] float64, view -> canvas
    hw: tuple[int, int]


@dataclass(frozen=True)
class LayerGeometry:
    """Everything geometric an executor needs for one view (see the module docstring)."""

    out_hw: tuple[int, int]
    copy_matrix: np.ndarray  # [3, 3] view -> copy original
    source_hw: tuple[int, int]
    other_matrix: np.ndarray | None  # [3, 3] view -> other original, None without overlay
    other_hw: tuple[int, int] | None
    copy_tests: tuple[CanvasTest, ...]  # P (the original itself excluded: the warp's fill handles it)
    shared_tests: tuple[CanvasTest, ...]  # Q
    cover_test: CanvasTest | None  # C
    weights: tuple[float, float, float, float]  # (a, b, d, g)


def _inverse_chain(stages) -> np.ndarray:
    """Points after the last of ``stages`` -> points before the first: inv(s_0) @ inv(s_1) @ ... @ inv(s_n-1)."""
    if not stages:
        return np.eye(3)
    # eye(3) @ A == A + 0.0 bit for bit for finite A (1 * a and 0 * b are exact; only -0.0 becomes +0.0): one
    # matmul less per chain, the same matrices.
    m = stages[0].inverse + 0.0
    for s in stages[1:]:
        m = m @ s.inverse
    return m


def _reveals(stage: Stage) -> bool:
    """True if some output point of ``stage`` has no pre-image inside its input canvas (the test matters)."""
    oh, ow = stage.out_hw
    (a, b, c), (d, e, f), (g, hh, i) = stage.inverse.tolist()
    h, w = stage.in_hw
    tol = 1e-7 * max(h, w)
    # The output rectangle is convex and maps to a convex quadrilateral, so its corners decide. Python floats (a
    # few numpy calls on 4 points cost more than the maths); the products of a corner's 0 / integer coordinates
    # and the sums are those of the matmul up to its rounding order, far below ``tol``.
    for cx, cy in ((0.0, 0.0), (float(ow), 0.0), (float(ow), float(oh)), (0.0, float(oh))):
        z = g * cx + hh * cy + i
        if z <= 0:
            return True
        x, y = (a * cx + b * cy + c) / z, (d * cx + e * cy + f) / z
        if x < -tol or x > w + tol or y < -tol or y > h + tol:
            return True
    return False


def _tests(stages, first: int, last: int) -> tuple[CanvasTest, ...]:
    """Tests of the input canvases of stages[first:last] that matter, as view -> canvas matrices."""
    out = []
    for j in range(first, last):
        if _reveals(stages[j]):
            out.append(CanvasTest(_inverse_chain(stages[j:]), stages[j].in_hw))
    return tuple(out)


def layer_geometry(plan: AugmentPlan) -> LayerGeometry:
    """The composed warps, canvas tests and weights of ``plan`` (host, numpy; microseconds)."""
    view = plan.view
    stages = view.stages
    n = len(stages)
    copy_matrix = _inverse_chain(stages)
    ov = plan.overlay
    if ov is None:
        return LayerGeometry(view.out_hw, copy_matrix, view.source_hw, None, None, _tests(stages, 1, n), (), None,
                             (1.0, 0.0, 0.0, 0.0))
    after = stages[ov.at:]
    to_composite = _inverse_chain(after)  # view -> the composite canvas
    other_matrix = _inverse_chain(ov.other_stages) @ to_composite
    shared = _tests(stages, max(ov.at, 1), n)  # the original's own canvas: the warp's fill (both layers inside)
    if ov.mode == "beneath":
        paste = stages[ov.at - 1]
        cover = CanvasTest(paste.inverse @ to_composite, paste.in_hw)
        copy_tests = _tests(stages, 1, ov.at - 1)
        weights = (0.0, ov.alpha, 1.0, -ov.alpha)
    else:
        cover = CanvasTest(other_matrix, ov.other_hw)
        copy_tests = _tests(stages, 1, ov.at)
        weights = (1.0, -ov.alpha, 0.0, ov.alpha)
    return LayerGeometry(view.out_hw, copy_matrix, view.source_hw, other_matrix, ov.other_hw, copy_tests, shared,
                         cover, weights)


# --- torch evaluation (the CPU executor, masks for occluding overlays); float64, the snapping rule -------------

def _is_affine(matrix) -> bool:
    m = np.asarray(matrix)
    return bool(m[2, 0] == 0 and m[2, 1] == 0 and m[2, 2] == 1)


def warp_coords(matrix: np.ndarray, out_hw, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map every pixel centre of an out_hw view by ``matrix``: (x [H, W], y [H, W], in_front [H, W]) float64."""
    h, w = out_hw
    m = torch.as_tensor(np.asarray(matrix), dtype=torch.float64, device=device)
    ys = (torch.arange(h, dtype=torch.float64, device=device) + 0.5).view(h, 1)
    xs = (torch.arange(w, dtype=torch.float64, device=device) + 0.5).view(1, w)
    nx = (m[0, 0] * xs + m[0, 1] * ys) + m[0, 2]
    ny = (m[1, 0] * xs + m[1, 1] * ys) + m[1, 2]
    if _is_affine(matrix):  # nd = (0 x + 0 y) + 1 = 1 exactly: no division, every point in front
        return nx, ny, torch.ones((h, w), dtype=torch.bool, device=device)
    nd = (m[2, 0] * xs + m[2, 1] * ys) + m[2, 2]
    front = nd > 0
    nd = torch.where(front, nd, torch.ones_like(nd))
    return nx / nd, ny / nd, front


def canvas_mask(test: CanvasTest, out_hw, device=None) -> torch.Tensor:
    """Bool [H, W]: pixel centres whose image under ``test.matrix`` lies inside the canvas (snapped to 1/256)."""
    x, y, ok = warp_coords(test.matrix, out_hw, device)
    h, w = test.hw
    sx, sy = torch.round(x * SNAP), torch.round(y * SNAP)
    return ok & (sx >= 0) & (sx < w * SNAP) & (sy >= 0) & (sy < h * SNAP)


def sample_nearest(image: torch.Tensor, matrix: np.ndarray, out_hw) -> torch.Tensor:
    """Exact nearest sampling: out[:, r, c] = image[:, floor(snap(y)), floor(snap(x))], 0 outside.

    image [C, Hi, Wi] any dtype -> [C, H, W] same dtype. The pixel picked is the one PixTrace reports.
    """
    c, hi, wi = image.shape
    x, y, ok = warp_coords(matrix, out_hw, image.device)
    col = torch.div(torch.round(x * SNAP), SNAP, rounding_mode="floor").long()
    row = torch.div(torch.round(y * SNAP), SNAP, rounding_mode="floor").long()
    ok = ok & (col >= 0) & (col < wi) & (row >= 0) & (row < hi)
    flat = torch.where(ok, row * wi + col, 0).reshape(-1)
    out = image.reshape(c, -1)[:, flat].reshape(c, *out_hw)
    return torch.where(ok, out, torch.zeros((), dtype=image.dtype))


def prefilter_scale(matrix: np.ndarray, out_hw, threshold: float = 1.5) -> float:
    """How many source pixels one view pixel spans at the view centre, if above ``threshold`` (else 1.0).

    Used to shrink the source with an antialiasing resize before a bilinear warp (the reference resizes with
    PIL's antialiased bicubic; a bare bilinear warp would alias at 2x and more).
    """
    h, w = out_hw
    cx, cy = w / 2, h / 2
    pts = np.array([[cx, cy, 1], [cx + 1, cy, 1], [cx, cy + 1, 1]], dtype=np.float64) @ np.asarray(matrix).T
    if np.any(pts[:, 2] <= 0):
        return 1.0
    xy = pts[:, :2] / pts[:, 2:]
    jac = np.stack([xy[1] - xy[0], xy[2] - xy[0]])
    s = float(np.sqrt(abs(np.linalg.det(jac))))
    return s if s > threshold else 1.0


def _axis_aligned_box(matrix: np.ndarray, out_hw, in_hw):
    """If ``matrix`` (view -> source) is a flip/scale/translate whose source box has integer corners inside the
    source, return (top, left, bottom, right, flip_y, flip_x); else None."""
    # Python floats (numpy scalar indexing was most of the cost); the same IEEE divisions and products.
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = matrix.tolist()
    m00, m01, m02, m10, m11, m12, m20, m21 = (v / m22 for v in (m00, m01, m02, m10, m11, m12, m20, m21))
    if abs(m01) > 1e-12 or abs(m10) > 1e-12 or abs(m20) > 1e-12 or abs(m21) > 1e-12:
        return None
    h, w = out_hw
    xs = (m02, m00 * w + m02)
    ys = (m12, m11 * h + m12)
    box = [min(ys), min(xs), max(ys), max(xs)]
    ibox = [round(v) for v in box]
    if any(abs(a - b) > 1e-6 for a, b in zip(box, ibox)):
        return None
    top, left, bottom, right = ibox
    if top < 0 or left < 0 or bottom > in_hw[0] or right > in_hw[1] or bottom <= top or right <= left:
        return None
    return top, left, bottom, right, m11 < 0, m00 < 0


def _flip_matrix(hw, flip_y: bool, flip_x: bool) -> np.ndarray:
    """View -> box-output pixels: the identity, mirrored on the flipped axes (x -> W - x)."""
    h, w = hw
    return np.array([[-1.0 if flip_x else 1.0, 0.0, float(w) if flip_x else 0.0],
                     [0.0, -1.0 if flip_y else 1.0, float(h) if flip_y else 0.0],
                     [0.0, 0.0, 1.0]])


def antialiased_source(image: torch.Tensor, matrix: np.ndarray, out_hw, antialias: bool = True):
    """What a bilinear layer samples once its antialiased resizes are made: (source [C, H', W'], view -> source
    pixels [3, 3] float64, is_box). Both executors (torch below, C++ in data.warp_cpp) start here.

    - A crop + resize (+ flips) whose box has integer corners inside a uint8 image: the box resized to out_hw by
      ``data.resize.resize_antialiased`` (the same centre-aligned map, antialiased, uint8: the C++ kernel, read in
      place, bit-equal to ``F.interpolate``, which is the fallback and the path without antialias); the matrix is
      the identity, mirrored on the flipped axes; is_box True.
    - Anything else: the image, pre-shrunk by ``prefilter_scale`` when the warp down-scales by more than 1.5x
      (the reference resizes with PIL's antialiased bicubic; a bare bilinear warp would alias; the same
      ``resize_antialiased``), and the warp composed with that shrink; is_box False.
    """
    hi, wi = image.shape[1:]
    matrix = np.asarray(matrix, dtype=np.float64)
    box = _axis_aligned_box(matrix, out_hw, (hi, wi)) if image.dtype == torch.uint8 else None
    if box is not None:
        top, left, bottom, right, fy, fx = box
        out = resize_antialiased(image, (top, left, bottom - top, right - left), out_hw, antialias=antialias)
        return out, _flip_matrix(out_hw, fy, fx), True
    s = prefilter_scale(matrix, out_hw) if antialias else 1.0
    if s <= 1.0:
        return image, matrix, False
    nh, nw = max(1, round(hi / s)), max(1, round(wi / s))
    img = resize_antialiased(image, None, (nh, nw))
    # Centre-aligned resize: x' = x * nw / wi, so the warp composes with that scale.
    return img, np.diag([nw / wi, nh / hi, 1.0]) @ matrix, False


def sample_bilinear(image: torch.Tensor, matrix: np.ndarray, out_hw, antialias: bool = True,
                    keep_uint8: bool = False) -> torch.Tensor:
    """Bilinear sampling at the mapped pixel centres, zeros outside. image [C, Hi, Wi] uint8 -> [C, H, W] float32.

    The antialiased resizes are ``antialiased_source``'s: an axis-aligned integer box is its resize (flipped
    back where the matrix mirrors); anything else is a ``grid_sample`` of the (pre-shrunk) source. ``keep_uint8``:
    the box path returns its uint8 samples as they are (the float32 result holds the same integers).
    """
    src, matrix, is_box = antialiased_source(image, matrix, out_hw, antialias)
    if is_box:
        dims = [d for d, f in ((1, matrix[1, 1] < 0), (2, matrix[0, 0] < 0)) if f]
        out = src.flip(dims) if dims else src
        return out if keep_uint8 else out.float()
    img = src[None]
    hi, wi = src.shape[1:]
    x, y, ok = warp_coords(matrix, out_hw, image.device)
    grid = torch.stack([x / wi * 2 - 1, y / hi * 2 - 1], dim=-1).float()
    if not _is_affine(matrix):  # behind the horizon: outside (an affine map has no horizon)
        grid = torch.where(ok[..., None], grid, torch.full_like(grid, -4.0))
    out = torch.nn.functional.grid_sample(img.float(), grid[None], mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    return out[0]
