"""The trainer's view of the data: an image source, the augmentation preset, the pair sampler and the loader.

The index order comes from ``copynce_fast.data.batch_samplers`` (seeded per epoch, sharded by rank, resumable
mid-epoch; ``NeighbourBatchSampler`` for hard negatives from a k-NN table), which also render the pairs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Iterator

import torch

from copynce_fast.config import Config
from copynce_fast.data.batch import to_device
from copynce_fast.data.batch_samplers import EpochBatchSampler, NeighbourBatchSampler
from copynce_fast.data.siblings import SiblingBatchSampler
from copynce_fast.data.torch_loader import PairLoader
from copynce_fast.data.presets import AugmentConfig, descriptor_preset, matcher_preset
from copynce_fast.data.sources import ImageSource, open_source
from copynce_fast.models.vit import PATCH_SIZE
from copynce_fast.train.hnm import load_knn_table
from copynce_fast.utils.dist import DistInfo

__all__ = ["TrainData", "build_train_data", "train_source", "augment_config", "resolve_backend"]

log = logging.getLogger("copynce_fast.train")


def train_source(cfg: Config) -> ImageSource:
    """The training images: ``data.source`` in the package's one grammar (:func:`open_source`)."""
    if cfg.data.synthetic_images and cfg.data.source != "builtin":
        raise ValueError("data.synthetic_images: only supported with data.source=builtin")
    try:
        return open_source(cfg.data.source, synthetic_images=cfg.data.synthetic_images, seed=cfg.run.seed)
    except ValueError as e:
        raise ValueError(f"data.source: {e}") from None


def augment_config(cfg: Config) -> AugmentConfig:
    base = descriptor_preset() if cfg.data.preset == "descriptor" else matcher_preset()
    return replace(base, size=cfg.model.img_size, track_occluders=cfg.data.track_occluders,
                   copynce_on_negatives=cfg.data.copynce_on_negatives,
                   positive_rate=cfg.data.positive_rate if cfg.model.kind == "matcher" else 1.0)


class StepStream:
    """The batches of a run from one step on, epoch after epoch, as one iterable of PairKey lists: epoch ``e`` is
    the first ``steps_per_epoch`` batches of ``sampler.epoch_keys(e)`` (what a per-epoch loop sees). Handed to the
    torch loader as its batch sampler, one loader pass spans many small epochs: no pipeline restart at each end."""

    def __init__(self, sampler, steps_per_epoch: int):
        self.sampler, self.steps_per_epoch, self.step = sampler, steps_per_epoch, 0

    def start_at(self, step: int) -> None:
        self.step = int(step)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[list]:
        epoch, start = divmod(self.step, self.steps_per_epoch)
        while True:  # the trainer stops iterating at its last step
            yield from self.sampler.epoch_keys(epoch)[start:self.steps_per_epoch]
            epoch, start = epoch + 1, 0


@dataclass
class TrainData:
    source: ImageSource
    sampler: EpochBatchSampler  # or NeighbourBatchSampler (hard negatives), or a SiblingBatchSampler around either
    loader: PairLoader | None  # the torch CPU executor (None with DALI); its batch sampler is ``stream``
    device: torch.device
    stream: StepStream  # the run's batches across epochs (the torch loader's batch sampler); steps_per_epoch
    dali_args: dict | None = None  # DaliPairLoader arguments; built at the first epoch that is iterated
    _dali: object = None

    @property
    def streams(self) -> bool:
        """True when :meth:`batches` runs across epoch ends (the torch loader); DALI yields one epoch a call."""
        return self.loader is not None

    @property
    def num_items(self) -> int:
        return len(self.source)

    @property
    def backend(self) -> str:
        return "torch" if self.loader is not None else "dali"

    def batches(self, step: int = 0) -> Iterator[dict]:
        """Batches from global step ``step`` on, on the device, images normalised: with the torch loader epoch
        after epoch without end (the caller stops); with DALI the rest of that step's epoch."""
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        if self.loader is not None:
            self.stream.start_at(step)
            for batch in self.loader:
                yield to_device(batch, self.device, dtype=dtype)
            return
        self.sampler.set_epoch(*divmod(step, self.stream.steps_per_epoch))
        if self._dali is None:
            from copynce_fast.data.dali_loader import DaliPairLoader  # lazy: DALI is an optional extra
            # DALI numbers its epochs itself from start_epoch on, one per full pass, in the sampler's order
            self._dali = DaliPairLoader(**self.dali_args, batch_sampler=self.sampler, start_epoch=self.sampler.epoch)
        skip = self.sampler.start_batch  # a resumed run re-renders and drops the batches it already trained on
        for k, batch in enumerate(self._dali):
            if k >= skip:
                yield to_device(batch, self.device, dtype=dtype)


def resolve_backend(backend: str, device: torch.device) -> str:
    """"auto" -> DALI on CUDA when nvidia-dali is installed, else the torch CPU executor."""
    if backend == "auto":
        import importlib.util
        dali = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
        return "dali" if device.type == "cuda" and dali else "torch"
    if backend not in ("dali", "torch"):
        raise ValueError(f"data.backend: must be auto, dali or torch, got {backend!r}")
    return backend


def _supervised_data(cfg: Config, device: torch.device, dist_info: DistInfo) -> TrainData:
    """Known copy pairs from ``data.pairs_csv`` (REFERENCE.md §6.1 fine-tuning), rendered by the torch loader."""
    from copynce_fast.data.supervised import SupervisedPairDataset, read_pairs_csv
    if cfg.loss.copynce_weight > 0:
        raise ValueError("data.pairs_csv: supervised pairs have no known geometry; set --loss.copynce_weight=0")
    ds = SupervisedPairDataset(read_pairs_csv(cfg.data.pairs_csv), cfg.model.img_size)
    sampler = EpochBatchSampler(len(ds), cfg.data.batch_size, seed=cfg.run.seed, rank=dist_info.rank,
                                world_size=dist_info.world_size)
    stream = StepStream(sampler, len(sampler))
    loader = PairLoader(ds.source, augment_config(cfg), sampler.batch_size, num_workers=cfg.data.num_workers,
                        seed=cfg.run.seed, batch_sampler=stream, pin_memory=device.type == "cuda", dataset=ds)
    return TrainData(ds.source, sampler, loader, device, stream)


def _with_siblings(cfg: Config, sampler, backend: str) -> tuple[object, str]:
    """``data.sibling_rate`` > 0: wrap the sampler so that a share of each batch is sibling pairs
    (copynce_fast/data/siblings.py); they need the torch loader (DALI renders references as whole-image resizes)."""
    if cfg.data.sibling_rate <= 0:
        return sampler, backend
    if cfg.model.kind != "descriptor":
        raise ValueError("data.sibling_rate: sibling pairs are in-batch hard negatives of the descriptor")
    if backend == "dali":
        if cfg.data.backend == "dali":
            raise ValueError("data.sibling_rate: the DALI loader renders every reference as a whole-image resize, "
                             "not a part; use data.backend=torch")
        log.info("data.sibling_rate: using the torch loader (the DALI loader has no part references)")
        backend = "torch"
    return SiblingBatchSampler(sampler, cfg.data.sibling_rate, seed=cfg.run.seed), backend


def build_train_data(cfg: Config, device: torch.device, dist_info: DistInfo) -> TrainData:
    if cfg.data.pairs_csv:
        if cfg.data.sibling_rate > 0:
            raise ValueError("data.sibling_rate: known-copy pairs (data.pairs_csv) have no plans to split")
        return _supervised_data(cfg, device, dist_info)
    source = train_source(cfg)
    knn = load_knn_table(cfg.data.knn_path, len(source))[:, :cfg.data.knn_k] if cfg.data.knn_path else None
    shard = dict(seed=cfg.run.seed, rank=dist_info.rank, world_size=dist_info.world_size)
    if knn is not None and cfg.data.hard_negatives:
        # descriptor: each anchor brings a neighbour as a second positive pair (batch_size anchors -> 2x pairs);
        # matcher: negatives' queries are neighbours half of the time
        descriptor = cfg.model.kind == "descriptor"
        sampler = NeighbourBatchSampler(knn, cfg.data.batch_size * (2 if descriptor else 1),
                                        mode=cfg.model.kind, positive_rate=cfg.data.positive_rate, **shard)
    else:
        if cfg.data.hard_negatives:
            log.warning("data.hard_negatives: no --data.knn_path, so batches hold random images, not mined "
                        "neighbours. Build the table from the descriptors of the weights you start from: "
                        "`copynce-fast extract SOURCE --weights W --out f.npz && copynce-fast knn f.npz --source "
                        "SOURCE --out knn.npy`, then --data.knn_path=knn.npy; or turn this off with "
                        "--data.hard_negatives=false")
        sampler = EpochBatchSampler(len(source), cfg.data.batch_size, **shard)
    sampler, backend = _with_siblings(cfg, sampler, resolve_backend(cfg.data.backend, device))
    stream = StepStream(sampler, cfg.optim.steps_per_epoch or len(sampler))  # checked by the trainer
    if backend == "dali":
        gpu = device.type == "cuda"
        dali_args = dict(source=source, cfg=augment_config(cfg), batch_size=sampler.batch_size,
                         device_id=(device.index or 0) if gpu else None, num_threads=max(cfg.data.num_workers, 1),
                         seed=cfg.run.seed, rank=dist_info.rank, world_size=dist_info.world_size, normalize=gpu,
                         dtype=torch.bfloat16)
        return TrainData(source, sampler, None, device, stream, dali_args)
    # on the CPU the workers count patch overlaps (C++ kernel), so the training process's cores stay on the model
    counts = PATCH_SIZE if device.type == "cpu" and cfg.loss.copynce_weight > 0 else None
    loader = PairLoader(source, augment_config(cfg), sampler.batch_size, num_workers=cfg.data.num_workers,
                        seed=cfg.run.seed, rank=dist_info.rank, world_size=dist_info.world_size,
                        batch_sampler=stream, pin_memory=device.type == "cuda", counts_patch_size=counts)
    return TrainData(source, sampler, loader, device, stream)
