"""CopyNCE torch reference: hand-computed cases, a literal transcription of the official formula, gradcheck,
invariances, and the CopyNCELoss module's three input forms."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from copynce_fast import CopyNCELoss
from copynce_fast.ops import copynce, copynce_ref, copynce_weights, patch_overlap_ref
from copynce_fast.pixtrace import pack_pairs
from copynce_fast.pixtrace.random_views import random_view


def official_transcription(q, r, cqr, crq, flags, s, gamma, lamb, weight):
    """REFERENCE.md §3 as the official code computes it: exp, divide, log; counts/P² then pow, then normalise."""
    def direction(a, o, counts):
        a, o = F.normalize(a, dim=-1), F.normalize(o, dim=-1)
        sim = s * a @ o.transpose(1, 2)
        e = torch.exp(sim)
        log_p = torch.log(e / e.sum(-1, keepdim=True))
        w = (counts.double() / counts.sum(-1, keepdim=True).double()) ** gamma
        w = (w / w.sum(-1, keepdim=True))[..., :-1]
        return -(w * log_p).sum(-1).mean(-1)

    per = lamb * direction(q, r, cqr) + (1 - lamb) * direction(r, q, crq)
    f = flags.double()
    if f.sum() == 0:
        return 0 * per.sum()
    return weight * (f * per).sum() / f.sum()


def random_counts(b, la, lo, p2=16, invalid_rows=0, generator=None):
    """Counts that sum to p2 per row with some dummy mass and some rows fully invalid."""
    idx = torch.randint(0, lo + 1, (b, la, p2), generator=generator)
    idx[:, :, : p2 // 2] = torch.randint(0, 3, (b, la, 1), generator=generator)  # concentrate half the mass
    counts = torch.zeros(b, la, lo + 1, dtype=torch.int32).scatter_add_(2, idx, torch.ones_like(idx, dtype=torch.int32))
    if invalid_rows:
        counts[:, :invalid_rows] = 0
        counts[:, :invalid_rows, lo] = p2
    return counts


def test_identity_pair_is_cross_entropy_on_the_diagonal():
    B, L, C = 2, 9, 16
    q, r = torch.randn(B, L, C), torch.randn(B, L, C)
    eye = torch.zeros(B, L, L + 1, dtype=torch.int32)
    eye[:, torch.arange(L), torch.arange(L)] = 256
    for gamma in (1.0, 3.0):
        loss = copynce_ref(q, r, eye, eye, scale=16.0, gamma=gamma, lamb=0.5)
        sim = 16.0 * F.normalize(q, dim=-1) @ F.normalize(r, dim=-1).transpose(1, 2)
        target = torch.arange(L).repeat(B)
        expected = 0.5 * F.cross_entropy(sim.reshape(-1, L), target) + \
            0.5 * F.cross_entropy(sim.transpose(1, 2).reshape(-1, L), target)
        torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gamma, valid, expected", [
    (1.0, 192, 0.75), (3.0, 192, 0.75**3 / (0.75**3 + 0.25**3)), (3.0, 128, 0.5), (1.0, 0, 0.0),
])
def test_weights_normalise_with_the_dummy_bin(gamma, valid, expected):
    c = torch.zeros(1, 1, 4, dtype=torch.int32)
    c[0, 0, 1], c[0, 0, 3] = valid, 256 - valid
    w = copynce_weights(c, gamma)
    assert w.shape == (1, 1, 3)
    assert math.isclose(w[0, 0, 1].item(), expected, rel_tol=1e-6, abs_tol=1e-7)


def test_even_split_gives_half_half_for_any_gamma():
    c = torch.tensor([[[128, 128, 0]]], dtype=torch.int32)
    for g in (0.5, 1.0, 3.0):
        torch.testing.assert_close(copynce_weights(c, g), torch.tensor([[[0.5, 0.5]]]))


@pytest.mark.parametrize("gamma, lamb, scale", [(1.0, 0.5, 16.0), (3.0, 0.3, 10.0), (2.0, 1.0, 30.0)])
def test_matches_literal_transcription_of_the_official_formula(gamma, lamb, scale):
    g = torch.Generator().manual_seed(1)
    B, Lq, Lr, C = 4, 12, 10, 8
    q, r = torch.randn(B, Lq, C, generator=g).double(), torch.randn(B, Lr, C, generator=g).double()
    cqr, crq = random_counts(B, Lq, Lr, invalid_rows=2, generator=g), random_counts(B, Lr, Lq, generator=g)
    flags = torch.tensor([True, False, True, True])
    ours = copynce_ref(q, r, cqr, crq, flags, scale=scale, gamma=gamma, lamb=lamb, weight=5.0)
    theirs = official_transcription(q, r, cqr, crq, flags, scale, gamma, lamb, 5.0)
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    B, L, C = 2, 5, 4
    q = torch.randn(B, L, C, dtype=torch.float64, generator=g, requires_grad=True)
    r = torch.randn(B, L, C, dtype=torch.float64, generator=g, requires_grad=True)
    cqr, crq = random_counts(B, L, L, generator=g), random_counts(B, L, L, generator=g)
    assert torch.autograd.gradcheck(lambda a, b: copynce_ref(a, b, cqr, crq, gamma=3.0, scale=4.0), (q, r))


def test_fully_invalid_query_patch_gets_no_gradient_in_its_direction():
    q = torch.randn(1, 6, 8, requires_grad=True)
    r = torch.randn(1, 6, 8)
    c = random_counts(1, 6, 6, invalid_rows=2)
    copynce_ref(q, r, c, random_counts(1, 6, 6), lamb=1.0).backward()
    assert q.grad[0, :2].abs().max() == 0 and q.grad[0, 2:].abs().max() > 0


def test_invariant_to_permuting_reference_patches():
    B, L, C = 2, 7, 8
    q, r = torch.randn(B, L, C), torch.randn(B, L, C)
    cqr, crq = random_counts(B, L, L), random_counts(B, L, L)
    perm = torch.randperm(L)
    cqr_p = torch.cat([cqr[:, :, perm], cqr[:, :, L:]], dim=2)  # columns follow the reference patches
    crq_p = crq[:, perm]  # rows are reference patches
    torch.testing.assert_close(copynce_ref(q, r, cqr, crq, gamma=3.0),
                               copynce_ref(q, r[:, perm], cqr_p, crq_p, gamma=3.0))


def test_flags_select_pairs_and_no_flag_gives_zero_in_graph():
    B, L, C = 3, 4, 8
    q = torch.randn(B, L, C, requires_grad=True)
    r = torch.randn(B, L, C)
    c = random_counts(B, L, L)
    one = copynce_ref(q[1:2], r[1:2], c[1:2], c[1:2], weight=2.0)
    sel = copynce_ref(q, r, c, c, torch.tensor([False, True, False]), weight=2.0)
    torch.testing.assert_close(sel, one)
    zero = copynce_ref(q, r, c, c, torch.zeros(B, dtype=torch.bool))
    assert zero.item() == 0.0 and zero.requires_grad
    zero.backward()
    assert q.grad is not None and q.grad.abs().max() == 0


def test_low_precision_inputs_are_computed_in_fp32():
    B, L, C = 2, 9, 32
    q, r = torch.randn(B, L, C), torch.randn(B, L, C)
    c = random_counts(B, L, L)
    low = copynce_ref(q.bfloat16(), r.bfloat16(), c, c)
    # fp32 math on the bf16 values: equal to the fp32 loss of the rounded inputs, far tighter than bf16 math
    rounded = copynce_ref(q.bfloat16().float(), r.bfloat16().float(), c, c)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, rounded, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("bad, arg", [
    (dict(query=torch.randn(2, 4)), "query"),
    (dict(reference=torch.randn(2, 4, 7)), "reference"),
    (dict(counts_qr=torch.zeros(2, 4, 4)), "counts_qr"),
    (dict(flags=torch.ones(3, dtype=torch.bool)), "flags"),
    (dict(gamma=0.0), "gamma"),
    (dict(scale=-1.0), "scale"),
    (dict(lamb=1.5), "lamb"),
])
def test_bad_arguments_are_named(bad, arg):
    args = dict(query=torch.randn(2, 4, 8), reference=torch.randn(2, 4, 8), counts_qr=torch.zeros(2, 4, 5),
                counts_rq=torch.zeros(2, 4, 5), flags=None, scale=16.0, gamma=1.0, lamb=0.5)
    args.update(bad)
    with pytest.raises(ValueError, match=arg):
        copynce_ref(args.pop("query"), args.pop("reference"), args.pop("counts_qr"), args.pop("counts_rq"),
                    args.pop("flags"), **args)


# --- the module ------------------------------------------------------------------------------------------------

def test_module_geometry_and_counts_forms_agree():
    rng = np.random.default_rng(0)
    qv = [random_view(rng, (80, 64), (32, 32)) for _ in range(3)]
    rv = [random_view(rng, (80, 64), (32, 32), n_stages=0) for _ in range(3)]
    qt, rt = torch.randn(3, 16, 24), torch.randn(3, 16, 24)
    loss = CopyNCELoss(gamma=3.0, weight=5.0, impl="torch")
    paths_qr, paths_rq = pack_pairs(qv, rv)
    counts = (patch_overlap_ref(paths_qr, 8), patch_overlap_ref(paths_rq, 8))
    by_counts = loss(qt, rt, counts)
    torch.testing.assert_close(loss(qt, rt, geometry=(qv, rv)), by_counts)
    torch.testing.assert_close(loss(qt, rt, geometry=(paths_qr, paths_rq)), by_counts)
    torch.testing.assert_close(by_counts, copynce(qt, rt, *counts, gamma=3.0, weight=5.0, impl="torch"))


def test_module_rejects_ambiguous_inputs():
    loss = CopyNCELoss()
    t = torch.randn(1, 4, 8)
    c = torch.zeros(1, 4, 5)
    with pytest.raises(ValueError, match="exactly one"):
        loss(t, t)
    with pytest.raises(ValueError, match="exactly one"):
        loss(t, t, (c, c), que_to_ori=torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="impl"):
        CopyNCELoss(impl="cuda")


def test_module_dense_form_follows_the_official_chain():
    """With an identity reference map, the official chain's q->r counts equal the exact geometry's counts."""
    from copynce_fast.pixtrace import View, correspondence_map, pack_paths, reference_correspondence
    from copynce_fast.ops import patch_overlap_from_dense_ref

    rng = np.random.default_rng(5)
    S = 32
    qv = [random_view(rng, (S, S), (S, S)) for _ in range(2)]
    ov = [View((S, S))] * 2
    que_to_ori = correspondence_map(pack_paths(qv, ov)).double()
    ref_to_ori = correspondence_map(pack_paths(ov, ov)).double()
    qt, rt = torch.randn(2, 16, 8), torch.randn(2, 16, 8)
    loss = CopyNCELoss(gamma=3.0, impl="torch")
    cqr, crq = loss.counts(qt, rt, que_to_ori=que_to_ori, ref_to_ori=ref_to_ori)
    assert torch.equal(cqr, patch_overlap_ref(pack_paths(qv, ov), 8))
    que_to_ref, ref_to_que, _ = reference_correspondence(que_to_ori, ref_to_ori)
    assert torch.equal(crq, patch_overlap_from_dense_ref(ref_to_que, None, 8))
    torch.testing.assert_close(loss(qt, rt, que_to_ori=que_to_ori, ref_to_ori=ref_to_ori),
                               copynce_ref(qt, rt, cqr, crq, gamma=3.0))
