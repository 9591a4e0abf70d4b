"""Image listing for evaluation and the evaluation preprocessing, on top of ``copynce_fast.data.sources``.

Sources (:func:`list_images`):

* a folder: every image below it (recursive, :func:`copynce_fast.data.sources.folder_source`), sorted by path;
  the id is the file stem (``Q25000.jpg`` -> ``Q25000``);
* a file list ``.txt`` / ``.lst``: one path per line (:func:`~copynce_fast.data.sources.file_list_source`;
  relative paths against ``root``, default the list's folder);
* a CSV with a ``path`` column and optionally ``uuid`` or ``id`` (the DISC21 ``isc_*_query.csv`` files:
  ``uuid,path`` relative to the DISC21 root, given as ``root``);
* a DISC21 root with a split: ``val`` (Q00000-Q24999), ``dev`` (Q25000-Q49999), ``test`` (Q50000-Q99999),
  ``queries`` (all of query_images/), ``references`` (reference_images/), ``training`` (training_images/).

Ids must be unique (two files with the same stem are an error naming both).

Decoding is the project's one decoder, :func:`copynce_fast.data.sources.decode_bytes`: unreadable, truncated,
too small (< 16 px a side) or too large (> 89 Mpx) files raise :class:`~copynce_fast.data.sources.BadImage`
with the reason, which callers count and skip; CMYK / grey / palette / 16-bit are converted to RGB,
transparency is composited over white and EXIF orientation applied. (The reference evaluation calls
``Image.open(path).convert("RGB")``: alpha dropped, no EXIF rotation. We use the training decoder's rules
so that training and evaluation see the same pixels.)

Preprocessing (:func:`preprocess`) as REFERENCE §7.2: resize to S×S (PIL bicubic, aspect ratio not kept), then
(on the device, :func:`normalize`) /255 and ImageNet mean/std.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from copynce_fast.data.sources import (
    IMAGE_EXTENSIONS,
    BadImage,
    DecodeLimits,
    decode_bytes,
    disc21_source,
    file_list_source,
    folder_source,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DISC21_SPLITS = {  # split -> (sources.disc21_source split, first query number, end number or None = all)
    "val": ("queries", 0, 25_000),
    "dev": ("queries", 25_000, 50_000),
    "test": ("queries", 50_000, 100_000),
    "queries": ("queries", 0, None),
    "references": ("references", 0, None),
    "training": ("train", 0, None),
}


@dataclass(frozen=True)
class ImageItem:
    id: str
    path: Path


def _unique(items: list[ImageItem], what: str) -> list[ImageItem]:
    seen: dict[str, Path] = {}
    for it in items:
        if it.id in seen:
            raise ValueError(f"{what}: two images share the id {it.id!r}: {seen[it.id]} and {it.path}")
        seen[it.id] = it.path
    return items


def _from_list_file(path: Path, root: Path | None) -> list[ImageItem]:
    base = root or path.parent
    items = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = [h.strip() for h in (reader.fieldnames or [])]
            if "path" not in fields:
                raise ValueError(f"{path}: a CSV image list needs a 'path' column, got columns {fields}")
            id_col = "uuid" if "uuid" in fields else ("id" if "id" in fields else None)
            for row in reader:
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                p = Path(row["path"])
                p = p if p.is_absolute() else base / p
                items.append(ImageItem(row[id_col] if id_col and row[id_col] else p.stem, p))
    else:
        try:
            items = [ImageItem(Path(p).stem, Path(p)) for p in file_list_source(path, base).paths]
        except ValueError:
            items = []  # an empty list: reported by list_images
    return items


def list_images(source: str | Path, *, split: str | None = None, root: str | Path | None = None) -> list[ImageItem]:
    """The images of a folder, a file list / CSV, or a DISC21 split (see the module docstring).

    Args:
        source: folder, list file, or (with ``split``) the DISC21 root holding ``query_images/`` etc.
        split: DISC21 split name (a key of ``DISC21_SPLITS``), or None.
        root: base folder for relative paths in a list file (default: the list's folder).

    Returns:
        ``ImageItem(id, path)`` in a deterministic order. Files listed but absent are kept (decoding
        reports them), so a list file is taken as given.

    Raises:
        ValueError: missing source, unknown split, duplicate ids, an empty result.
    """
    source = Path(source)
    if not source.exists():
        raise ValueError(f"no such file or folder: {source}")
    if split is not None:
        if split not in DISC21_SPLITS:
            raise ValueError(f"--split must be one of {tuple(DISC21_SPLITS)}, got {split!r}")
        sub, first, end = DISC21_SPLITS[split]
        try:
            paths = disc21_source(source, sub).paths
        except ValueError as e:
            raise ValueError(f"{source} is not a DISC21 root with images for split {split!r} ({e})") from None
        items = [ImageItem(Path(p).stem, Path(p)) for p in paths]
        if end is not None:  # query id ranges of the val / dev / test splits
            items = [it for it in items if it.id[1:].isdigit() and first <= int(it.id[1:]) < end]
        what = f"{source} split {split}"
    elif source.is_dir():
        try:
            paths = folder_source(source).paths
        except ValueError:
            raise ValueError(f"{source}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})") from None
        items = [ImageItem(Path(p).stem, Path(p)) for p in paths]
        what = str(source)
    else:
        items = _from_list_file(source, Path(root) if root is not None else None)
        what = str(source)
    if not items:
        raise ValueError(f"{what}: no images found")
    return _unique(items, what)


def decode_image(path: str | Path, limits: DecodeLimits = DecodeLimits()) -> Image.Image:
    """Decode ``path`` to an RGB PIL image with the project decoder.

    Raises:
        BadImage: missing, unreadable, truncated, too small or too large file (reason in the message).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadImage(f"cannot read ({e.strerror or e})") from None
    return Image.fromarray(decode_bytes(data, limits))


def preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """Resize an RGB image to ``size``×``size`` (bicubic, aspect not kept): uint8 tensor ``[3, S, S]``."""
    resized = img.resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """:func:`decode_image` + :func:`preprocess`: uint8 ``[3, S, S]``; raises :class:`BadImage`."""
    return preprocess(decode_image(path), size)


def normalize(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 ``(x / 255 - mean) / std`` on ``device`` (ImageNet statistics)."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    x = images.to(device or images.device, non_blocking=True).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
