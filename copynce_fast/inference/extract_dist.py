"""Descriptor extraction on N ranks (``torchrun``): each rank extracts its slice, rank 0 merges the manifest.

Layout of the output directory ``out`` (a :class:`~copynce_fast.search.features.FeatureWriter` shard
directory whose ``index.json`` lists every rank's shards, so ``load_features(out)`` reads them all)::

    out/index.json                 the merged manifest (written by rank 0 only)
    out/rank_00000/index.json      rank 0's own shard directory (FeatureWriter), resumable on its own
    out/rank_00000/shard_*.npz
    out/rank_00001/...

A run goes:

1. rank 0 merges the rank directories already there into ``out/index.json`` (an earlier run may have been
   killed before its final merge); barrier;
2. every rank reads the ids stored in the manifest (the same files, the same answer on every rank), drops
   them from ``items`` and takes its contiguous slice of what is left (``np.array_split`` order);
3. each rank extracts its slice into ``out/rank_<r>/`` with :func:`~copynce_fast.inference.extract.extract_features`
   (batched, bad files skipped and reported; a killed rank loses at most its unflushed rows);
4. barrier; rank 0 merges again; barrier. Counts, skipped files and completeness are gathered to every rank.

Resuming is per rank and does not need the same number of ranks: whatever any rank stored is skipped by all.
A single-process extraction into ``out`` later (``extract_features(..., out)``) reads the merged manifest
and appends top-level shards, which later merges keep. Without ``torch.distributed`` initialised, or with
one rank, this is ``extract_features`` into ``out/rank_00000`` plus the manifest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from copynce_fast.inference.extract import ExtractResult, extract_features
from copynce_fast.inference.images import ImageItem
from copynce_fast.models.loading import LoadedModel
from copynce_fast.search.features import merge_part_directories, stored_ids

RANK_DIR = "rank_{:05d}"


def rank_slice(n: int, rank: int, world_size: int) -> slice:
    """Contiguous slice of ``n`` items for ``rank`` (``np.array_split`` sizes: they differ by at most one)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def rank_directories(out: Path) -> list[Path]:
    """The ``rank_*`` shard directories under ``out`` (with an index.json), in rank order."""
    return sorted(p for p in out.glob("rank_*") if p.is_dir() and (p / "index.json").is_file())


def merge_rank_shards(out: str | Path) -> int:
    """Merge every ``out/rank_*`` directory into ``out/index.json``; returns the number of rows listed.
    Run it (or rerun the distributed extraction) before resuming a killed distributed run in one process."""
    out = Path(out)
    parts = rank_directories(out)
    if not parts and not (out / "index.json").is_file():
        return 0
    return int(merge_part_directories(out, parts)["count"])


def extract_features_distributed(loaded: LoadedModel, items: Sequence[ImageItem], out: str | Path,
                                 **kwargs) -> ExtractResult:
    """Extract ``items`` into the directory ``out`` across the ranks of the initialised process group.

    Collective: every rank calls it with the same ``items`` and ``out`` (a filesystem all ranks see).

    Args:
        loaded: this rank's descriptor (on this rank's device).
        items: all images (unique ids), the same list on every rank.
        out: output directory (a ``.npz`` path is refused: merge then :func:`consolidate` if one file is needed).
        **kwargs: :func:`~copynce_fast.inference.extract.extract_features` options (batch_size, num_workers,
            amp, dtype, shard_size, max_images -- per rank --, progress, loader).

    Returns:
        :class:`ExtractResult` over all ranks (the same on every rank): ``extracted`` summed, ``skipped``
        concatenated, ``complete`` only when every rank finished its slice.
    """
    import torch.distributed as dist

    out = Path(out)
    if out.suffix == ".npz":
        raise ValueError(f"out {out}: distributed extraction writes a shard directory; give a directory "
                         f"(search/features.consolidate makes one .npz of it afterwards)")
    if out.is_file():
        raise ValueError(f"out {out}: is a file; give a directory")
    on = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if on else (0, 1)
    if len({it.id for it in items}) != len(items):
        raise ValueError("items contain duplicate ids")

    def barrier():
        if on:
            dist.barrier()

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        merge_rank_shards(out)
    barrier()
    done = set(stored_ids(out))
    todo = [it for it in items if it.id not in done]
    mine = todo[rank_slice(len(todo), rank, world)]
    if rank != 0 and "progress" in kwargs:
        kwargs = {**kwargs, "progress": False}  # one progress bar, rank 0's
    error = None
    try:
        result = extract_features(loaded, mine, out / RANK_DIR.format(rank), **kwargs)
    except Exception as e:  # every rank must reach the barriers below, or the others hang
        error, result = e, ExtractResult(out=out, total=len(mine), already_done=0, extracted=0, complete=False)
    summary = (error is None, result.extracted, result.skipped, result.complete)
    everyone = [summary]
    if on:
        everyone = [None] * world
        dist.all_gather_object(everyone, summary)
    if error is not None:
        raise error
    failed = [r for r, s in enumerate(everyone) if not s[0]]
    if failed:
        raise ValueError(f"extraction failed on rank(s) {failed} (see their error messages)")
    if rank == 0:
        merge_rank_shards(out)
    barrier()
    return ExtractResult(out=out, total=len(items), already_done=len(done),
                         extracted=int(np.sum([s[1] for s in everyone])),
                         skipped=[x for s in everyone for x in s[2]],
                         complete=all(s[3] for s in everyone))
