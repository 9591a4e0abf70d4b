"""Batch samplers: which pairs make each batch of an epoch, for one rank, resumable mid-epoch.

A batch sampler yields lists of :class:`~copynce_fast.data.plan_sampler.PairKey` (index, epoch, optional query
index); every loader (torch or DALI) renders whatever keys it is given, so a trainer can supply its own order --
e.g. hard-negative pairs (``query_index`` = a mined neighbour) or, for the DISC-style descriptor recipe, the
anchors' neighbours as extra positive pairs. ``set_epoch(epoch, start_batch)`` is how a resumed run continues.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from copynce_fast.data.plan_sampler import PairKey, derive_seed

__all__ = ["EpochBatchSampler", "NeighbourBatchSampler"]


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
