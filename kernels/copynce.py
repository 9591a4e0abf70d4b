"""Fused CopyNCE (both directions, forward and backward) in Triton. The oracle is ``copynce_ref``.

Math, per pair b (dropped below), anchor tokens X [La, C] and other tokens Y [Lo, C] (X = Q, Y = R for the
q->r direction; X = R, Y = Q for r->q, with S_rq = S_qrᵀ):
    x̂ = x / max(|x|, eps) (eps = 1e-12, F.normalize),   S_ij = s <x̂_i, ŷ_j> = s (x_i . y_j) / (max|x_i| max|y_j|)
    w_ij = (c_ij / rs_i)^γ / wn_i   (rs_i = max(Σ_k c_ik, 1) over all Lo + 1 columns; wn_i = Σ_k (c_ik/rs_i)^γ
                                     including the dummy column Lo, which is then dropped);   W_i = Σ_{j<Lo} w_ij
    ℓ_X = (1/La) Σ_i [W_i lse_i − Σ_j w_ij S_ij],    lse_i = log Σ_j exp S_ij
    loss_b = λ ℓ_{Q->R} + (1 − λ) ℓ_{R->Q}                                                    (fp32, [B])
Gradient of the pair loss times the upstream g_b, with P = row softmax of S_QR and P' = column softmax of S_QR
(the row softmax of S_RQ), v = the r->q weights transposed:
    G_ij = g_b [ λ/Lq (W_i P_ij − w_ij) + (1−λ)/Lr (V_j P'_ij − v_ij) ]          (= dloss/dS_ij, [Lq, Lr])
    dq̂_i = s Σ_j G_ij r̂_j,   q̂_i . dq̂_i = Σ_j G_ij S_ij =: k_i
    dq_i = (dq̂_i − q̂_i k_i) / |q_i|  (|q_i| > eps),   dq_i = dq̂_i / eps  (|q_i| <= eps: the clamp is constant)
and symmetrically for dr with Gᵀ. Every quantity above is a row or column reduction of one [La, Lo] tile, so
nothing [B, L, L] ever reaches memory.

Grid (forward and backward): (NBq + NBr, B), NBx = cdiv(Lx, BLOCK_M): program p < NBq owns query rows
[p*BLOCK_M, ...) of pair b (the q->r direction), the others own reference rows (the r->q direction: the same
code with the roles swapped, selected by pointer, no branch). The pair's programs are adjacent in launch order,
so the pair's tokens are re-read from L2. Each program:
  forward:  1. C loop: acc = X_blk Yᵀ (tl.dot, fp32 accumulate) and the squared norms, S never leaves registers;
            2. row lse, weights from the counts rows (in-kernel γ power and normalisation), the direction's
               partial loss;  writes partial[b, p] and per-row stats [B, 4, Lq+Lr] = (lse, rs, wn, W) fp32.
  backward: 1. the same C loop (S is recomputed, flash-attention style);
            2. G for its rows: own-direction terms from its counts rows + saved lse, other-direction terms from
               the other counts tensor read transposed + the other direction's saved (lse, rs, wn, W);
            3. C loop: dX_blk = s/|x| (G / |y|) @ Y − k/|x|² X_blk, stored in the input dtype (g_b is fused in, so
               no separate scaling pass and no saved gradient).
The loss is the deterministic sum of the [B, NBq + NBr] partials (no float atomics anywhere).

Blocks (``_config``, from sm_90 ptxas reports): BLOCK_N = next_pow2(L) (a whole row of S), BLOCK_M such that an
[BLOCK_M, BLOCK_N] fp32 tile is ~32 registers per thread (L = 196: 32 x 256, 8 warps; L = 441: 16 x 512), BLOCK_C
64 (16-bit) / 32 (fp32), 2-3 pipeline stages in <= 160 KB of shared memory. No or < 200 B/thread of spills.

FLOPs per pair, executed: forward 2 x 2 Lq Lr C (S once per direction), backward 2 x 4 Lq Lr C (S again and the
gradient product, per direction), all on padded tiles. Useful minimum for forward + backward: 6 Lq Lr C.
Bytes per pair from DRAM (e = token bytes, k = count bytes, K = Lq (Lr + 1) + Lr (Lq + 1)):
    forward  (Lq + Lr) C e + K k;      backward  2 (Lq + Lr) C e + 2 K k   (counts read by rows and transposed).
L2 -> SM bytes are what bound it: every program streams all Lo tokens of the other image, so one pass over C
moves (NBq (BLOCK_M + Lr) + NBr (BLOCK_M + Lq)) C e per pair; forward is 1 pass, backward 2. For B = 256,
L = 196, C = 384 bf16 that is 0.63 GB per pass, ~1.9 GB per forward + backward (DRAM: ~0.39 GB).
Limits: L <= 1024 (a whole row of S lives in registers), C <= 1024, B <= 65535.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from copynce_fast.kernels._common import (MAX_FUSED_C, MAX_FUSED_L, PIPELINE_SMEM, TILE_ELEMS_PER_THREAD,
                                          check_same_device, interpreted, next_pow2)

__all__ = ["copynce_triton"]



@triton.jit
def _pow(x, gamma):
    """x^γ for x >= 0, γ > 0 (0 at x = 0)."""
    return tl.where(x > 0.0, tl.exp2(gamma * tl.log2(tl.maximum(x, 1e-38))), 0.0)


@triton.jit
def _role(is_q, q_val, r_val):
    """Select the query-side or the reference-side value of a program's role (scalars or pointers)."""
    return tl.where(is_q, q_val, r_val)


@triton.jit
def _similarity(a_ptr, o_ptr, rows, row_ok, cols, col_ok, C, stride_a, stride_o, scale,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, PRECISION: tl.constexpr):
    """S [BLOCK_M, BLOCK_N] = s · x̂_rows · ŷ_colsᵀ (fp32), plus the clamped norms of both sides.

    The dot runs on the raw tokens and the norms are applied afterwards: one pass over C serves both.
    """
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    ssq_a = tl.zeros((BLOCK_M,), dtype=tl.float32)
    ssq_o = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        ch = c0 + tl.arange(0, BLOCK_C)
        ch_ok = ch < C
        a = tl.load(a_ptr + rows[:, None] * stride_a + ch[None, :], mask=row_ok[:, None] & ch_ok[None, :], other=0.0)
        o = tl.load(o_ptr + cols[:, None] * stride_o + ch[None, :], mask=col_ok[:, None] & ch_ok[None, :], other=0.0)
        acc = tl.dot(a, tl.trans(o), acc, input_precision=PRECISION)
        af = a.to(tl.float32)
        of = o.to(tl.float32)
        ssq_a += tl.sum(af * af, 1)
        ssq_o += tl.sum(of * of, 1)
    norm_a = tl.maximum(tl.sqrt(ssq_a), 1e-12)
    norm_o = tl.maximum(tl.sqrt(ssq_o), 1e-12)
    s = acc * (scale / norm_a)[:, None] * (1.0 / norm_o)[None, :]
    return s, norm_a, norm_o


@triton.jit
def _load_counts(c_ptr, rows, row_ok, cols, col_ok, stride_c):
    """Counts block [BLOCK_M, BLOCK_N] as fp32 (any integer or float dtype in memory)."""
    return tl.load(c_ptr + rows[:, None] * stride_c + cols[None, :], mask=row_ok[:, None] & col_ok[None, :],
                   other=0).to(tl.float32)


@triton.jit
def _row_weights(c_ptr, rows, row_ok, cols, col_ok, num_cols, stride_c, gamma, s):
    """Per row of the block (dummy column = num_cols): rs, wn, W = Σ_j w_ij and Σ_j w_ij s_ij.

    Weights are never materialised as a tile: the counts are read twice (row sums, then the powers, whose sums
    are divided by wn per row), which keeps one [BLOCK_M, BLOCK_N] temporary live instead of three.
    """
    c_dummy = tl.load(c_ptr + rows * stride_c + num_cols, mask=row_ok, other=0).to(tl.float32)
    rs = tl.maximum(tl.sum(_load_counts(c_ptr, rows, row_ok, cols, col_ok, stride_c), 1) + c_dummy, 1.0)
    wt = _pow(_load_counts(c_ptr, rows, row_ok, cols, col_ok, stride_c) / rs[:, None], gamma)
    wn = tl.maximum(tl.sum(wt, 1) + _pow(c_dummy / rs, gamma), 1.1754943508222875e-38)
    return rs, wn, tl.sum(wt, 1) / wn, tl.sum(wt * s, 1) / wn


@triton.jit
def _copynce_fwd_kernel(
    q_ptr, r_ptr, cqr_ptr, crq_ptr, partial_ptr, stats_ptr,
    Lq, Lr, C, num_blocks_q,
    stride_q_b, stride_q_l, stride_r_b, stride_r_l,
    stride_cqr_b, stride_cqr_l, stride_crq_b, stride_crq_l,
    stride_part_b, stride_stats_b, stride_stats_k,
    scale, gamma, coef_qr, coef_rq,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, PRECISION: tl.constexpr,
):
    p = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)  # int64 before stride products
    is_q = p < num_blocks_q
    blk = tl.where(is_q, p, p - num_blocks_q)
    # The program's anchor side X and other side Y (pointers and scalars picked by role).
    a_ptr = _role(is_q, q_ptr + b * stride_q_b, r_ptr + b * stride_r_b)
    o_ptr = _role(is_q, r_ptr + b * stride_r_b, q_ptr + b * stride_q_b)
    c_ptr = _role(is_q, cqr_ptr + b * stride_cqr_b, crq_ptr + b * stride_crq_b)
    num_a = _role(is_q, Lq, Lr)
    num_o = _role(is_q, Lr, Lq)
    stride_a = _role(is_q, stride_q_l, stride_r_l)
    stride_o = _role(is_q, stride_r_l, stride_q_l)
    stride_c = _role(is_q, stride_cqr_l, stride_crq_l)
    coef = _role(is_q, coef_qr, coef_rq)  # λ/Lq or (1-λ)/Lr
    stat0 = _role(is_q, 0, Lq)  # this direction's rows in the stats buffer

    rows = blk * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < num_a
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < num_o
    s, _, _ = _similarity(a_ptr, o_ptr, rows, row_ok, cols, col_ok, C, stride_a, stride_o, scale,
                          BLOCK_M, BLOCK_N, BLOCK_C, PRECISION)
    # Row log-sum-exp over the real columns only (fp32: exp of s up to 16 stays far from overflow anyway).
    s = tl.where(col_ok[None, :], s, float("-inf"))
    m = tl.max(s, 1)
    lse = m + tl.log(tl.sum(tl.exp(s - m[:, None]), 1))
    s = tl.where(col_ok[None, :], s, 0.0)  # weights are 0 there, and 0 * -inf would be NaN
    rs, wn, w_sum, ws_sum = _row_weights(c_ptr, rows, row_ok, cols, col_ok, num_o, stride_c, gamma, s)
    per_row = tl.where(row_ok, w_sum * lse - ws_sum, 0.0)
    tl.store(partial_ptr + b * stride_part_b + p, coef * tl.sum(per_row, 0))
    st = stats_ptr + b * stride_stats_b + stat0 + rows
    tl.store(st, lse, mask=row_ok)
    tl.store(st + stride_stats_k, rs, mask=row_ok)
    tl.store(st + 2 * stride_stats_k, wn, mask=row_ok)
    tl.store(st + 3 * stride_stats_k, w_sum, mask=row_ok)


@triton.jit
def _copynce_bwd_kernel(
    q_ptr, r_ptr, cqr_ptr, crq_ptr, stats_ptr, grad_ptr, dq_ptr, dr_ptr,
    Lq, Lr, C, num_blocks_q,
    stride_q_b, stride_q_l, stride_r_b, stride_r_l,
    stride_cqr_b, stride_cqr_l, stride_crq_b, stride_crq_l,
    stride_stats_b, stride_stats_k, stride_grad_b,
    stride_dq_b, stride_dq_l, stride_dr_b, stride_dr_l,
    scale, gamma, coef_qr, coef_rq,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, PRECISION: tl.constexpr,
    GRAD_DTYPE: tl.constexpr, GRAD_PRECISION: tl.constexpr,
):
    p = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    is_q = p < num_blocks_q
    blk = tl.where(is_q, p, p - num_blocks_q)
    a_ptr = _role(is_q, q_ptr + b * stride_q_b, r_ptr + b * stride_r_b)
    o_ptr = _role(is_q, r_ptr + b * stride_r_b, q_ptr + b * stride_q_b)
    d_ptr = _role(is_q, dq_ptr + b * stride_dq_b, dr_ptr + b * stride_dr_b)
    c_ptr = _role(is_q, cqr_ptr + b * stride_cqr_b, crq_ptr + b * stride_crq_b)  # own direction, row-wise
    ct_ptr = _role(is_q, crq_ptr + b * stride_crq_b, cqr_ptr + b * stride_cqr_b)  # other direction, transposed
    num_a = _role(is_q, Lq, Lr)
    num_o = _role(is_q, Lr, Lq)
    stride_a = _role(is_q, stride_q_l, stride_r_l)
    stride_o = _role(is_q, stride_r_l, stride_q_l)
    stride_d = _role(is_q, stride_dq_l, stride_dr_l)
    stride_c = _role(is_q, stride_cqr_l, stride_crq_l)
    stride_ct = _role(is_q, stride_crq_l, stride_cqr_l)
    g = tl.load(grad_ptr + b * stride_grad_b).to(tl.float32)  # upstream dloss/dloss_b, fused here
    coef_a = _role(is_q, coef_qr, coef_rq) * g
    coef_o = _role(is_q, coef_rq, coef_qr) * g
    stat_a = stats_ptr + b * stride_stats_b + _role(is_q, 0, Lq)
    stat_o = stats_ptr + b * stride_stats_b + _role(is_q, Lq, 0)

    rows = blk * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < num_a
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < num_o
    valid = row_ok[:, None] & col_ok[None, :]
    s, norm_a, norm_o = _similarity(a_ptr, o_ptr, rows, row_ok, cols, col_ok, C, stride_a, stride_o, scale,
                                    BLOCK_M, BLOCK_N, BLOCK_C, PRECISION)
    s = tl.where(valid, s, 0.0)
    # Own direction (rows are its anchors): W_i softmax_ij - w_ij with the forward's row stats.
    lse_a = tl.load(stat_a + rows, mask=row_ok, other=0.0)
    rs_a = tl.load(stat_a + stride_stats_k + rows, mask=row_ok, other=1.0)
    wn_a = tl.load(stat_a + 2 * stride_stats_k + rows, mask=row_ok, other=1.0)
    wsum_a = tl.load(stat_a + 3 * stride_stats_k + rows, mask=row_ok, other=0.0)
    w = _pow(_load_counts(c_ptr, rows, row_ok, cols, col_ok, stride_c) / rs_a[:, None], gamma) / wn_a[:, None]
    grad = coef_a * (wsum_a[:, None] * tl.exp(s - lse_a[:, None]) - w)
    # Other direction (columns are its anchors): its counts transposed, v[i, j] = weight of column j's row on i.
    lse_o = tl.load(stat_o + cols, mask=col_ok, other=0.0)
    rs_o = tl.load(stat_o + stride_stats_k + cols, mask=col_ok, other=1.0)
    wn_o = tl.load(stat_o + 2 * stride_stats_k + cols, mask=col_ok, other=1.0)
    wsum_o = tl.load(stat_o + 3 * stride_stats_k + cols, mask=col_ok, other=0.0)
    ct = tl.load(ct_ptr + cols[None, :] * stride_ct + rows[:, None], mask=valid, other=0).to(tl.float32)
    v = _pow(ct / rs_o[None, :], gamma) / wn_o[None, :]
    grad += coef_o * (wsum_o[None, :] * tl.exp(s - lse_o[None, :]) - v)
    grad = tl.where(valid, grad, 0.0)
    # Normalisation backward: k_i = x̂_i . dx̂_i = Σ_j G_ij S_ij; no projection where the eps clamp is active.
    k = tl.where(norm_a > 1e-12, tl.sum(grad * s, 1), 0.0)
    row_scale = scale / norm_a
    proj = k / (norm_a * norm_a)
    g_op = (grad / norm_o[None, :]).to(GRAD_DTYPE)  # G · diag(1/|y|), so the dot reads raw Y tokens
    for c0 in range(0, C, BLOCK_C):
        ch = c0 + tl.arange(0, BLOCK_C)
        ch_ok = ch < C
        o = tl.load(o_ptr + cols[:, None] * stride_o + ch[None, :], mask=col_ok[:, None] & ch_ok[None, :], other=0.0)
        a = tl.load(a_ptr + rows[:, None] * stride_a + ch[None, :], mask=row_ok[:, None] & ch_ok[None, :], other=0.0)
        dx_hat = tl.dot(g_op, o.to(GRAD_DTYPE), input_precision=GRAD_PRECISION)
        dx = row_scale[:, None] * dx_hat - proj[:, None] * a.to(tl.float32)
        tl.store(d_ptr + rows[:, None] * stride_d + ch[None, :], dx.to(d_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & ch_ok[None, :])


def _config(lq: int, lr: int, c: int, dtype: torch.dtype) -> dict:
    """Block sizes, warps, pipeline depth and dot precisions; explicit errors past the limits.

    Chosen from sm_90 ptxas reports (no spills, or < 200 B/thread of L1-resident spills): a [BLOCK_M, BLOCK_N]
    fp32 tile at about 32 elements per thread, i.e. BLOCK_M = 32 for L <= 256 and 16 beyond; the shared memory
    of the software pipeline, (BLOCK_M + BLOCK_N) * BLOCK_C * itemsize per stage, stays under ~160 KB.
    """
    if max(lq, lr) > MAX_FUSED_L:
        raise ValueError(f"query/reference: L = {max(lq, lr)} patches exceed the fused kernel's limit {MAX_FUSED_L}")
    if c > MAX_FUSED_C:
        raise ValueError(f"query/reference: C = {c} channels exceed the fused kernel's limit {MAX_FUSED_C}")
    block_n = max(16, next_pow2(max(lq, lr)))
    num_warps = 4 if block_n <= 64 else (8 if block_n <= 512 else 16)
    block_m = max(16, min(64, TILE_ELEMS_PER_THREAD * 32 * num_warps // block_n, block_n))
    itemsize = torch.empty((), dtype=dtype).element_size()
    block_c = max(16, min(64 if itemsize == 2 and block_n <= 512 else 32, next_pow2(c)))
    stage_bytes = (block_m + block_n) * block_c * itemsize
    fp32 = dtype == torch.float32
    return dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_C=block_c, PRECISION="ieee" if fp32 else "tf32",
                GRAD_DTYPE=tl.bfloat16 if dtype == torch.bfloat16 else tl.float32,
                GRAD_PRECISION="ieee" if fp32 else "tf32",
                num_warps=num_warps, num_stages=max(1, min(3, PIPELINE_SMEM // stage_bytes)))


def _check_inputs(query, reference, counts_qr, counts_rq) -> None:
    for name, t in (("query", query), ("reference", reference)):
        if t.dim() != 3 or t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"{name}: expected a float32/bfloat16/float16 tensor [B, L, C], got "
                             f"{tuple(t.shape)} {t.dtype}")
    B, lq, c = query.shape
    lr = reference.shape[1]
    if reference.shape[0] != B or reference.shape[2] != c or reference.dtype != query.dtype:
        raise ValueError(f"reference: expected [B={B}, L, C={c}] {query.dtype}, got {tuple(reference.shape)} "
                         f"{reference.dtype}")
    for name, t, shape in (("counts_qr", counts_qr, (B, lq, lr + 1)), ("counts_rq", counts_rq, (B, lr, lq + 1))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
    if counts_rq.dtype != counts_qr.dtype:
        raise ValueError(f"counts_rq: expected dtype {counts_qr.dtype} like counts_qr, got {counts_rq.dtype}")
    if B > 65535:
        raise ValueError(f"query: {B} pairs exceed the grid limit of 65535; split the batch")
    check_same_device(query=query, reference=reference, counts_qr=counts_qr, counts_rq=counts_rq)


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    """Rows must be contiguous; batch and row strides are free (``tokens[:, 1:]`` without the CLS token is no copy)."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _common_args(query, reference, counts_qr, counts_rq, scale, lamb, cfg):
    B, lq, c = query.shape
    lr = reference.shape[1]
    nbq, nbr = triton.cdiv(lq, cfg["BLOCK_M"]), triton.cdiv(lr, cfg["BLOCK_M"])
    return (nbq, nbr), (lq, lr, c, nbq, query.stride(0), query.stride(1), reference.stride(0), reference.stride(1),
                        counts_qr.stride(0), counts_qr.stride(1), counts_rq.stride(0), counts_rq.stride(1))


@torch.library.custom_op("copynce::copynce_fwd", mutates_args=())
def copynce_fwd(query: torch.Tensor, reference: torch.Tensor, counts_qr: torch.Tensor, counts_rq: torch.Tensor,
                scale: float, gamma: float, lamb: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair loss [B] fp32 and the per-row stats [B, 4, Lq + Lr] fp32 (lse, rs, wn, W) the backward reads."""
    _check_inputs(query, reference, counts_qr, counts_rq)
    query, reference, counts_qr, counts_rq = map(_unit_stride, (query, reference, counts_qr, counts_rq))
    B, lq, c = query.shape
    lr = reference.shape[1]
    stats = torch.empty(B, 4, lq + lr, dtype=torch.float32, device=query.device)
    cfg = _config(lq, lr, c, query.dtype)
    (nbq, nbr), args = _common_args(query, reference, counts_qr, counts_rq, scale, lamb, cfg)
    partial = torch.empty(B, nbq + nbr, dtype=torch.float32, device=query.device)
    if B == 0:
        return partial.sum(1), stats
    _copynce_fwd_kernel[(nbq + nbr, B)](
        query, reference, counts_qr, counts_rq, partial, stats, *args,
        partial.stride(0), stats.stride(0), stats.stride(1),
        float(scale), float(gamma), float(lamb) / lq, (1.0 - float(lamb)) / lr,
        **{k: v for k, v in cfg.items() if not k.startswith("GRAD")})
    return partial.sum(1), stats  # deterministic reduction of the per-block partial losses


@copynce_fwd.register_fake
def _(query, reference, counts_qr, counts_rq, scale, gamma, lamb):
    B, lq, _ = query.shape
    lr = reference.shape[1]
    return (query.new_empty((B,), dtype=torch.float32), query.new_empty((B, 4, lq + lr), dtype=torch.float32))


@torch.library.custom_op("copynce::copynce_bwd", mutates_args=())
def copynce_bwd(grad: torch.Tensor, query: torch.Tensor, reference: torch.Tensor, counts_qr: torch.Tensor,
                counts_rq: torch.Tensor, stats: torch.Tensor, scale: float, gamma: float,
                lamb: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(d query, d reference) in the token dtype, for the upstream gradient ``grad`` [B] of the per-pair loss."""
    query, reference, counts_qr, counts_rq = map(_unit_stride, (query, reference, counts_qr, counts_rq))
    grad = grad.to(torch.float32)
    B, lq, c = query.shape
    lr = reference.shape[1]
    dq, dr = torch.empty_like(query), torch.empty_like(reference)
    if B == 0:
        return dq, dr
    cfg = _config(lq, lr, c, query.dtype)
    (nbq, nbr), args = _common_args(query, reference, counts_qr, counts_rq, scale, lamb, cfg)
    _copynce_bwd_kernel[(nbq + nbr, B)](
        query, reference, counts_qr, counts_rq, stats, grad, dq, dr, *args,
        stats.stride(0), stats.stride(1), grad.stride(0),
        dq.stride(0), dq.stride(1), dr.stride(0), dr.stride(1),
        float(scale), float(gamma), float(lamb) / lq, (1.0 - float(lamb)) / lr, **cfg)
    return dq, dr


@copynce_bwd.register_fake
def _(grad, query, reference, counts_qr, counts_rq, stats, scale, gamma, lamb):
    # the real op makes a non-unit last stride contiguous first: the fake must report the same strides
    return torch.empty_like(_unit_stride(query)), torch.empty_like(_unit_stride(reference))


def _setup_context(ctx, inputs, output):
    query, reference, counts_qr, counts_rq, scale, gamma, lamb = inputs
    ctx.save_for_backward(query, reference, counts_qr, counts_rq, output[1])
    ctx.hparams = (scale, gamma, lamb)


def _backward(ctx, grad_loss, grad_stats):
    query, reference, counts_qr, counts_rq, stats = ctx.saved_tensors
    if grad_loss is None:
        grad_loss = query.new_zeros(query.shape[0], dtype=torch.float32)
    dq, dr = copynce_bwd(grad_loss, query, reference, counts_qr, counts_rq, stats, *ctx.hparams)
    return dq, dr, None, None, None, None, None


copynce_fwd.register_autograd(_backward, setup_context=_setup_context)


def copynce_triton(query: torch.Tensor, reference: torch.Tensor, counts_qr: torch.Tensor, counts_rq: torch.Tensor,
                   *, scale: float = 16.0, gamma: float = 1.0, lamb: float = 0.5) -> torch.Tensor:
    """Per-pair λ-mixed CopyNCE loss, fused in Triton; differentiable w.r.t. query and reference.

    Args:
        query: [B, Lq, C] float32/bfloat16/float16 query patch tokens (CUDA; CPU under TRITON_INTERPRET=1).
        reference: [B, Lr, C] reference patch tokens (cast to the query's dtype if they differ).
        counts_qr: [B, Lq, Lr + 1] overlap counts query -> reference, any integer or float dtype.
        counts_rq: [B, Lr, Lq + 1] overlap counts reference -> query.
        scale, gamma, lamb: s, γ, λ of REFERENCE.md §3.

    Returns:
        [B] fp32: ``λ ℓ_qr + (1 − λ) ℓ_rq`` per pair, unflagged and unweighted (``reduce_pairs`` does that).
        Gradients come back in the tokens' dtypes.
    """
    for name, t in (("query", query), ("reference", reference), ("counts_qr", counts_qr), ("counts_rq", counts_rq)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(t).__name__}")
    if reference.dtype != query.dtype:  # tl.dot needs one dtype; autograd casts the gradient back
        common = torch.promote_types(query.dtype, reference.dtype)
        query, reference = query.to(common), reference.to(common)
    if interpreted() and query.dtype == torch.bfloat16:  # the interpreter's bf16 dot is wrong: compute in fp32
        query, reference = query.float(), reference.float()
    if counts_rq.dtype != counts_qr.dtype:
        common = torch.promote_types(counts_qr.dtype, counts_rq.dtype)
        counts_qr, counts_rq = counts_qr.to(common), counts_rq.to(common)
    if counts_qr.dtype == torch.bool:
        counts_qr, counts_rq = counts_qr.to(torch.int32), counts_rq.to(torch.int32)
    loss, _ = copynce_fwd(query, reference, counts_qr, counts_rq, float(scale), float(gamma), float(lamb))
    return loss
