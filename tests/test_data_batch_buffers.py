"""In-process batches stacked into reused memory (data.batch.ImageBatchBuffers): the same batches, and a batch
that anything still uses is never written over."""
import numpy as np
import pytest
import torch

from copynce_fast.data import batch as batch_mod
from copynce_fast.data.batch import ImageBatchBuffers
from copynce_fast.data.presets import descriptor_preset
from copynce_fast.data.sources import ArraySource
from copynce_fast.data.synthetic import synthetic_images
from copynce_fast.data.torch_loader import PairLoader

pytestmark = pytest.mark.skipif(batch_mod._storage_use_count is None, reason="torch lacks _storage_Use_Count")


def _images(seed, n=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=g) for _ in range(n)]


def test_dropped_batch_memory_is_reused_and_equals_stack():
    buf = ImageBatchBuffers(keep=1)
    a = buf.stack("q", _images(0))
    ptr = a.data_ptr()
    del a
    b = buf.stack("q", _images(1))
    assert b.data_ptr() == ptr and b.is_contiguous()
    assert torch.equal(b, torch.stack(_images(1)))


@pytest.mark.parametrize("hold", ["tensor", "view", "numpy", "dict"])
def test_a_batch_still_in_use_is_not_overwritten(hold):
    buf = ImageBatchBuffers(keep=1)
    a = buf.stack("q", _images(0))
    want = torch.stack(_images(0))
    ptr = a.data_ptr()
    held = {"tensor": lambda: a, "view": lambda: a[1:3], "numpy": lambda: a.numpy(), "dict": lambda: {"q": a}}[hold]()
    del a
    b = buf.stack("q", _images(1))
    assert b.data_ptr() != ptr
    assert torch.equal(torch.as_tensor(held["q"] if hold == "dict" else held), want[1:3] if hold == "view" else want)


def test_in_process_loader_batches_are_the_fresh_ones():
    """The batches an in-process PairLoader yields (buffers reused while the loop drops them) equal the ones a
    loader without buffers yields, and the reuse happens."""
    src = ArraySource(synthetic_images(12, (60, 80), seed=5))
    cfg = descriptor_preset(size=32)
    reused = PairLoader(src, cfg, batch_size=4, seed=2)
    buffers = reused.loader.collate_fn.keywords["buffers"]
    assert isinstance(buffers, ImageBatchBuffers)
    got, ptrs = [], set()
    for _ in range(2):
        for b in reused:
            got.append((b["query"].clone(), b["reference"].clone()))
            ptrs.add(b["query"].data_ptr())
            del b
    fresh = PairLoader(src, cfg, batch_size=4, seed=2)
    fresh.loader.collate_fn.keywords["buffers"] = None
    want = [(b["query"], b["reference"]) for _ in range(2) for b in fresh]  # all held: nothing could be reused
    assert len(got) == len(want) == 6 and len(ptrs) < len(got)
    for (q, r), (wq, wr) in zip(got, want):
        assert torch.equal(q, wq) and torch.equal(r, wr)
