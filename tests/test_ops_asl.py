"""ASL ops: the asymmetric score and the norm-ratio loss against independent formulas, finite differences and
their defining property (a crop scores higher towards the whole image than the whole image towards the crop)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from copynce_fast.ops.asl import asymmetric_score_ref, norm_ratio_loss_ref


def random_side(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, d, generator=g, dtype=torch.float64)
    return F.normalize(raw, dim=1), raw.norm(dim=1) * (0.5 + torch.rand(n, generator=g, dtype=torch.float64))


def test_crop_to_whole_beats_whole_to_crop():
    whole = torch.randn(1, 16)
    crop = whole + 0.3 * torch.randn(1, 16)  # similar direction, any cosine will do
    fw, fc = F.normalize(whole, dim=1), F.normalize(crop, dim=1)
    nw, nc = torch.tensor([5.0]), torch.tensor([2.0])  # the whole image holds more content: larger norm
    crop_to_whole = asymmetric_score_ref(fc, nc, fw, nw, gamma=1.0)
    whole_to_crop = asymmetric_score_ref(fw, nw, fc, nc, gamma=1.0)
    cos = (fc * fw).sum()
    assert crop_to_whole.item() == pytest.approx(cos.item(), abs=1e-6)  # no penalty in the copy direction
    assert whole_to_crop.item() == pytest.approx(cos.item() - math.log(5 / 2), abs=1e-6)
    assert crop_to_whole.item() > whole_to_crop.item()
    # equal norms: symmetric, the plain cosine both ways
    same = torch.tensor([3.0])
    assert asymmetric_score_ref(fc, same, fw, same).item() == pytest.approx(
        asymmetric_score_ref(fw, same, fc, same).item(), abs=1e-7)


def test_matches_an_independent_loop_and_the_pair_form():
    qf, qn = random_side(5, 8, 0)
    rf, rn = random_side(4, 8, 1)
    gamma = 0.7
    got = asymmetric_score_ref(qf, qn, rf, rn, gamma).double().numpy()
    q, r = qf.numpy(), rf.numpy()
    want = np.empty((5, 4))
    for i in range(5):
        for j in range(4):
            cos = float(np.dot(q[i], r[j]) / np.linalg.norm(q[i]) / np.linalg.norm(r[j]))
            want[i, j] = cos - gamma * max(0.0, math.log(qn[i].item()) - math.log(rn[j].item()))
    np.testing.assert_allclose(got, want, atol=1e-6)
    diag = asymmetric_score_ref(qf[:4], qn[:4], rf, rn, gamma, pairs=True)
    np.testing.assert_allclose(diag.double().numpy(), np.diag(want[:4]), atol=1e-6)


def test_infinite_gamma_is_the_repo_filter():
    qf, qn = random_side(6, 8, 2)
    rf, rn = random_side(6, 8, 3)
    got = asymmetric_score_ref(qf, qn, rf, rn, math.inf)
    cos = (qf.float() @ rf.float().t())
    dropped = (qn[:, None] / rn[None, :]) > 1  # test.py: scale_1 / scale_2 > 1 -> not a copy
    assert dropped.any() and (~dropped).any()
    assert torch.isneginf(got[dropped]).all()
    torch.testing.assert_close(got[~dropped], cos[~dropped])


def test_gradients_match_finite_differences():
    qf, qn = random_side(3, 5, 4)
    rf, rn = random_side(4, 5, 5)
    # the raw vectors are the leaves, as in training (normalise and norm inside the graph)
    q_raw = (qf * qn[:, None]).requires_grad_()
    r_raw = (rf * rn[:, None]).requires_grad_()

    def score(q, r):
        return asymmetric_score_ref(F.normalize(q, dim=1), q.norm(dim=1), F.normalize(r, dim=1), r.norm(dim=1),
                                    0.8).double()

    # fp32 inside the op: finite differences in double on the fp32 output need a loose tolerance
    assert torch.autograd.gradcheck(lambda q, r: score(q, r), (q_raw, r_raw), eps=1e-3, atol=5e-3, rtol=5e-3)


def test_norm_ratio_loss_value_gradient_and_direction():
    more = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    less = torch.tensor([1.0, 1.0, 4.0], dtype=torch.float64, requires_grad=True)
    loss = norm_ratio_loss_ref(more, less)
    assert loss.item() == pytest.approx((math.exp(1 - 2) + math.exp(0) + math.exp(1 - 0.75)) / 3, rel=1e-6)
    loss.backward()
    # d/dm exp(1 - m/l) / P = -exp(1 - m/l) / (l P): descending grows the larger view's norm
    want_more = torch.tensor([-math.exp(-1) / 1, -1.0, -math.exp(0.25) / 4]) / 3
    torch.testing.assert_close(more.grad.float(), want_more, rtol=1e-5, atol=1e-6)
    assert (less.grad > 0).all()  # ... and shrinks the smaller view's
    assert norm_ratio_loss_ref(torch.zeros(0), torch.zeros(0)).item() == 0.0


def test_bad_arguments():
    f, n = random_side(2, 4, 6)
    with pytest.raises(ValueError, match="q_norm"):
        asymmetric_score_ref(f, n[:1], f, n)
    with pytest.raises(ValueError, match="r_feat: dimension"):
        asymmetric_score_ref(f, n, f[:, :3], n)
    with pytest.raises(ValueError, match="gamma"):
        asymmetric_score_ref(f, n, f, n, gamma=-1.0)
    with pytest.raises(ValueError, match="pairs=True"):
        asymmetric_score_ref(f, n, f[:1], n[:1], pairs=True)
    with pytest.raises(ValueError, match="norm_more/norm_less"):
        norm_ratio_loss_ref(n, n[:1])
