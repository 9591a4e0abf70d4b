"""InfoNCE over a batch of descriptor pairs with a learnable log-scale (REFERENCE.md §4.1).

Rows of ``feats`` are laid out as the reference lays them out: ``[q_pos (n); r_pos (n); negatives (m)]``
locally, followed by any features gathered from other ranks (columns only). The positive of row i < n is
i + n and vice versa. Self-similarity is set to -1 (not -inf, as the reference does).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["infonce_ref", "infonce"]


def infonce_ref(feats: torch.Tensor, num_pos: int, log_scale: torch.Tensor, num_local: int | None = None
                ) -> torch.Tensor:
    """Mean InfoNCE of the 2·num_pos local positive rows, fp32.

    Args:
        feats: [N, D] L2-normalised descriptors; the first ``num_local`` rows are this rank's (default all).
        num_pos: n, the number of positive pairs (rows 0..n-1 queries, n..2n-1 their references).
        log_scale: scalar tensor, logits = exp(log_scale) · cosine (learnable).
    """
    if feats.dim() != 2:
        raise ValueError(f"feats: expected [N, D], got {tuple(feats.shape)}")
    n_local = feats.shape[0] if num_local is None else num_local
    if not 0 < 2 * num_pos <= n_local <= feats.shape[0]:
        raise ValueError(f"num_pos: need 0 < 2*num_pos <= num_local <= N, got num_pos={num_pos}, "
                         f"num_local={n_local}, N={feats.shape[0]}")
    with torch.autocast(feats.device.type, enabled=False):  # fp32 math even inside an autocast region
        return _infonce(feats, num_pos, log_scale, n_local)


def _infonce(feats, num_pos, log_scale, n_local):
    f = feats.float()
    rows = f[: 2 * num_pos]
    cos = rows @ f.t()
    idx = torch.arange(2 * num_pos, device=f.device)
    cos = cos.index_put((idx, idx), torch.tensor(-1.0, device=f.device))  # self-similarity excluded (as -1)
    target = torch.cat([idx[num_pos:], idx[:num_pos]])
    return F.cross_entropy(log_scale.float().exp() * cos, target)


infonce = infonce_ref  # no fused kernel: at N <= a few thousand the matmul dominates and cuBLAS wins
