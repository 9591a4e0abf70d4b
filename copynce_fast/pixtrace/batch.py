"""Batched trace paths as small tensors, and the torch reference that maps every pixel along them.

``PackedPaths`` is what crosses the data loader and what the Triton overlap kernel reads: per pair a few
3x3 matrices and canvas sizes (hundreds of bytes), plus optional occluder masks. Nothing image-sized.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from copynce_fast.pixtrace.view import SNAP, View, path_steps

__all__ = ["PackedPaths", "pack_paths", "pack_pairs", "map_pixels", "correspondence_map"]


@dataclass
class PackedPaths:
    """A batch of trace paths (src view -> original -> dst view) with a common src and dst size.

    Attributes:
        matrices: [B, T, 3, 3] float32 (or float64) homographies, one per step.
        canvases: [B, T, 2] int32 (H, W) each step's point must land in.
        src_hw, dst_hw: (H, W) of the source and destination views, the same for the whole batch.
        src_occluder: optional [B, Hs, Ws] bool, True = source pixel shows no original content.
        dst_occluder: optional [B, Hd, Wd] bool, same for the destination.
    """

    matrices: torch.Tensor
    canvases: torch.Tensor
    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]
    src_occluder: torch.Tensor | None = None
    dst_occluder: torch.Tensor | None = None

    def __post_init__(self):
        m, c = self.matrices, self.canvases
        if m.dim() != 4 or m.shape[-2:] != (3, 3) or not m.is_floating_point():
            raise ValueError(f"matrices: expected a float tensor [B, T, 3, 3], got {tuple(m.shape)} {m.dtype}")
        if c.shape != m.shape[:2] + (2,):
            raise ValueError(f"canvases: expected shape {tuple(m.shape[:2]) + (2,)}, got {tuple(c.shape)}")
        for name, occ, hw in (("src_occluder", self.src_occluder, self.src_hw),
                              ("dst_occluder", self.dst_occluder, self.dst_hw)):
            if occ is not None and (occ.dtype != torch.bool or tuple(occ.shape) != (m.shape[0], *hw)):
                raise ValueError(f"{name}: expected bool [{m.shape[0]}, {hw[0]}, {hw[1]}], got "
                                 f"{tuple(occ.shape)} {occ.dtype}")

    @property
    def batch_size(self) -> int:
        return self.matrices.shape[0]

    def to(self, device=None, dtype=None, non_blocking: bool = False) -> "PackedPaths":
        """Move to ``device``; ``dtype`` changes the float dtype of the matrices. ``non_blocking`` copies from
        pinned memory without waiting for the GPU (see ``pin_memory``)."""
        occ = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return PackedPaths(self.matrices.to(device=device, dtype=dtype or self.matrices.dtype,
                                            non_blocking=non_blocking),
                           self.canvases.to(device, non_blocking=non_blocking), self.src_hw, self.dst_hw,
                           occ(self.src_occluder), occ(self.dst_occluder))

    def pin_memory(self) -> "PackedPaths":
        """Page-locked copy (DataLoader(pin_memory=True) calls this), so host->device copies are asynchronous."""
        occ = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return PackedPaths(self.matrices.pin_memory(), self.canvases.pin_memory(), self.src_hw, self.dst_hw,
                           occ(self.src_occluder), occ(self.dst_occluder))



def _occluders(views: Sequence[View], hw) -> torch.Tensor | None:
    """[B, H, W] bool of the views' occluder masks (False for a view without one), or None if none has one."""
    if all(v.occluder is None for v in views):
        return None
    out = np.zeros((len(views), *hw), dtype=bool)
    for b, v in enumerate(views):
        if v.occluder is not None:
            out[b] = v.occluder
    return torch.from_numpy(out)


def _steps(src_views: Sequence[View], dst_views: Sequence[View]) -> list[tuple[list, list]]:
    """``path_steps`` of each pair of a batch, after the checks trace_path and pack_paths always made."""
    if len(src_views) != len(dst_views) or not src_views:
        raise ValueError(f"dst_views: expected {len(src_views)} views to pair with src_views, got {len(dst_views)}")
    steps = [path_steps(s, d) for s, d in zip(src_views, dst_views)]  # raises for different originals
    src_hw, dst_hw = src_views[0].out_hw, dst_views[0].out_hw
    for b, (s, d) in enumerate(zip(src_views, dst_views)):
        if s.out_hw != src_hw or d.out_hw != dst_hw:
            raise ValueError(f"src_views/dst_views: pair {b} has sizes {s.out_hw}->{d.out_hw}, "
                             f"expected {src_hw}->{dst_hw} like pair 0")
    return steps


def _packed(steps, src_hw, dst_hw, dtype, src_occluder, dst_occluder) -> PackedPaths:
    """The paths of a batch from its checked ``_steps`` (see pack_paths), with the occluder stacks given."""
    mats = [m for pair_mats, _ in steps for m in pair_mats]
    canv = [c for _, pair_canv in steps for c in pair_canv]
    lengths = [len(pair_mats) for pair_mats, _ in steps]
    num = len(steps)
    steps_max = max(1, max(lengths))  # a pair without stages is one identity step on its (only) canvas = dst_hw
    matrices = np.empty((num, steps_max, 3, 3))
    matrices[:] = np.eye(3)
    canvases = np.empty((num, steps_max, 2), dtype=np.int32)
    canvases[:] = dst_hw
    if mats:
        lengths = np.asarray(lengths)
        pair = np.repeat(np.arange(num), lengths)  # pair and step of each gathered matrix
        step = np.arange(len(mats)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        matrices[pair, step] = np.stack(mats)
        canvases[pair, step] = canv
    return PackedPaths(torch.from_numpy(matrices).to(dtype), torch.from_numpy(canvases), src_hw, dst_hw,
                       src_occluder, dst_occluder)


def pack_paths(src_views: Sequence[View], dst_views: Sequence[View], dtype=torch.float32) -> PackedPaths:
    """Pack the paths src[b] -> dst[b] of a batch of view pairs (views of the same original per b).

    The paths are :func:`~copynce_fast.pixtrace.view.trace_path`'s, padded with identity steps on the destination
    canvas (``TracePath.padded``), gathered into one array per field with a single stack and scatter.
    """
    steps = _steps(src_views, dst_views)
    src_hw, dst_hw = src_views[0].out_hw, dst_views[0].out_hw
    return _packed(steps, src_hw, dst_hw, dtype, _occluders(src_views, src_hw), _occluders(dst_views, dst_hw))


def pack_pairs(query_views: Sequence[View], reference_views: Sequence[View],
               dtype=torch.float32) -> tuple[PackedPaths, PackedPaths]:
    """Both directions of a batch of pairs: (query -> reference, reference -> query).

    Each side's occluder stack is made once and shared by both directions (the same tensor, read only).
    """
    qr, rq = _steps(query_views, reference_views), _steps(reference_views, query_views)
    q_hw, r_hw = query_views[0].out_hw, reference_views[0].out_hw
    q_occ, r_occ = _occluders(query_views, q_hw), _occluders(reference_views, r_hw)
    return _packed(qr, q_hw, r_hw, dtype, q_occ, r_occ), _packed(rq, r_hw, q_hw, dtype, r_occ, q_occ)


def _snap_floor(v: torch.Tensor) -> torch.Tensor:
    """Pixel index of a coordinate after snapping to 1/SNAP px (see DEVELOPING.md)."""
    return torch.div(torch.round(v * SNAP), SNAP, rounding_mode="floor")


def map_pixels(paths: PackedPaths) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map the centre of every source pixel along its path (torch reference; any device).

    The arithmetic order (``(m0*x + m1*y) + m2`` for each row, then one division) is the contract the Triton
    kernel reproduces.

    Returns:
        (row [B, Hs, Ws] int64, col [B, Hs, Ws] int64, valid [B, Hs, Ws] bool): the destination pixel of each
        source pixel; row/col are -1 where invalid.
    """
    m, canv = paths.matrices, paths.canvases
    B, T = m.shape[:2]
    hs, ws = paths.src_hw
    dt, dev = m.dtype, m.device
    y = (torch.arange(hs, device=dev, dtype=dt) + 0.5).view(1, hs, 1).expand(B, hs, ws)
    x = (torch.arange(ws, device=dev, dtype=dt) + 0.5).view(1, 1, ws).expand(B, hs, ws)
    valid = torch.ones(B, hs, ws, dtype=torch.bool, device=dev)
    if paths.src_occluder is not None:
        valid &= ~paths.src_occluder.to(dev)
    for t in range(T):
        a = m[:, t].reshape(B, 9, 1, 1)
        nx = (a[:, 0] * x + a[:, 1] * y) + a[:, 2]
        ny = (a[:, 3] * x + a[:, 4] * y) + a[:, 5]
        nd = (a[:, 6] * x + a[:, 7] * y) + a[:, 8]
        ok = nd > 0  # points behind a perspective horizon have no image
        nd = torch.where(ok, nd, torch.ones_like(nd))
        x, y = nx / nd, ny / nd
        h = canv[:, t, 0].view(B, 1, 1).to(dt)
        w = canv[:, t, 1].view(B, 1, 1).to(dt)
        sx, sy = torch.round(x * SNAP), torch.round(y * SNAP)
        valid &= ok & (sx >= 0) & (sx < w * SNAP) & (sy >= 0) & (sy < h * SNAP)
    col = torch.where(valid, _snap_floor(x), -1).long()
    row = torch.where(valid, _snap_floor(y), -1).long()
    hd, wd = paths.dst_hw
    inside = valid & (row >= 0) & (row < hd) & (col >= 0) & (col < wd)  # the last canvas is dst_hw
    if paths.dst_occluder is not None:
        occ = paths.dst_occluder.to(dev).reshape(B, -1)
        flat = (row.clamp(0, hd - 1) * wd + col.clamp(0, wd - 1)).reshape(B, -1)
        inside &= ~torch.gather(occ, 1, flat).reshape(B, hs, ws)
    row = torch.where(inside, row, -1)
    col = torch.where(inside, col, -1)
    return row, col, inside


def correspondence_map(paths: PackedPaths) -> torch.Tensor:
    """Dense correspondence in the reference layout: [B, 2, Hs, Ws] int64 (row, col) of the dst pixel, -1 invalid."""
    row, col, _ = map_pixels(paths)
    return torch.stack([row, col], dim=1)
