"""The torch loader: pairs from an image source, rendered by the CPU executor in DataLoader workers.

Batch dict (every executor yields the same keys):
    query, reference: [B, 3, S, S] uint8 (``to_device`` makes them normalised bf16/float on the GPU)
    paths_qr, paths_rq: PackedPaths (pack_pairs of the query / reference views, occluders included)
    is_copy: [B] bool (False = negative pair)   copynce: [B] bool   source_index: [B] int64 (the reference's)
    skipped: list of (file, reason) newly found unusable while making this batch

Index order comes from a batch sampler yielding lists of ``PairKey`` (index, epoch, optional query index), so a
trainer can supply its own order -- e.g. hard-negative pairs (``query_index`` = a mined neighbour) or, for the
DISC-style descriptor recipe, the anchors' neighbours as extra positive pairs. Each key's plans are seeded by
(seed, epoch, index, query index). Nothing image-sized crosses the loader except the images and the occluder
masks inside the PackedPaths.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from copynce_fast.data.executor_torch import render_plan, to_tensor_image
from copynce_fast.data.presets import AugmentConfig
from copynce_fast.data.sampler import PairPlan, derive_seed, sample_pair
from copynce_fast.data.sources import ImageSource, SkipCounter
from copynce_fast.pixtrace.batch import pack_pairs

__all__ = ["PairKey", "EpochBatchSampler", "NeighbourBatchSampler", "CopyPairDataset", "collate_pairs", "PairLoader",
           "plan_pair",
           "to_device", "normalise_images", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MAX_TRIES = 8


@dataclass(frozen=True)
class PairKey:
    """What a batch sampler yields per pair."""

    index: int  # source index of the reference (and of the query for a copy)
    epoch: int = 0
    query_index: int | None = None  # None: copy with probability positive_rate; else the query's source


class EpochBatchSampler:
    """Batches of PairKeys for one rank: a seeded permutation per epoch, split by rank, full batches only."""

    def __init__(self, num_images: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1):
        if batch_size < 1 or num_images < 1:
            raise ValueError(f"batch_size/num_images: must be >= 1, got {batch_size}, {num_images}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: must be in [0, {world_size}), got {rank}")
        self.num_images, self.batch_size, self.seed, self.shuffle = num_images, batch_size, seed, shuffle
        self.rank, self.world_size, self.epoch, self.start_batch = rank, world_size, 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; ``start_batch`` skips its first batches (a resumed run continues mid-epoch)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        return (self.num_images // self.world_size) // self.batch_size

    def epoch_keys(self, epoch: int) -> list[list[PairKey]]:
        """This rank's batches for ``epoch`` (every rank gets the same number; the remainder is dropped)."""
        order = np.arange(self.num_images)
        if self.shuffle:
            order = np.random.default_rng(derive_seed(self.seed, epoch, 123)).permutation(self.num_images)
        per_rank = self.num_images // self.world_size
        mine = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        b = self.batch_size
        return [[PairKey(int(i), epoch) for i in mine[k * b:(k + 1) * b]] for k in range(len(mine) // b)]

    def __iter__(self) -> Iterator[list[PairKey]]:
        return iter(self.epoch_keys(self.epoch)[self.start_batch:])


class NeighbourBatchSampler(EpochBatchSampler):
    """Hard-negative batches from a kNN table (the reference's global hard negative mining, REFERENCE §4.6).

    ``mode="descriptor"`` (DISC-style "force" HNM): every anchor A of the epoch permutation brings one of its
    ``neighbours[A]`` H drawn uniformly, both as copy pairs, so each batch holds B/2 anchor/neighbour pairs
    and the in-batch negatives are hard. ``mode="matcher"``: every anchor is a copy pair with probability
    ``positive_rate``; otherwise a negative whose query is a random neighbour (probability ``hard_p``) or a
    random image.

    Args:
        neighbours: [N, K] int array of each image's nearest neighbours (itself excluded).
        batch_size: pairs per batch (even for "descriptor").
        seed, shuffle, rank, world_size: as EpochBatchSampler (anchors are sharded by rank).
    """

    def __init__(self, neighbours, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, mode: str = "descriptor", positive_rate: float = 0.3, hard_p: float = 0.5):
        self.neighbours = np.asarray(neighbours, dtype=np.int64)
        if self.neighbours.ndim != 2 or self.neighbours.shape[1] < 1:
            raise ValueError(f"neighbours: expected an [N, K] int array, got shape {self.neighbours.shape}")
        if mode not in ("descriptor", "matcher"):
            raise ValueError(f"mode: expected 'descriptor' or 'matcher', got {mode!r}")
        if mode == "descriptor" and batch_size % 2:
            raise ValueError(f"batch_size: must be even in descriptor mode (anchor + neighbour), got {batch_size}")
        n = len(self.neighbours)
        super().__init__(n, batch_size, seed, shuffle, rank, world_size)
        self.mode, self.positive_rate, self.hard_p = mode, positive_rate, hard_p

    def __len__(self) -> int:
        per_rank = self.num_images // self.world_size
        anchors_per_batch = self.batch_size // 2 if self.mode == "descriptor" else self.batch_size
        return per_rank // anchors_per_batch

    def epoch_keys(self, epoch: int) -> list[list[PairKey]]:
        rng = np.random.default_rng(derive_seed(self.seed, epoch, 456, self.rank))
        per_rank = self.num_images // self.world_size
        order = np.arange(self.num_images)
        if self.shuffle:
            order = np.random.default_rng(derive_seed(self.seed, epoch, 123)).permutation(self.num_images)
        anchors = order[self.rank * per_rank:(self.rank + 1) * per_rank].tolist()  # this rank's share
        keys = []
        for a in anchors:
            nb = int(self.neighbours[a, rng.integers(self.neighbours.shape[1])])
            if self.mode == "descriptor":
                keys += [PairKey(a, epoch), PairKey(nb, epoch)]
            elif rng.random() < self.positive_rate:
                keys.append(PairKey(a, epoch, a))
            else:
                rand = int((a + 1 + rng.integers(self.num_images - 1)) % self.num_images)
                q = nb if rng.random() < self.hard_p else rand
                keys.append(PairKey(a, epoch, q))
        b = self.batch_size
        return [keys[k * b:(k + 1) * b] for k in range(len(keys) // b)]


def plan_pair(source: ImageSource, cfg: AugmentConfig, seed: int, key: PairKey) -> tuple[PairPlan, int]:
    """The pair for ``key``, skipping unusable images: (plan, substitutions made). Decodes nothing."""
    n = len(source)
    for attempt in range(_MAX_TRIES):
        idx = (key.index + attempt * 7919) % n  # a deterministic substitute for an unusable reference
        if source.hw(idx) is None:
            continue
        qi = key.query_index
        if qi is not None and (qi == key.index or source.hw(qi) is None):
            qi = idx if qi == key.index else None
        return sample_pair(cfg, seed, key.epoch, idx, source.hw, n, qi), attempt
    raise RuntimeError(f"no usable image found after {_MAX_TRIES} tries from index {key.index}; "
                       f"skipped so far: {source.skips.skipped}")


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
        for _ in range(_MAX_TRIES):
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
            raise RuntimeError(f"could not render a pair for {key} after {_MAX_TRIES} tries")
        tensors = {i: to_tensor_image(a) for i, a in images.items()}

        def render(plan):
            other = tensors[plan.overlay.index] if plan.overlay is not None else None
            return render_plan(plan, tensors[plan.source_index], other, self.interp, self.antialias,
                               self.photometric)

        qv, rv = pair.traced_views()
        new_skips = list(self.source.skips.files.items())[n_known:]
        return {"query": render(pair.query), "reference": render(pair.reference), "query_view": qv,
                "reference_view": rv, "is_copy": pair.is_copy, "copynce": pair.copynce,
                "source_index": pair.reference.source_index, "skipped": new_skips, "substitutions": substitutions}


def collate_pairs(samples: Sequence[dict]) -> dict:
    """Stack a list of CopyPairDataset samples into the batch dict (runs inside the workers)."""
    qv = [s["query_view"] for s in samples]
    rv = [s["reference_view"] for s in samples]
    paths_qr, paths_rq = pack_pairs(qv, rv)
    return {
        "query": torch.stack([s["query"] for s in samples]),
        "reference": torch.stack([s["reference"] for s in samples]),
        "paths_qr": paths_qr,
        "paths_rq": paths_rq,
        "is_copy": torch.tensor([s["is_copy"] for s in samples], dtype=torch.bool),
        "copynce": torch.tensor([s["copynce"] for s in samples], dtype=torch.bool),
        "source_index": torch.tensor([s["source_index"] for s in samples], dtype=torch.int64),
        "skipped": [e for s in samples for e in s["skipped"]],
        "substitutions": sum(s["substitutions"] for s in samples),
    }


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
    """

    def __init__(self, source: ImageSource, cfg: AugmentConfig, batch_size: int, num_workers: int = 0,
                 seed: int = 0, rank: int = 0, world_size: int = 1, batch_sampler=None, interp: str = "bilinear",
                 antialias: bool = True, photometric: bool = True, prefetch_factor: int | None = None,
                 pin_memory: bool = False, dataset: torch.utils.data.Dataset | None = None):
        # ``dataset`` replaces the augmented pairs (e.g. data.supervised.SupervisedPairDataset); same sample dict
        self.dataset = dataset or CopyPairDataset(source, cfg, seed, interp, antialias, photometric)
        self.batch_sampler = batch_sampler or EpochBatchSampler(len(source), batch_size, seed, True, rank,
                                                                world_size)
        self.skips = SkipCounter()
        source.skips.log = False  # the source (and its copies in workers) stays quiet; self.skips logs once per file
        kwargs = {} if num_workers == 0 else {"worker_init_fn": _worker_init, "persistent_workers": True,
                                              "prefetch_factor": prefetch_factor or 2}
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=self.batch_sampler,
                                                  collate_fn=collate_pairs, num_workers=num_workers,
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


def normalise_images(x: torch.Tensor, device, dtype=torch.bfloat16, mean=IMAGENET_MEAN, std=IMAGENET_STD
                     ) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> ImageNet-normalised ``dtype`` on ``device`` (float input passes through)."""
    x = x.to(device, non_blocking=True)
    if x.is_floating_point():
        return x
    m, s = _mean_std(str(x.device), tuple(mean), tuple(std))
    return ((x.float() - m) / s).to(dtype)


@functools.lru_cache(maxsize=8)
def _mean_std(device: str, mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalisation constants, made on the device once (a fresh host->device copy every step would block)."""
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    return m, s


def to_device(batch: dict, device, dtype=torch.bfloat16, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    """Move a batch to ``device``: images normalised to ``dtype`` [B, 3, S, S], paths moved, flags moved."""
    out = dict(batch)
    for k in ("query", "reference"):
        out[k] = normalise_images(batch[k], device, dtype, mean, std)
    for k in ("paths_qr", "paths_rq"):
        out[k] = batch[k].to(device, non_blocking=True)
    for k in ("is_copy", "copynce", "source_index"):
        out[k] = batch[k].to(device, non_blocking=True)
    return out
