"""Training objectives: the descriptor's InfoNCE + CopyNCE + KoLeo (+ ASL) and the matcher's BCE + CopyNCE.

Each objective takes the model outputs and the batch dict of ``copynce_fast.data`` and returns a dict of fp32
scalars: ``total`` (for backward) and the weighted components (for logging; read them once per log interval).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from copynce_fast.config import LossConfig
from copynce_fast.losses import CopyNCELoss
from copynce_fast.ops.asl import asymmetric_score, norm_ratio_loss
from copynce_fast.ops.infonce import infonce
from copynce_fast.ops.koleo import koleo
from copynce_fast.ops.overlap import patch_overlap
from copynce_fast.utils.dist import gather_with_local_grad

__all__ = ["DescriptorObjective", "MatcherObjective", "batch_counts", "coverage", "ASL_COVERAGE_GAP"]

ASL_COVERAGE_GAP = 0.1  # a pair is ordered by content when its two coverages differ by at least this much


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


def coverage(counts_qr: torch.Tensor, counts_rq: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cov_q, cov_r), each [B] fp32: the share of the query's pixels that show the reference, and of the
    reference's pixels that the query shows (PixTrace counts, last column = no correspondence)."""
    area = patch_size * patch_size
    cov_q = 1.0 - counts_qr[..., -1].float().sum(dim=1) / (counts_qr.shape[1] * area)
    cov_r = 1.0 - counts_rq[..., -1].float().sum(dim=1) / (counts_rq.shape[1] * area)
    return cov_q, cov_r


class _ASLTerm(nn.Module):
    """Asymmetric-similarity term (ops/asl.py): ASL's norm-ratio loss + an InfoNCE on the asymmetric score.

    The plans say exactly how much of each other two views show (:func:`coverage`). A copy pair whose query shows
    a part of its reference (``cov_q - cov_r >= ASL_COVERAGE_GAP``) is *ordered*: the reference holds more
    content, so

    * norm ratio (the repo's ``train.py``): ``exp(1 - |f_r| / |f_q|)`` over the ordered pairs;
    * asymmetric InfoNCE: logits ``scale * s(q_i -> r_j)`` over the batch's references (in-batch negatives,
      sibling parts among them with ``data.sibling_rate``) plus, for an ordered pair, the reverse direction
      ``scale * s(r_i -> q_i)`` as a negative: the whole image is not a copy of its crop. The cosine is the same
      both ways, so only the norms can separate them.

    Queries holding *more* than their reference (the copy pasted into another image) are not ordered: ASL's rule
    would call them non-copies, DISC21 calls them copies. ``scale`` is the InfoNCE's learnable one. The term uses
    this rank's pairs only (no gather across ranks).
    """

    def __init__(self, cfg: LossConfig, patch_size: int):
        super().__init__()
        if not (math.isfinite(cfg.asl_gamma) and cfg.asl_gamma >= 0):
            raise ValueError(f"loss.asl_gamma: must be finite and >= 0 for training, got {cfg.asl_gamma!r}")
        self.weight, self.gamma, self.patch_size = cfg.asl_weight, cfg.asl_gamma, patch_size
        self.impl = None if cfg.impl == "auto" else cfg.impl

    def forward(self, out_q: dict, out_r: dict, batch: dict, scale: torch.Tensor) -> torch.Tensor:
        qf, rf = out_q["feat"].float(), out_r["feat"].float()
        qn, rn = out_q["norm"].float(), out_r["norm"].float()
        cov_q, cov_r = coverage(*batch_counts(batch, self.patch_size, qf.device, self.impl), self.patch_size)
        ordered = batch["is_copy"].to(qf.device) & (cov_q - cov_r >= ASL_COVERAGE_GAP)
        ratio = norm_ratio_loss(rn[ordered], qn[ordered])
        forward_scores = asymmetric_score(qf, qn, rf, rn, self.gamma)  # [n, n], row i: query i -> references
        reverse = asymmetric_score(rf, rn, qf, qn, self.gamma, pairs=True)  # [n]: reference i -> its query
        # mask after scaling: scale * -inf would send -inf * 0 = nan into the scale's gradient
        reverse = torch.where(ordered, scale * reverse, torch.full_like(reverse, -torch.inf))
        logits = torch.cat([scale * forward_scores, reverse[:, None]], dim=1)
        target = torch.arange(qf.shape[0], device=qf.device)
        return self.weight * (ratio + F.cross_entropy(logits, target))


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
        self.asl = _ASLTerm(cfg, patch_size) if cfg.asl_weight > 0 else None

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
        if self.asl is not None:
            terms["asl"] = self.asl(out_q, out_r, batch, self.log_scale.exp())
        terms["total"] = sum(terms.values())
        return terms


class MatcherObjective(nn.Module):
    """BCE on the copy logit + CopyNCE on the fused patch tokens (positives only; see ``batch_counts``)."""

    def __init__(self, cfg: LossConfig, patch_size: int = 16):
        super().__init__()
        if cfg.asl_weight > 0:
            raise ValueError("loss.asl_weight: the ASL term is a descriptor loss (the matcher has no descriptors)")
        self.cfg = cfg
        self.copynce = _CopyNCETerm(cfg, patch_size) if cfg.copynce_weight > 0 else None

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        target = batch["is_copy"].to(out["logit"].device).float()
        terms = {"bce": self.cfg.bce_weight * F.binary_cross_entropy_with_logits(out["logit"].float(), target)}
        if self.copynce is not None:
            terms["copynce"] = self.copynce(out["query_tokens"], out["reference_tokens"], batch)
        terms["total"] = sum(terms.values())
        return terms
