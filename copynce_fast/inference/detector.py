"""``CopyDetector``: find copies from Python -- embed images, index a collection, search it, compare a pair.

    from copynce_fast import CopyDetector
    det = CopyDetector.from_checkpoint("descriptor.pt", device="cuda")   # or a training run directory
    feats = det.embed(["a.jpg", pil_image, uint8_tensor])                 # [N, D] float32, L2-normalised
    index = det.index("/photos", out="photos.idx")                        # resumable, progress bar
    ids, scores = index.search(det.embed(["query.jpg"]), k=10)            # (N, k) each, best first
    score, picture = det.compare("a.jpg", "b.jpg")                         # descriptor or matcher checkpoint

It is a thin layer over the library: model loading (:mod:`copynce_fast.models.loading`), image decoding and
preprocessing (:mod:`copynce_fast.inference.images`: the project decoder, S×S bicubic resize, ImageNet
normalisation), the resumable extractor (:mod:`copynce_fast.inference.extract`, and
:mod:`~copynce_fast.inference.extract_dist` under torchrun), the index (:class:`~copynce_fast.search.copy_index.CopyIndex`)
and the pair comparison (:mod:`copynce_fast.inference.compare`, drawn by :mod:`copynce_fast.viz.compare`).
The CLI commands ``extract``, ``index`` and ``compare`` call the same functions.

Images (``items``) may be: a path (str / Path, decoded by the project decoder), a ``PIL.Image``, a uint8
torch tensor or numpy array ``[H, W, 3]`` (HWC) or ``[3, H, W]`` (CHW), or a grey ``[H, W]`` one. A
``[3, H, 3]`` array is read as CHW. Anything else -- a float array, a missing or undecodable file, a wrong
shape -- is a ValueError naming the item (``items[i]``).
"""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from copynce_fast.data.decode import BadImage
from copynce_fast.inference.compare import Comparison, compare as compare_pair
from copynce_fast.inference.extract import ExtractResult, extract_features
from copynce_fast.inference.extract_dist import extract_features_distributed
from copynce_fast.inference.images import ImageItem, decode_image, list_images, normalize, preprocess
from copynce_fast.models import CopyDescriptor
from copynce_fast.models.loading import LoadedModel, load_model
from copynce_fast.search.copy_index import CopyIndex
from copynce_fast.search.features import load_features
from copynce_fast.search.whitening import Whitening
from copynce_fast.utils.device import autocast, resolve_device

FEATURES_DIR = "features"  # inside an index directory: the extracted reference descriptors


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a training run directory or its config.json (the ``checkpoint.pt`` there, as the
    CLI's ``--weights`` reads it); ValueError naming ``path``."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".json":  # a run's config.json names its folder (read or not)
        folder = p if p.is_dir() else p.parent
        if not folder.is_dir():
            raise ValueError(f"path: no such file: {p}")
        if not (folder / "checkpoint.pt").is_file():
            raise ValueError(f"path {p}: a folder without checkpoint.pt (a training run folder holds one)")
        return folder / "checkpoint.pt"
    if not p.is_file():
        raise ValueError(f"path: no such file: {p}")
    return p


def _describe(item: Any) -> str:
    if isinstance(item, (str, Path)):
        return repr(str(item))
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return f"{type(item).__name__} {item.dtype} {tuple(item.shape)}"
    return type(item).__name__


def to_pil(item: Any, where: str = "item") -> Image.Image:
    """One image of any accepted kind (module docstring) as an RGB ``PIL.Image``; ValueError naming ``where``."""
    if isinstance(item, (str, os.PathLike)):
        try:
            return decode_image(item)
        except BadImage as e:
            raise ValueError(f"{where} {str(item)!r}: cannot decode ({e})") from None
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy() if item.dtype == torch.uint8 else item
    if not isinstance(item, np.ndarray):
        raise ValueError(f"{where} ({_describe(item)}): expected a path, a PIL image or a uint8 tensor / array")
    if item.dtype != np.uint8:
        raise ValueError(f"{where} ({_describe(item)}): arrays must be uint8 in [0, 255] (got {item.dtype})")
    if item.ndim == 2:
        hwc = np.repeat(item[:, :, None], 3, axis=2)
    elif item.ndim == 3 and item.shape[0] == 3:
        hwc = item.transpose(1, 2, 0)
    elif item.ndim == 3 and item.shape[2] == 3:
        hwc = item
    else:
        raise ValueError(f"{where} ({_describe(item)}): expected [H, W, 3], [3, H, W] or [H, W]")
    if hwc.shape[0] < 1 or hwc.shape[1] < 1:
        raise ValueError(f"{where} ({_describe(item)}): empty image")
    return Image.fromarray(np.ascontiguousarray(hwc))


def _in_torchrun(device: torch.device | None = None) -> bool:
    """True when running on several ranks; under torchrun (``WORLD_SIZE`` > 1) the process group is joined here
    if the caller has not done it (gloo on CPU, NCCL on CUDA)."""
    import torch.distributed as dist

    if device is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        from copynce_fast.utils.dist import init_distributed

        init_distributed(device.type)
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _is_rank0() -> bool:
    import torch.distributed as dist

    return not _in_torchrun() or dist.get_rank() == 0


class CopyDetector:
    """A loaded descriptor or matcher with the inference settings (module docstring).

    Args:
        loaded: a :class:`~copynce_fast.models.loading.LoadedModel` (``load_model``).
        batch_size: images per forward pass (``embed``, ``index``).
        num_workers: decoding processes of ``index`` (``embed`` decodes in the calling process); default: 4, or
            fewer when this process may use fewer CPUs (more workers than CPUs only contend).
        amp: "bf16" (autocast on CUDA; CPU stays fp32) or "none".
    """

    def __init__(self, loaded: LoadedModel, *, batch_size: int = 64, num_workers: int | None = None,
                 amp: str = "bf16"):
        if num_workers is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            num_workers = min(4, cpus)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if amp not in ("bf16", "none"):
            raise ValueError(f"amp must be 'bf16' or 'none', got {amp!r}")
        self.loaded, self.batch_size, self.num_workers, self.amp = loaded, batch_size, num_workers, amp

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", *, kind: str | None = None,
                        fmt: str = "auto", img_size: int | None = None, attn_impl: str = "sdpa",
                        **settings) -> "CopyDetector":
        """Load a checkpoint (ours, an official CopyNCE one, or a DINO ViT) or a training run directory.

        Args:
            path: checkpoint file, or a run directory holding ``checkpoint.pt``.
            device: "cpu", "cuda", "cuda:N" or "auto". Under torchrun "cuda" means this rank's GPU
                (``LOCAL_RANK``).
            kind: "descriptor", "matcher" or None (whatever the checkpoint holds).
            fmt: checkpoint layout, "auto" | "ours" | "copynce" | "dino".
            img_size: input side S (default: the checkpoint's training size).
            settings: ``batch_size``, ``num_workers``, ``amp`` (see the class).
        """
        loaded = load_model(kind, resolve_checkpoint(path), fmt=fmt, img_size=img_size, attn_impl=attn_impl,
                            device=cls._device(device))
        return cls(loaded, **settings)

    @classmethod
    def random_init(cls, kind: str = "descriptor", *, arch: str = "vit_tiny", img_size: int = 64, dim: int = 64,
                    seed: int = 0, device: str | torch.device = "cpu", **settings) -> "CopyDetector":
        """Seeded random weights: smoke tests and examples only (scores mean nothing)."""
        return cls(load_model(kind, random_init=True, arch=arch, img_size=img_size, dim=dim, seed=seed,
                              device=cls._device(device)), **settings)

    @staticmethod
    def _device(device) -> torch.device:
        dev = resolve_device(device)
        if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # torchrun: one GPU per rank
        return dev

    # ------------------------------------------------------------------ what the model is

    @property
    def kind(self) -> str:
        """"descriptor" or "matcher"."""
        return self.loaded.kind

    @property
    def dim(self) -> int:
        """Descriptor size D (descriptor checkpoints)."""
        self._need_descriptor("dim")
        return int(self.loaded.model.dim)

    @property
    def img_size(self) -> int:
        return self.loaded.img_size

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    def __repr__(self) -> str:
        return f"CopyDetector({self.loaded.name}, {self.kind}, S={self.img_size}, device={self.device})"

    def _need_descriptor(self, what: str) -> None:
        if not isinstance(self.loaded.model, CopyDescriptor):
            raise ValueError(f"{what} needs a descriptor checkpoint, this one holds a {self.kind}")

    # ------------------------------------------------------------------ embed, index, compare

    @torch.inference_mode()
    def embed(self, items: Sequence[Any], *, batch_size: int | None = None) -> np.ndarray:
        """Global descriptors of a list of images.

        Args:
            items: paths, PIL images, uint8 tensors / arrays (HWC or CHW), in any mix (module docstring).
            batch_size: images per forward pass (default the detector's).

        Returns:
            (N, D) float32 numpy array, unit L2 rows, in the order of ``items``. (Raw descriptors: an index
            built with whitening whitens them itself.)

        Raises:
            ValueError: a matcher checkpoint, or an item that is not an image (named ``items[i]``).
        """
        self._need_descriptor("embed")
        bs = self.batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ValueError(f"batch_size must be a positive integer, got {bs!r}")
        if isinstance(items, (str, os.PathLike, Image.Image, torch.Tensor, np.ndarray)):
            raise ValueError(f"items: expected a list of images, got one {_describe(items)} (wrap it in a list)")
        items = list(items)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(items), bs):
            chunk = [preprocess(to_pil(it, f"items[{start + j}]"), self.img_size)
                     for j, it in enumerate(items[start:start + bs])]
            x = normalize(torch.stack(chunk), self.device)
            with autocast(self.device, self.amp):
                feat = self.loaded.model(x)["feat"]
            # host copy once per batch: the caller gets numpy
            out[start:start + len(chunk)] = torch.nn.functional.normalize(feat.float(), dim=1).cpu().numpy()
        return out

    def extract(self, source, out: str | Path, *, split: str | None = None, dtype: str = "float32",
                shard_size: int = 4096, max_images: int | None = None, progress: bool = True,
                loader: str = "torch", whitening: Whitening | None = None) -> ExtractResult:
        """Resumable descriptor extraction of ``source`` into ``out`` (a shard directory or a ``.npz``); under
        torchrun with several ranks, each rank extracts its slice (``out`` must then be a directory).

        ``source``: a folder, a .txt / .csv list, ``disc21:ROOT`` or a DISC21 root with ``split``
        (:func:`~copynce_fast.data.sources.open_source`), or a list of :class:`ImageItem` / paths (id = stem).
        Other arguments as :func:`~copynce_fast.inference.extract.extract_features`.
        """
        self._need_descriptor("extract")
        items = self._items(source, split)
        kwargs = dict(batch_size=self.batch_size, num_workers=self.num_workers, amp=self.amp, dtype=dtype,
                      shard_size=shard_size, max_images=max_images, progress=progress, loader=loader,
                      whitening=whitening)
        if _in_torchrun(self.device):
            return extract_features_distributed(self.loaded, items, out, **kwargs)
        return extract_features(self.loaded, items, out, **kwargs)

    def index(self, source, out: str | Path, *, split: str | None = None, resume: bool = True,
              progress: bool = True, kind: str = "flat", whitening: Whitening | None = None,
              pca_dim: int | None = None, whiten_train=None, aux=None, **index_options) -> CopyIndex:
        """Extract the descriptors of ``source`` and index them: the searchable collection.

        Args:
            source: where the images are (as :meth:`extract`).
            out: the index directory (``out/features/`` holds the descriptors, resumable: rerunning after an
                interruption extracts only what is missing, then rebuilds the index).
            resume: False deletes stored descriptors first.
            progress: progress bar of the extraction.
            kind, whitening, pca_dim, whiten_train, aux, index_options: as :meth:`CopyIndex.build`
                (``nlist``, ``nprobe``, ``pq_m``, ``backend``, ``seed``).

        Returns:
            The saved :class:`~copynce_fast.search.copy_index.CopyIndex` (on every rank under torchrun; rank
            0 builds it).

        Raises:
            ValueError: no readable image, or bad arguments (named).
        """
        self._need_descriptor("index")
        out = Path(out)
        if out.suffix == ".npz" or out.is_file():
            raise ValueError(f"out {out}: an index is a directory")
        feats_dir = out / FEATURES_DIR
        multi = _in_torchrun(self.device)  # joins the process group under torchrun
        rank0 = _is_rank0()
        if not resume and feats_dir.exists() and rank0:
            shutil.rmtree(feats_dir)
        result = self.extract(source, feats_dir, split=split, progress=progress)
        if result.skipped and rank0:
            shown = "; ".join(f"{p} ({r})" for p, r in result.skipped[:3])
            warnings.warn(f"index: skipped {len(result.skipped)} unreadable image(s): {shown}", stacklevel=2)
        error = None
        if rank0:
            try:
                refs = load_features(feats_dir)
                if len(refs.ids) == 0:
                    raise ValueError(f"source {source}: no readable image")
                CopyIndex.build(refs, kind=kind, whitening=whitening, pca_dim=pca_dim, whiten_train=whiten_train,
                                aux=aux, source=str(source), **index_options).save(out)
            except ValueError as e:
                error = str(e)
        if multi:  # the other ranks wait for rank 0's index, and learn whether it failed
            import torch.distributed as dist

            box = [error]
            dist.broadcast_object_list(box, src=0)
            error = box[0]
        if error is not None:
            raise ValueError(error)
        return CopyIndex.load(out)

    def comparison(self, a: Any, b: Any, *, scale: float = 16.0, top: int = 16) -> Comparison:
        """Score image ``a`` (query) against ``b`` (reference) and map the patch affinities
        (:func:`copynce_fast.inference.compare.compare`): copy probability (matcher) or cosine (descriptor)."""
        return self._compare_images(to_pil(a, "a"), to_pil(b, "b"), scale, top)

    def _compare_images(self, a: Image.Image, b: Image.Image, scale: float, top: int) -> Comparison:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        q, r = preprocess(a, self.img_size), preprocess(b, self.img_size)
        return compare_pair(self.loaded, q, r, scale=scale, amp=self.amp, top=max(int(top), 1))

    def compare(self, a: Any, b: Any, *, scale: float = 16.0, panel: int = 384, lines: int = 16,
                picture: bool = True) -> tuple[float, Image.Image | None]:
        """Copy score of a pair and its picture.

        Args:
            a, b: the suspected copy and the original (any accepted image kind).
            scale: CopyNCE scale of the patch affinity softmax.
            panel: side of each image panel in the picture (pixels, >= 32).
            lines: strongest mutual patch matches drawn.
            picture: False skips drawing (returns None for it).

        Returns:
            ``(score, picture)``: the copy probability (matcher) or descriptor cosine as a float, and an RGB
            ``PIL.Image`` (:func:`copynce_fast.viz.compare.render_comparison`: heat of 1 - affinity entropy,
            lines between matched patches).
        """
        if panel < 32:
            raise ValueError(f"panel must be at least 32 pixels, got {panel}")
        img_a, img_b = to_pil(a, "a"), to_pil(b, "b")
        result = self._compare_images(img_a, img_b, scale, max(lines, 1))
        if not picture:
            return result.score, None
        from copynce_fast.viz.compare import render_comparison  # matplotlib only when a picture is drawn

        return result.score, render_comparison(img_a, img_b, result, panel=panel, lines=lines)

    def _items(self, source, split: str | None) -> list[ImageItem]:
        if isinstance(source, (list, tuple)):
            items = [it if isinstance(it, ImageItem) else ImageItem(Path(it).stem, Path(it)) for it in source]
            if len({it.id for it in items}) != len(items):
                raise ValueError("source: two images share an id (file stem); give ImageItem(id, path) items")
            return items
        return list_images(source, split=split)
