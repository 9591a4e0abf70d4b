"""Training objectives: the descriptor's InfoNCE + CopyNCE + KoLeo and the matcher's BCE + CopyNCE.

Each objective takes the model outputs and the batch dict of ``copynce_fast.data`` and returns a dict of fp32
scalars: ``total`` (for backward) and the weighted components (for logging; read them once per log interval).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from copynce_fast.config import LossConfig
from copynce_fast.losses import CopyNCELoss
from copynce_fast.ops.infonce import infonce
from copynce_fast.ops.koleo import koleo
from copynce_fast.ops.overlap import patch_overlap
from copynce_fast.utils.dist import gather_with_local_grad

__all__ = ["DescriptorObjective", "MatcherObjective", "batch_counts"]


def batch_counts(batch: dict, patch_size: int, device, impl: str | None = None):
    """(counts_qr, counts_rq) of a batch: precomputed ``counts_qr``/``counts_rq`` if the batch has them, else
    from its packed geometry; pairs that are not copies get all-invalid rows."""
    if "counts_qr" in batch:
        qr, rq = batch["counts_qr"].to(device), batch["counts_rq"].to(device)
    else:
        qr = patch_overlap(batch["paths_qr"].to(device), patch_size, impl=impl)
        rq = patch_overlap(batch["paths_rq"].to(device), patch_size, impl=impl)
    is_copy = batch["is_copy"].to(device).view(-1, 1, 1)

    def only_copies(c):
        dummy = torch.zeros_like(c)
        dummy[..., -1] = patch_size * patch_size
        return torch.where(is_copy, c, dummy)

    return only_copies(qr), only_copies(rq)


class _CopyNCETerm(nn.Module):
    def __init__(self, cfg: LossConfig, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.impl = None if cfg.impl == "auto" else cfg.impl
        self.loss = CopyNCELoss(cfg.copynce_scale, cfg.copynce_gamma, cfg.copynce_lamb, cfg.copynce_weight, cfg.impl)

    def forward(self, q_tokens, r_tokens, batch):
        dev = q_tokens.device.type
        if torch.is_autocast_enabled(dev) and q_tokens.dtype == torch.float32:
            # the residual stream stays fp32 under autocast (the fp32 pos-embed promotes it); the fused kernel's
            # fast path is the autocast dtype (it accumulates in fp32), so hand it that
            low = torch.get_autocast_dtype(dev)
            q_tokens, r_tokens = q_tokens.to(low), r_tokens.to(low)
        counts = batch_counts(batch, self.patch_size, q_tokens.device, self.impl)
        # negatives have all-invalid counts (zero loss); whether they count in the mean is the data's "copynce"
        # flag (data.copynce_on_negatives reproduces the reference, which counts them)
        flags = batch["copynce"].to(q_tokens.device)
        return self.loss(q_tokens, r_tokens, counts, flags=flags)


class DescriptorObjective(nn.Module):
    """InfoNCE (learnable log-scale, gathered across ranks) + CopyNCE on last-block tokens + KoLeo.

    All pairs of a descriptor batch are positives (the reference's descriptor data has ``positive_rate`` 1;
    its hard negatives are other pairs of the same batch).
    """

    def __init__(self, cfg: LossConfig, patch_size: int = 16):
        super().__init__()
        self.cfg = cfg
        self.log_scale = nn.Parameter(torch.tensor(float(cfg.infonce_log_scale)))  # no weight decay
        self.copynce = _CopyNCETerm(cfg, patch_size) if cfg.copynce_weight > 0 else None

    def forward(self, out_q: dict, out_r: dict, batch: dict) -> dict[str, torch.Tensor]:
        n = out_q["feat"].shape[0]
        local = torch.cat([out_q["feat"], out_r["feat"]]).float()
        feats = gather_with_local_grad(local) if self.cfg.gather else local
        terms = {}
        if self.cfg.infonce_weight > 0:
            terms["infonce"] = self.cfg.infonce_weight * infonce(feats, n, self.log_scale, num_local=2 * n)
        if self.cfg.koleo_weight > 0:
            terms["koleo"] = self.cfg.koleo_weight * koleo(feats, n, num_local=2 * n)
        if self.copynce is not None:
            terms["copynce"] = self.copynce(out_q["tokens"], out_r["tokens"], batch)
        terms["total"] = sum(terms.values())
        return terms


class MatcherObjective(nn.Module):
    """BCE on the copy logit + CopyNCE on the fused patch tokens (positives only; see ``batch_counts``)."""

    def __init__(self, cfg: LossConfig, patch_size: int = 16):
        super().__init__()
        self.cfg = cfg
        self.copynce = _CopyNCETerm(cfg, patch_size) if cfg.copynce_weight > 0 else None

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        target = batch["is_copy"].to(out["logit"].device).float()
        terms = {"bce": self.cfg.bce_weight * F.binary_cross_entropy_with_logits(out["logit"].float(), target)}
        if self.copynce is not None:
            terms["copynce"] = self.copynce(out["query_tokens"], out["reference_tokens"], batch)
        terms["total"] = sum(terms.values())
        return terms
