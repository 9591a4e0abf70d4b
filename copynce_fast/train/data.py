"""The trainer's view of the data: an image source, the augmentation preset, the pair sampler and the loader.

The trainer owns the index order (``PairBatchSampler``: seeded per epoch, sharded by rank, resumable
mid-epoch, hard-negative partners); ``copynce_fast.data`` renders the pairs and packs their geometry.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Iterator

import torch

from copynce_fast.config import Config
from copynce_fast.data.loader import PairKey, PairLoader, to_device
from copynce_fast.data.presets import AugmentConfig, descriptor_preset, matcher_preset
from copynce_fast.data.sources import (ArraySource, ImageSource, bundled_source, disc21_source, file_list_source,
                                       folder_source, synthetic_source)
from copynce_fast.train.hnm import PairBatchSampler, load_knn_table
from copynce_fast.utils.dist import DistInfo

__all__ = ["TrainData", "build_train_data", "open_source", "augment_config"]

log = logging.getLogger("copynce_fast.train")


def open_source(spec: str, synthetic_images: int = 0, seed: int = 0) -> ImageSource:
    """An image source from ``data.source``: "builtin", a folder, a .txt file list, or "disc21:ROOT"."""
    from pathlib import Path
    if spec == "builtin":
        bundled = bundled_source()
        images = [bundled.decode(i) for i in range(len(bundled))]
        names = [bundled.name(i) for i in range(len(bundled))]
        if synthetic_images:
            syn = synthetic_source(synthetic_images, seed=seed)
            images += [syn.decode(i) for i in range(len(syn))]
            names += [syn.name(i) for i in range(len(syn))]
        return ArraySource(images, names)
    if synthetic_images:
        raise ValueError("data.synthetic_images: only supported with data.source=builtin")
    if spec.startswith("disc21:"):
        return disc21_source(spec[len("disc21:"):], "train")
    path = Path(spec)
    if path.is_dir():
        return folder_source(path)
    if path.is_file():
        return file_list_source(path)
    raise ValueError(f"data.source: {spec!r} is not 'builtin', a folder, a file list or disc21:ROOT")


def augment_config(cfg: Config) -> AugmentConfig:
    base = descriptor_preset() if cfg.data.preset == "descriptor" else matcher_preset()
    return replace(base, size=cfg.model.img_size, track_occluders=cfg.data.track_occluders,
                   positive_rate=cfg.data.positive_rate if cfg.model.kind == "matcher" else 1.0)


class _KeySampler:
    """Adapts the trainer's index batches to the loader's PairKey batches (same length, same order)."""

    def __init__(self, sampler: PairBatchSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[PairKey]]:
        epoch = self.sampler.epoch
        for batch in self.sampler:
            yield [PairKey(int(i), epoch) for i in batch]


@dataclass
class TrainData:
    source: ImageSource
    sampler: PairBatchSampler
    loader: PairLoader
    device: torch.device

    @property
    def num_items(self) -> int:
        return len(self.source)

    def batches(self) -> Iterator[dict]:
        """Batches of the sampler's current epoch (from its start batch), on the device, images normalised."""
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        for batch in self.loader:
            yield to_device(batch, self.device, dtype=dtype)


def build_train_data(cfg: Config, device: torch.device, dist_info: DistInfo) -> TrainData:
    source = open_source(cfg.data.source, cfg.data.synthetic_images, cfg.run.seed)
    descriptor_pairs = cfg.model.kind == "descriptor" and cfg.data.hard_negatives
    knn = load_knn_table(cfg.data.knn_path, len(source))[:, :cfg.data.knn_k] if cfg.data.knn_path else None
    sampler = PairBatchSampler(len(source), cfg.data.batch_size, seed=cfg.run.seed, rank=dist_info.rank,
                               world_size=dist_info.world_size, partners=descriptor_pairs, knn_table=knn)
    pairs = cfg.data.batch_size * (2 if descriptor_pairs else 1)
    loader = PairLoader(source, augment_config(cfg), pairs, num_workers=cfg.data.num_workers, seed=cfg.run.seed,
                        rank=dist_info.rank, world_size=dist_info.world_size, batch_sampler=_KeySampler(sampler))
    if cfg.model.kind == "matcher" and cfg.data.hard_negatives and knn is not None:
        log.info("matcher hard negatives from %s are drawn by the loader's negative sampling", cfg.data.knn_path)
    return TrainData(source, sampler, loader, device)
