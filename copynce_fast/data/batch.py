"""The batch dict every pair loader yields (torch and DALI alike), its collation, and ImageNet normalisation.

Batch dict:
    query, reference: [B, 3, S, S] uint8 (``to_device`` makes them normalised bf16/float on the GPU)
    paths_qr, paths_rq: PackedPaths (pack_pairs of the query / reference views, occluders included)
    is_copy: [B] bool (False = negative pair)   copynce: [B] bool   source_index: [B] int64 (the reference's)
    skipped: list of (file, reason) newly found unusable while making this batch
    substitutions: number of unusable samples replaced by others

Nothing image-sized crosses a loader except the images and the occluder masks inside the PackedPaths.
``IMAGENET_MEAN`` / ``IMAGENET_STD`` are the package's one copy of the normalisation statistics.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch

from copynce_fast.pixtrace.batch import pack_pairs

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "collate_pairs", "normalise_images", "to_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def collate_pairs(samples: Sequence[dict]) -> dict:
    """Stack pair samples (``query``/``reference`` images, traced views, flags) into the batch dict (runs inside
    the loader workers)."""
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
