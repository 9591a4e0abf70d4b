"""A view's geometry through the C++ kernel (``_cpp.render_view``, csrc/warp.h): one pass per output pixel.

The kernel maps each pixel, evaluates the canvas tests P, Q, C, samples both layers and blends them as
geometry.py's module docstring says, and writes uint8. What it does not do stays with torch, exactly as the torch
executor does it: the antialiased resizes (``F.interpolate(antialias=True)``, SIMD uint8) of an axis-aligned box
(its output enters the kernel as a nearest layer through the identity or a flip) and the pre-shrink of a source
before a down-scaling bilinear warp.

Agreement with the torch path (``executor_torch._render_layers(impl="torch")``, the oracle and the fallback):
- interp="nearest", and bilinear views whose layers are all boxes: bit-equal (same samples, same float32 blend
  operations, same rounding);
- other bilinear layers: the kernel maps points in float64 and takes grid_sample's taps at (x - 0.5, y - 0.5)
  rounded to float32, where grid_sample goes through a float32 normalised grid: about 1e-5 of the pixels differ,
  by one grey level (tests/test_data_warp_cpp.py bounds them).

The pre-shrink stays a whole-source resize: shrinking only the region a view reads was tried and dropped. The
views that down-scale by more than 1.5x are the large ones (of 24 among 64 descriptor pairs, 21 read the whole
source, the others 64-95% of it), so it saved no time, and its border made pixels differ.
"""
from __future__ import annotations

import numpy as np
import torch

from copynce_fast import _cpp
from copynce_fast.data.geometry import LayerGeometry, antialiased_source

__all__ = ["can_render", "render_layers_cpp"]

_EMPTY_TESTS = (np.zeros((0, 3, 3)), np.zeros((0, 2), dtype=np.int64))


def can_render(image: torch.Tensor, other: torch.Tensor | None) -> bool:
    """True when the kernel is built and takes these inputs: CPU uint8 [C, H, W] images (other: same C) whose
    elements lie within 2^31 of their first (the kernel's offsets are int32)."""
    if not _cpp.HAS_WARP:
        return False
    for t in (image, other):
        if t is not None and (t.dtype != torch.uint8 or t.device.type != "cpu" or t.dim() != 3
                              or any(st < 0 for st in t.stride())
                              or sum((n - 1) * st for n, st in zip(t.shape, t.stride())) >= 2**31):
            return False
    return other is None or other.shape[0] == image.shape[0]


def _layer(image: torch.Tensor, matrix: np.ndarray, out_hw, interp: str, antialias: bool):
    """(uint8 [C, H', W'] tensor, view -> that tensor's pixels [3, 3] float64, bilinear?, is the box output).

    The torch executor's resizes (geometry.antialiased_source) are made here the same way; the kernel does the
    rest: a box output enters it as a nearest layer through the identity or a flip.
    """
    if interp == "nearest":
        return image, matrix, False, False
    src, m, is_box = antialiased_source(image, matrix, out_hw, antialias)
    return src, m, not is_box, is_box


def _tests(geo: LayerGeometry):
    tests = list(geo.copy_tests) + list(geo.shared_tests) + ([geo.cover_test] if geo.other_matrix is not None else [])
    if not tests:
        return _EMPTY_TESTS
    return (np.ascontiguousarray(np.stack([t.matrix for t in tests]), dtype=np.float64),
            np.array([t.hw for t in tests], dtype=np.int64))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.numpy()  # keeps the strides: the kernel reads HWC-backed [C, H, W] views in place


def render_layers_cpp(geo: LayerGeometry, image: torch.Tensor, other: torch.Tensor | None, interp: str,
                      antialias: bool) -> torch.Tensor:
    """The view's geometry [C, S, S] uint8 (S = geo.out_hw), as executor_torch._render_layers then render_plan's
    rounding give it. image / other: CPU uint8 [C, H, W] (see ``can_render``); sizes already checked.

    A crop box with no canvas test and no overlay is the resize's output as it is (channels-last strides, as the
    resize of a channels-last block gives); everything else is a C-contiguous array from the kernel."""
    hw = geo.out_hw
    img, m, bil, is_box = _layer(image, np.asarray(geo.copy_matrix, dtype=np.float64), hw, interp, antialias)
    if geo.other_matrix is None and not geo.copy_tests and not geo.shared_tests and is_box:
        # Nothing to test or blend: the box resize is the view (flips as the torch executor makes them).
        dims = [d for d, f in ((1, m[1, 1] < 0), (2, m[0, 0] < 0)) if f]
        return img.flip(dims) if dims else img
    o_img = o_m = None
    o_bil = False
    if geo.other_matrix is not None:
        o_img, o_m, o_bil, _ = _layer(other, np.asarray(geo.other_matrix, dtype=np.float64), hw, interp, antialias)
        o_img, o_m = _np(o_img), np.ascontiguousarray(o_m)
    tests, test_hw = _tests(geo)
    out = _cpp.render_view(hw[0], hw[1], _np(img), np.ascontiguousarray(m), bil, o_img, o_m, o_bil, tests, test_hw,
                           len(geo.copy_tests), len(geo.shared_tests), list(geo.weights))
    return torch.from_numpy(out)
