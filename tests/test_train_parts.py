"""Schedule, hard-negative sampler and k-NN table, objectives."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from copynce_fast.config import LossConfig
from copynce_fast.ops import copynce_ref, infonce_ref, koleo_ref, patch_overlap_ref
from copynce_fast.pixtrace import pack_pairs
from copynce_fast.pixtrace.random_views import random_view
from copynce_fast.data.batch_samplers import EpochBatchSampler, NeighbourBatchSampler
from copynce_fast.train.hnm import build_knn_table, load_knn_table, save_knn_table
from copynce_fast.train.objective import DescriptorObjective, MatcherObjective
from copynce_fast.train.schedule import lr_at


def test_schedule_warms_up_then_reaches_min_lr_on_the_last_step():
    lrs = [lr_at(s, 50, 5, 1e-3, 1e-5) for s in range(50)]
    assert math.isclose(lrs[0], 1e-5) and math.isclose(lrs[5], 1e-3)
    assert all(a <= b for a, b in zip(lrs[:5], lrs[1:6]))
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))
    assert math.isclose(lrs[-1], 1e-5)


def test_sampler_partitions_the_epoch_across_ranks_and_resumes_mid_epoch():
    seen = []
    for rank in range(2):
        s = EpochBatchSampler(40, 5, seed=3, rank=rank, world_size=2)
        s.set_epoch(1)
        seen += [k.index for b in s for k in b]
    assert sorted(seen) == list(range(40))  # every item once per epoch across ranks
    s = EpochBatchSampler(40, 5, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=3)
    assert list(s) == full[3:]  # a resumed run sees exactly the rest of the epoch
    s.set_epoch(3)
    assert list(s) != full


def test_neighbour_sampler_resumes_like_the_plain_one():
    table = np.array([[(i + 1) % 30, (i + 2) % 30] for i in range(30)])
    s = NeighbourBatchSampler(table, 6)
    s.set_epoch(0)
    full = list(s)
    s.set_epoch(0, start_batch=2)
    assert list(s) == full[2:]
    for batch in full:  # descriptor mode: anchor, neighbour, anchor, neighbour, ...
        for a, h in zip(batch[::2], batch[1::2]):
            assert h.index in table[a.index]


def test_knn_table_finds_planted_neighbours(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(10, 16))
    feats = np.concatenate([base, base + 0.01 * rng.normal(size=base.shape)]).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    table = build_knn_table(feats, 1, backend="torch")
    assert (table[:10, 0] == np.arange(10, 20)).all() and (table[10:, 0] == np.arange(10)).all()
    save_knn_table(tmp_path / "k.npy", table)
    assert (load_knn_table(tmp_path / "k.npy", 20) == table).all()
    with pytest.raises(ValueError, match="knn_path"):
        load_knn_table(tmp_path / "k.npy", 5)


def _batch(b=3, s=32, p=8, is_copy=None):
    rng = np.random.default_rng(1)
    q = [random_view(rng, (60, 50), (s, s)) for _ in range(b)]
    r = [random_view(rng, (60, 50), (s, s), n_stages=0) for _ in range(b)]
    qr, rq = pack_pairs(q, r)
    is_copy = torch.ones(b, dtype=torch.bool) if is_copy is None else is_copy
    return {"paths_qr": qr, "paths_rq": rq, "is_copy": is_copy, "copynce": torch.ones(b, dtype=torch.bool)}


def test_descriptor_objective_is_the_sum_of_its_references():
    cfg = LossConfig(copynce_weight=2.0, copynce_gamma=3.0, koleo_weight=0.5, impl="torch")
    obj = DescriptorObjective(cfg, patch_size=8)
    batch = _batch()
    out_q = {"feat": F.normalize(torch.randn(3, 8), dim=1), "tokens": torch.randn(3, 16, 12)}
    out_r = {"feat": F.normalize(torch.randn(3, 8), dim=1), "tokens": torch.randn(3, 16, 12)}
    terms = obj(out_q, out_r, batch)
    counts = patch_overlap_ref(batch["paths_qr"], 8), patch_overlap_ref(batch["paths_rq"], 8)
    expected = copynce_ref(out_q["tokens"], out_r["tokens"], *counts, gamma=3.0, weight=2.0)
    torch.testing.assert_close(terms["copynce"], expected)
    feats = torch.cat([out_q["feat"], out_r["feat"]])
    torch.testing.assert_close(terms["infonce"], infonce_ref(feats, 3, torch.tensor(cfg.infonce_log_scale)))
    torch.testing.assert_close(terms["koleo"], 0.5 * koleo_ref(feats, 3))
    torch.testing.assert_close(terms["total"], terms["infonce"] + terms["koleo"] + terms["copynce"])


def test_matcher_objective_ignores_geometry_of_negative_pairs():
    cfg = LossConfig(copynce_weight=3.0, copynce_gamma=1.0, impl="torch")
    obj = MatcherObjective(cfg, patch_size=8)
    is_copy = torch.tensor([True, False, True])
    batch = _batch(is_copy=is_copy)
    out = {"logit": torch.randn(3), "query_tokens": torch.randn(3, 16, 12, requires_grad=True),
           "reference_tokens": torch.randn(3, 16, 12)}
    terms = obj(out, batch)
    torch.testing.assert_close(terms["bce"], F.binary_cross_entropy_with_logits(out["logit"], is_copy.float()))
    terms["copynce"].backward()
    assert out["query_tokens"].grad[1].abs().max() == 0  # the negative pair gets no CopyNCE gradient
    assert out["query_tokens"].grad[0].abs().max() > 0


def test_copynce_term_feeds_the_autocast_dtype_to_the_kernel():
    """Under autocast the fp32 residual-stream tokens are handed over in the autocast dtype (the fast kernel path)."""
    cfg = LossConfig(copynce_weight=1.0, copynce_gamma=3.0, impl="torch")
    obj = DescriptorObjective(cfg, patch_size=8)
    batch = _batch()
    q, r = torch.randn(3, 16, 12), torch.randn(3, 16, 12)
    counts = patch_overlap_ref(batch["paths_qr"], 8), patch_overlap_ref(batch["paths_rq"], 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = obj.copynce(q, r, batch)
    torch.testing.assert_close(got, copynce_ref(q.bfloat16(), r.bfloat16(), *counts, gamma=3.0))
    assert not torch.allclose(got, copynce_ref(q, r, *counts, gamma=3.0), atol=1e-6, rtol=0)
