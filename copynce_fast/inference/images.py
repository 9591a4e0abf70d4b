"""Images for inference: the items of a source (id + path), the decoder, and the evaluation preprocessing.

Where the images are is said in the package's one grammar, :func:`copynce_fast.data.sources.open_source`
(a folder, a .txt / .csv list, a DISC21 root with a split, ``disc21:ROOT``); :func:`list_images` turns it into
``ImageItem(id, path)``. Ids must be unique (two files with the same stem are an error naming both).

Decoding is the project's one decoder, :func:`copynce_fast.data.decode.decode_bytes`: unreadable, truncated,
too small (< 16 px a side) or too large (> 89 Mpx) files raise :class:`~copynce_fast.data.decode.BadImage`
with the reason, which callers count and skip; CMYK / grey / palette / 16-bit are converted to RGB,
transparency is composited over white and EXIF orientation applied. (The reference evaluation calls
``Image.open(path).convert("RGB")``: alpha dropped, no EXIF rotation. We use the training decoder's rules
so that training and evaluation see the same pixels.)

Preprocessing (:func:`preprocess`) as REFERENCE §7.2: resize to S×S (PIL bicubic, aspect ratio not kept), then
(on the device, :func:`normalize`) /255 and the ImageNet mean/std of :mod:`copynce_fast.data.batch`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from copynce_fast.data.batch import IMAGENET_MEAN, IMAGENET_STD
from copynce_fast.data.decode import BadImage, DecodeLimits, decode_bytes
from copynce_fast.data.sources import FileSource, open_source


@dataclass(frozen=True)
class ImageItem:
    id: str
    path: Path


def list_images(source: str | Path, *, split: str | None = None, root: str | Path | None = None) -> list[ImageItem]:
    """The images of ``source`` (:func:`~copynce_fast.data.sources.open_source`) as ``ImageItem(id, path)``.

    Args:
        source: folder, list file, ``disc21:ROOT``, or (with ``split``) a DISC21 root.
        split: DISC21 split name (a key of ``DISC21_SPLITS``), or None.
        root: base folder for relative paths in a list file (default: the list's folder).

    Returns:
        The items in the source's deterministic order. Files listed but absent are kept (decoding reports
        them), so a list file is taken as given.

    Raises:
        ValueError: missing source, unknown split, duplicate ids, no images, an in-memory source.
    """
    src = open_source(source, split=split, root=root)
    if not isinstance(src, FileSource):
        raise ValueError(f"source: {source!r} is held in memory; inference reads files")
    seen: dict[str, str] = {}
    for i, p in zip(src.ids, src.paths):
        if i in seen:
            what = f"{source} split {split}" if split else str(source)
            raise ValueError(f"{what}: two images share the id {i!r}: {seen[i]} and {p}")
        seen[i] = p
    return [ImageItem(i, Path(p)) for i, p in zip(src.ids, src.paths)]


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
