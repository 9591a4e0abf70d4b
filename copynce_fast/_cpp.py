"""The C++ helpers (``copynce_fast._C``) when built, else pure-Python (numpy) fallbacks with the same signatures.

``HAS_CPP`` says which one ``invert_dense`` / ``compose_dense`` / ``patch_overlap`` are. The numpy fallbacks stay
importable as ``invert_dense_py`` / ``compose_dense_py`` / ``patch_overlap_py`` so tests can compare the two. The extension is skipped at build time
with ``COPYNCE_NO_EXT=1`` (see setup.py).

Both versions take C-contiguous float32 / float64 / int64 arrays (the C++ one raises ``TypeError`` for anything
else; the public API in ``copynce_fast.pixtrace.dense`` converts first) and give bit-identical results. The
semantics are documented in ``copynce_fast.pixtrace.dense`` and ``csrc/dense_maps.h``; ``patch_overlap`` takes
float32 / float64 matrices, int32 canvases and bool masks and is documented in ``csrc/overlap.h`` (its oracle is
``copynce_fast.ops.overlap.patch_overlap_ref``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["HAS_CPP", "invert_dense", "compose_dense", "patch_overlap", "invert_dense_py", "compose_dense_py",
           "patch_overlap_py", "HAS_PHOTOMETRIC", "photometric", "HAS_WARP", "render_view", "HAS_RESIZE",
           "resize_bilinear_aa"]

_TWO_63 = 2.0**63  # exactly representable in float32 and float64


def _check_map(m: np.ndarray, name: str) -> None:
    if m.ndim != 4 or m.shape[1] != 2:
        raise ValueError(f"{name}: expected shape [B,2,H,W], got {tuple(m.shape)}")


def _pixel_index(m: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates m [B,2,N] -> (valid [B,N] bool, flat index row*w + col [B,N] int64, 0 where invalid).

    Valid iff 0 <= v < limit on the raw values (compared in m's dtype; NaN/inf fail), then again after rounding
    half to even (np.rint).
    """
    vy, vx = m[:, 0], m[:, 1]
    h, w = int(h), int(w)  # Python ints: compared in m's own dtype, like the C++ static_cast<T>(limit)
    ok = (vy >= 0) & (vy < h) & (vx >= 0) & (vx < w)
    if m.dtype.kind == "f":
        vy, vx = np.rint(vy), np.rint(vx)
        ok &= (vy < h) & (vx < w)  # 223.6 -> 224 is out at h = 224; rounding never goes below 0
    iy = np.where(ok, vy, 0).astype(np.int64)
    ix = np.where(ok, vx, 0).astype(np.int64)
    return ok, iy * w + ix


def _carried_values(b: np.ndarray) -> np.ndarray:
    """Values of the second map as int64: floats rounded half to even; NaN or outside [-2^63, 2^63) -> -1."""
    if b.dtype.kind != "f":
        return b.astype(np.int64, copy=False)
    ok = (b >= -_TWO_63) & (b < _TWO_63)
    return np.where(ok, np.where(ok, np.rint(b), 0).astype(np.int64), -1)


def invert_dense_py(maps: np.ndarray, out_h: int, out_w: int, num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of ``_C.invert_dense``: (inv [B,2,out_h,out_w] int64, holes [B] int64).

    The last valid source pixel in raster order wins a collision: its flat raster index is the largest, so
    ``np.maximum.at`` (order-independent, unlike fancy assignment) picks it. ``num_threads`` is ignored.
    """
    maps = np.asarray(maps)
    _check_map(maps, "maps")
    if int(out_h) <= 0 or int(out_w) <= 0:
        raise ValueError("out_hw: expected two positive ints")
    out_h, out_w = int(out_h), int(out_w)
    b_, _, h, w = maps.shape
    ok, tgt = _pixel_index(maps.reshape(b_, 2, h * w), out_h, out_w)
    tgt = tgt + (np.arange(b_, dtype=np.int64) * (out_h * out_w))[:, None]
    src = np.broadcast_to(np.arange(h * w, dtype=np.int64), (b_, h * w))
    winner = np.full(b_ * out_h * out_w, -1, dtype=np.int64)
    np.maximum.at(winner, tgt[ok], src[ok])
    winner = winner.reshape(b_, out_h, out_w)
    hole = winner < 0
    inv = np.stack([np.where(hole, -1, winner // w), np.where(hole, -1, winner % w)], axis=1)
    return inv, hole.sum(axis=(1, 2), dtype=np.int64)


def compose_dense_py(a: np.ndarray, b: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """numpy twin of ``_C.compose_dense``: [B,2,H,W] int64, ``b[round(a(p))]`` or -1. ``num_threads`` is ignored."""
    a, b = np.asarray(a), np.asarray(b)
    _check_map(a, "a")
    _check_map(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError("b: batch size does not match a's batch size")
    b_, _, h, w = a.shape
    h2, w2 = b.shape[2:]
    ok, q = _pixel_index(a.reshape(b_, 2, h * w), h2, w2)
    vals = _carried_values(b.reshape(b_, 2, h2 * w2))
    out = np.take_along_axis(vals, np.broadcast_to(q[:, None, :], (b_, 2, h * w)), axis=2)
    return np.where(ok[:, None, :], out, -1).reshape(b_, 2, h, w)


def patch_overlap_py(matrices: np.ndarray, canvases: np.ndarray, src_h: int, src_w: int, dst_h: int, dst_w: int,
                     patch_size: int, src_occluder: np.ndarray | None = None, dst_occluder: np.ndarray | None = None,
                     num_threads: int = 1) -> np.ndarray:
    """numpy twin of ``_C.patch_overlap``: counts [B, Ls, Ld+1] int32 (see csrc/overlap.h). ``num_threads`` is ignored.

    The arithmetic is the reference's, op by op in the matrices' dtype: ``(m0*x + m1*y) + m2`` per row, one
    division, snapping with ``np.rint`` (half to even) at 1/256 px.
    """
    m = np.asarray(matrices)
    if m.ndim != 4 or m.shape[2:] != (3, 3) or m.dtype not in (np.float32, np.float64):
        raise ValueError(f"matrices: expected float32/float64 [B,T,3,3], got {m.shape} {m.dtype}")
    b_, t_ = m.shape[:2]
    canv = np.asarray(canvases)
    if canv.shape != (b_, t_, 2):
        raise ValueError(f"canvases: expected shape {(b_, t_, 2)}, got {canv.shape}")
    p = int(patch_size)
    if p <= 0 or src_h % p or src_w % p or dst_h % p or dst_w % p:
        raise ValueError("patch_size: src_hw and dst_hw must be positive multiples of it")
    dt = m.dtype.type
    snap = dt(256.0)
    y = np.broadcast_to((np.arange(src_h, dtype=m.dtype) + dt(0.5))[None, :, None], (b_, src_h, src_w))
    x = np.broadcast_to((np.arange(src_w, dtype=m.dtype) + dt(0.5))[None, None, :], (b_, src_h, src_w))
    valid = np.ones((b_, src_h, src_w), dtype=bool)
    if src_occluder is not None:
        valid &= ~np.asarray(src_occluder, dtype=bool)
    with np.errstate(all="ignore"):  # invalid points may overflow or divide by zero; they are masked
        for t in range(t_):
            a = m[:, t].reshape(b_, 9, 1, 1)
            nx = (a[:, 0] * x + a[:, 1] * y) + a[:, 2]
            ny = (a[:, 3] * x + a[:, 4] * y) + a[:, 5]
            nd = (a[:, 6] * x + a[:, 7] * y) + a[:, 8]
            ok = nd > 0  # behind the horizon of a perspective map: no image
            nd = np.where(ok, nd, dt(1.0))
            x, y = nx / nd, ny / nd
            h = canv[:, t, 0].astype(m.dtype).reshape(b_, 1, 1)
            w = canv[:, t, 1].astype(m.dtype).reshape(b_, 1, 1)
            sx, sy = np.rint(x * snap), np.rint(y * snap)
            valid &= ok & (sx >= 0) & (sx < w * snap) & (sy >= 0) & (sy < h * snap)
        col = np.where(valid, np.floor(np.rint(x * snap) / snap), 0).astype(np.int64)
        row = np.where(valid, np.floor(np.rint(y * snap) / snap), 0).astype(np.int64)
    inside = valid & (row < dst_h) & (col < dst_w)
    if dst_occluder is not None:
        occ = np.asarray(dst_occluder, dtype=bool).reshape(b_, -1)
        flat = np.where(inside, row * dst_w + col, 0).reshape(b_, -1)
        inside &= ~np.take_along_axis(occ, flat, axis=1).reshape(inside.shape)
    gs_w, gd_w = src_w // p, dst_w // p
    ls, ld = (src_h // p) * gs_w, (dst_h // p) * gd_w
    j = np.where(inside, (row // p) * gd_w + col // p, ld)
    i = (np.arange(src_h)[:, None] // p) * gs_w + np.arange(src_w)[None, :] // p
    flat = (np.arange(b_)[:, None, None] * ls + i) * (ld + 1) + j
    counts = np.bincount(flat.ravel(), minlength=b_ * ls * (ld + 1))
    return counts.reshape(b_, ls, ld + 1).astype(np.int32)


try:
    from copynce_fast import _C

    HAS_CPP: bool = all(hasattr(_C, f) for f in ("invert_dense", "compose_dense", "patch_overlap"))  # stale: lacks some
except ImportError:
    _C = None
    HAS_CPP = False

if HAS_CPP:
    invert_dense = _C.invert_dense
    compose_dense = _C.compose_dense
    patch_overlap = _C.patch_overlap
else:
    invert_dense = invert_dense_py
    compose_dense = compose_dense_py
    patch_overlap = patch_overlap_py

# ---- photometric ops on planar uint8 images (csrc/photometric.h) ----
# ``photometric`` is the extension module when it has the five helpers (colour_ops, gaussian_blur, edge_enhance,
# resize_antialias, composite_rgba), else None. They have no numpy twin here: their reference and fallback are the
# torch implementations in copynce_fast.data.photometric (apply_photo_op_torch) and data.occluders
# (composite_torch), which say where the two agree bit for bit and where only within a grey level.
HAS_PHOTOMETRIC: bool = _C is not None and all(
    hasattr(_C, f) for f in ("colour_ops", "gaussian_blur", "edge_enhance", "resize_antialias", "composite_rgba"))
photometric = _C if HAS_PHOTOMETRIC else None

# ---- view warps (csrc/warp.h) ----
# ``render_view`` draws one view's geometry in one pass (maps, canvas tests, nearest / bilinear samples, the
# overlay blend, the uint8 rounding) when the extension has it, else None. It has no numpy twin: its reference and
# fallback is the torch executor itself (copynce_fast.data.executor_torch._render_layers with impl="torch"),
# bit-equal with nearest layers and within one grey level with bilinear ones (tests/test_data_warp_cpp.py).
HAS_WARP: bool = _C is not None and hasattr(_C, "render_view")
render_view = _C.render_view if HAS_WARP else None

# ---- antialiased uint8 resize (csrc/resize.h) ----
# ``resize_bilinear_aa`` resizes a box of a uint8 [C, H, W] image (any strides, C in 1..4) exactly as torch's
# F.interpolate(mode="bilinear", antialias=True) does on uint8, when the extension has it, else None. Its reference
# and fallback is torch itself (copynce_fast.data.resize.resize_antialiased with impl="torch"), bit-equal
# (tests/test_data_resize_cpp.py).
HAS_RESIZE: bool = _C is not None and hasattr(_C, "resize_bilinear_aa")
resize_bilinear_aa = _C.resize_bilinear_aa if HAS_RESIZE else None
