"""The ASL term of the descriptor objective against an independent formula, and the direction of its gradients."""
import math

import pytest
import torch
import torch.nn.functional as F

from copynce_fast.config import LossConfig
from copynce_fast.train.objective import DescriptorObjective, MatcherObjective, coverage

P = 2  # patch size of the hand-made counts (4 pixels a patch), 4 patches a view


def counts(valid_per_patch):
    """[L, L + 1] counts with ``valid_per_patch[i]`` pixels of patch i matched (to patch i) and the rest invalid."""
    c = torch.zeros(len(valid_per_patch), len(valid_per_patch) + 1, dtype=torch.int32)
    for i, v in enumerate(valid_per_patch):
        c[i, i], c[i, -1] = v, P * P - v
    return c


def batch():
    # pair 0: the query shows half of the reference (cov_q 1, cov_r 0.5): ordered, the reference holds more
    # pair 1: same content both ways (cov 1, 1): not ordered;  pair 2: not a copy
    qr = torch.stack([counts([4, 4, 4, 4]), counts([4, 4, 4, 4]), counts([0, 0, 0, 0])])
    rq = torch.stack([counts([4, 4, 0, 0]), counts([4, 4, 4, 4]), counts([0, 0, 0, 0])])
    return {"counts_qr": qr, "counts_rq": rq, "is_copy": torch.tensor([True, True, False])}


def outputs(seed):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(3, 8, generator=g, dtype=torch.float64) * (1 + torch.rand(3, 1, generator=g))
    raw.requires_grad_()
    return raw, {"feat": F.normalize(raw, dim=1), "norm": raw.norm(dim=1)}


def test_coverage():
    b = batch()
    cov_q, cov_r = coverage(b["counts_qr"], b["counts_rq"], P)
    torch.testing.assert_close(cov_q, torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(cov_r, torch.tensor([0.5, 1.0, 0.0]))


def test_asl_term_matches_an_independent_formula():
    cfg = LossConfig(infonce_weight=0.0, koleo_weight=0.0, copynce_weight=0.0, asl_weight=0.5, asl_gamma=0.7,
                     gather=False)
    obj = DescriptorObjective(cfg, patch_size=P)
    _, oq = outputs(0)
    _, orr = outputs(1)
    terms = obj(oq, orr, batch())
    scale = math.exp(cfg.infonce_log_scale)
    q, r = oq["feat"].detach().double(), orr["feat"].detach().double()
    qn, rn = oq["norm"].detach().double(), orr["norm"].detach().double()

    def s(a, an, b, bn):  # s(a -> b)
        return float(a @ b) - 0.7 * max(0.0, math.log(an) - math.log(bn))

    ratio = math.exp(1 - rn[0] / qn[0])  # only pair 0 is ordered: reference norm over query norm
    ce = 0.0
    for i in range(3):
        logits = [scale * s(q[i], qn[i], r[j], rn[j]) for j in range(3)]
        if i == 0:
            logits.append(scale * s(r[0], rn[0], q[0], qn[0]))  # the whole is not a copy of its crop
        ce += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    want = 0.5 * (ratio + ce / 3)
    assert terms["asl"].item() == pytest.approx(want, rel=1e-5)
    assert terms["total"].item() == pytest.approx(want, rel=1e-5)


def test_asl_gradient_grows_the_reference_norm_of_an_ordered_pair():
    cfg = LossConfig(infonce_weight=0.0, koleo_weight=0.0, copynce_weight=0.0, asl_weight=1.0, gather=False)
    obj = DescriptorObjective(cfg, patch_size=P)
    q_raw, oq = outputs(2)
    r_raw, orr = outputs(3)
    obj(oq, orr, batch())["total"].backward()
    # moving along the raw vector itself changes only its norm: the directional derivative is grad . x / |x|
    d_ref = float(r_raw.grad[0] @ r_raw[0].detach()) / float(r_raw[0].detach().norm())
    d_query = float(q_raw.grad[0] @ q_raw[0].detach()) / float(q_raw[0].detach().norm())
    assert d_ref < 0 < d_query  # descending: the reference (more content) grows, its crop shrinks
    assert torch.isfinite(obj.log_scale.grad)  # the masked reverse logits must not leak -inf * 0 into it


def test_asl_is_off_by_default_and_descriptor_only():
    assert LossConfig().asl_weight == 0.0
    assert DescriptorObjective(LossConfig()).asl is None
    with pytest.raises(ValueError, match="loss.asl_weight"):
        MatcherObjective(LossConfig(asl_weight=1.0))
    with pytest.raises(ValueError, match="loss.asl_gamma"):
        DescriptorObjective(LossConfig(asl_weight=1.0, asl_gamma=math.inf))


def test_training_with_asl_and_siblings_runs_on_cpu(tmp_path):
    from copynce_fast.config import Config, DataConfig, ModelConfig, OptimConfig, RunConfig
    from copynce_fast.train import train

    cfg = Config(
        model=ModelConfig(arch="vit_tiny", img_size=32, dim=16, freeze_patch_embed=False),
        data=DataConfig(synthetic_images=3, batch_size=8, num_workers=0, hard_negatives=False, sibling_rate=0.5),
        loss=LossConfig(copynce_weight=1.0, asl_weight=1.0, impl="torch"),
        optim=OptimConfig(base_lr=1e-3, lr_scaling_batch=1024, epochs=4, warmup_epochs=0.0),
        run=RunConfig(out_dir=str(tmp_path), log_every=1, ckpt_every=100, compile=False, eval_after=False,
                      progress=False, max_steps=4))
    res = train(cfg)
    assert res.steps == 4
    asl = [row["asl"] for row in res.history]
    assert all(math.isfinite(v) and v > 0 for v in asl)
    assert all(math.isfinite(row["total"]) for row in res.history)
