"""Search over a reference set split into shards: exact top-k merge, faiss shards across GPUs, one shard per rank.

**Order of a result.** A top-k list is sorted by score (descending for ``metric="ip"``, ascending for
``"l2"``) and, among equal scores, by *global row* ascending, the row of the reference in the union of the
shards taken in shard order (shard ``s`` owns rows ``offsets[s] .. offsets[s] + count[s] - 1``). With that
tie-break the top-k of the union is one well-defined list, and the merge of per-shard top-k lists equals it
exactly: every member of the union's top-k is in its own shard's top-k under the same order.

**Ties at a shard's boundary.** A search library returns *a* top-k by score; when several rows tie with the
k-th score it may return any of them. :func:`tie_safe_search` therefore asks for more rows until the last one
returned scores strictly worse than the k-th (or the shard is exhausted), then sorts by (score, row), so
each shard's list is the canonical one whatever the backend's tie order.

**Approximate shards.** For IVF / IVF-PQ the merged result equals searching the union *when every shard is
a copy of one trained index* (same coarse quantiser and codebooks, :func:`split_trained_index`): each shard
then probes the same lists and scores a vector exactly as the union would.

Three ways to use it:

* :func:`search_shards`: shards held in one process (CPU, tests, or your own loop over files);
* :func:`gpu_sharded_index`: a faiss index split across the GPUs of one machine (faiss ``IndexShards``; its
  own merge, no tie rule);
* :func:`search_across_ranks`: one shard per ``torch.distributed`` rank (torchrun), searched in parallel,
  per-rank top-k all-gathered and merged on every rank.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (queries, k) -> (scores, rows)


def _check_metric(metric: str) -> None:
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")


def canonical_topk(scores: np.ndarray, rows: np.ndarray, k: int, metric: str = "ip"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` candidates of each query in the canonical order (module docstring).

    Args:
        scores: (N, C) float candidate scores; rows: (N, C) int64 global rows, -1 = no candidate (padding).
        k: columns kept, 1 <= k (rows with fewer than ``k`` valid candidates are padded with -1 and a score
            of -inf for "ip", +inf for "l2").
        metric: "ip" (larger is better) or "l2" (smaller is better).

    Returns:
        ``(scores (N, k) float32, rows (N, k) int64)``.
    """
    _check_metric(metric)
    scores = np.asarray(scores, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    if scores.shape != rows.shape or scores.ndim != 2:
        raise ValueError(f"scores and rows must be (N, C) arrays of one shape, got {scores.shape} and {rows.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n, c = scores.shape
    pad = np.float32(-np.inf if metric == "ip" else np.inf)
    valid = rows >= 0
    key_score = np.where(valid, -scores if metric == "ip" else scores, np.inf)
    key_row = np.where(valid, rows, np.iinfo(np.int64).max)
    # lexsort sorts by the last key first: score, then row; padding (inf, max) goes last
    order = np.lexsort((key_row, key_score), axis=1)[:, :k]
    out_s = np.take_along_axis(np.where(valid, scores, pad), order, axis=1)
    out_r = np.take_along_axis(np.where(valid, rows, -1), order, axis=1)
    if c < k:  # fewer candidates than k: pad
        out_s = np.concatenate([out_s, np.full((n, k - c), pad, np.float32)], axis=1)
        out_r = np.concatenate([out_r, np.full((n, k - c), -1, np.int64)], axis=1)
    return out_s.astype(np.float32, copy=False), out_r


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int, metric: str = "ip"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k lists (global rows) into the top-``k`` of the union.

    Args:
        parts: ``[(scores (N, k_s), rows (N, k_s)), ...]``, one per shard, rows global, -1 = padding.
        k: result width.
        metric: "ip" or "l2".

    Returns:
        ``(scores (N, k) float32, rows (N, k) int64)`` in the canonical order.
    """
    if not parts:
        raise ValueError("parts: no shard results to merge")
    n = {np.shape(s)[0] for s, _ in parts}
    if len(n) != 1:
        raise ValueError(f"parts: shards disagree on the number of queries {sorted(n)}")
    return canonical_topk(np.concatenate([np.asarray(s) for s, _ in parts], axis=1),
                          np.concatenate([np.asarray(r) for _, r in parts], axis=1), k, metric)


def tie_safe_search(search: SearchFn, queries: np.ndarray, k: int, count: int, metric: str = "ip"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of one shard in the canonical order, whatever order ``search`` gives tied scores.

    Args:
        search: ``(queries, k') -> (scores (N, k'), rows (N, k'))``, best first by score, -1 padding.
        queries: (N, D) float32.
        k: wanted width; count: rows in the shard (``k' <= count``).
        metric: "ip" or "l2".

    Returns:
        ``(scores (N, k) float32, rows (N, k) int64)``; rows are the shard's (local) rows.
    """
    _check_metric(metric)
    if count < 1:
        raise ValueError(f"count must be >= 1 (an empty shard is not searched), got {count}")
    want = min(k, count)
    ask = min(count, want + 8)
    while True:
        scores, rows = search(queries, ask)
        scores, rows = np.asarray(scores, np.float32), np.asarray(rows, np.int64)
        if ask == count:
            break
        kth, last = scores[:, want - 1], scores[:, ask - 1]
        # a tie may continue past the last row returned: only when that row is real and as good as the k-th
        tied = (rows[:, ask - 1] >= 0) & ((last >= kth) if metric == "ip" else (last <= kth))
        if not tied.any():
            break
        ask = min(count, 2 * ask)
    return canonical_topk(scores, rows, k, metric)


def search_shards(shards: Sequence[tuple[SearchFn, int]], queries: np.ndarray, k: int, metric: str = "ip"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Search every shard and merge: equal to searching the union (module docstring).

    Args:
        shards: ``[(search_fn, count), ...]`` in shard order; ``search_fn(queries, k')`` returns local rows.
        queries: (N, D) float32 queries.
        k: 1 <= k <= total rows.

    Returns:
        ``(scores (N, k) float32, rows (N, k) int64)``, rows global (shard offset + local row).
    """
    total = sum(c for _, c in shards)
    if not 1 <= k <= total:
        raise ValueError(f"k must be in [1, {total}] (rows over all shards), got {k}")
    parts, offset = [], 0
    for fn, count in shards:
        if count > 0:
            s, r = tie_safe_search(fn, queries, k, count, metric)
            parts.append((s, np.where(r >= 0, r + offset, -1)))
        offset += count
    return merge_topk(parts, k, metric)


def split_trained_index(index, xb: np.ndarray, n_shards: int) -> list:
    """Copies of a *trained, empty* faiss index, shard ``s`` holding rows ``array_split(xb, n_shards)[s]``.

    Sharing the trained quantiser and codebooks is what makes the merged IVF / IVF-PQ result equal to the
    union's. Returns the list of faiss indexes (local rows 0.. in each).
    """
    import faiss

    if index.ntotal != 0 or not index.is_trained:
        raise ValueError("index must be trained and empty (train it, do not add rows)")
    if not 1 <= n_shards <= len(xb):
        raise ValueError(f"n_shards must be in [1, {len(xb)}], got {n_shards}")
    shards = []
    for part in np.array_split(np.ascontiguousarray(xb, dtype=np.float32), n_shards):
        shard = faiss.clone_index(index)
        shard.add(part)
        shards.append(shard)
    return shards


def faiss_search_fn(index, nprobe: int | None = None) -> SearchFn:
    """``(queries, k) -> (scores, rows)`` over a faiss index (``nprobe`` set for IVF indexes)."""
    if nprobe is not None:
        import faiss

        faiss.ParameterSpace().set_index_parameter(index, "nprobe", int(nprobe))
    return lambda q, k: index.search(np.ascontiguousarray(q, dtype=np.float32), k)


def gpu_sharded_index(index, gpus: Sequence[int] | None = None, float16: bool = False):
    """Split a faiss CPU index across GPUs (faiss ``IndexShards``: each GPU holds 1/G of the rows and searches
    them; faiss merges). For reference sets that do not fit one GPU. Needs faiss with GPU support.

    Args:
        index: a faiss CPU index (flat, IVF, IVF-PQ) holding the rows.
        gpus: GPU ids (default: all faiss sees).
        float16: store flat / IVF-Flat vectors as float16 on the GPUs (half the memory, approximate scores;
            IVF-PQ codes are unaffected).

    Returns:
        The sharded GPU index (``.search(queries, k)`` as any faiss index).
    """
    import faiss

    n = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
    if n == 0:
        raise ValueError("gpus: faiss has no GPU support here (install faiss-gpu-cu12)")
    gpus = list(range(n)) if gpus is None else list(gpus)
    if not gpus or any(g < 0 or g >= n for g in gpus):
        raise ValueError(f"gpus must be ids in [0, {n}), got {gpus}")
    co = faiss.GpuMultipleClonerOptions()
    co.shard = True  # split the rows, not replicate them
    co.useFloat16 = bool(float16)
    resources = [faiss.StandardGpuResources() for _ in gpus]
    sharded = faiss.index_cpu_to_gpu_multiple_py(resources, index, co, gpus)
    sharded.referenced_objects = resources  # keep the GPU resources alive with the index
    return sharded


def _world():
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("search_across_ranks needs torch.distributed initialised (run under torchrun)")
    return dist


def _gather_device(dist) -> torch.device:
    # NCCL moves CUDA tensors only; gloo (CPU runs, tests) host tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def search_across_ranks(search: SearchFn, count: int, queries: np.ndarray, k: int, metric: str = "ip"
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shard per rank: every rank searches its shard with the same queries, the per-rank top-k lists are
    all-gathered and merged on every rank. Collective: every rank must call it with the same queries and k.

    Args:
        search: ``(queries, k') -> (scores, local rows)`` over this rank's shard.
        count: rows in this rank's shard (0 allowed: the rank contributes nothing).
        queries: (N, D) float32, the same on every rank.
        k: 1 <= k <= rows over all ranks.
        metric: "ip" or "l2".

    Returns:
        ``(scores (N, k) float32, rows (N, k) int64, offsets (world + 1,) int64)``: global rows in rank order
        (rank r owns ``offsets[r] .. offsets[r+1] - 1``), identical on every rank.
    """
    dist = _world()
    world = dist.get_world_size()
    device = _gather_device(dist)
    counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([count], dtype=torch.int64, device=device))
    offsets = np.concatenate([[0], np.cumsum([int(c.item()) for c in counts])]).astype(np.int64)
    total = int(offsets[-1])
    if not 1 <= k <= total:
        raise ValueError(f"k must be in [1, {total}] (rows over all ranks), got {k}")
    n = len(queries)
    if count > 0:
        s, r = tie_safe_search(search, queries, k, count, metric)
        r = np.where(r >= 0, r + offsets[dist.get_rank()], -1)
    else:
        s, r = canonical_topk(np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64), k, metric)
    parts_s = [torch.empty((n, k), dtype=torch.float32, device=device) for _ in range(world)]
    parts_r = [torch.empty((n, k), dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(parts_s, torch.from_numpy(np.ascontiguousarray(s)).to(device))
    dist.all_gather(parts_r, torch.from_numpy(np.ascontiguousarray(r)).to(device))
    merged = merge_topk([(ps.cpu().numpy(), pr.cpu().numpy()) for ps, pr in zip(parts_s, parts_r)], k, metric)
    return merged[0], merged[1], offsets


def ids_across_ranks(rows: np.ndarray, local_ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Turn global rows (from :func:`search_across_ranks`) into ids when each rank holds only its own ids.
    Collective. Returns (N, k) unicode ids, "" for padding rows."""
    dist = _world()
    rank = dist.get_rank()
    lo, hi = int(offsets[rank]), int(offsets[rank + 1])
    mine = (rows >= lo) & (rows < hi)
    local = np.where(mine, rows - lo, 0)
    local_ids = np.asarray(local_ids).astype(str)
    picked = np.where(mine, local_ids[local] if len(local_ids) else "", "")
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, (mine, picked))
    out = np.full(rows.shape, "", dtype=object)
    for owned, ids in everyone:
        out[owned] = ids[owned]
    return out.astype(str)
