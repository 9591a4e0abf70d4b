"""The torch loader: batch dict contract, determinism across workers, trainer-supplied order, sharding."""
import numpy as np
import pytest
import torch

from copynce_fast.data.executor_torch import render_plan, to_tensor_image
from copynce_fast.data.batch import collate_pairs, to_device
from copynce_fast.data.batch_samplers import EpochBatchSampler
from copynce_fast.data.pair_of_key import plan_pair
from copynce_fast.data.plan_sampler import PairKey
from copynce_fast.data.torch_loader import CopyPairDataset, PairLoader
from copynce_fast.data.presets import descriptor_preset, matcher_preset, plain_preset
from copynce_fast.data.sources import ArraySource, bundled_source
from copynce_fast.data.synthetic import synthetic_images
from copynce_fast.pixtrace import pack_pairs

S = 48


@pytest.fixture(scope="module")
def src():
    return ArraySource(synthetic_images(10, (60, 80), seed=3))


def _take(loader, n):
    out = []
    for k, b in enumerate(loader):
        out.append(b)
        if k + 1 == n:
            break
    return out


def test_batch_dict_contract(src):
    cfg = matcher_preset(size=S)
    loader = PairLoader(src, cfg, batch_size=4, seed=1)
    assert loader.steps_per_epoch == len(loader) == 2
    sampler_keys = loader.batch_sampler.epoch_keys(0)
    for batch, keys in zip(loader, sampler_keys):
        assert batch["query"].shape == (4, 3, S, S) and batch["query"].dtype == torch.uint8
        assert batch["reference"].shape == (4, 3, S, S) and batch["reference"].dtype == torch.uint8
        for k in ("is_copy", "copynce"):
            assert batch[k].shape == (4,) and batch[k].dtype == torch.bool
        assert batch["source_index"].dtype == torch.int64
        qr, rq = batch["paths_qr"], batch["paths_rq"]
        assert qr.src_hw == qr.dst_hw == (S, S) and qr.batch_size == rq.batch_size == 4
        # The paths are exactly the ones PixTrace gives for the plans of these keys (occluders included).
        plans = [plan_pair(src, cfg, 1, key)[0] for key in keys]
        want_qr, want_rq = pack_pairs(*zip(*[p.traced_views() for p in plans]))
        assert torch.equal(qr.matrices, want_qr.matrices) and torch.equal(rq.canvases, want_rq.canvases)
        assert (qr.src_occluder is None) == (want_qr.src_occluder is None)
        if qr.src_occluder is not None:
            assert torch.equal(qr.src_occluder, want_qr.src_occluder)
        assert batch["is_copy"].tolist() == [p.is_copy for p in plans]
        assert batch["source_index"].tolist() == [p.reference.source_index for p in plans]


def test_workers_give_the_same_batches(src):
    cfg = descriptor_preset(size=S)
    a = _take(PairLoader(src, cfg, batch_size=3, seed=4, num_workers=0), 3)
    b = _take(PairLoader(src, cfg, batch_size=3, seed=4, num_workers=2), 3)
    for x, y in zip(a, b):
        assert torch.equal(x["query"], y["query"]) and torch.equal(x["reference"], y["reference"])
        assert torch.equal(x["paths_qr"].matrices, y["paths_qr"].matrices)
    c = _take(PairLoader(src, cfg, batch_size=3, seed=5), 1)[0]
    assert not torch.equal(a[0]["query"], c["query"])


def test_trainer_supplied_pairs_and_hard_negatives(src):
    cfg = plain_preset(size=S)

    class HardNegatives:
        """Each anchor i paired with itself (a copy) and with a 'mined' neighbour (a negative)."""

        def __iter__(self):
            yield [PairKey(0), PairKey(0, query_index=3), PairKey(5), PairKey(5, query_index=7)]

        def __len__(self):
            return 1

    loader = PairLoader(src, cfg, batch_size=4, batch_sampler=HardNegatives())
    batch = next(iter(loader))
    assert batch["is_copy"].tolist() == [True, False, True, False]
    assert batch["source_index"].tolist() == [0, 0, 5, 5]
    # With nothing but the resize, a negative's query is image 3 resized: compare with the executor directly.
    from copynce_fast.data.plan import reference_plan
    want = render_plan(reference_plan(3, src.hw(3), S), to_tensor_image(src.decode(3)))
    assert torch.equal(batch["query"][1], want)
    assert torch.equal(batch["query"][0], batch["reference"][0])


def test_epoch_batch_sampler_shards_and_reshuffles():
    s0 = EpochBatchSampler(23, 4, seed=1, rank=0, world_size=2)
    s1 = EpochBatchSampler(23, 4, seed=1, rank=1, world_size=2)
    assert len(s0) == len(s1) == 2
    k0 = {k.index for b in s0.epoch_keys(0) for k in b}
    k1 = {k.index for b in s1.epoch_keys(0) for k in b}
    assert len(k0) == len(k1) == 8 and not k0 & k1
    assert [k.index for k in s0.epoch_keys(0)[0]] != [k.index for k in s0.epoch_keys(1)[0]]
    assert all(k.epoch == 3 for b in s0.epoch_keys(3) for k in b)
    s0.set_epoch(3)
    assert [[k.index for k in b] for b in s0] == [[k.index for k in b] for b in s0.epoch_keys(3)]
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(10, 2, rank=2, world_size=2)


def test_positive_rate_and_copynce_flags(src):
    ds = CopyPairDataset(src, matcher_preset(size=32), seed=0)
    flags = [ds[PairKey(i % 10, epoch=i // 10)]["is_copy"] for i in range(60)]
    assert 8 <= sum(flags) <= 32  # ~30% positives
    batch = collate_pairs([ds[PairKey(i)] for i in range(4)])
    assert torch.equal(batch["copynce"], batch["is_copy"])  # negatives carry no CopyNCE term by default


def test_copy_copy_mode_and_to_device():
    loader = PairLoader(bundled_source(), descriptor_preset(size=S, pair_mode="copy_copy"), batch_size=4, seed=0)
    batch = next(iter(loader))
    assert batch["paths_rq"].matrices.shape[1] >= 2  # reference -> original -> query through two edited chains
    moved = to_device(batch, "cpu", dtype=torch.float32)
    x = moved["query"]
    assert x.dtype == torch.float32 and x.shape == (4, 3, S, S)
    want = (batch["query"][0, 0, 0, 0].item() / 255 - 0.485) / 0.229
    assert abs(x[0, 0, 0, 0].item() - want) < 1e-5
    assert to_device(batch, "cpu")["reference"].dtype == torch.bfloat16


def test_neighbour_batch_sampler():
    from copynce_fast.data.batch_samplers import NeighbourBatchSampler
    n = 20
    knn = np.stack([(np.arange(n) + k) % n for k in (1, 2, 3)], axis=1)  # neighbours of i: i+1, i+2, i+3
    desc = NeighbourBatchSampler(knn, 4, seed=0)
    batches = desc.epoch_keys(0)
    assert len(batches) == len(desc) == 10 and all(len(b) == 4 for b in batches)
    for b in batches:
        for anchor, nb in (b[0:2], b[2:4]):
            assert (nb.index - anchor.index) % n in (1, 2, 3)
            assert anchor.query_index is None and nb.query_index is None  # both copy pairs
    match = NeighbourBatchSampler(knn, 5, seed=0, mode="matcher", positive_rate=0.3, hard_p=1.0)
    keys = [k for b in match.epoch_keys(1) for k in b]
    pos = [k for k in keys if k.query_index == k.index]
    neg = [k for k in keys if k.query_index != k.index]
    assert len(keys) == 20 and 1 <= len(pos) <= 12
    assert all((k.query_index - k.index) % n in (1, 2, 3) for k in neg)  # hard negatives = neighbours
    shards = [{k.index for b in NeighbourBatchSampler(knn, 4, rank=r, world_size=2).epoch_keys(0) for k in b[::2]}
              for r in range(2)]
    assert not shards[0] & shards[1]
    with pytest.raises(ValueError, match="batch_size"):
        NeighbourBatchSampler(knn, 3)
    with pytest.raises(ValueError, match="neighbours"):
        NeighbourBatchSampler(np.arange(5), 4)
