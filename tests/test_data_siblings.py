"""Sibling pairs: disjoint parts of one original (zero PixTrace overlap across siblings), rendering, batch layout."""
import numpy as np
import pytest

from copynce_fast.data.batch_samplers import EpochBatchSampler
from copynce_fast.data.pair_of_key import plan_pair
from copynce_fast.data.plan_sampler import PairKey
from copynce_fast.data.presets import descriptor_preset
from copynce_fast.data.siblings import SiblingBatchSampler, restrict_plan, sample_sibling_pair, split_boxes
from copynce_fast.data.sources import synthetic_source
from copynce_fast.data.torch_loader import CopyPairDataset
from copynce_fast.ops import patch_overlap
from copynce_fast.pixtrace import pack_pairs

SIZE = 64


def overlaps(pairs):
    """[N, L, L + 1] PixTrace counts of each pair's first view's patches against its second's (last column: no
    correspondence), in one batched call."""
    qr, _ = pack_pairs([a for a, _ in pairs], [b for _, b in pairs])
    return patch_overlap(qr, patch_size=16, impl="torch")


def test_split_boxes_are_disjoint_with_a_gap():
    rng = np.random.default_rng(0)
    for hw in [(300, 400), (400, 300), (256, 256), (17, 500)]:
        for _ in range(50):
            (ta, la, ha, wa), (tb, lb, hb, wb) = split_boxes(rng, hw)
            assert min(ha, wa, hb, wb) > 0
            assert ta + ha <= hw[0] and la + wa <= hw[1] and tb + hb <= hw[0] and lb + wb <= hw[1]
            # separated along one axis by at least one pixel
            assert la + wa < lb or ta + ha < tb
    assert split_boxes(rng, (10, 12)) is None


def test_siblings_share_no_pixel_and_each_pair_is_a_copy():
    cfg = descriptor_preset(size=SIZE)
    hws = [(300, 400), (420, 280), (256, 256)]
    hw_of = lambda i: hws[i]  # noqa: E731
    across, within = [], []
    for seed in range(6):
        for index in range(3):
            a = sample_sibling_pair(cfg, seed, 0, index, hw_of, 3, part=1)
            b = sample_sibling_pair(cfg, seed, 0, index, hw_of, 3, part=2)
            qa, ra = a.traced_views()
            qb, rb = b.traced_views()
            assert a.is_copy and b.is_copy and qa.source_hw == rb.source_hw == hws[index]
            across += [(qa, rb), (qb, ra), (qa, qb), (ra, rb)]
            within += [(qa, ra), (qb, rb)]
    counts = overlaps(across)  # across siblings: nothing corresponds
    assert counts[..., :-1].sum() == 0 and (counts[..., -1] == 256).all()
    shown = overlaps(within)[..., :-1].sum(dim=(1, 2))
    assert (shown > 0).sum() >= 30  # (of 36) within a pair the query shows its part (unless fully occluded)


def test_restrict_plan_keeps_the_overlay_in_step():
    cfg = descriptor_preset(size=SIZE, crop_p=1.0, crop_choices=("paste",))
    pair = sample_sibling_pair(cfg, 3, 0, 0, lambda i: (300, 400), 2, part=2)
    q = pair.query
    assert q.overlay is not None and q.view.stages[0].name == "crop"
    assert q.view.stages[q.overlay.at - 1].name == "paste"  # the composite still follows the paste
    with pytest.raises(ValueError, match="plan: drawn on"):
        restrict_plan(q, (300, 400), (0, 0, 10, 10))


def test_sibling_keys_render_through_the_loader_dataset():
    source = synthetic_source(3, size=(120, 160), seed=0)
    cfg = descriptor_preset(size=SIZE)
    ds = CopyPairDataset(source, cfg, seed=1)
    s1, s2 = ds[PairKey(1, 0, part=1)], ds[PairKey(1, 0, part=2)]
    for s in (s1, s2):
        assert tuple(s["query"].shape) == (3, SIZE, SIZE) and tuple(s["reference"].shape) == (3, SIZE, SIZE)
        assert s["is_copy"] and s["source_index"] == 1
    # the two references are the two halves: different pixels
    assert not np.array_equal(s1["reference"].numpy(), s2["reference"].numpy())
    plan, _ = plan_pair(source, cfg, 1, PairKey(1, 0, part=1))  # plan_pair dispatches on the part
    assert plan.reference.view.stages[0].name == "resized_crop"


def test_sibling_batch_sampler_layout():
    base = EpochBatchSampler(40, 8, seed=0)
    sampler = SiblingBatchSampler(base, rate=0.5, seed=0)
    batches = sampler.epoch_keys(2)
    assert len(batches) == len(base) == 5
    for keys in batches:
        assert len(keys) == 8
        parts = [k.part for k in keys]
        assert parts.count(1) == parts.count(2) == 2  # round(0.5 * 8 / 2) couples
        for j in range(0, 8, 2):
            if parts[j]:
                assert parts[j:j + 2] == [1, 2] and keys[j].index == keys[j + 1].index
    assert sampler.epoch_keys(2) == batches  # deterministic
    assert SiblingBatchSampler(base, rate=0.0).epoch_keys(2) == base.epoch_keys(2)
    sampler.set_epoch(2, start_batch=3)
    assert list(sampler) == batches[3:] and sampler.epoch == 2 and sampler.batch_size == 8
    with pytest.raises(ValueError, match="rate"):
        SiblingBatchSampler(base, rate=1.5)
