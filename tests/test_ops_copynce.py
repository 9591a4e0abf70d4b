"""Fused Triton CopyNCE vs the torch reference: forward, backward (non-unit upstream gradient), flags, odd shapes,
invariances, torch.compile; bf16/fp16 and inductor on GPU."""
import pytest
import torch
import torch.nn.functional as F

from copynce_fast.kernels.copynce import copynce_bwd, copynce_fwd, copynce_triton
from copynce_fast.ops import copynce, copynce_ref

DEV = "cuda" if torch.cuda.is_available() else "cpu"

# (B, Lq, Lr, C): tiny, odd L with the weird-shape C, Lq != Lr, several row blocks, tiny C, a single patch.
SHAPES = [(1, 4, 4, 8), (2, 37, 37, 129), (3, 20, 29, 24), (2, 70, 50, 33), (1, 130, 100, 16), (2, 9, 5, 3),
          (2, 1, 3, 16)]
# (scale, gamma, lamb)
HPARAMS = [(16.0, 1.0, 0.5), (16.0, 3.0, 0.5), (10.0, 2.0, 0.3), (20.0, 1.5, 1.0), (16.0, 3.0, 0.0)]


def assert_close(actual, expected, atol=1e-5, rtol=1e-5, what=""):
    """fp32 table tolerance (conftest.TOL); reports max abs / rel diff and the worst index."""
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(), atol=atol, rtol=rtol,
                               msg=lambda m: f"{what}: {m}")


def make_counts(b, la, lo, p2=64, generator=None):
    """Counts summing to p2 per row: concentrated mass, dummy mass, all-dummy rows and all-zero rows."""
    idx = torch.randint(0, lo + 1, (b, la, p2), generator=generator)
    idx[:, :, : p2 // 2] = torch.randint(0, lo, (b, la, 1), generator=generator)  # a dominant patch per row
    counts = torch.zeros(b, la, lo + 1, dtype=torch.int32).scatter_add_(2, idx, torch.ones_like(idx, dtype=torch.int32))
    if la > 2:
        counts[:, 1] = 0
        counts[:, 1, lo] = p2  # fully invalid patch: all mass in the dummy bin
        counts[:, 2] = 0  # no pixels at all (the reference clamps the row sum to 1)
    return counts


def make_inputs(b, lq, lr, c, dtype=torch.float32):
    g = torch.Generator().manual_seed(b * 1000 + lq * 10 + lr + c)
    q = torch.randn(b, lq, c, generator=g).to(dtype)
    r = (torch.randn(b, lr, c, generator=g) * 3 + 0.5).to(dtype)
    return q, r, make_counts(b, lq, lr, generator=g), make_counts(b, lr, lq, generator=g)


def loss_and_grads(fn, q, r):
    q, r = q.detach().clone().requires_grad_(), r.detach().clone().requires_grad_()
    loss = fn(q, r)
    (loss * 3).backward()  # non-unit upstream gradient
    return loss.detach(), q.grad, r.grad


@pytest.mark.parametrize("hp", HPARAMS, ids=lambda h: f"s{h[0]:g}-g{h[1]:g}-l{h[2]:g}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_match_reference(shape, hp):
    scale, gamma, lamb = hp
    q, r, cqr, crq = make_inputs(*shape)
    b = shape[0]
    flags = torch.arange(b) % 3 != 1  # some negative pairs
    per_pair = copynce_triton(q.to(DEV), r.to(DEV), cqr.to(DEV), crq.to(DEV), scale=scale, gamma=gamma, lamb=lamb)
    assert per_pair.dtype == torch.float32 and per_pair.shape == (b,)
    expected = copynce_ref(q, r, cqr, crq, scale=scale, gamma=gamma, lamb=lamb, reduction="none")
    assert_close(per_pair, expected, what="per-pair loss")

    kw = dict(scale=scale, gamma=gamma, lamb=lamb, weight=5.0)
    got = loss_and_grads(lambda a, o: copynce(a, o, cqr.to(DEV), crq.to(DEV), flags.to(DEV), impl="triton", **kw),
                         q.to(DEV), r.to(DEV))
    ref = loss_and_grads(lambda a, o: copynce_ref(a, o, cqr, crq, flags, **kw), q, r)
    for name, a, e in zip(("loss", "d query", "d reference"), got, ref):
        assert_close(a, e, what=name)


def test_negative_pairs_and_ignored_patches_get_zero_gradient():
    q, r, cqr, crq = make_inputs(3, 12, 10, 16)
    flags = torch.tensor([True, False, True])
    _, dq, dr = loss_and_grads(lambda a, o: copynce(a, o, cqr, crq, flags, lamb=1.0, impl="triton"), q.to(DEV),
                               r.to(DEV))
    assert torch.all(dq[1] == 0) and torch.all(dr[1] == 0)  # unflagged pair: exactly nothing
    assert torch.all(dq[:, 1:3] == 0)  # λ = 1: query patches with no valid pixel take no part
    assert dq[0].abs().sum() > 0 and dr[2].abs().sum() > 0
    # no flag at all: zero loss, zero gradients, still differentiable (DDP needs every parameter in the graph)
    loss, dq, _ = loss_and_grads(lambda a, o: copynce(a, o, cqr, crq, torch.zeros(3, dtype=torch.bool),
                                                       impl="triton"), q.to(DEV), r.to(DEV))
    assert loss.item() == 0 and torch.all(dq == 0)


def test_zero_tokens_follow_f_normalize():
    """|x| <= eps: F.normalize divides by eps, the gradient is g / eps (no projection); compare relatively."""
    q, r, cqr, crq = make_inputs(2, 10, 12, 16)
    q[0, 3] = 0
    r[1, 5] = 1e-14
    got = loss_and_grads(lambda a, o: copynce_triton(a, o, cqr, crq, gamma=2.0).sum(), q.to(DEV), r.to(DEV))
    ref = loss_and_grads(lambda a, o: copynce_ref(a, o, cqr, crq, gamma=2.0, reduction="none").sum(), q, r)
    assert_close(got[0], ref[0])
    for a, e in zip(got[1:], ref[1:]):
        assert_close(a / e.abs().max(), e / e.abs().max(), what="scaled gradient")


@pytest.mark.parametrize("dtype", [torch.int64, torch.float32, torch.uint8])
def test_count_dtypes(dtype):
    q, r, cqr, crq = make_inputs(2, 11, 13, 16)
    expected = copynce_triton(q.to(DEV), r.to(DEV), cqr.to(DEV), crq.to(DEV), gamma=3.0)
    assert_close(copynce_triton(q.to(DEV), r.to(DEV), cqr.to(DEV, dtype), crq.to(DEV, dtype), gamma=3.0), expected)
    assert_close(copynce_triton(q.to(DEV), r.to(DEV), cqr.to(DEV, dtype), crq.to(DEV), gamma=3.0), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_tokens_keep_their_dtype(dtype):
    """16-bit tokens: fp32 loss close to the fp32 math on the same (rounded) tokens, gradients in the token dtype.

    The interpreter has no bf16 dot, so there the launcher computes bf16 in fp32; fp16 runs as is. Tight
    low-precision bounds are the GPU test below.
    """
    q, r, cqr, crq = make_inputs(2, 21, 19, 40, dtype=dtype)
    got = loss_and_grads(lambda a, o: copynce_triton(a, o, cqr.to(DEV), crq.to(DEV), gamma=3.0).sum(), q.to(DEV),
                         r.to(DEV))
    ref = loss_and_grads(lambda a, o: copynce_ref(a, o, cqr, crq, gamma=3.0, reduction="none").sum(), q.float(),
                         r.float())
    assert got[0].dtype == torch.float32 and got[1].dtype == dtype and got[2].dtype == dtype
    assert_close(got[0], ref[0], atol=1e-4, rtol=1e-4)
    for a, e in zip(got[1:], ref[1:]):
        assert_close(a.float() / e.abs().max(), e / e.abs().max(), atol=2e-2, rtol=2e-2, what="scaled gradient")


def test_permuting_reference_patches_changes_nothing():
    """Relabel the reference patches (tokens, count columns of q->r, count rows of r->q): same loss, permuted grads."""
    q, r, cqr, crq = make_inputs(2, 15, 18, 24)
    perm = torch.randperm(18)
    cqr_p = torch.cat([cqr[..., :-1][..., perm], cqr[..., -1:]], -1)
    kw = dict(scale=16.0, gamma=3.0, lamb=0.4)
    a = loss_and_grads(lambda x, y: copynce_triton(x, y, cqr.to(DEV), crq.to(DEV), **kw).sum(), q.to(DEV), r.to(DEV))
    b = loss_and_grads(lambda x, y: copynce_triton(x, y, cqr_p.to(DEV), crq[:, perm].to(DEV), **kw).sum(),
                       q.to(DEV), r[:, perm].to(DEV))
    assert_close(b[0], a[0])
    assert_close(b[1], a[1])
    assert_close(b[2], a[2][:, perm])


def test_strided_tokens_match():
    """ViT tokens without the CLS token (a slice, no copy) and channel-strided tokens (copied by the launcher)."""
    q, _, cqr, crq = make_inputs(2, 12, 12, 24)
    q_cls = torch.cat([torch.randn(2, 1, 24), q], 1)
    r_wide = torch.randn(2, 12, 48)
    cqr, crq = cqr.to(DEV), crq.to(DEV)
    got = loss_and_grads(lambda a, o: copynce_triton(a[:, 1:], o[..., ::2], cqr, crq).sum(), q_cls.to(DEV),
                         r_wide.to(DEV))
    ref = loss_and_grads(lambda a, o: copynce_ref(a[:, 1:], o[..., ::2].contiguous(), cqr.cpu(), crq.cpu(),
                                                  reduction="none").sum(), q_cls, r_wide)
    for a, e in zip(got, ref):
        assert_close(a, e)


def test_swapping_query_and_reference_swaps_the_directions():
    q, r, cqr, crq = make_inputs(2, 14, 9, 16)
    a = copynce_triton(q.to(DEV), r.to(DEV), cqr.to(DEV), crq.to(DEV), lamb=0.2, gamma=2.0)
    b = copynce_triton(r.to(DEV), q.to(DEV), crq.to(DEV), cqr.to(DEV), lamb=0.8, gamma=2.0)
    assert_close(a, b)


def test_compile_fullgraph_aot_eager_matches_eager():
    q, r, cqr, crq = make_inputs(2, 20, 17, 24)
    flags = torch.tensor([True, False])

    def fn(a, o):
        return copynce(a, o, cqr.to(DEV), crq.to(DEV), flags.to(DEV), scale=16.0, gamma=3.0, weight=5.0,
                       impl="triton")

    eager = loss_and_grads(fn, q.to(DEV), r.to(DEV))
    compiled = loss_and_grads(torch.compile(fn, fullgraph=True, backend="aot_eager"), q.to(DEV), r.to(DEV))
    for a, e in zip(compiled, eager):
        assert torch.equal(a, e)


def test_custom_op_registrations():
    q, r, cqr, crq = make_inputs(1, 6, 5, 16)
    q, r = q.to(DEV).requires_grad_(), r.to(DEV).requires_grad_()
    torch.library.opcheck(copynce_fwd, (q, r, cqr.to(DEV), crq.to(DEV), 16.0, 3.0, 0.5),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    loss, stats = copynce_fwd(q.detach(), r.detach(), cqr.to(DEV), crq.to(DEV), 16.0, 3.0, 0.5)
    torch.library.opcheck(copynce_bwd, (torch.ones_like(loss), q.detach(), r.detach(), cqr.to(DEV), crq.to(DEV),
                                        stats, 16.0, 3.0, 0.5), test_utils=("test_schema", "test_faketensor"))


def test_rejects_bad_arguments():
    q, r, cqr, crq = make_inputs(1, 6, 5, 16)
    with pytest.raises(ValueError, match="counts_qr"):
        copynce_triton(q.to(DEV), r.to(DEV), crq.to(DEV), cqr.to(DEV))
    with pytest.raises(ValueError, match="C = 1025"):
        copynce_triton(torch.zeros(1, 2, 1025, device=DEV), torch.zeros(1, 2, 1025, device=DEV),
                       torch.zeros(1, 2, 3, device=DEV), torch.zeros(1, 2, 3, device=DEV))
    with pytest.raises(ValueError, match="L = 1025"):
        copynce_triton(torch.zeros(1, 1025, 8, device=DEV), torch.zeros(1, 2, 8, device=DEV),
                       torch.zeros(1, 1025, 3, device=DEV), torch.zeros(1, 2, 1026, device=DEV))


def lowprec_ref(q, r, cqr, crq, scale, gamma, lamb):
    """What a plain torch implementation computes in the token dtype: normalise and bmm in bf16/fp16."""
    def direction(a, o, counts):
        sim = scale * torch.bmm(F.normalize(a, dim=-1), F.normalize(o, dim=-1).transpose(1, 2))
        w = (counts.to(a.dtype) / counts.sum(-1, keepdim=True).clamp_min(1).to(a.dtype)) ** gamma
        w = (w / w.sum(-1, keepdim=True).clamp_min(1e-6))[..., :-1]
        return ((w.sum(-1) * torch.logsumexp(sim, -1) - (w * sim).sum(-1)).sum(-1) / a.shape[1]).float()
    return lamb * direction(q, r, cqr) + (1 - lamb) * direction(r, q, crq)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(4, 196, 196, 384), (3, 37, 37, 129), (2, 441, 441, 64)])
def test_gpu_low_precision_within_twice_torch_error(shape, dtype):
    """flash-attention's rule: |fast - ref32| <= 2 |torch_lowprec - ref32| + floor, for loss and both gradients."""
    q, r, cqr, crq = (t.cuda() for t in make_inputs(*shape, dtype=dtype))
    kw = dict(scale=16.0, gamma=3.0, lamb=0.5)
    g = torch.rand(shape[0], device="cuda") + 0.5

    def run(fn, a, o):
        a, o = a.detach().clone().requires_grad_(), o.detach().clone().requires_grad_()
        loss = fn(a, o, cqr, crq, **kw)
        (loss * g).sum().backward()
        return [loss.float(), a.grad.float(), o.grad.float()]

    ref = run(lambda *x, **k: copynce_ref(*x, reduction="none", **k), q.float(), r.float())
    fast = run(copynce_triton, q, r)
    low = run(lowprec_ref, q, r)
    for name, f, lo, e in zip(("loss", "dq", "dr"), fast, low, ref):
        err_fast, err_low = (f - e).abs().max().item(), (lo - e).abs().max().item()
        assert err_fast <= 2 * err_low + 1e-3 * e.abs().max().item(), f"{name}: {err_fast:.3e} vs torch {err_low:.3e}"


@pytest.mark.gpu
def test_gpu_fp32_full_size_and_inductor():
    q, r, cqr, crq = (t.cuda() for t in make_inputs(4, 196, 196, 384))
    flags = torch.tensor([True, True, False, True], device="cuda")

    def fn(a, o):
        return copynce(a, o, cqr, crq, flags, scale=16.0, gamma=3.0, weight=5.0, impl="triton")

    ref = loss_and_grads(lambda a, o: copynce_ref(a, o, cqr, crq, flags, scale=16.0, gamma=3.0, weight=5.0),
                         q, r)
    eager = loss_and_grads(fn, q, r)
    compiled = loss_and_grads(torch.compile(fn, fullgraph=True), q, r)
    for a, c, e in zip(eager, compiled, ref):
        assert_close(a, e)
        assert_close(c, e)
