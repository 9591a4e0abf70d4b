"""Dense maps in the reference layout: deterministic inverse, composition and the official CopyNCE chain.

A dense map ``M`` is ``[B, 2, H, W]`` (or ``[2, H, W]`` for one image): channel 0 = row, channel 1 = col, value =
coordinate in some source frame, ``-1`` = invalid. Accepted dtypes: float16/bfloat16/float32/float64 and signed
integers (plus uint8; numpy also uint16/uint32). numpy arrays and torch tensors (any device) both work; outputs
are int64 and of the same kind (numpy array, or tensor on the input's device).

Coordinate -> pixel, shared by both operations (REFERENCE.md section 1.6):

1. valid iff ``0 <= v < limit`` for both channels, on the RAW values (in the input dtype);
2. round half to even (``torch.round`` / ``np.rint``: 0.5 -> 0, 1.5 -> 2) and test the range again, so 223.6 is
   invalid at limit 224 (it rounds to 224) while -0.4 is invalid although it rounds to 0;
3. NaN and +-inf fail the range test, i.e. they count as invalid.

**Collision rule.** When several source pixels land on one target pixel, the LAST valid one in raster (row-major)
order wins, and both channels come from that one writer. Run on one CPU thread, the official scatter does exactly
this; it is the rule that reproduces the official derived maps bit-for-bit (the official CUDA scatter is racy and
may even mix y and x from different writers; ours never does).

Implementations (``impl=``), all bit-identical:

* ``"cpp"``: ``copynce_fast._C`` (numpy arrays or CPU tensors; batch elements spread over
  ``torch.get_num_threads()`` threads, each one sequential, so the result does not depend on the thread count);
* ``"numpy"``: the pure-Python fallback in ``copynce_fast._cpp`` (numpy arrays or CPU tensors);
* ``"torch"``: vectorised torch below (any device): the flat raster index of every valid source pixel is
  ``scatter_reduce(amax)``-ed into a -1 buffer, so the largest index (= last raster writer) wins whatever order the
  device runs in; (row, col) are then decoded from that one index.
* ``None`` / ``"auto"``: CUDA (or other non-CPU) tensors -> torch; numpy arrays and CPU tensors -> cpp when built,
  else numpy for arrays and torch for tensors.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from copynce_fast import _cpp

__all__ = [
    "invert_dense",
    "compose_dense",
    "reference_correspondence",
    "invert_dense_torch",
    "compose_dense_torch",
]

_IMPLS = ("auto", "cpp", "numpy", "torch")
_TORCH_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_TORCH_INTS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_TWO_63 = 2.0**63  # exactly representable in float32 and float64


# ---------------------------------------------------------------------------------------------- torch version
def _torch_normal(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (exact), integers -> int64; float32/float64 unchanged."""
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float() if x.dtype.is_floating_point else x.long()


def _pixel_index_torch(m: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """m [B,2,N] -> (valid [B,N] bool, flat index row*w + col [B,N] int64, 0 where invalid)."""
    vy, vx = m[:, 0], m[:, 1]
    ok = (vy >= 0) & (vy < h) & (vx >= 0) & (vx < w)  # in m's dtype (Python int scalars); NaN fails
    if m.dtype.is_floating_point:
        vy, vx = torch.round(vy), torch.round(vx)  # half to even
        ok &= (vy < h) & (vx < w)
    iy = torch.where(ok, vy, 0).long()
    ix = torch.where(ok, vx, 0).long()
    return ok, iy * w + ix


def invert_dense_torch(maps: torch.Tensor, out_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch inverse of already-validated maps [B,2,H,W] -> (inv [B,2,H',W'] int64, holes [B] int64).

    Prefer ``invert_dense`` (validation, dispatch); this is the GPU path it calls. No host sync.
    """
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    m = _torch_normal(maps.detach())
    b_, _, h, w = m.shape
    n_out = out_h * out_w
    ok, tgt = _pixel_index_torch(m.reshape(b_, 2, h * w), out_h, out_w)
    tgt = torch.where(ok, tgt, n_out)  # invalid pixels go to a spare slot past the end of their row
    src = torch.arange(h * w, device=m.device).expand(b_, h * w)  # flat raster index, a stride-0 view
    winner = torch.full((b_, n_out + 1), -1, dtype=torch.int64, device=m.device)
    # amax of raster indices = last writer; max is order-independent, hence deterministic on every device.
    winner.scatter_reduce_(1, tgt, src, reduce="amax", include_self=True)
    winner = winner[:, :n_out].view(b_, out_h, out_w)
    hole = winner < 0
    row = torch.div(winner, w, rounding_mode="floor")  # floor(-1 / w) = -1: holes stay -1
    col = torch.where(hole, -1, winner % w)
    inv = torch.stack([row, col], dim=1)
    return inv, hole.sum(dim=(1, 2))


def compose_dense_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Torch composition of already-validated a [B,2,H,W], b [B,2,H2,W2] -> [B,2,H,W] int64. No host sync."""
    a, b = _torch_normal(a.detach()), _torch_normal(b.detach())
    b_, _, h, w = a.shape
    h2, w2 = b.shape[2:]
    ok, q = _pixel_index_torch(a.reshape(b_, 2, h * w), h2, w2)
    vals = b.reshape(b_, 2, h2 * w2)
    if vals.dtype.is_floating_point:  # NaN / no int64 value -> -1, else round half to even
        good = (vals >= -_TWO_63) & (vals < _TWO_63)
        vals = torch.where(good, torch.where(good, torch.round(vals), 0).long(), -1)
    out = torch.gather(vals, 2, q[:, None, :].expand(b_, 2, h * w))
    return torch.where(ok[:, None, :], out, -1).view(b_, 2, h, w)


# ---------------------------------------------------------------------------------------------- validation
def _check_map(x, name: str) -> tuple[np.ndarray | torch.Tensor, bool]:
    """Validate one map; returns (x as [B,2,H,W], was_single)."""
    if isinstance(x, torch.Tensor):
        ok_dtype = x.dtype in _TORCH_FLOATS or x.dtype in _TORCH_INTS
    elif isinstance(x, np.ndarray):
        kind, size = x.dtype.kind, x.dtype.itemsize
        ok_dtype = (kind == "f" and size <= 8) or kind == "i" or (kind == "u" and size <= 4)
    else:
        raise ValueError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    if not ok_dtype:
        raise ValueError(f"{name}: expected a real float or integer dtype, got {x.dtype}")
    if x.ndim not in (3, 4) or x.shape[-3] != 2:
        raise ValueError(f"{name}: expected shape [B,2,H,W] or [2,H,W], got {tuple(x.shape)}")
    return (x[None], True) if x.ndim == 3 else (x, False)


def _check_pair(a, b, name_a: str, name_b: str):
    a4, single_a = _check_map(a, name_a)
    b4, single_b = _check_map(b, name_b)
    if isinstance(a4, torch.Tensor) != isinstance(b4, torch.Tensor):
        raise ValueError(f"{name_b}: must be the same kind as {name_a} (both numpy arrays or both torch tensors)")
    if isinstance(a4, torch.Tensor) and a4.device != b4.device:
        raise ValueError(f"{name_b}: on {b4.device}, but {name_a} is on {a4.device}")
    if single_a != single_b:
        raise ValueError(f"{name_b}: has {b.ndim} dims but {name_a} has {a.ndim}; pass both batched or both single")
    if a4.shape[0] != b4.shape[0]:
        raise ValueError(f"{name_b}: batch size {b4.shape[0]} does not match {name_a}'s batch size {a4.shape[0]}")
    return a4, b4, single_a


def _check_hw(out_hw, default: tuple[int, int]) -> tuple[int, int]:
    if out_hw is None:
        return default
    try:
        ok = len(out_hw) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in out_hw)
    except TypeError:
        ok = False
    if not ok or min(int(v) for v in out_hw) <= 0:
        raise ValueError(f"out_hw: expected two positive ints (H', W'), got {out_hw!r}")
    return int(out_hw[0]), int(out_hw[1])


def _resolve_impl(impl: str | None, x) -> str:
    impl = impl or "auto"
    if impl not in _IMPLS:
        raise ValueError(f"impl: expected one of {_IMPLS} or None, got {impl!r}")
    on_cpu = not isinstance(x, torch.Tensor) or x.device.type == "cpu"
    if impl == "auto":
        if not on_cpu:
            return "torch"
        return "cpp" if _cpp.HAS_CPP else ("torch" if isinstance(x, torch.Tensor) else "numpy")
    if impl in ("cpp", "numpy") and not on_cpu:
        raise ValueError(f"impl: {impl!r} runs on the CPU; got a tensor on {x.device} (use impl='torch')")
    if impl == "cpp" and not _cpp.HAS_CPP:
        raise ValueError("impl: 'cpp' requested but copynce_fast._C is not built (COPYNCE_NO_EXT=1?)")
    return impl


# ---------------------------------------------------------------------------------------------- dispatch
def _np_normal(x: np.ndarray) -> np.ndarray:
    """C-contiguous float32 / float64 / int64: the dtypes the C++ helpers take."""
    dtype = (np.float64 if x.dtype.itemsize == 8 else np.float32) if x.dtype.kind == "f" else np.int64
    x = np.ascontiguousarray(x, dtype=dtype)
    return x if x.flags.writeable else x.copy()  # torch.from_numpy warns on read-only arrays


def _backend(impl: str, batch: int) -> tuple[Callable, Callable]:
    """(invert(m, (h, w)) -> (inv, holes), compose(a, b) -> t) working in the impl's array domain."""
    if impl == "torch":
        return invert_dense_torch, compose_dense_torch
    if impl == "cpp":
        inv_fn, comp_fn = _cpp.invert_dense, _cpp.compose_dense
        threads = max(1, min(batch, torch.get_num_threads()))
    else:
        inv_fn, comp_fn, threads = _cpp.invert_dense_py, _cpp.compose_dense_py, 1
    return (lambda m, hw: inv_fn(m, hw[0], hw[1], threads)), (lambda a, b: comp_fn(a, b, threads))


def _run(impl: str, inputs: list, body: Callable):
    """Convert inputs to the impl's domain (numpy or torch), run body(invert, compose, *inputs), convert back."""
    is_torch = isinstance(inputs[0], torch.Tensor)
    inv_fn, comp_fn = _backend(impl, int(inputs[0].shape[0]))
    if impl == "torch":
        args = [x if is_torch else torch.from_numpy(_np_normal(x)) for x in inputs]
        back = (lambda t: t) if is_torch else (lambda t: t.numpy())
    else:
        args = [_np_normal(_torch_normal(x.detach()).numpy() if is_torch else x) for x in inputs]
        back = torch.from_numpy if is_torch else (lambda t: t)
    out = body(inv_fn, comp_fn, *args)

    def convert(o):
        if isinstance(o, tuple):
            return tuple(convert(v) for v in o)
        if isinstance(o, dict):
            return {k: convert(v) for k, v in o.items()}
        return back(o)

    return convert(out)


# ---------------------------------------------------------------------------------------------- public API
def invert_dense(maps, out_hw: tuple[int, int] | None = None, *, impl: str | None = None):
    """Deterministic inverse of dense maps (official ``generate_batch_inverse_mappings``, last raster writer wins).

    Args:
        maps: [B,2,H,W] or [2,H,W] numpy array or torch tensor, float or integer; values are coordinates in the
            target frame, -1 (or anything out of range, NaN, inf) = invalid.
        out_hw: (H', W') of the target frame; default (H, W).
        impl: None/"auto", "cpp", "numpy" or "torch" (module docstring).

    Returns:
        (inv, holes): inv [B,2,H',W'] int64 with inv[:, :, r, c] = (y, x) of the last valid source pixel landing
        on (r, c), -1 where none does; holes [B] int64 = number of such target pixels. Without the batch dim for
        [2,H,W] input (holes is then 0-d). Same kind and device as ``maps``.
    """
    m4, single = _check_map(maps, "maps")
    hw = _check_hw(out_hw, (int(m4.shape[2]), int(m4.shape[3])))
    inv, holes = _run(_resolve_impl(impl, m4), [m4], lambda inv_fn, _, m: inv_fn(m, hw))
    return (inv[0], holes[0]) if single else (inv, holes)


def compose_dense(a, b, *, impl: str | None = None):
    """Composition "a then b" (official ``generate_batch_transferred_mapping``).

    Args:
        a: [B,2,H,W] (or [2,H,W]) coordinates in b's frame.
        b: [B,2,H2,W2] (or [2,H2,W2]) map from that frame onward; same kind/device and batch size as ``a``.
        impl: None/"auto", "cpp", "numpy" or "torch".

    Returns:
        t [B,2,H,W] int64: ``t(p) = b[round(a(p))]`` when a(p) lies in [0,H2)x[0,W2) before and after rounding
        half to even, else (-1, -1). Values of b are carried through (a -1 stays -1); float b values are rounded
        half to even, NaN / out-of-int64 ones become -1.
    """
    a4, b4, single = _check_pair(a, b, "a", "b")
    t = _run(_resolve_impl(impl, a4), [a4, b4], lambda _, comp_fn, x, y: comp_fn(x, y))
    return t[0] if single else t


def reference_correspondence(que_to_ori, ref_to_ori, *, impl: str | None = None):
    """The official CopyNCE chain (REFERENCE.md section 1.7), with deterministic collisions.

    ``ori_to_ref = invert(ref_to_ori)``; ``que_to_ref = compose(que_to_ori, ori_to_ref)``;
    ``ref_to_que = invert(que_to_ref)``. The original frame is taken to have the reference's size (S x S in the
    official code, where both views are S x S).

    Args:
        que_to_ori: [B,2,Hq,Wq] (or [2,Hq,Wq]) query pixel -> original-image coordinate.
        ref_to_ori: [B,2,Hr,Wr] (or [2,Hr,Wr]) reference pixel -> original-image coordinate; same kind, device
            and batch size.
        impl: None/"auto", "cpp", "numpy" or "torch". CPU tensors go through the C++ helpers when built.

    Returns:
        (que_to_ref [B,2,Hq,Wq] int64, ref_to_que [B,2,Hr,Wr] int64, info) where info holds [B] int64 counts:
        ``ori_to_ref_holes`` (original pixels no reference pixel maps to), ``que_unmatched`` (query pixels with no
        reference pixel) and ``ref_to_que_holes`` (reference pixels no query pixel maps to). Same kind and device
        as the inputs; no host sync on the torch path.
    """
    q4, r4, single = _check_pair(que_to_ori, ref_to_ori, "que_to_ori", "ref_to_ori")
    ref_hw = (int(r4.shape[2]), int(r4.shape[3]))

    def chain(inv_fn, comp_fn, q, r):
        ori_to_ref, ori_holes = inv_fn(r, ref_hw)
        que_to_ref = comp_fn(q, ori_to_ref)
        ref_to_que, ref_holes = inv_fn(que_to_ref, ref_hw)
        unmatched = (que_to_ref[:, 0] < 0).sum((1, 2))
        info = {"ori_to_ref_holes": ori_holes, "que_unmatched": unmatched, "ref_to_que_holes": ref_holes}
        return que_to_ref, ref_to_que, info

    que_to_ref, ref_to_que, info = _run(_resolve_impl(impl, q4), [q4, r4], chain)
    if single:
        return que_to_ref[0], ref_to_que[0], {k: v[0] for k, v in info.items()}
    return que_to_ref, ref_to_que, info
