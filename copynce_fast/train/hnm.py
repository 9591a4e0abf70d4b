"""Global hard-negative mining (REFERENCE.md §4.6): a k-NN table of the training set and a batch sampler
that puts each anchor's hard negative in the same batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from copynce_fast.eval.search import knn

__all__ = ["build_knn_table", "save_knn_table", "load_knn_table", "PairBatchSampler"]


def build_knn_table(features, k: int, *, backend: str = "auto") -> np.ndarray:
    """Nearest neighbours of every training image among the others: [N, k] int32 (self removed).

    Args:
        features: [N, D] L2-normalised descriptors (numpy or torch; the search runs where they are).
        k: neighbours to keep per image (the reference keeps 7 for the descriptor, 127 for the matcher).
    """
    n = len(features)
    if not 0 < k < n:
        raise ValueError(f"k: must be in [1, N-1] = [1, {n - 1}], got {k}")
    _, idx = knn(features, features, k + 1, backend=backend)
    idx = idx.cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
    # Drop the image itself wherever it appears (duplicates may rank another copy first); keep k others.
    out = np.empty((n, k), dtype=np.int32)
    for i in range(n):
        row = idx[i][idx[i] != i]
        out[i] = row[:k]
    return out


def save_knn_table(path, table: np.ndarray) -> None:
    np.save(Path(path), np.asarray(table, dtype=np.int32))


def load_knn_table(path, num_items: int | None = None) -> np.ndarray:
    """Load an [N, k] int table (.npy); checks the row count and the index range."""
    table = np.load(Path(path), allow_pickle=False)
    if table.ndim != 2 or not np.issubdtype(table.dtype, np.integer):
        raise ValueError(f"knn_path: expected an [N, k] integer array in {path}, got {table.shape} {table.dtype}")
    if num_items is not None and (len(table) != num_items or table.max(initial=0) >= num_items or table.min() < 0):
        raise ValueError(f"knn_path: table {path} has {len(table)} rows / max index {table.max()} but the dataset "
                         f"has {num_items} images")
    return table.astype(np.int32)


class PairBatchSampler:
    """Batches of source indices for one rank, deterministic in (seed, epoch), resumable mid-epoch.

    Each epoch draws a seeded permutation of all items; rank r takes items r, r+W, ... . With ``partners``
    (hard-negative mode), a batch of ``batch_size`` anchors becomes ``[anchors; partners]`` (2·batch_size
    pairs), each partner drawn from the anchor's k-NN row (or uniformly when no table is given), so in-batch
    InfoNCE and KoLeo always see each anchor's hard negative.
    """

    def __init__(self, num_items: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 partners: bool = False, knn_table: np.ndarray | None = None):
        if batch_size <= 0 or num_items < batch_size * world_size:
            raise ValueError(f"batch_size: need 0 < batch_size * world_size <= num_items, got batch_size="
                             f"{batch_size}, world_size={world_size}, num_items={num_items}")
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.partners, self.knn_table = partners, knn_table
        self.epoch, self.start_batch = 0, 0

    def __len__(self) -> int:
        return (self.num_items // self.world_size) // self.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch and skip its first ``start_batch`` batches (for resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        mine = rng.permutation(self.num_items)[self.rank::self.world_size]
        for b in range(self.start_batch, len(self)):
            anchors = mine[b * self.batch_size:(b + 1) * self.batch_size]
            if not self.partners:
                yield anchors.tolist()
                continue
            prng = np.random.default_rng([self.seed, self.epoch, self.rank, b])
            if self.knn_table is not None:
                cols = prng.integers(0, self.knn_table.shape[1], size=len(anchors))
                partners = self.knn_table[anchors, cols]
            else:
                partners = (anchors + prng.integers(1, self.num_items, size=len(anchors))) % self.num_items
            yield anchors.tolist() + partners.tolist()
