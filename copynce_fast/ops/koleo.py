"""KoLeo spreading regulariser (REFERENCE.md §4.2): -mean log(distance to the nearest other descriptor)."""
from __future__ import annotations

import torch

__all__ = ["koleo_ref", "koleo"]


def koleo_ref(feats: torch.Tensor, num_pos: int = 0, num_local: int | None = None) -> torch.Tensor:
    """KoLeo over the local rows of ``feats`` against all rows, fp32.

    Args:
        feats: [N, D] L2-normalised descriptors, layout as in ``infonce_ref`` (local rows first).
        num_pos: n; rows i < 2n ignore their positive partner (i ± n) as a neighbour, as the reference does.
        num_local: rows of this rank (default all).
    """
    if feats.dim() != 2:
        raise ValueError(f"feats: expected [N, D], got {tuple(feats.shape)}")
    n_local = feats.shape[0] if num_local is None else num_local
    if not (0 <= 2 * num_pos <= n_local <= feats.shape[0]) or n_local < 1 or feats.shape[0] < 2:
        raise ValueError(f"num_pos/num_local: need 2*num_pos <= num_local <= N and N >= 2, got "
                         f"num_pos={num_pos}, num_local={n_local}, N={feats.shape[0]}")
    with torch.autocast(feats.device.type, enabled=False):  # fp32 math even inside an autocast region
        return _koleo(feats, num_pos, n_local)


def _koleo(feats, num_pos, n_local):
    f = feats.float()
    cos = f[:n_local] @ f.t()
    idx = torch.arange(n_local, device=f.device)
    cos = cos.index_put((idx, idx), torch.tensor(-1.0, device=f.device))
    if num_pos:
        p = torch.arange(2 * num_pos, device=f.device)
        partner = torch.cat([p[num_pos:], p[:num_pos]])
        cos = cos.index_put((p, partner), torch.tensor(-1.0, device=f.device))
    nearest = cos.max(dim=1).values
    dist = torch.sqrt(torch.clamp(2.0 - 2.0 * nearest, min=1e-6))
    return -torch.log(dist).mean()


koleo = koleo_ref
