"""The batch dict every pair loader yields (torch and DALI alike), its collation, and ImageNet normalisation.

Batch dict:
    query, reference: [B, 3, S, S] uint8 (``to_device`` makes them normalised bf16/float on the GPU)
    paths_qr, paths_rq: PackedPaths (pack_pairs of the query / reference views, occluders included)
    is_copy: [B] bool (False = negative pair)   copynce: [B] bool   source_index: [B] int64 (the reference's)
    skipped: list of (file, reason) newly found unusable while making this batch
    substitutions: number of unusable samples replaced by others
    counts_qr, counts_rq: [B, Lq, Lr + 1] / [B, Lr, Lq + 1] int32 patch overlap counts of paths_qr / paths_rq, only
        when the loader was asked for them (CPU training: the workers count, the training process does not)

Nothing image-sized crosses a loader except the images and the occluder masks inside the PackedPaths.
``IMAGENET_MEAN`` / ``IMAGENET_STD`` are the package's one copy of the normalisation statistics.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch.utils.data import default_collate

from copynce_fast.pixtrace.batch import pack_pairs
from copynce_fast.pixtrace.overlap_cpu import patch_overlap_cpu

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "collate_pairs", "normalise_images", "to_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def collate_pairs(samples: Sequence[dict], counts_patch_size: int | None = None) -> dict:
    """Stack pair samples (``query``/``reference`` images, traced views, flags) into the batch dict (runs inside
    the loader workers). ``counts_patch_size``: also count patch overlaps (``counts_qr``/``counts_rq``) with the
    C++ kernel on this worker's core, for a consumer on the CPU."""
    qv = [s["query_view"] for s in samples]
    rv = [s["reference_view"] for s in samples]
    paths_qr, paths_rq = pack_pairs(qv, rv)
    counts = {}
    if counts_patch_size is not None:
        counts = {"counts_qr": patch_overlap_cpu(paths_qr, counts_patch_size),
                  "counts_rq": patch_overlap_cpu(paths_rq, counts_patch_size)}
    # default_collate stacks tensors straight into shared memory inside a worker (no copy on the way out)
    return {
        "query": default_collate([s["query"] for s in samples]),
        "reference": default_collate([s["reference"] for s in samples]),
        "paths_qr": paths_qr,
        "paths_rq": paths_rq,
        "is_copy": torch.tensor([s["is_copy"] for s in samples], dtype=torch.bool),
        "copynce": torch.tensor([s["copynce"] for s in samples], dtype=torch.bool),
        "source_index": torch.tensor([s["source_index"] for s in samples], dtype=torch.int64),
        "skipped": [e for s in samples for e in s["skipped"]],
        "substitutions": sum(s["substitutions"] for s in samples),
        **counts,
    }


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
    for k in ("is_copy", "copynce", "source_index", "counts_qr", "counts_rq"):
        if k in batch:
            out[k] = batch[k].to(device, non_blocking=True)
    return out
