"""Descriptor extraction over a list of images: batched, resumable, bad files counted and skipped.

Output (``out``):

* a directory: a :class:`~copynce_fast.search.features.FeatureWriter` shard directory (``index.json`` +
  ``shard_*.npz``), read back by ``load_features(dir)``;
* a path ending in ``.npz``: shards are written to ``<out>.parts/`` while running and, once every image is
  done, consolidated into the single ``.npz`` feature file (format in ``search/features.py``) and the parts
  folder removed.

Resuming: rerunning with the same output skips the ids already stored (the metadata -- model name, dim,
img_size, dtype -- must match, else ValueError). An interrupted run loses at most the rows not yet flushed
to a shard. ``max_images`` stops after that many new images (a clean interruption: the rows are flushed and
the run can be resumed). Images that fail to decode are skipped and reported, not stored, so a rerun tries
them again.

Pipeline: a torch ``DataLoader`` decodes and resizes in worker processes (uint8, 4× less to copy than
float), or DALI decodes and resizes (on the GPU with a CUDA model; ``loader``); the main process normalises on
the device and runs the descriptor under bf16 autocast on CUDA (fp32 on CPU). Descriptors are fp32 unit
vectors, stored as ``dtype``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from copynce_fast.data.decode import BadImage
from copynce_fast.inference.extract_dali import DaliImageBatches, dali_available
from copynce_fast.inference.images import ImageItem, load_image, normalize
from copynce_fast.models import CopyDescriptor
from copynce_fast.models.loading import LoadedModel
from copynce_fast.search.features import FeatureWriter, consolidate, load_features
from copynce_fast.search.whitening import Whitening
from copynce_fast.utils.device import autocast


class ImageDataset(Dataset):
    """``items[i]`` -> ``(i, uint8 [3, S, S])`` or ``(i, reason)`` when the file cannot be decoded.

    Paths are kept in one numpy byte-string array, not a list of Path objects: worker processes then share
    one buffer copy-on-write instead of touching (and so copying) a million Python objects each.
    """

    def __init__(self, items: Sequence[ImageItem], size: int,
                 loader: Callable[[Path, int], torch.Tensor] = load_image):
        self.paths = np.asarray([str(it.path).encode() for it in items], dtype=np.bytes_)
        self.size = size
        self.loader = loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.loader(Path(self.paths[i].decode()), self.size)
        except BadImage as e:
            return i, str(e)


def collate_images(batch):
    """Split decoded images from failures: ``(indices (n,) int64, images uint8 [n,3,S,S] | None,
    failures [(index, reason)])``."""
    ok = [(i, x) for i, x in batch if isinstance(x, torch.Tensor)]
    failures = [(i, x) for i, x in batch if not isinstance(x, torch.Tensor)]
    idx = torch.tensor([i for i, _ in ok], dtype=torch.int64)
    images = torch.stack([x for _, x in ok]) if ok else None
    return idx, images, failures


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, pin: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_images, pin_memory=pin, drop_last=False,
                      prefetch_factor=4 if num_workers > 0 else None)


Writer = TypeVar("Writer")


@dataclass(frozen=True)
class ResumableOutput:
    """Where a resumable extraction writes (module docstring): ``path`` itself when it is a shard directory; for
    a ``.npz`` file, its shards gather in ``directory`` (``<path>.parts/``) until every item is done. The image
    and the video extraction (:mod:`copynce_fast.video.extract`) share it: only their shards differ."""

    path: Path
    directory: Path

    @classmethod
    def at(cls, out: str | Path) -> "ResumableOutput":
        """The output ``out`` names; ValueError when a ``.npz`` path is a folder or a folder path is a file."""
        out = Path(out)
        if out.suffix == ".npz":
            if out.is_dir():
                raise ValueError(f"out {out}: is a directory; a .npz output must be a file")
            return cls(out, out.with_name(out.name + ".parts"))
        if out.is_file():
            raise ValueError(f"out {out}: is a file; give a directory, or a path ending in .npz")
        return cls(out, out)

    @property
    def single(self) -> bool:
        """True for a ``.npz`` file output."""
        return self.path != self.directory

    def finished_file(self) -> bool:
        """A ``.npz`` an earlier run consolidated: its rows seed a new parts folder when items are added."""
        return self.single and self.path.is_file() and not (self.directory / "index.json").exists()

    def check_stored(self, stored: Mapping, wanted: Mapping) -> None:
        """ValueError naming the first ``wanted`` metadata key the stored output holds differently."""
        for key, want in wanted.items():
            if stored.get(key) != want:
                raise ValueError(f"out {self.path}: holds {key}={stored.get(key)!r}, asked {key}={want!r}; write "
                                 f"elsewhere or delete it")

    def open(self, make_writer: Callable[[Path], Writer]) -> Writer:
        """``make_writer(directory)``, its refusal to resume a different extraction named as this output's."""
        try:
            return make_writer(self.directory)
        except ValueError as e:
            raise ValueError(f"out {self.path}: existing features were made differently ({e}); write elsewhere "
                             f"or delete it") from None

    def finish(self, writer, by_id: Mapping, failed: set[str], consolidate: Callable[[Path, Path], Path]) -> bool:
        """Whether the output is complete (every item stored or failed to decode in this run; a ``max_*`` limit
        may have cut it short); a complete ``.npz`` output is consolidated and its parts folder removed."""
        complete = all(i in failed for i in writer.remaining(by_id))
        if self.single and complete:
            consolidate(self.directory, self.path)
            shutil.rmtree(self.directory)
        return complete


def items_to_do(writer, by_id: Mapping, max_items: int | None) -> tuple[list, int]:
    """The items the writer does not hold yet, in order, at most ``max_items`` of them (None = all), and how
    many it already holds."""
    todo_ids = writer.remaining(by_id)
    already = len(by_id) - len(todo_ids)
    if max_items is not None:
        todo_ids = todo_ids[:max_items]
    return [by_id[i] for i in todo_ids], already


@dataclass
class ExtractResult:
    """What an extraction did. ``skipped``: ``(path, reason)`` of undecodable images (not stored)."""

    out: Path
    total: int
    already_done: int
    extracted: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = True


def extract_features(loaded: LoadedModel, items: Sequence[ImageItem], out: str | Path, *, batch_size: int = 64,
                     num_workers: int = 4, amp: str = "bf16", dtype: str = "float32", shard_size: int = 4096,
                     max_images: int | None = None, progress: bool = True, loader: str = "torch",
                     whitening: Whitening | None = None) -> ExtractResult:
    """Extract descriptors of ``items`` into ``out`` (see the module docstring), resuming what is there.

    Args:
        loaded: a descriptor from :func:`copynce_fast.models.loading.load_model`.
        items: the images (ids must be unique).
        out: shard directory, or a ``.npz`` file path.
        batch_size, num_workers: loader settings (workers decode in parallel processes).
        amp: "bf16" (autocast on CUDA) or "none".
        dtype: storage dtype, "float32" or "float16".
        shard_size: rows per shard file (the unit of crash safety).
        max_images: stop after this many new images (None = all).
        progress: tqdm progress bar.
        loader: "torch" (PIL decode in DataLoader workers), "dali" (DALI decode + resize, on the GPU when
            the model is on CUDA; :mod:`copynce_fast.inference.extract_dali`) or "auto" (DALI on CUDA when
            installed, else torch).
        whitening: PCA-whitening (:mod:`copynce_fast.search.whitening`) applied on the device before storing:
            the file then holds ``whitening.dim_out``-d rows and records ``meta["whitening"]`` = its digest.

    Returns:
        :class:`ExtractResult`.
    """
    if not isinstance(loaded.model, CopyDescriptor):
        raise ValueError(f"extraction needs a descriptor model, got a {loaded.kind}")
    if batch_size < 1 or num_workers < 0 or shard_size < 1:
        raise ValueError(f"bad loader settings: batch_size={batch_size}, num_workers={num_workers}, "
                         f"shard_size={shard_size}")
    if loader not in ("auto", "torch", "dali"):
        raise ValueError(f"loader must be auto, torch or dali, got {loader!r}")
    if max_images is not None and max_images < 0:
        raise ValueError(f"max_images must be >= 0, got {max_images}")
    output = ResumableOutput.at(out)
    model: CopyDescriptor = loaded.model
    device = loaded.device
    if whitening is not None and whitening.dim_in != model.dim:
        raise ValueError(f"whitening: expects {whitening.dim_in}-d descriptors, the model makes {model.dim}-d")
    dim = model.dim if whitening is None else whitening.dim_out
    digest = None if whitening is None else whitening.digest

    by_id = {it.id: it for it in items}
    if len(by_id) != len(items):
        raise ValueError("items contain duplicate ids")
    seed = None
    if output.finished_file():
        seed = load_features(output.path)  # a finished .npz: new ids are added through a parts folder
        output.check_stored(seed.meta, {"model": loaded.name, "dim": dim, "img_size": loaded.img_size,
                                        "dtype": dtype, "whitening": digest})
        stored = set(seed.ids.tolist())
        if all(i in stored for i in by_id):
            return ExtractResult(out=output.path, total=len(items), already_done=len(items), extracted=0)
    extra = {"kind": "descriptor", **({"whitening": digest} if digest else {})}
    writer = output.open(lambda d: FeatureWriter(d, model=loaded.name, dim=dim, img_size=loaded.img_size,
                                                 dtype=dtype, shard_size=shard_size, extra=extra))
    output.check_stored(writer.meta, {"whitening": digest})  # extra keys are not compared by the writer itself
    if seed is not None:
        writer.append(seed.ids, seed.features, seed.norms)
        writer.flush()

    todo, already = items_to_do(writer, by_id, max_images)
    result = ExtractResult(out=output.path, total=len(items), already_done=already, extracted=0)
    failed: set[str] = set()

    if todo:
        if loader == "dali" or (loader == "auto" and device.type == "cuda" and dali_available()):
            batches = DaliImageBatches(todo, loaded.img_size, batch_size,
                                       (device.index or 0) if device.type == "cuda" else None, max(1, num_workers))
        else:
            batches = make_loader(ImageDataset(todo, loaded.img_size), batch_size, num_workers, device.type == "cuda")
        ids = np.asarray([it.id for it in todo])
        bar = tqdm(total=len(todo), unit="img", desc="extract", disable=not progress, dynamic_ncols=True)
        with writer, torch.inference_mode():
            for idx, images, failures in batches:
                result.skipped.extend((str(todo[i].path), reason) for i, reason in failures)
                failed.update(todo[i].id for i, _ in failures)
                if images is not None:
                    x = normalize(images, device)
                    with autocast(device, amp):
                        res = model(x)
                    feat = res["feat"] if whitening is None else whitening.apply(res["feat"].float())
                    # host sync once per batch: the writer needs the rows on the host anyway; the norms are the
                    # asymmetric (ASL) score's input (search --score asymmetric)
                    writer.append(ids[idx.numpy()], feat.float().cpu(), res["norm"].float().cpu())
                    result.extracted += len(idx)
                bar.update(len(idx) + len(failures))
        bar.close()

    result.complete = output.finish(writer, by_id, failed, consolidate)
    return result
