"""CopyNCE: patch-level InfoNCE whose soft targets are patch overlap ratios (REFERENCE.md §3).

For one direction (anchor tokens A [B, La, C], other tokens O [B, Lo, C], counts [B, La, Lo + 1]):

    S_bij   = s * <a_bi / |a_bi|, o_bj / |o_bj|>                     (scaled cosine)
    w_bij   = (c_bij / P²)^γ / Σ_{k=0..Lo} (c_bik / P²)^γ,  j < Lo     (normalised WITH the dummy bin, then dropped)
    ℓ_b     = (1/La) Σ_i Σ_j w_bij (logsumexp_k S_bik − S_bij)        (mean over ALL anchor patches)

Both directions share one similarity matrix: S_rq = S_qrᵀ. The pair loss mixes them with λ, flags select the
pairs that count, and the total is ``weight · Σ_b f_b ℓ_b / Σ_b f_b`` (zero, but in the graph, when no flag is
set: DDP needs every parameter to receive a gradient).

Deliberate difference from the official code: logsumexp instead of exp / sum / log (same value in fp32 for
|S| ≤ s, stable in any dtype); inputs of any float dtype are upcast to fp32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from copynce_fast.ops._impl import resolve_impl

__all__ = ["copynce", "copynce_ref", "copynce_weights", "check_copynce_args"]


def check_copynce_args(query, reference, counts_qr, counts_rq, flags, scale, gamma, lamb) -> None:
    """Validate once, for every implementation; errors name the argument."""
    for name, t in (("query", query), ("reference", reference)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3 or not t.is_floating_point():
            raise ValueError(f"{name}: expected a float tensor [B, L, C], got "
                             f"{getattr(t, 'shape', type(t).__name__)}")
    B, lq, c = query.shape
    if reference.shape[0] != B or reference.shape[2] != c:
        raise ValueError(f"reference: expected [B={B}, L, C={c}], got {tuple(reference.shape)}")
    lr = reference.shape[1]
    for name, t, shape in (("counts_qr", counts_qr, (B, lq, lr + 1)), ("counts_rq", counts_rq, (B, lr, lq + 1))):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            raise ValueError(f"{name}: expected shape {list(shape)}, got {getattr(t, 'shape', type(t).__name__)}")
    if flags is not None and (not isinstance(flags, torch.Tensor) or tuple(flags.shape) != (B,)):
        raise ValueError(f"flags: expected a tensor [B={B}], got {getattr(flags, 'shape', type(flags).__name__)}")
    if not scale > 0:
        raise ValueError(f"scale: must be > 0, got {scale}")
    if not gamma > 0:
        raise ValueError(f"gamma: must be > 0, got {gamma}")
    if not 0.0 <= lamb <= 1.0:
        raise ValueError(f"lamb: must be in [0, 1], got {lamb}")


def copynce_weights(counts: torch.Tensor, gamma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Soft targets from counts [B, La, Lo + 1] -> weights [B, La, Lo] (dummy bin normalised, then dropped)."""
    c = counts.to(dtype)
    frac = c / c.sum(-1, keepdim=True).clamp_min(1.0)
    w = frac.pow(gamma)
    w = w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    return w[..., :-1]


def _direction_loss(sim: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-pair loss of one direction: sim [B, La, Lo] fp32, weights [B, La, Lo] -> [B]."""
    lse = torch.logsumexp(sim, dim=-1)
    per_patch = weights.sum(-1) * lse - (weights * sim).sum(-1)
    return per_patch.sum(-1) / sim.shape[1]


def copynce_ref(query: torch.Tensor, reference: torch.Tensor, counts_qr: torch.Tensor, counts_rq: torch.Tensor,
                flags: torch.Tensor | None = None, *, scale: float = 16.0, gamma: float = 1.0, lamb: float = 0.5,
                weight: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """CopyNCE in plain torch, fp32 math (the oracle for tests and the baseline for benchmarks).

    Args:
        query: [B, Lq, C] query patch tokens, any float dtype.
        reference: [B, Lr, C] reference patch tokens.
        counts_qr: [B, Lq, Lr + 1] overlap counts query -> reference (last column = invalid pixels).
        counts_rq: [B, Lr, Lq + 1] overlap counts reference -> query.
        flags: [B] bool, pairs that count (None = all).
        scale, gamma, lamb, weight: s, γ, λ and the loss weight of REFERENCE.md §3.
        reduction: "mean" (the loss) or "none" (per-pair λ-mixed loss [B], unflagged, unweighted).

    Returns:
        fp32 scalar (``reduction="mean"``) or [B].
    """
    check_copynce_args(query, reference, counts_qr, counts_rq, flags, scale, gamma, lamb)
    with torch.autocast(query.device.type, enabled=False):  # fp32 math even inside an autocast region
        per_pair = _copynce_pairs(query, reference, counts_qr, counts_rq, scale, gamma, lamb)
    if reduction == "none":
        return per_pair
    if reduction != "mean":
        raise ValueError(f"reduction: must be 'mean' or 'none', got {reduction!r}")
    return reduce_pairs(per_pair, flags, weight)


def _copynce_pairs(query, reference, counts_qr, counts_rq, scale, gamma, lamb) -> torch.Tensor:
    dt = torch.promote_types(query.dtype, torch.float32)  # fp32 math; float64 stays float64 (gradcheck)
    q = F.normalize(query.to(dt), dim=-1, eps=1e-12)
    r = F.normalize(reference.to(dt), dim=-1, eps=1e-12)
    sim = scale * torch.bmm(q, r.transpose(1, 2))
    per_pair = lamb * _direction_loss(sim, copynce_weights(counts_qr, gamma, dt))
    return per_pair + (1.0 - lamb) * _direction_loss(sim.transpose(1, 2), copynce_weights(counts_rq, gamma, dt))


def reduce_pairs(per_pair: torch.Tensor, flags: torch.Tensor | None, weight: float) -> torch.Tensor:
    """``weight · Σ f_b ℓ_b / Σ f_b``; 0 (still in the graph) when no flag is set. No host sync."""
    if flags is None:
        return weight * per_pair.mean()
    f = flags.to(per_pair.dtype)
    return weight * (f * per_pair).sum() / f.sum().clamp_min(1.0)


def copynce(query, reference, counts_qr, counts_rq, flags=None, *, scale=16.0, gamma=1.0, lamb=0.5, weight=1.0,
            impl: str | None = None) -> torch.Tensor:
    """CopyNCE with implementation dispatch (``impl`` as in ``resolve_impl``). Same contract as ``copynce_ref``."""
    if resolve_impl(impl, query, reference) == "torch":
        return copynce_ref(query, reference, counts_qr, counts_rq, flags, scale=scale, gamma=gamma, lamb=lamb,
                           weight=weight)
    check_copynce_args(query, reference, counts_qr, counts_rq, flags, scale, gamma, lamb)
    from copynce_fast.kernels.copynce import copynce_triton  # lazy: CPU installs need no triton
    per_pair = copynce_triton(query, reference, counts_qr, counts_rq, scale=scale, gamma=gamma, lamb=lamb)
    return reduce_pairs(per_pair, flags, weight)
