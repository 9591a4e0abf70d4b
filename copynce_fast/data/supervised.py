"""Supervised pairs for fine-tuning (REFERENCE.md §6.1): known (query, reference) copies, no augmentation.

Each item is ``(resize(query), resize(reference))`` to S x S (bicubic, aspect not kept, as the reference's
evaluation preprocessing). The true geometry between a real copy and its original is unknown, so the pair's
``copynce`` flag is False and its views are placeholders; the fine-tuning recipes train without CopyNCE.
Unusable files are recorded in the source's SkipCounter and the item is replaced by the next pair.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from copynce_fast.data.plan_sampler import PairKey
from copynce_fast.data.sources import FileSource
from copynce_fast.pixtrace.view import View

__all__ = ["read_pairs_csv", "SupervisedPairDataset"]

_MAX_TRIES = 8


def read_pairs_csv(path) -> list[tuple[str, str]]:
    """Rows ``query_path,reference_path`` (header required; relative paths are relative to the CSV's folder)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data.pairs_csv: no file at {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"query_path", "reference_path"} <= set(reader.fieldnames):
            raise ValueError(f"data.pairs_csv: {path} needs a header with query_path,reference_path, "
                             f"got {reader.fieldnames}")
        rows = [(r["query_path"], r["reference_path"]) for r in reader]
    if not rows:
        raise ValueError(f"data.pairs_csv: {path} lists no pairs")
    resolve = lambda p: str(p if Path(p).is_absolute() else path.parent / p)  # noqa: E731
    return [(resolve(q), resolve(r)) for q, r in rows]


class SupervisedPairDataset(torch.utils.data.Dataset):
    """``ds[PairKey]`` -> the sample dict of ``CopyPairDataset`` for a known copy pair (see module docstring)."""

    def __init__(self, pairs: list[tuple[str, str]], size: int):
        self.size = size
        self.queries = FileSource([q for q, _ in pairs])
        self.references = FileSource([r for _, r in pairs])
        self.source = self.references  # PairLoader reads skips from here
        self.queries.skips = self.references.skips  # one counter for both sides

    def __len__(self) -> int:
        return len(self.references)

    def _resized(self, arr: np.ndarray) -> torch.Tensor:
        im = Image.fromarray(arr).resize((self.size, self.size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)

    def __getitem__(self, key) -> dict:
        key = key if isinstance(key, PairKey) else PairKey(int(key))
        n_known = len(self.references.skips.files)
        n = len(self)
        for attempt in range(_MAX_TRIES):
            i = (key.index + attempt) % n
            q, r = self.queries.decode(i), self.references.decode(i)
            if q is not None and r is not None:
                break
        else:
            raise RuntimeError(f"no usable pair found after {_MAX_TRIES} tries from pair {key.index}")
        placeholder = View((self.size, self.size))
        return {"query": self._resized(q), "reference": self._resized(r), "query_view": placeholder,
                "reference_view": placeholder, "is_copy": True, "copynce": False, "source_index": i,
                "skipped": list(self.references.skips.files.items())[n_known:], "substitutions": attempt}
