"""Patch overlap counts in Triton: from trace-path geometry, and from dense correspondence maps.

Math (the contract of ``copynce_fast.pixtrace.batch.map_pixels``, reproduced bit for bit in fp32 / fp64):
    for each source pixel centre (x, y) = (col + 0.5, row + 0.5) and each step t with matrix m and canvas (H, W):
        nx = (m0 x + m1 y) + m2,  ny = (m3 x + m4 y) + m5,  nd = (m6 x + m7 y) + m8
        ok = nd > 0 (else nd := 1);  x, y = nx / nd, ny / nd             (IEEE division, no FMA contraction)
        valid &= ok & 0 <= rint(256 x) < 256 W & 0 <= rint(256 y) < 256 H   (rint = round half to even)
    pixel = floor(rint(256 v) / 256); then the destination occluder at that pixel.
    counts[b, i, j] = #{pixels of source patch i landing in destination patch j};  j = Ld: no correspondence.
Affine steps (m6 = m7 = 0, m8 = 1) skip the division: nd is exactly 1 for every finite point, and a point that
is no longer finite was invalidated at the step that produced it, so the counts are unchanged.

Grid: (Ls, B): one program per (source patch, pair), the pair's patches adjacent in launch order (the interpreter
packs several patches per program, see ``_bin_and_store``). A program maps its P*P pixels through all steps in
registers (the step loop is unrolled: T is a compile-time constant), bins them with ``tl.histogram`` (warp
ballots + shared-memory atomics) and writes its whole output row with one store: no per-pixel map in memory, no
global atomics, no zero-fill of the output, deterministic. sm_90 ptxas: 32 registers, no spills, 1 KB smem.

Bytes (geometry): per pair T*(9*4 + 2*4) read + Ls*(Ld+1)*4 written (+ Hs*Ws + Hs*Ws bytes read with occluders).
B=256, 224 px, P=16: 39.5 MB written -> about 12 us of DRAM time at 3.35 TB/s; the work is ~25 fp32 ops per
pixel per step (12.8 M pixels), i.e. compute-bound near 40-60 us on an H100.
Bytes (dense): per pair 2*Hs*Ws*itemsize read + Ls*(Ld+1)*4 written (int64 maps at 224 px: 205 MB read).

Limits: Ld + 1 <= 4096 bins (one histogram per program); B <= 65535 (grid dimension).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from copynce_fast.kernels._common import MAX_OVERLAP_BINS, check_same_device, interpreted, next_pow2

__all__ = ["patch_overlap_triton", "patch_overlap_from_dense_triton"]


@triton.jit
def _rint(v, USE_LIBDEVICE: tl.constexpr):
    """Round half to even (torch.round / np.rint)."""
    if USE_LIBDEVICE:
        return libdevice.rint(v)  # one cvt.rni instruction
    else:
        # The interpreter has no libdevice. On |v| every step is exact: floor, a - floor(a) (same binade or
        # a < 1), the parity test on an integer-valued float, and r + 1 below 2^24.
        a = tl.abs(v)
        r = tl.floor(a)
        d = a - r
        odd = (r - 2.0 * tl.floor(0.5 * r)) == 1.0
        r = tl.where((d > 0.5) | ((d == 0.5) & odd), r + 1.0, r)
        return tl.where(v < 0, -r, r)


@triton.jit
def _pixels(i0, num_src, grid_src_w, PATCH: tl.constexpr, PATCHES: tl.constexpr, BLOCK_PIX: tl.constexpr):
    """(row, col, local patch, in range) of the pixels of source patches i0 .. i0 + PATCHES - 1."""
    k = tl.arange(0, BLOCK_PIX)
    local = k // (PATCH * PATCH)
    kk = k % (PATCH * PATCH)
    i = i0 + local
    in_range = (local < PATCHES) & (i < num_src)
    row = (i // grid_src_w) * PATCH + kk // PATCH
    col = (i % grid_src_w) * PATCH + kk % PATCH
    return row, col, local, in_range


@triton.jit
def _bin_and_store(j, local, in_range, out_ptr, b, i0, num_src, num_dst, stride_out_b,
                   PATCHES: tl.constexpr, NUM_BINS: tl.constexpr):
    """Histogram the destination bins of the program's source patches and write their full output rows.

    The rows of one pair are contiguous ([Ls, Ld + 1] row-major), so PATCHES rows are one flat histogram of
    PATCHES * (Ld + 1) bins stored with one masked store. On a GPU PATCHES is 1 (ballot cost grows with bins);
    the interpreter packs many patches per program because its cost is per operation, not per element.
    """
    hist = tl.histogram(local * (num_dst + 1) + j, NUM_BINS, mask=in_range)
    bins = tl.arange(0, NUM_BINS)
    rows = tl.minimum(num_src - i0, PATCHES)
    tl.store(out_ptr + b * stride_out_b + i0 * (num_dst + 1) + bins, hist, mask=bins < rows * (num_dst + 1))


@triton.jit
def _patch_overlap_fwd_kernel(
    mat_ptr, canv_ptr, src_occ_ptr, dst_occ_ptr, out_ptr,
    src_h, src_w, dst_h, dst_w, grid_src_w, grid_dst_w, num_src, num_dst, stride_out_b,
    NUM_STEPS: tl.constexpr, PATCH: tl.constexpr, PATCHES: tl.constexpr, BLOCK_PIX: tl.constexpr,
    NUM_BINS: tl.constexpr, HAS_SRC_OCC: tl.constexpr, HAS_DST_OCC: tl.constexpr, USE_LIBDEVICE: tl.constexpr,
):
    i0 = tl.program_id(0) * PATCHES
    b = tl.program_id(1).to(tl.int64)  # int64 before any stride product
    row, col, local, in_patch = _pixels(i0, num_src, grid_src_w, PATCH, PATCHES, BLOCK_PIX)
    dt = mat_ptr.dtype.element_ty
    x = (col.to(tl.float32) + 0.5).to(dt)  # pixel centres, exact in fp32 and fp64
    y = (row.to(tl.float32) + 0.5).to(dt)
    valid = in_patch
    if HAS_SRC_OCC:
        occ = tl.load(src_occ_ptr + b * src_h * src_w + row * src_w + col, mask=in_patch, other=1)
        valid = valid & (occ == 0)
    for t in tl.static_range(NUM_STEPS):
        m = mat_ptr + (b * NUM_STEPS + t) * 9
        m0, m1, m2 = tl.load(m + 0), tl.load(m + 1), tl.load(m + 2)
        m3, m4, m5 = tl.load(m + 3), tl.load(m + 4), tl.load(m + 5)
        m6, m7, m8 = tl.load(m + 6), tl.load(m + 7), tl.load(m + 8)
        h = tl.load(canv_ptr + (b * NUM_STEPS + t) * 2).to(dt)
        w = tl.load(canv_ptr + (b * NUM_STEPS + t) * 2 + 1).to(dt)
        # Same association as the reference, and the launch disables FMA contraction: bitwise equal.
        nx = (m0 * x + m1 * y) + m2
        ny = (m3 * x + m4 * y) + m5
        if (m6 == 0.0) & (m7 == 0.0) & (m8 == 1.0):  # warp-uniform: affine step, nd == 1 exactly
            x = nx
            y = ny
        else:
            nd = (m6 * x + m7 * y) + m8
            ok = nd > 0.0  # behind the horizon of a perspective map: no image
            nd = tl.where(ok, nd, 1.0)
            if dt == tl.float64:
                x = nx / nd  # f64 division is IEEE (div.rn.f64)
                y = ny / nd
            else:
                x = tl.math.div_rn(nx, nd)  # '/' would be the 2-ulp div.full.f32 on GPU
                y = tl.math.div_rn(ny, nd)
            valid = valid & ok
        sx = _rint(x * 256.0, USE_LIBDEVICE)  # snapped to 1/256 px; x*256 is exact
        sy = _rint(y * 256.0, USE_LIBDEVICE)
        valid = valid & (sx >= 0.0) & (sx < w * 256.0) & (sy >= 0.0) & (sy < h * 256.0)
    cx = tl.floor(_rint(x * 256.0, USE_LIBDEVICE) * 0.00390625)  # / 256, exact
    cy = tl.floor(_rint(y * 256.0, USE_LIBDEVICE) * 0.00390625)
    inside = valid & (cx >= 0.0) & (cx < dst_w) & (cy >= 0.0) & (cy < dst_h)
    ci = tl.where(inside, cx, 0.0).to(tl.int32)  # zeroed first: huge invalid coordinates do not fit an int
    ri = tl.where(inside, cy, 0.0).to(tl.int32)
    if HAS_DST_OCC:
        occ = tl.load(dst_occ_ptr + b * dst_h * dst_w + ri * dst_w + ci, mask=inside, other=0)
        inside = inside & (occ == 0)
    j = tl.where(inside, (ri // PATCH) * grid_dst_w + ci // PATCH, num_dst)
    _bin_and_store(j, local, in_patch, out_ptr, b, i0, num_src, num_dst, stride_out_b, PATCHES, NUM_BINS)


@triton.jit
def _patch_overlap_dense_kernel(
    map_ptr, out_ptr,
    stride_map_b, stride_map_c, stride_map_h, stride_map_w,
    dst_h, dst_w, grid_src_w, grid_dst_w, num_src, num_dst, stride_out_b,
    PATCH: tl.constexpr, PATCHES: tl.constexpr, BLOCK_PIX: tl.constexpr, NUM_BINS: tl.constexpr,
    IS_FLOAT: tl.constexpr,
):
    i0 = tl.program_id(0) * PATCHES
    b = tl.program_id(1).to(tl.int64)
    row, col, local, in_patch = _pixels(i0, num_src, grid_src_w, PATCH, PATCHES, BLOCK_PIX)
    p = map_ptr + b * stride_map_b + row * stride_map_h + col * stride_map_w
    r = tl.load(p, mask=in_patch, other=0)
    c = tl.load(p + stride_map_c, mask=in_patch, other=0)
    if IS_FLOAT:
        if r.dtype != tl.float64:
            r = r.to(tl.float32)  # fp16/bf16 widen exactly; floor needs fp32/fp64
            c = c.to(tl.float32)
        # 0 <= v < n  <=>  0 <= floor(v) < n for integer n; NaN and +-inf fail it (the reference's isfinite).
        valid = in_patch & (r >= 0) & (r < dst_h) & (c >= 0) & (c < dst_w)
        ri = tl.floor(tl.where(valid, r, 0.0)).to(tl.int32)
        ci = tl.floor(tl.where(valid, c, 0.0)).to(tl.int32)
    else:
        valid = in_patch & (r >= 0) & (r < dst_h) & (c >= 0) & (c < dst_w)
        ri = tl.where(valid, r, 0).to(tl.int32)
        ci = tl.where(valid, c, 0).to(tl.int32)
    j = tl.where(valid, (ri // PATCH) * grid_dst_w + ci // PATCH, num_dst)
    _bin_and_store(j, local, in_patch, out_ptr, b, i0, num_src, num_dst, stride_out_b, PATCHES, NUM_BINS)


# The snap step the kernel hard-codes (x*256 exact, /256 as *0.00390625); pixtrace's SNAP must equal it.
KERNEL_SNAP = 256.0


def _whole_patches(hw, patch_size: int, name: str) -> tuple[int, int]:
    """(rows, cols) of the patch grid; a program owns whole patches, so both sides must divide by P."""
    h, w = hw
    if patch_size <= 0 or h % patch_size or w % patch_size:
        raise ValueError(f"{name}: image size {h}x{w} is not divisible by patch_size={patch_size}")
    return h // patch_size, w // patch_size


def _grids(src_hw, dst_hw, patch_size):
    gs_h, gs_w = _whole_patches(tuple(src_hw), patch_size, "src_hw")
    gd_h, gd_w = _whole_patches(tuple(dst_hw), patch_size, "dst_hw")
    ls, ld = gs_h * gs_w, gd_h * gd_w
    if ld + 1 > MAX_OVERLAP_BINS:
        raise ValueError(f"dst_hw: {ld} destination patches exceed the kernel's {MAX_OVERLAP_BINS - 1}-bin limit")
    return gs_w, gd_w, ls, ld


def _check_batch(batch: int) -> None:
    if batch > 65535:
        raise ValueError(f"batch: {batch} pairs exceed the grid limit of 65535; split the batch")


def _patches_per_program(patch_size: int, ls: int, ld: int) -> int:
    """GPU: one patch per program. Interpreter: as many as fit in 2^16 pixels and 2^16 bins."""
    if not interpreted():
        return 1
    return max(1, min(ls, 65536 // (patch_size * patch_size), 65536 // (ld + 1)))


def _launch_params(patch_size: int, ls: int, ld: int) -> tuple[int, dict]:
    """(programs per pair, launch constexprs)."""
    patches = _patches_per_program(patch_size, ls, ld)
    block = max(32, next_pow2(patches * patch_size * patch_size))
    params = dict(PATCH=patch_size, PATCHES=patches, BLOCK_PIX=block,
                  NUM_BINS=max(32, next_pow2(patches * (ld + 1))), num_warps=4 if block >= 128 else 1)
    return triton.cdiv(ls, patches), params


@torch.library.custom_op("copynce::patch_overlap", mutates_args=())
def _patch_overlap_op(matrices: torch.Tensor, canvases: torch.Tensor, src_occluder: torch.Tensor | None,
                      dst_occluder: torch.Tensor | None, src_h: int, src_w: int, dst_h: int, dst_w: int,
                      patch_size: int) -> torch.Tensor:
    B, T = matrices.shape[:2]
    _check_batch(B)
    gs_w, gd_w, ls, ld = _grids((src_h, src_w), (dst_h, dst_w), patch_size)
    out = torch.empty(B, ls, ld + 1, dtype=torch.int32, device=matrices.device)  # every element is written
    if B == 0:
        return out
    mats = matrices.reshape(B, T, 9).contiguous()
    canv = canvases.to(torch.int32).contiguous()
    # bool masks are read as bytes; a 1-element dummy stands in when a mask is absent (never dereferenced).
    dummy = torch.zeros(1, dtype=torch.uint8, device=matrices.device)
    src_occ = dummy if src_occluder is None else src_occluder.contiguous().view(torch.uint8)
    dst_occ = dummy if dst_occluder is None else dst_occluder.contiguous().view(torch.uint8)
    programs, params = _launch_params(patch_size, ls, ld)
    _patch_overlap_fwd_kernel[(programs, B)](
        mats, canv, src_occ, dst_occ, out,
        src_h, src_w, dst_h, dst_w, gs_w, gd_w, ls, ld, out.stride(0),
        NUM_STEPS=T, HAS_SRC_OCC=src_occluder is not None, HAS_DST_OCC=dst_occluder is not None,
        USE_LIBDEVICE=not interpreted(), enable_fp_fusion=False, **params)
    return out


@_patch_overlap_op.register_fake
def _(matrices, canvases, src_occluder, dst_occluder, src_h, src_w, dst_h, dst_w, patch_size):
    _, _, ls, ld = _grids((src_h, src_w), (dst_h, dst_w), patch_size)
    return matrices.new_empty((matrices.shape[0], ls, ld + 1), dtype=torch.int32)


@torch.library.custom_op("copynce::patch_overlap_from_dense", mutates_args=())
def _patch_overlap_dense_op(maps: torch.Tensor, dst_h: int, dst_w: int, patch_size: int) -> torch.Tensor:
    B, _, hs, ws = maps.shape
    _check_batch(B)
    gs_w, gd_w, ls, ld = _grids((hs, ws), (dst_h, dst_w), patch_size)
    out = torch.empty(B, ls, ld + 1, dtype=torch.int32, device=maps.device)
    if B == 0:
        return out
    programs, params = _launch_params(patch_size, ls, ld)
    _patch_overlap_dense_kernel[(programs, B)](
        maps, out, *maps.stride(), dst_h, dst_w, gs_w, gd_w, ls, ld, out.stride(0),
        IS_FLOAT=maps.is_floating_point(), **params)
    return out


@_patch_overlap_dense_op.register_fake
def _(maps, dst_h, dst_w, patch_size):
    _, _, ls, ld = _grids(tuple(maps.shape[-2:]), (dst_h, dst_w), patch_size)
    return maps.new_empty((maps.shape[0], ls, ld + 1), dtype=torch.int32)


def patch_overlap_triton(matrices: torch.Tensor, canvases: torch.Tensor, src_hw: tuple[int, int],
                         dst_hw: tuple[int, int], patch_size: int = 16, *, src_occluder: torch.Tensor | None = None,
                         dst_occluder: torch.Tensor | None = None, snap: float = KERNEL_SNAP) -> torch.Tensor:
    """Overlap counts from geometry; same contract as ``copynce_fast.ops.patch_overlap_ref``.

    Plain tensors and numbers (``copynce_fast.ops.patch_overlap`` unpacks a pixtrace ``PackedPaths``).

    Args:
        matrices: [B, T, 3, 3] float32 (or float64) step homographies, source -> destination.
        canvases: [B, T, 2] int (H, W) canvas after each step.
        src_hw, dst_hw: (H, W) of the source and destination images, multiples of ``patch_size``.
        patch_size: P.
        src_occluder, dst_occluder: optional bool [B, Hs, Ws] / [B, Hd, Wd] masks (True = occluded).
        snap: the snap step of the caller's geometry (pixtrace ``SNAP``); the kernel supports only 256.
        All tensors on one CUDA device (CPU under the interpreter).

    Returns:
        [B, Ls, Ld + 1] int32; the last column counts pixels with no valid correspondence. Rows sum to P².
    """
    if matrices.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"matrices: expected float32 or float64, got {matrices.dtype}")
    check_same_device(matrices=matrices, canvases=canvases, src_occluder=src_occluder, dst_occluder=dst_occluder)
    if float(snap) != KERNEL_SNAP:
        raise ValueError(f"snap: the kernel snaps to 1/{KERNEL_SNAP:g} px, got 1/{snap}")
    (hs, ws), (hd, wd) = src_hw, dst_hw
    return _patch_overlap_op(matrices, canvases, src_occluder, dst_occluder, int(hs), int(ws), int(hd), int(wd),
                             int(patch_size))


def patch_overlap_from_dense_triton(maps: torch.Tensor, dst_hw: tuple[int, int] | None = None,
                                    patch_size: int = 16) -> torch.Tensor:
    """Overlap counts from a dense map; same contract as ``copynce_fast.ops.patch_overlap_from_dense_ref``.

    Args:
        maps: [B, 2, Hs, Ws] (row, col) destination pixel per source pixel, integer or float (floored); values
            < 0, outside ``dst_hw`` or non-finite are invalid. Any strides.
        dst_hw: destination size, default the source size.
        patch_size: P.

    Returns:
        [B, Ls, Ld + 1] int32.
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[1] != 2:
        raise ValueError(f"maps: expected shape [B, 2, H, W], got {tuple(getattr(maps, 'shape', ()))}")
    if maps.dtype == torch.bool or maps.is_complex():
        raise ValueError(f"maps: expected an integer or float dtype, got {maps.dtype}")
    check_same_device(maps=maps)
    hd, wd = tuple(dst_hw) if dst_hw is not None else tuple(maps.shape[-2:])
    return _patch_overlap_dense_op(maps, int(hd), int(wd), int(patch_size))
