"""Temporal network (TN) alignment: copied segments from a query × reference frame similarity matrix.

The method the VSC2022 baseline localises with (through VCSL's ``vcsl/vta.py`` ``tn``; Tan et al., "Scalable
detection of partial near-duplicate videos by visual-temporal consistency", ACM MM 2009). Our own code,
same rules:

* **nodes**: for every query frame ``i``, its ``top_k`` most similar reference frames ``(i, j)``;
* **edges** ``(i, j) -> (i', j')`` with ``0 < i' - i < max_step`` (C1), ``0 < j' - j < max_step`` (C2: time
  runs forward on both sides, gaps allowed), ``sim[i', j'] >= min_sim`` (C4), and no shortcut (C3): no node
  ``(i'', j'')`` that already got an edge from ``(i, ·)`` at a query frame ``i < i'' < i'`` has
  ``j < j'' < j'``. An edge weighs ``sim[i', j']``;
* with ``strict_start`` (our default), frames less similar than ``min_sim`` are no nodes at all; VCSL applies
  ``min_sim`` to edge *destinations* only, so its paths may start at any top-k frame, however dissimilar, and
  a box then reaches up to ``max_step - 1`` frames before the copy (``strict_start=False`` restores that);
* **paths**: repeatedly the heaviest path of the DAG (``max_path + 1`` times); its edges then weigh 0. A path
  becomes a box ``(query_min, ref_min, query_max, ref_max)`` (inclusive frame indices) when the sum of
  similarities of its nodes divided by the mean of its two extents exceeds ``min_sim``, both extents exceed
  ``min_length`` frames, and its IoU with every box found before is below ``max_iou`` (IoU on inclusive
  frame boxes, ``+1`` per side, as VCSL).

Defaults are the VSC2022 baseline's (``tn_max_step=5, min_length=4``) and VCSL's for the rest
(``top_k=5, max_path=10, min_sim=0.2, max_iou=0.3``).

Differences from VCSL's code, on purpose: the heaviest path comes from a DP over the query frames (nodes in
query order are a topological order) instead of networkx on an explicit graph, and ties go to the lowest node
index; VCSL's extra source node and its "sink", which is the last real node and receives zero-weight edges
from its neighbours, are left out; the search stops once no edge with positive weight is left (later rounds
could only return zero-weight paths, which VCSL rejects or duplicates).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TNParams", "temporal_network", "box_iou"]


@dataclass(frozen=True)
class TNParams:
    """Temporal-network settings (module docstring); frames are sampled frames (1 s at 1 fps)."""

    max_step: int = 5
    top_k: int = 5
    max_path: int = 10
    min_sim: float = 0.2
    min_length: int = 4
    max_iou: float = 0.3
    strict_start: bool = True

    def __post_init__(self):
        for name in ("max_step", "top_k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (2 if name == "max_step" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'max_step' else 1}, got {v!r}")
        for name in ("max_path", "min_length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if not np.isfinite(self.min_sim):
            raise ValueError(f"min_sim must be finite, got {self.min_sim!r}")
        if not 0 < self.max_iou <= 1:
            raise ValueError(f"max_iou must be in (0, 1], got {self.max_iou!r}")


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one inclusive frame box ``(q0, r0, q1, r1)`` with each of ``boxes`` (M, 4); (M,) float64."""
    if len(boxes) == 0:
        return np.zeros(0)
    b = np.asarray(boxes, dtype=np.float64)
    lo = np.maximum(box[:2], b[:, :2])
    hi = np.minimum(box[2:], b[:, 2:])
    inter = np.prod(np.maximum(hi - lo + 1, 0), axis=1)
    area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)
    return inter / (area(np.asarray(box, np.float64)) + area(b) - inter)


def _top_k(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) int64 reference indices and float64 similarities of each row's k best, best first.

    torch.topk: one multi-threaded pass over the matrix (an hour × an hour at 1 fps is 13 M entries)."""
    idx = torch.from_numpy(np.ascontiguousarray(sim)).topk(k, dim=1, sorted=True).indices.numpy()
    return idx, np.take_along_axis(sim, idx, axis=1).astype(np.float64)


def _edges(ref: np.ndarray, val: np.ndarray, p: TNParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All edges, vectorised over source query frames: (src node, dst node, weight), sorted by (dst, src).

    Node ``i * k + c`` is the c-th best reference of query frame i.
    """
    q, k = ref.shape
    src_all, dst_all, w_all = [], [], []
    reached: list[tuple[np.ndarray, np.ndarray]] = []  # per earlier step d': (reference ids, valid) [Q - d', k]
    for d in range(1, min(p.max_step, q)):
        n = q - d
        r_i, r_j = ref[:n, None, :], ref[d:, :, None]  # [n, 1, k(c)] sources, [n, k(r), 1] destinations
        diff = r_j - r_i  # [n, k(r), k(c)]
        ok = (diff > 0) & (diff < p.max_step) & (val[d:, :, None] >= p.min_sim)  # C2, C4
        if p.strict_start:
            ok &= val[:n, None, :] >= p.min_sim
        if reached:  # C3: nothing reached from row i at an earlier step lies strictly between r_i and r_j
            mids = np.concatenate([r[:n] for r, _ in reached], axis=1)  # [n, m]
            mids_ok = np.concatenate([v[:n] for _, v in reached], axis=1)
            between = (mids[:, None, None, :] > r_i[..., None]) & (mids[:, None, None, :] < r_j[..., None])
            ok &= ~np.any(between & mids_ok[:, None, None, :], axis=-1)
        reached.append((ref[d:], ok.any(axis=2)))
        rows, rr, cc = np.nonzero(ok)
        src_all.append(rows * k + cc)
        dst_all.append((rows + d) * k + rr)
        w_all.append(val[rows + d, rr])
    if not src_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    src, dst, w = np.concatenate(src_all), np.concatenate(dst_all), np.concatenate(w_all).astype(np.float64)
    order = np.lexsort((src, dst))
    return src[order], dst[order], w[order]


def _heaviest_path(n_nodes: int, k: int, src: np.ndarray, dst: np.ndarray, w: np.ndarray,
                   row_start: np.ndarray) -> tuple[list[int], list[int], float]:
    """Heaviest path of the DAG by DP over query rows; returns (nodes, edge indices, weight)."""
    dist = np.zeros(n_nodes)
    pred_edge = np.full(n_nodes, -1, dtype=np.int64)
    for row in range(len(row_start) - 1):
        a, b = row_start[row], row_start[row + 1]
        if a == b:
            continue
        cand = dist[src[a:b]] + w[a:b]
        local = dst[a:b] - row * k  # destination slot in this row
        table = np.full((k, b - a), -np.inf)
        table[local, np.arange(b - a)] = cand
        best = table.max(axis=1)
        arg = table.argmax(axis=1)  # the first (lowest source) among equal candidates
        has = np.isfinite(best) & (best >= 0)  # networkx: extend a path unless its best weight is negative
        nodes = row * k + np.nonzero(has)[0]
        dist[nodes] = best[has]
        pred_edge[nodes] = a + arg[has]
    end = int(np.argmax(dist))
    nodes, edges = [end], []
    while pred_edge[nodes[-1]] >= 0:
        e = int(pred_edge[nodes[-1]])
        edges.append(e)
        nodes.append(int(src[e]))
    return nodes[::-1], edges, float(dist[end])


def temporal_network(sim: np.ndarray, params: TNParams = TNParams()) -> np.ndarray:
    """Copied-segment boxes of a similarity matrix (module docstring).

    Args:
        sim: (Q, R) float similarities of query frames (rows) to reference frames (columns).
        params: :class:`TNParams`.

    Returns:
        (B, 4) int64 boxes ``(query_min, ref_min, query_max, ref_max)``, inclusive frame indices, in the order
        found (heaviest path first).
    """
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[0] == 0 or sim.shape[1] == 0 or not np.isfinite(sim).all():
        raise ValueError(f"sim must be a finite, non-empty (Q, R) matrix, got shape {sim.shape}")
    q = sim.shape[0]
    k = min(params.top_k, sim.shape[1])
    ref, val = _top_k(sim if sim.dtype in (np.float32, np.float64) else sim.astype(np.float32), k)
    src, dst, w = _edges(ref, val, params)
    row_start = np.searchsorted(dst // k, np.arange(q + 1))  # edges into row i: [row_start[i], row_start[i + 1])
    boxes: list[list[int]] = []
    for _ in range(params.max_path + 1):
        if not np.any(w > 0):
            break
        nodes, edges, _weight = _heaviest_path(q * k, k, src, dst, w, row_start)
        w[edges] = 0.0
        qi = np.asarray(nodes) // k
        rj = ref[qi, np.asarray(nodes) % k]
        score = float(val[qi, np.asarray(nodes) % k].sum())
        box = np.array([qi.min(), rj.min(), qi.max(), rj.max()]) if score > 0 else np.zeros(4, np.int64)
        extent_q, extent_r = box[2] - box[0], box[3] - box[1]
        if min(extent_q, extent_r) <= params.min_length:
            continue
        if score / ((extent_q + extent_r) / 2) <= params.min_sim:
            continue
        if boxes and box_iou(box, np.asarray(boxes)).max() >= params.max_iou:
            continue
        boxes.append([int(v) for v in box])
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
