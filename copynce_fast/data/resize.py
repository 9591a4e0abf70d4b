"""The antialiased bilinear resize of the executors' layers: the C++ kernel (csrc/resize.h) on CPU uint8 images,
torch's ``F.interpolate(mode="bilinear", antialias=True, align_corners=False)`` otherwise.

The two are bit-equal: the kernel does torch's uint8 arithmetic (the same double-precision taps, int16 fixed-point
weights, horizontal then vertical pass through a uint8 intermediate; tests/test_data_resize_cpp.py compares them on
random sizes, crops, channel counts and strides). It reads the box in place (no crop copy) and returns the layout
torch returns: channels-last strides for a box (torch resizes a channels-last copy of it); for a whole image, the
layout torch suggests for ``image[None]`` (planar for a permuted HWC buffer: its batch stride breaks the rule).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from copynce_fast import _cpp

__all__ = ["resize_antialiased", "can_resize_cpp"]

Impl = Literal["auto", "torch", "cpp"]


def can_resize_cpp(image: torch.Tensor) -> bool:
    """True when the kernel is built and takes ``image``: a CPU uint8 [C, H, W] tensor, C in 1..4, strides >= 0."""
    return (_cpp.HAS_RESIZE and image.dtype == torch.uint8 and image.device.type == "cpu" and image.dim() == 3
            and 1 <= image.shape[0] <= 4 and min(image.stride()) >= 0)  # uint8 never requires grad


def _torch_picks_channels_last(src: torch.Tensor) -> bool:
    """torch's output layout for resizing ``src`` [N, C, H, W] (suggest_memory_format: ATen's
    is_channels_last_strides_2d, the rule written out): channels-last when the strides, taken in the order C, W, H,
    N, never decrease past the extent of the previous one; ties on a size-1 channel fall back to planar."""
    sizes, strides = src.shape, src.stride()
    if strides[1] == 0:
        return False
    floor = 0
    for d in (1, 3, 2, 0):
        if strides[d] == 0 or strides[d] < floor or (d == 0 and floor == strides[1]):
            return False
        floor = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def resize_antialiased(image: torch.Tensor, box: tuple[int, int, int, int] | None, out_hw,
                       impl: Impl = "auto", antialias: bool = True) -> torch.Tensor:
    """The box (top, left, height, width) of ``image`` (None: all of it) resized to ``out_hw`` = (h, w), antialiased
    bilinear with centre-aligned pixels.

    Args:
        image: [C, H, W], any dtype and strides (an HWC buffer's permuted view is read in place by the kernel).
        box: integer (top, left, height, width) inside the image, or None.
        out_hw: (h, w) positive ints.
        impl: "auto" (the kernel when ``can_resize_cpp(image)``, else torch), "torch" (always torch: the oracle),
            "cpp" (the kernel; ValueError when it cannot take the image).
        antialias: False gives torch's plain bilinear resize of the same box (torch only: the kernel antialiases).

    Returns:
        [C, h, w] in image's dtype: torch's pixels and torch's layout (see the module docstring).
    """
    if impl not in ("auto", "torch", "cpp"):
        raise ValueError(f"impl: expected 'auto', 'torch' or 'cpp', got {impl!r}")
    if image.dim() != 3:
        raise ValueError(f"image: expected [C, H, W], got shape {tuple(image.shape)}")
    oh, ow = (int(v) for v in out_hw)
    if oh < 1 or ow < 1:
        raise ValueError(f"out_hw: expected two positive ints, got {tuple(out_hw)}")
    _, hi, wi = image.shape
    top, left, h, w = (0, 0, hi, wi) if box is None else (int(v) for v in box)
    if h < 1 or w < 1 or top < 0 or left < 0 or top + h > hi or left + w > wi:
        raise ValueError(f"box: expected (top, left, height, width) inside the {hi}x{wi} image, got {box}")
    if impl != "torch":
        usable = antialias and can_resize_cpp(image)
        if impl == "cpp" and not usable:
            raise ValueError("impl: 'cpp' needs the built extension (copynce_fast._C), a CPU uint8 [C, H, W] "
                             "image with 1 to 4 channels, and antialias=True")
        if usable:
            channels_last = box is not None or _torch_picks_channels_last(image[None])
            return torch.from_numpy(_cpp.resize_bilinear_aa(image.numpy(), top, left, h, w, oh, ow, channels_last))
    if box is None:
        src = image[None]
    else:  # a dense channels-last block takes torch's vectorised uint8 path (same pixels as the strided view)
        src = image[None, :, top:top + h, left:left + w].contiguous(memory_format=torch.channels_last)
    return F.interpolate(src, size=(oh, ow), mode="bilinear", antialias=antialias, align_corners=False)[0]
