"""The CPU executor: renders plans with torch (vectorised per image), in DataLoader workers.

``render_plan`` draws one view: the layered warp of geometry.py (exact nearest sampling for tests, bilinear
with an antialiasing pre-shrink for training), then the plan's photometric ops and occluders in the plan's
order. Same plan => same pixels (everything random is in the plan's seeds).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from copynce_fast.data.geometry import canvas_mask, layer_geometry, sample_bilinear, sample_nearest
from copynce_fast.data.occluders import composite, render_occluder
from copynce_fast.data.photometric import LINEAR_KINDS, apply_colour_ops, apply_photo_op
from copynce_fast.data.plan import AugmentPlan, Occluder, PhotoOp
from copynce_fast.data.warp_cpp import can_render, render_layers_cpp

__all__ = ["render_geometry", "render_plan", "to_tensor_image"]

Interp = Literal["nearest", "bilinear"]
Impl = Literal["auto", "torch", "cpp"]


def to_tensor_image(arr: np.ndarray) -> torch.Tensor:
    """HWC uint8 numpy (RGB) -> [3, H, W] uint8 tensor (no copy when contiguous)."""
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"arr: expected an RGB uint8 array [H, W, 3], got {arr.shape} {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # torch refuses read-only memory (PIL's arrays are)
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1)


def _sample(image: torch.Tensor, matrix, out_hw, interp: Interp, antialias: bool) -> torch.Tensor:
    """The warped layer: uint8 when its samples are integers (nearest; bilinear on a whole-pixel box), else
    float32 (0..255 for uint8 input)."""
    if interp == "nearest":
        return sample_nearest(image, matrix, out_hw)
    if interp == "bilinear":
        return sample_bilinear(image, matrix, out_hw, antialias, keep_uint8=True)
    raise ValueError(f"interp: expected 'nearest' or 'bilinear', got {interp!r}")


def _all_inside(tests, hw) -> torch.Tensor | None:
    """AND of the canvas tests' masks, or None when there is no test (every pixel passes)."""
    mask = None
    for t in tests:
        m = canvas_mask(t, hw)
        mask = m if mask is None else mask & m
    return mask


def _render_layers(plan: AugmentPlan, image: torch.Tensor, other: torch.Tensor | None, interp: Interp,
                   antialias: bool, impl: Impl = "auto") -> torch.Tensor:
    """render_geometry's pixels, in the sampler's dtype while there is one layer: masking by canvas tests zeroes
    pixels, which integer samples survive exactly, so a uint8 layer stays uint8 (no float round trip); a
    composite with an overlay is float32.

    impl: "auto" draws the view with the C++ kernel (data.warp_cpp: uint8, bit-equal with nearest sampling,
    within a grey level with bilinear) when it is built and the images are CPU uint8, else with torch; "torch"
    forces the torch path below (the kernel's oracle and its fallback); "cpp" requires the kernel.
    """
    geo = layer_geometry(plan)
    if tuple(image.shape[1:]) != geo.source_hw:
        raise ValueError(f"image: expected spatial size {geo.source_hw} (the plan's source), got "
                         f"{tuple(image.shape[1:])}")
    if geo.other_matrix is not None and (other is None or tuple(other.shape[1:]) != geo.other_hw):
        got = None if other is None else tuple(other.shape[1:])
        raise ValueError(f"other: the plan composites image {plan.overlay.index} of size {geo.other_hw}, "
                         f"got {got}")
    if interp not in ("nearest", "bilinear"):
        raise ValueError(f"interp: expected 'nearest' or 'bilinear', got {interp!r}")
    if impl not in ("auto", "torch", "cpp"):
        raise ValueError(f"impl: expected 'auto', 'torch' or 'cpp', got {impl!r}")
    if impl != "torch":
        usable = can_render(image, other if geo.other_matrix is not None else None)
        if impl == "cpp" and not usable:
            raise ValueError("impl: 'cpp' needs the built extension (copynce_fast._C) and CPU uint8 images")
        if usable:
            return render_layers_cpp(geo, image, other, interp, antialias)
    hw = geo.out_hw
    out = _sample(image, geo.copy_matrix, hw, interp, antialias)
    keep = _all_inside(geo.copy_tests, hw)
    if geo.other_matrix is not None:
        a, b, d, g = geo.weights
        cover = canvas_mask(geo.cover_test, hw).float()
        w_copy = a + b * cover
        if keep is not None:
            w_copy = w_copy * keep
        w_other = d + g * cover
        out = w_copy * out.float() + w_other * _sample(other, geo.other_matrix, hw, interp, antialias).float()
    elif keep is not None:
        out = out * keep
    shared = _all_inside(geo.shared_tests, hw)
    return out if shared is None else out * shared


def render_geometry(plan: AugmentPlan, image: torch.Tensor, other: torch.Tensor | None = None,
                    interp: Interp = "bilinear", antialias: bool = True, impl: Impl = "auto") -> torch.Tensor:
    """The view's pixels before photometric ops: [C, S, S] float32 (0..255 for uint8 input; whole grey levels
    when the C++ kernel draws it, see ``_render_layers``'s ``impl``).

    Args:
        image: the copy's original [C, H, W] (H, W = plan.view.source_hw), any integer or float dtype.
        other: the overlay's original [C, Ho, Wo] when ``plan.overlay`` is set.
    """
    return _render_layers(plan, image, other, interp, antialias, impl).float()


def render_plan(plan: AugmentPlan, image: torch.Tensor, other: torch.Tensor | None = None,
                interp: Interp = "bilinear", antialias: bool = True, photometric: bool = True) -> torch.Tensor:
    """Render one view: geometry, then photometric ops and occluders in plan order.

    Args:
        plan: the view's plan.
        image: the copy's original, [3, H, W] uint8.
        other: the overlay's original [3, Ho, Wo] uint8, when the plan has an overlay.
        interp: "nearest" (exact; PixTrace's pixel for every pixel) or "bilinear".
        antialias: pre-shrink the source before a bilinear warp that down-scales by more than 1.5x.
        photometric: False renders geometry only (and the overlay).

    Returns:
        [3, S, S] uint8.
    """
    img = _render_layers(plan, image, other, interp, antialias)
    if img.dtype != torch.uint8:
        img = img.round_().clamp_(0, 255).to(torch.uint8)
    if not photometric:
        return img
    return _apply_ops(img, plan.ops, plan.out_hw)


def _apply_ops(img: torch.Tensor, ops, out_hw) -> torch.Tensor:
    """The plan's photometric ops and occluders in order on img [3, S, S] uint8. A run of consecutive colour ops
    is one call (one pass over the pixels in C++), each op still rounded and clamped as on its own."""
    i = 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, PhotoOp) and op.kind in LINEAR_KINDS:
            j = i + 1
            while j < len(ops) and isinstance(ops[j], PhotoOp) and ops[j].kind in LINEAR_KINDS:
                j += 1
            img = apply_colour_ops(img, ops[i:j])
            i = j
            continue
        if isinstance(op, PhotoOp):
            img = apply_photo_op(img, op)
        elif isinstance(op, Occluder):
            img = composite(img, render_occluder(op, out_hw))
        i += 1
    return img
