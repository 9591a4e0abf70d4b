"""Compare two images: a copy score, where the copied region is, and the strongest patch correspondences.

Score: the matcher's copy probability ``sigmoid(logit)``, or with a descriptor the cosine of the two global
descriptors.

Copied region, from the patch affinity of the CopyNCE tokens (the matcher's fused query / reference tokens, or
the descriptor's last-block patch tokens of each image): for query patch ``i`` the affinity distribution over
reference patches is ``p_i = softmax_j(s · cos(q_i, r_j))`` (``s`` = the CopyNCE scale, 16 by default), and
its entropy normalised by ``log(Lr)`` is in [0, 1]: near 0 when the patch matches one reference patch sharply
(likely copied), near 1 when it matches everything equally (likely not). The reference side is the same with
the roles swapped. CopyNCE trains exactly these distributions toward the true patch overlaps, so with a
trained model the low-entropy area traces the copy.

Correspondences: mutual nearest neighbours (``argmax_j cos(q_i, ·) = j`` and ``argmax_i cos(·, r_j) = i``),
strongest cosine first.

The picture of a :class:`Comparison` is drawn by :func:`copynce_fast.viz.compare.render_comparison`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from copynce_fast.inference.images import normalize
from copynce_fast.models import CopyDescriptor, CopyMatcher
from copynce_fast.models.loading import LoadedModel
from copynce_fast.utils.device import autocast


@dataclass
class Comparison:
    """Result of :func:`compare`.

    Attributes:
        score: copy probability (matcher) or cosine (descriptor).
        kind: "matcher" or "descriptor".
        query_entropy: (hq, wq) float, normalised affinity entropy per query patch, in [0, 1].
        reference_entropy: (hr, wr) float, the same per reference patch.
        matches: mutual nearest neighbours ``(query patch, reference patch, cosine)``, row-major patch
            indices, strongest first.
    """

    score: float
    kind: str
    query_entropy: np.ndarray
    reference_entropy: np.ndarray
    matches: list[tuple[int, int, float]] = field(default_factory=list)


def patch_cosine(query_tokens: Tensor, reference_tokens: Tensor) -> Tensor:
    """Cosine similarity of every query / reference patch pair: ``[Lq, C]``, ``[Lr, C]`` -> ``[Lq, Lr]`` fp32."""
    if query_tokens.dim() != 2 or reference_tokens.dim() != 2 or query_tokens.shape[1] != reference_tokens.shape[1]:
        raise ValueError(f"tokens must be [Lq, C] and [Lr, C], got {tuple(query_tokens.shape)} and "
                         f"{tuple(reference_tokens.shape)}")
    return F.normalize(query_tokens.float(), dim=1) @ F.normalize(reference_tokens.float(), dim=1).T


def affinity_entropy(cosine: Tensor, scale: float = 16.0) -> Tensor:
    """Entropy of ``softmax(scale · cosine)`` along dim 1, divided by ``log(L)``: ``[N, L]`` -> ``[N]`` in [0, 1].

    ``L = 1`` gives zeros (a single candidate is a certain match).
    """
    if cosine.dim() != 2:
        raise ValueError(f"cosine must be [N, L], got {tuple(cosine.shape)}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    logp = torch.log_softmax(scale * cosine.float(), dim=1)
    h = -(logp.exp() * logp).sum(dim=1)
    n = cosine.shape[1]
    return (h / math.log(n)).clamp(0.0, 1.0) if n > 1 else torch.zeros_like(h)


def mutual_nearest_neighbours(cosine: Tensor, top: int | None = None) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine[i, j])`` where ``j`` is the best column of row ``i`` and ``i`` the best row of
    column ``j``, strongest first; at most ``top`` (None = all)."""
    best_j = cosine.argmax(dim=1)
    best_i = cosine.argmax(dim=0)
    rows = torch.arange(cosine.shape[0], device=cosine.device)
    mutual = rows[best_i[best_j] == rows]
    values = cosine[mutual, best_j[mutual]]
    order = torch.argsort(values, descending=True, stable=True)
    if top is not None:
        order = order[:top]
    return [(int(mutual[o]), int(best_j[mutual[o]]), float(values[o])) for o in order]


@torch.inference_mode()
def compare(loaded: LoadedModel, query: Tensor, reference: Tensor, *, scale: float = 16.0, amp: str = "bf16",
            top: int | None = 16) -> Comparison:
    """Score a pair and map its patch affinities.

    Args:
        loaded: a matcher or a descriptor.
        query, reference: uint8 ``[3, S, S]`` images (:func:`copynce_fast.inference.images.load_image`).
        scale: CopyNCE scale ``s`` of the affinity softmax.
        amp: "bf16" autocast on CUDA, or "none".
        top: number of mutual-nearest-neighbour correspondences kept.

    Returns:
        :class:`Comparison`.
    """
    model, device = loaded.model, loaded.device
    x = normalize(torch.stack([query, reference]), device)
    with autocast(device, amp):
        if isinstance(model, CopyMatcher):
            out = model(x[:1], x[1:])
            score = float(torch.sigmoid(out["logit"].float())[0])
            q_tok, r_tok = out["query_tokens"][0], out["reference_tokens"][0]
        elif isinstance(model, CopyDescriptor):
            out = model(x)
            score = float((out["feat"][0].float() * out["feat"][1].float()).sum())
            q_tok, r_tok = out["tokens"][0], out["tokens"][1]
        else:
            raise ValueError(f"model must be a CopyMatcher or CopyDescriptor, got {type(model).__name__}")
    h, w = x.shape[-2] // model.patch_size, x.shape[-1] // model.patch_size
    cos = patch_cosine(q_tok, r_tok)
    return Comparison(
        score=score, kind=loaded.kind,
        query_entropy=affinity_entropy(cos, scale).view(h, w).cpu().numpy(),
        reference_entropy=affinity_entropy(cos.T, scale).view(h, w).cpu().numpy(),
        matches=mutual_nearest_neighbours(cos, top),
    )
