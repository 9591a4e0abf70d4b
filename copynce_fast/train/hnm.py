"""Global hard-negative mining (REFERENCE.md §4.6): the k-NN table of the training set.

The batches built from it are ``copynce_fast.data.batch_samplers.NeighbourBatchSampler``'s.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from copynce_fast.search.knn import knn
from copynce_fast.utils.safe_load import load_array

__all__ = ["build_knn_table", "save_knn_table", "load_knn_table"]


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


def load_knn_table(path, num_items: int | None = None, what: str = "data.knn_path") -> np.ndarray:
    """Load an [N, k] int table (.npy); checks the row count and the index range. Errors start with ``what``
    and the path (a pickled object array is refused, :mod:`copynce_fast.utils.safe_load`)."""
    if Path(path).suffix != ".npy":
        raise ValueError(f"{what} {path}: expected a .npy table from `copynce-fast knn`")
    table = load_array(path, what)
    if not isinstance(table, np.ndarray) or table.ndim != 2 or not np.issubdtype(table.dtype, np.integer):
        raise ValueError(f"{what} {path}: expected an [N, k] integer array, got {table.shape} {table.dtype}")
    if num_items is not None and (len(table) != num_items or table.max(initial=0) >= num_items or table.min() < 0):
        raise ValueError(f"{what} {path}: the table has {len(table)} rows / max index {table.max()} but the "
                         f"dataset has {num_items} images (build it with `copynce-fast knn` on the same source)")
    return table.astype(np.int32)
