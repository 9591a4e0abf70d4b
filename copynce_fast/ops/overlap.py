"""Patch overlap counts: how many pixels of each source patch land in each destination patch.

``counts[b, i, j]`` = number of pixels of source patch i (row-major on the source patch grid) whose
correspondence lies in destination patch j; column ``Ld`` (the last) counts pixels with no valid
correspondence. Rows sum to ``patch_size**2``. These are the CopyNCE targets (REFERENCE.md §3.2).
"""
from __future__ import annotations

import torch

from copynce_fast.ops._impl import resolve_impl
from copynce_fast.pixtrace.batch import PackedPaths, map_pixels
from copynce_fast.pixtrace.overlap_cpu import cpu_kernel_usable, patch_overlap_cpu
from copynce_fast.pixtrace.view import SNAP

__all__ = ["patch_overlap", "patch_overlap_ref", "patch_overlap_from_dense", "patch_overlap_from_dense_ref",
           "patch_grid"]


def patch_grid(hw: tuple[int, int], patch_size: int, name: str = "hw") -> tuple[int, int]:
    """(rows, cols) of the patch grid; the image side must be divisible by the patch size."""
    if not isinstance(patch_size, int) or patch_size <= 0:
        raise ValueError(f"patch_size: expected a positive int, got {patch_size!r}")
    h, w = hw
    if h % patch_size or w % patch_size:
        raise ValueError(f"{name}: image size {h}x{w} is not divisible by patch_size={patch_size}")
    return h // patch_size, w // patch_size


def _counts_from_pixels(row: torch.Tensor, col: torch.Tensor, dst_hw, patch_size: int) -> torch.Tensor:
    """Histogram destination patch ids per source patch. row/col [B, Hs, Ws] int64 (-1 invalid)."""
    B, hs, ws = row.shape
    gs_h, gs_w = patch_grid((hs, ws), patch_size, "src_hw")
    gd_h, gd_w = patch_grid(dst_hw, patch_size, "dst_hw")
    ls, ld = gs_h * gs_w, gd_h * gd_w
    valid = (row >= 0) & (col >= 0) & (row < dst_hw[0]) & (col < dst_hw[1])
    j = torch.where(valid, torch.div(row, patch_size, rounding_mode="floor") * gd_w
                    + torch.div(col, patch_size, rounding_mode="floor"), ld)
    ys = torch.arange(hs, device=row.device) // patch_size
    xs = torch.arange(ws, device=row.device) // patch_size
    i = (ys.view(hs, 1) * gs_w + xs.view(1, ws)).expand(B, hs, ws)
    b = torch.arange(B, device=row.device).view(B, 1, 1)
    flat = ((b * ls + i) * (ld + 1) + j).reshape(-1)
    counts = torch.bincount(flat, minlength=B * ls * (ld + 1))
    return counts.view(B, ls, ld + 1).to(torch.int32)


def patch_overlap_ref(paths: PackedPaths, patch_size: int = 16) -> torch.Tensor:
    """Torch reference: overlap counts from geometry. Returns [B, Ls, Ld + 1] int32 on the paths' device."""
    row, col, _ = map_pixels(paths)
    return _counts_from_pixels(row, col, paths.dst_hw, patch_size)


def patch_overlap_from_dense_ref(maps: torch.Tensor, dst_hw: tuple[int, int] | None = None,
                                 patch_size: int = 16) -> torch.Tensor:
    """Torch reference: overlap counts from a dense correspondence map (reference layout).

    Args:
        maps: [B, 2, Hs, Ws] (row, col) of the destination pixel of each source pixel; any value < 0 or outside
            ``dst_hw`` is invalid. Float maps are floored (their values are pixel indices in the reference).
        dst_hw: destination size; defaults to the source size (the reference's same-size assumption).
    """
    if maps.dim() != 4 or maps.shape[1] != 2:
        raise ValueError(f"maps: expected shape [B, 2, H, W], got {tuple(maps.shape)}")
    dst_hw = tuple(dst_hw) if dst_hw is not None else tuple(maps.shape[-2:])
    if maps.is_floating_point():
        finite = torch.isfinite(maps).all(dim=1, keepdim=True)
        maps = torch.where(finite, maps.floor(), -1).long()
    return _counts_from_pixels(maps[:, 0].long(), maps[:, 1].long(), dst_hw, patch_size)


def patch_overlap(paths: PackedPaths, patch_size: int = 16, *, impl: str | None = None) -> torch.Tensor:
    """Overlap counts from geometry, [B, Ls, Ld + 1] int32; ``impl`` as in ``resolve_impl`` ("auto" on CPU tensors:
    the C++ kernel when built)."""
    choice = resolve_impl(impl, paths.matrices, cpp=cpu_kernel_usable(paths))
    if choice == "torch":
        return patch_overlap_ref(paths, patch_size)
    patch_grid(tuple(paths.src_hw), patch_size, "src_hw")  # same errors as the reference path
    patch_grid(tuple(paths.dst_hw), patch_size, "dst_hw")
    if choice == "cpp":
        return patch_overlap_cpu(paths, patch_size)  # copynce_fast.pixtrace.overlap_cpu: csrc/overlap.cpp
    from copynce_fast.kernels.overlap import patch_overlap_triton  # lazy: CPU installs need no triton
    return patch_overlap_triton(paths.matrices, paths.canvases, paths.src_hw, paths.dst_hw, patch_size,
                                src_occluder=paths.src_occluder, dst_occluder=paths.dst_occluder, snap=SNAP)


def patch_overlap_from_dense(maps: torch.Tensor, dst_hw=None, patch_size: int = 16, *,
                             impl: str | None = None) -> torch.Tensor:
    """Overlap counts from dense maps, [B, Ls, Ld + 1] int32; ``impl`` as in ``resolve_impl``."""
    if resolve_impl(impl, maps) == "torch":
        return patch_overlap_from_dense_ref(maps, dst_hw, patch_size)
    from copynce_fast.kernels.overlap import patch_overlap_from_dense_triton
    return patch_overlap_from_dense_triton(maps, dst_hw, patch_size)
