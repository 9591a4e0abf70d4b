"""``nn.Module`` drop-ins that hold hyper-parameters and call the ops."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from copynce_fast.ops.copynce import copynce
from copynce_fast.ops.overlap import patch_overlap, patch_overlap_from_dense
from copynce_fast.pixtrace.batch import PackedPaths, pack_pairs
from copynce_fast.pixtrace.view import View

__all__ = ["CopyNCELoss"]


class CopyNCELoss(nn.Module):
    """CopyNCE (REFERENCE.md §3) as a module; the correspondence may be given in any of three forms.

    Args:
        scale: s, the cosine scale (1/τ). Official: 16.
        gamma: γ, the overlap sharpening exponent. Official: 3 (descriptor), 1 (matcher).
        lamb: λ, the weight of the query->reference direction. Official: 0.5.
        weight: loss weight. Official: 5 (descriptor), 3 (matcher).
        impl: "auto" (Triton on CUDA, torch on CPU), "torch" or "triton".

    Forward:
        loss(query_tokens [B, Lq, C], reference_tokens [B, Lr, C], counts=(counts_qr, counts_rq))
        loss(query_tokens, reference_tokens, geometry=(paths_qr, paths_rq))        # PackedPaths, or
        loss(query_tokens, reference_tokens, geometry=(query_views, reference_views))  # lists of View
        loss(query_tokens, reference_tokens, que_to_ori=..., ref_to_ori=..., flags=copynce_flags)
    The last form takes the official loss's inputs (dense maps [B, 2, S, S], -1 invalid) and derives
    que_to_ref / ref_to_que exactly as the official code does (deterministically: last raster writer wins),
    so it reproduces the official loss value. ``flags`` [B] bool selects the pairs that count.

    Returns an fp32 scalar.
    """

    def __init__(self, scale: float = 16.0, gamma: float = 1.0, lamb: float = 0.5, weight: float = 1.0,
                 impl: str = "auto"):
        super().__init__()
        if impl not in ("auto", "torch", "triton"):
            raise ValueError(f"impl: must be 'auto', 'torch' or 'triton', got {impl!r}")
        self.scale, self.gamma, self.lamb, self.weight, self.impl = scale, gamma, lamb, weight, impl

    def extra_repr(self) -> str:
        return f"scale={self.scale}, gamma={self.gamma}, lamb={self.lamb}, weight={self.weight}, impl={self.impl!r}"

    def forward(self, query_tokens: torch.Tensor, reference_tokens: torch.Tensor,
                counts: Sequence[torch.Tensor] | None = None, *, geometry=None,
                que_to_ori: torch.Tensor | None = None, ref_to_ori: torch.Tensor | None = None,
                flags: torch.Tensor | None = None, patch_size: int | None = None) -> torch.Tensor:
        given = [counts is not None, geometry is not None, que_to_ori is not None or ref_to_ori is not None]
        if sum(given) != 1:
            raise ValueError("counts/geometry/que_to_ori: give exactly one form of correspondence")
        if counts is None:
            counts = self.counts(query_tokens, reference_tokens, geometry=geometry, que_to_ori=que_to_ori,
                                 ref_to_ori=ref_to_ori, patch_size=patch_size)
        if len(counts) != 2:
            raise ValueError("counts: expected a pair (counts_qr, counts_rq)")
        counts_qr, counts_rq = (c.to(query_tokens.device) for c in counts)
        return copynce(query_tokens, reference_tokens, counts_qr, counts_rq, flags, scale=self.scale,
                       gamma=self.gamma, lamb=self.lamb, weight=self.weight, impl=self._impl())

    def _impl(self):
        return None if self.impl == "auto" else self.impl

    @torch.no_grad()
    def counts(self, query_tokens, reference_tokens, *, geometry=None, que_to_ori=None, ref_to_ori=None,
               patch_size=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (counts_qr, counts_rq) the loss would use for this correspondence input."""
        dev = query_tokens.device
        if geometry is not None:
            if len(geometry) != 2:
                raise ValueError("geometry: expected (paths_qr, paths_rq) or (query_views, reference_views)")
            a, b = geometry
            if not isinstance(a, PackedPaths):
                if not (len(a) and isinstance(a[0], View)):
                    raise ValueError("geometry: expected PackedPaths or sequences of View")
                a, b = pack_pairs(a, b)
            p = patch_size or _infer_patch(a.src_hw, query_tokens.shape[1])
            a, b = a.to(dev), b.to(dev)
            return patch_overlap(a, p, impl=self._impl()), patch_overlap(b, p, impl=self._impl())
        if que_to_ori is None or ref_to_ori is None:
            raise ValueError("que_to_ori/ref_to_ori: both dense maps are needed")
        from copynce_fast.pixtrace.dense import reference_correspondence
        que_to_ref, ref_to_que, _ = reference_correspondence(que_to_ori, ref_to_ori)
        p = patch_size or _infer_patch(tuple(que_to_ori.shape[-2:]), query_tokens.shape[1])
        que_to_ref, ref_to_que = que_to_ref.to(dev), ref_to_que.to(dev)
        return (patch_overlap_from_dense(que_to_ref, None, p, impl=self._impl()),
                patch_overlap_from_dense(ref_to_que, None, p, impl=self._impl()))


def _infer_patch(hw: tuple[int, int], num_tokens: int) -> int:
    """Patch size from the image size and the token count (square patches)."""
    p = math.isqrt(hw[0] * hw[1] // num_tokens) if num_tokens > 0 else 0
    if p <= 0 or (hw[0] // p) * (hw[1] // p) != num_tokens or hw[0] % p or hw[1] % p:
        raise ValueError(f"patch_size: cannot infer it from image {hw} and {num_tokens} tokens; pass patch_size=")
    return p
