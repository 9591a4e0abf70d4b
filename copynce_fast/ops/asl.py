"""Asymmetrical-similarity learning (ASL; Wang, Sun, Yang, "A Benchmark and Asymmetrical-Similarity Learning for
Practical Image Copy Detection", AAAI 2023, arXiv 2205.12358; code WangWenhao0716/ASL).

ASL's premise: copying is one-way. A crop of R is a copy of R, R is not a copy of the crop, yet a symmetric
similarity gives both directions the same score. ASL lets the *norm* of the descriptor (before L2
normalisation) stand for how much image content it holds, and compares norms to decide the direction.

What the public code says, and what we take from it as is:

* the norm-ratio loss (repo ``train.py``): for two views of one image whose content differs ("scales"),
  ``exp(1 - |f_more| / |f_less|)`` with ``f_more`` the view holding more content, averaged over the batch
  (:func:`norm_ratio_loss_ref`). It is 1 at equal norms and falls towards 0 as the larger view's norm grows.
* the test-time rule (repo ``test.py``): a candidate pair whose query norm exceeds its reference norm
  (``|f_q| / |f_r| > 1``) is dropped: a query holding more content than the reference cannot be a copy of it.

Our reconstruction (the paper's exact score formula was not readable here): one asymmetric score that contains
that rule as a limit,

    s(q -> r) = cos(q, r) - gamma * relu(log|f_q| - log|f_r|)

It equals the cosine whenever the query holds no more content than the reference, and is lowered by ``gamma`` per
unit of log norm ratio otherwise, so ``s(crop -> whole) > s(whole -> crop)`` as soon as ``|f_crop| < |f_whole|``.
``gamma = inf`` gives ``-inf`` to every pair the repo's ``test.py`` drops.
"""
from __future__ import annotations

import math

import torch

__all__ = ["asymmetric_score_ref", "asymmetric_score", "asymmetric_from_cosine", "norm_ratio_loss_ref",
           "norm_ratio_loss"]


def _check_side(name: str, feat: torch.Tensor, norm: torch.Tensor) -> None:
    if feat.dim() != 2:
        raise ValueError(f"{name}_feat: expected [N, D], got {tuple(feat.shape)}")
    if norm.shape != feat.shape[:1]:
        raise ValueError(f"{name}_norm: expected [{feat.shape[0]}], got {tuple(norm.shape)}")


def asymmetric_score_ref(q_feat: torch.Tensor, q_norm: torch.Tensor, r_feat: torch.Tensor, r_norm: torch.Tensor,
                         gamma: float = 1.0, *, pairs: bool = False) -> torch.Tensor:
    """Asymmetric copy score ``s(q -> r) = cos(q, r) - gamma * relu(log|f_q| - log|f_r|)``, fp32.

    Args:
        q_feat: [N, D] L2-normalised query descriptors.
        q_norm: [N] their norms before normalisation (> 0).
        r_feat: [M, D] L2-normalised reference descriptors.
        r_norm: [M] their norms before normalisation (> 0).
        gamma: penalty per unit of log norm ratio when the query's norm is the larger (>= 0; ``math.inf`` =
            the repo's hard rule: such pairs score ``-inf``).
        pairs: False: every query against every reference, [N, M]; True: row i against row i (N == M), [N].

    Returns:
        [N, M] (or [N]) fp32 scores; larger = more likely that the query is a copy of the reference.
    """
    _check_side("q", q_feat, q_norm)
    _check_side("r", r_feat, r_norm)
    if q_feat.shape[1] != r_feat.shape[1]:
        raise ValueError(f"r_feat: dimension {r_feat.shape[1]} differs from q_feat's {q_feat.shape[1]}")
    if pairs and q_feat.shape[0] != r_feat.shape[0]:
        raise ValueError(f"pairs=True needs as many references as queries, got {q_feat.shape[0]} and "
                         f"{r_feat.shape[0]}")
    with torch.autocast(q_feat.device.type, enabled=False):  # fp32 even inside an autocast region
        qf, rf = q_feat.float(), r_feat.float()
        if pairs:
            return asymmetric_from_cosine((qf * rf).sum(dim=1), q_norm, r_norm, gamma)
        return asymmetric_from_cosine(qf @ rf.t(), q_norm[:, None], r_norm[None, :], gamma)


def asymmetric_from_cosine(cos: torch.Tensor, q_norm: torch.Tensor, r_norm: torch.Tensor,
                           gamma: float = 1.0) -> torch.Tensor:
    """The asymmetric score from cosines already computed (e.g. a kNN's candidate scores), fp32.

    Args:
        cos: any shape, the cosines ``cos(q, r)``.
        q_norm, r_norm: query / reference norms before normalisation (> 0), broadcastable to ``cos``.
        gamma: as :func:`asymmetric_score_ref`.
    """
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    with torch.autocast(cos.device.type, enabled=False):
        cos = cos.float()
        excess = torch.log(q_norm.float()) - torch.log(r_norm.float())
        if math.isinf(gamma):  # 0 * inf would be nan where the query is not the larger
            return torch.where(excess > 0, torch.full_like(cos, -math.inf), cos)
        return cos - gamma * torch.relu(excess)


def norm_ratio_loss_ref(norm_more: torch.Tensor, norm_less: torch.Tensor) -> torch.Tensor:
    """ASL's norm-ratio loss ``mean_i exp(1 - norm_more[i] / norm_less[i])`` (repo ``train.py``), fp32.

    Args:
        norm_more: [P] descriptor norms (before L2 normalisation) of the views holding more content.
        norm_less: [P] norms of their partners holding less content (> 0).

    Returns:
        scalar fp32; 0 for P = 0 (no ordered pair in the batch) and still part of the graph.
    """
    if norm_more.dim() != 1 or norm_more.shape != norm_less.shape:
        raise ValueError(f"norm_more/norm_less: expected two [P] tensors, got {tuple(norm_more.shape)} and "
                         f"{tuple(norm_less.shape)}")
    with torch.autocast(norm_more.device.type, enabled=False):
        if norm_more.numel() == 0:
            return norm_more.float().sum()
        return torch.exp(1.0 - norm_more.float() / norm_less.float()).mean()


asymmetric_score = asymmetric_score_ref  # elementwise work on top of one matmul: no kernel needed
norm_ratio_loss = norm_ratio_loss_ref
