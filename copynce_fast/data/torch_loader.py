"""The torch pair loader: pairs from an image source, rendered by the torch executor in DataLoader workers.

Index order comes from a batch sampler (:mod:`copynce_fast.data.batch_samplers`); each PairKey's plans are
drawn by :func:`copynce_fast.data.pair_of_key.plan_pair` and rendered by
:mod:`copynce_fast.data.executor_torch`; batches are the dict of :mod:`copynce_fast.data.batch`. The DALI
loader (:mod:`copynce_fast.data.dali_loader`) yields the same batches from the same plans.
"""
from __future__ import annotations

import functools
from typing import Iterator

import torch

from copynce_fast.data.batch import collate_pairs
from copynce_fast.data.batch_samplers import EpochBatchSampler
from copynce_fast.data.executor_torch import render_plan, to_tensor_image
from copynce_fast.data.pair_of_key import MAX_TRIES, plan_pair
from copynce_fast.data.plan_sampler import PairKey
from copynce_fast.data.presets import AugmentConfig
from copynce_fast.data.sources import ImageSource, SkipCounter

__all__ = ["CopyPairDataset", "PairLoader"]


class CopyPairDataset(torch.utils.data.Dataset):
    """Map-style dataset: ``ds[PairKey]`` (or an int index) -> one rendered pair (see ``collate_pairs``).

    Args:
        source: an ImageSource.
        cfg: the augmentation config (presets.descriptor_preset() / matcher_preset()).
        seed: global seed; plans depend on (seed, key) only.
        interp: "bilinear" for training, "nearest" for exact-geometry tests.
        antialias: antialiased pre-shrink for large down-scales.
        photometric: False renders geometry (and overlays) only.
    """

    def __init__(self, source: ImageSource, cfg: AugmentConfig, seed: int = 0, interp: str = "bilinear",
                 antialias: bool = True, photometric: bool = True):
        self.source, self.cfg, self.seed = source, cfg, seed
        self.interp, self.antialias, self.photometric = interp, antialias, photometric

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key) -> dict:
        key = key if isinstance(key, PairKey) else PairKey(int(key))
        n_known = len(self.source.skips.files)
        substitutions = 0
        for _ in range(MAX_TRIES):
            pair, subs = plan_pair(self.source, self.cfg, self.seed, key)
            substitutions += subs
            images = {}
            for plan in (pair.query, pair.reference):
                needed = [plan.source_index] + ([plan.overlay.index] if plan.overlay is not None else [])
                for i in needed:
                    if i not in images:
                        images[i] = self.source.decode(i)
            if all(v is not None for v in images.values()):
                break
            substitutions += 1  # a file failed to decode: it is now marked bad, plan again
        else:
            raise RuntimeError(f"could not render a pair for {key} after {MAX_TRIES} tries")
        tensors = {i: to_tensor_image(a) for i, a in images.items()}

        def render(plan):
            other = tensors[plan.overlay.index] if plan.overlay is not None else None
            return render_plan(plan, tensors[plan.source_index], other, self.interp, self.antialias,
                               self.photometric)

        qv, rv = pair.traced_views()
        files = self.source.skips.files
        new_skips = list(files.items())[n_known:] if len(files) > n_known else []
        return {"query": render(pair.query), "reference": render(pair.reference), "query_view": qv,
                "reference_view": rv, "is_copy": pair.is_copy, "copynce": pair.copynce,
                "source_index": pair.reference.source_index, "skipped": new_skips, "substitutions": substitutions}


def _worker_init(_):
    torch.set_num_threads(1)  # one core per worker: the parallelism is across workers


class PairLoader:
    """Iterable over batch dicts for one rank; holds the SkipCounter (``loader.skips``) of the whole run.

    Args:
        source, cfg, seed, interp, antialias, photometric: see CopyPairDataset.
        batch_size: pairs per batch (per rank).
        num_workers: DataLoader worker processes (0 = render in this process).
        batch_sampler: anything iterable over lists of PairKey (default: EpochBatchSampler over the source,
            sharded by rank / world_size); ``set_epoch`` is forwarded to it when it has one.
        pin_memory: page-locked batches (for CUDA training: asynchronous host->device copies).
        dataset: a map-style dataset over PairKeys yielding CopyPairDataset's sample dict, used instead of it.
        counts_patch_size: the workers also count patch overlaps (``counts_qr``/``counts_rq``, C++ kernel, one
            thread each) with this patch size: for a trainer on the CPU, whose own cores are busy with the model.
    """

    def __init__(self, source: ImageSource, cfg: AugmentConfig, batch_size: int, num_workers: int = 0,
                 seed: int = 0, rank: int = 0, world_size: int = 1, batch_sampler=None, interp: str = "bilinear",
                 antialias: bool = True, photometric: bool = True, prefetch_factor: int | None = None,
                 pin_memory: bool = False, dataset: torch.utils.data.Dataset | None = None,
                 counts_patch_size: int | None = None):
        # ``dataset`` replaces the augmented pairs (e.g. data.supervised.SupervisedPairDataset); same sample dict
        self.dataset = dataset or CopyPairDataset(source, cfg, seed, interp, antialias, photometric)
        self.batch_sampler = batch_sampler or EpochBatchSampler(len(source), batch_size, seed, True, rank,
                                                                world_size)
        self.skips = SkipCounter()
        source.skips.log = False  # the source (and its copies in workers) stays quiet; self.skips logs once per file
        kwargs = {} if num_workers == 0 else {"worker_init_fn": _worker_init, "persistent_workers": True,
                                              "prefetch_factor": prefetch_factor or 2}
        collate = functools.partial(collate_pairs, counts_patch_size=counts_patch_size)  # picklable for workers
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=self.batch_sampler,
                                                  collate_fn=collate, num_workers=num_workers,
                                                  pin_memory=pin_memory, **kwargs)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batch_sampler)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            for name, reason in batch["skipped"]:
                self.skips.record(name, reason)
            self.skips.substitutions += batch["substitutions"]
            yield batch
