"""Asymmetric (ASL) rescoring of kNN candidates: ``s(q -> r) = cos(q, r) - gamma * relu(log|q| - log|r|)``.

The score (:func:`copynce_fast.ops.asl.asymmetric_from_cosine`) is not an inner product, so no index searches it
directly. As the ASL code does at test time, we take each query's cosine candidates (``candidates`` >= ``k`` of
them, from any index), rescore them with the descriptors' pre-normalisation norms (stored by ``extract`` as the
feature files' ``norms``), re-rank, and keep ``k``. ``gamma = inf`` is the repo's rule (``test.py``): a
candidate whose query norm exceeds its reference norm is dropped (its index becomes -1, which
:func:`copynce_fast.search.predictions.knn_to_predictions` skips).
"""
from __future__ import annotations

import numpy as np
import torch

from copynce_fast.ops.asl import asymmetric_from_cosine
from copynce_fast.search.knn import ArrayLike

__all__ = ["asymmetric_rescore", "provably_exact"]


def _as_tensor(x: ArrayLike, device=None) -> torch.Tensor:
    return x.to(device) if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x)).to(device)


def asymmetric_rescore(scores: ArrayLike, indices: ArrayLike, query_norms: ArrayLike, reference_norms: ArrayLike,
                       k: int, gamma: float = 1.0) -> tuple[ArrayLike, ArrayLike]:
    """Rescore cosine kNN candidates with the asymmetric score and keep the best ``k`` of each query.

    Args:
        scores: (N, K) cosines of the candidates (L2-normalised descriptors, inner-product search).
        indices: (N, K) int reference rows of the candidates (-1 = none).
        query_norms: (N,) the queries' descriptor norms before normalisation (> 0).
        reference_norms: (M,) the references' norms (> 0).
        k: candidates kept per query (<= K).
        gamma: penalty per unit log norm ratio (>= 0; ``inf`` drops the pairs whose query norm is the larger).

    Returns:
        ``(scores, indices)`` (N, k), best first, as numpy for numpy ``scores`` and torch (same device) for
        torch ones; dropped or missing candidates have index -1 and score -inf.
    """
    as_numpy = not isinstance(scores, torch.Tensor)
    s = _as_tensor(scores).float()
    device = s.device
    idx = _as_tensor(indices, device).long()
    qn, rn = _as_tensor(query_norms, device).float(), _as_tensor(reference_norms, device).float()
    if s.ndim != 2 or idx.shape != s.shape:
        raise ValueError(f"scores and indices must be (N, K) of the same shape, got {tuple(s.shape)} and "
                         f"{tuple(idx.shape)}")
    if qn.shape != (s.shape[0],):
        raise ValueError(f"query_norms must be ({s.shape[0]},), got {tuple(qn.shape)}")
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= s.shape[1]:
        raise ValueError(f"k must be an integer in [1, {s.shape[1]}] (the candidates per query), got {k!r}")
    if not (torch.isfinite(qn).all() and (qn > 0).all() and torch.isfinite(rn).all() and (rn > 0).all()):
        raise ValueError("query_norms/reference_norms must be positive and finite")
    valid = idx >= 0
    r_of = rn[idx.clamp(min=0)]
    new = asymmetric_from_cosine(s, qn[:, None], r_of, gamma)
    new = torch.where(valid, new, torch.full_like(new, -torch.inf))
    top, order = new.topk(int(k), dim=1)  # sorted, best first
    rows = torch.gather(idx, 1, order)
    rows = torch.where(torch.isneginf(top), torch.full_like(rows, -1), rows)
    if as_numpy:
        return top.cpu().numpy(), rows.cpu().numpy()
    return top, rows


def provably_exact(rescored: ArrayLike, lowest_candidate: ArrayLike) -> ArrayLike:
    """(N,) bool: rows whose asymmetric top-k cannot miss a reference outside the cosine candidates.

    The asymmetric score never exceeds the cosine, so a reference not among the candidates (cosine at most the
    lowest candidate's) cannot beat a k-th score at or above that cosine.

    Args:
        rescored: (N, k) :func:`asymmetric_rescore` scores, best first.
        lowest_candidate: (N,) the cosine of each query's last candidate.
    """
    return rescored[:, -1] >= lowest_candidate
