"""Candidate video pairs from frame descriptors, as the VSC2022 descriptor track generates them.

``vsc/candidates.py`` + ``vsc/index.py`` of facebookresearch/vsc2022 (our own code):

1. one global search: the ``K = int(retrieve_per_query · #query videos)`` most similar (query frame, reference
   frame) pairs by inner product over the *whole* query set (a global threshold, so a pair's score does not
   depend on the other references a query happens to match best; the official code gets the same set from a
   faiss range search, ties at the K-th value broken arbitrarily in both);
2. aggregation: a (query video, reference video) pair scores the maximum similarity of its retrieved frame
   pairs; pairs with no retrieved frame pair are not candidates;
3. the best ``int(candidates_per_query · #query videos)`` pairs are kept, best first.

The search is exact: chunks of query frames times all reference frames (torch matmul, on ``device``); once
K pairs are held, only similarities above the K-th best so far are kept, and the pool is cut back to the best K
whenever it doubles. Memory is bounded by ``max_chunk_elements`` and 2K pairs.
"""
from __future__ import annotations

import numpy as np
import torch

from copynce_fast.video.features import VideoFeatures
from copynce_fast.video.segments import CandidatePair

__all__ = ["global_topk_frame_pairs", "aggregate_max", "vsc_candidates"]


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def global_topk_frame_pairs(queries: np.ndarray, references: np.ndarray, k: int, *, device: str = "cpu",
                            max_chunk_elements: int = 1 << 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest inner products between query rows and reference rows (exact).

    Args:
        queries: (Nq, D) float; references: (Nr, D) float.
        k: number of pairs (capped at Nq · Nr).
        device: torch device for the matmuls.
        max_chunk_elements: similarity entries held at once (chunk rows = this / Nr).

    Returns:
        ``(query_rows (k,) int64, reference_rows (k,) int64, similarity (k,) float32)``, best first.
    """
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
        raise ValueError(f"queries and references must be (N, D) with the same D, got {queries.shape} and "
                         f"{references.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    nq, nr = len(queries), len(references)
    k = min(int(k), nq * nr)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if k == 0:
        return empty
    ref = torch.as_tensor(np.ascontiguousarray(references), dtype=torch.float32, device=device)
    rows = max(1, int(max_chunk_elements) // nr)
    best_s = torch.empty(0, device=device)
    best_flat = torch.empty(0, dtype=torch.int64, device=device)  # query_row * nr + reference_row
    theta = None  # the k-th best similarity so far, once k pairs are held: only larger ones can enter
    for start in range(0, nq, rows):
        q = torch.as_tensor(np.ascontiguousarray(queries[start:start + rows]), dtype=torch.float32, device=device)
        sims = (q @ ref.T).reshape(-1)  # [c * nr], flat index = local row * nr + reference row
        if theta is not None:
            keep = torch.nonzero(sims > theta).squeeze(1)
            vals, flat = sims[keep], keep
        else:
            vals, flat = sims, torch.arange(len(sims), device=device)
        if len(vals) > k:
            vals, pick = vals.topk(k)
            flat = flat[pick]
        best_s = torch.cat([best_s, vals])
        best_flat = torch.cat([best_flat, flat + start * nr])
        if len(best_s) > 2 * k or (theta is None and len(best_s) >= k):  # prune, amortised
            best_s, pick = best_s.topk(k)
            best_flat = best_flat[pick]
            theta = best_s[-1]
    if len(best_s) > k:
        best_s, pick = best_s.topk(k)
        best_flat = best_flat[pick]
    order = torch.argsort(best_s, descending=True, stable=True)
    best_s, best_flat = best_s[order].cpu().numpy(), best_flat[order].cpu().numpy()
    return best_flat // nr, best_flat % nr, best_s.astype(np.float32)


def aggregate_max(query_video: np.ndarray, ref_video: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per (query video, reference video) index pair, the maximum score.

    Args:
        query_video, ref_video: (P,) int video indices of each frame pair; scores: (P,) float.

    Returns:
        ``(query_video (V,), ref_video (V,), score (V,) float32)`` of the distinct pairs, best first (ties in
        first-index order).
    """
    if len(scores) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    n_ref = int(ref_video.max()) + 1
    key = query_video.astype(np.int64) * n_ref + ref_video.astype(np.int64)
    uniq, inverse = np.unique(key, return_inverse=True)
    best = np.full(len(uniq), -np.inf, dtype=np.float64)
    np.maximum.at(best, inverse, scores.astype(np.float64))
    order = np.argsort(-best, kind="stable")
    return uniq[order] // n_ref, uniq[order] % n_ref, best[order].astype(np.float32)


def vsc_candidates(queries: VideoFeatures, references: VideoFeatures, *, retrieve_per_query: float = 1200.0,
                   candidates_per_query: float = 25.0, device: str = "cpu") -> list[CandidatePair]:
    """VSC2022 descriptor-track candidate pairs (module docstring), best first.

    Args:
        queries, references: frame descriptors (inner product = similarity: L2-normalised, or score-normalised
            with :mod:`copynce_fast.video.score_norm`).
        retrieve_per_query: frame pairs retrieved per query video (VSC2022: 1200, "K=20 for ~60 s videos").
        candidates_per_query: video pairs kept per query video (VSC2022: 25).
        device: torch device of the search.
    """
    retrieve_per_query = _positive("retrieve_per_query", retrieve_per_query)
    candidates_per_query = _positive("candidates_per_query", candidates_per_query)
    if queries.dim != references.dim:
        raise ValueError(f"queries have dim {queries.dim}, references {references.dim}")
    q_videos, r_videos = queries.videos(), references.videos()
    q_of_row = np.repeat(np.arange(len(q_videos)), [s.stop - s.start for _, s in q_videos])
    r_of_row = np.repeat(np.arange(len(r_videos)), [s.stop - s.start for _, s in r_videos])
    k = int(retrieve_per_query * len(q_videos))
    qi, ri, sim = global_topk_frame_pairs(queries.features, references.features, k, device=device)
    qv, rv, score = aggregate_max(q_of_row[qi], r_of_row[ri], sim)
    keep = int(candidates_per_query * len(q_videos))
    return [CandidatePair(q_videos[a][0], r_videos[b][0], float(s)) for a, b, s in zip(qv[:keep], rv[:keep],
                                                                                      score[:keep])]
