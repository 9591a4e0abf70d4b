"""Image listing, decoding and the evaluation preprocessing (minimal; to be merged with ``data/sources.py``).

Sources (:func:`list_images`):

* a folder: every image file below it (recursive; extensions in ``IMAGE_EXTENSIONS``, case-insensitive),
  sorted by relative path; the id is the file stem (``Q25000.jpg`` -> ``Q25000``);
* a file list ``.txt`` / ``.lst``: one path per line (relative paths are relative to ``root``, default the
  list's folder; blank lines and ``#`` comments skipped);
* a CSV with a ``path`` column and optionally ``uuid`` or ``id`` (the DISC21 ``isc_*_query.csv`` files:
  ``uuid,path`` relative to the DISC21 root, given as ``root``);
* a DISC21 root with a split: ``val`` (Q00000-Q24999), ``dev`` (Q25000-Q49999), ``test`` (Q50000-Q99999),
  ``queries`` (all of query_images/), ``references`` (reference_images/), ``training`` (training_images/).

Ids must be unique (two files with the same stem are an error naming both).

Decoding (:func:`decode_image`) follows the reference evaluation (``Image.open(path).convert("RGB")``, no EXIF
rotation, alpha dropped) and makes the corner cases explicit: CMYK / palette / grey / alpha modes are converted
to RGB; 16- and 32-bit grey images are scaled to 8 bits (``convert`` would clip them to white); unreadable,
truncated and decompression-bomb files raise :class:`ImageDecodeError` with the reason, which callers count and
skip.

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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DISC21_SPLITS = {  # split -> (folder, id prefix, first number, end number or None = all)
    "val": ("query_images", "Q", 0, 25_000),
    "dev": ("query_images", "Q", 25_000, 50_000),
    "test": ("query_images", "Q", 50_000, 100_000),
    "queries": ("query_images", "Q", 0, None),
    "references": ("reference_images", "R", 0, None),
    "training": ("training_images", "T", 0, None),
}


class ImageDecodeError(Exception):
    """An image file that cannot be turned into RGB pixels; the message says why."""


@dataclass(frozen=True)
class ImageItem:
    id: str
    path: Path


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


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
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = Path(line)
            p = p if p.is_absolute() else base / p
            items.append(ImageItem(p.stem, p))
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
        folder, prefix, first, end = DISC21_SPLITS[split]
        d = source / folder
        if not d.is_dir():
            raise ValueError(f"{source} is not a DISC21 root: no folder {folder}/ (needed by split {split!r})")
        items = []
        for p in sorted(d.iterdir()):
            if not _is_image(p) or not p.stem.startswith(prefix) or not p.stem[1:].isdigit():
                continue
            n = int(p.stem[1:])
            if n >= first and (end is None or n < end):
                items.append(ImageItem(p.stem, p))
        what = f"{source} split {split}"
    elif source.is_dir():
        files = sorted((p for p in source.rglob("*") if _is_image(p)), key=lambda p: p.relative_to(source).as_posix())
        items = [ImageItem(p.stem, p) for p in files]
        what = str(source)
    else:
        items = _from_list_file(source, Path(root) if root is not None else None)
        what = str(source)
    if not items:
        raise ValueError(f"{what}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return _unique(items, what)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        # high bit-depth grey: convert("RGB") would clip everything above 255 to white
        a = np.asarray(img).astype(np.float64)
        peak = float(a.max(initial=0))
        if img.mode.startswith("I;16") or peak > 255:
            top = 65535.0
        else:
            top = 1.0 if (img.mode == "F" and peak <= 1.0) else 255.0
        a8 = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    return img.convert("RGB")  # CMYK, P, L, LA, RGBA, YCbCr ...: PIL's conversions (alpha dropped)


def decode_image(path: str | Path) -> Image.Image:
    """Decode ``path`` to an RGB PIL image.

    Raises:
        ImageDecodeError: missing, unreadable, truncated or oversized file, or an empty image (reason in the
            message).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:  # PIL refuses > 179 Mpx (DecompressionBombError), warns above 89 Mpx
            img.load()
            rgb = _to_rgb(img)
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"too large ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError) as e:
        raise ImageDecodeError(f"{type(e).__name__}: {e}") from None
    if rgb.width < 1 or rgb.height < 1:
        raise ImageDecodeError(f"empty image {rgb.width}x{rgb.height}")
    return rgb


def preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """Resize an RGB image to ``size``×``size`` (bicubic, aspect not kept): uint8 tensor ``[3, S, S]``."""
    resized = img.resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """:func:`decode_image` + :func:`preprocess`: uint8 ``[3, S, S]``; raises :class:`ImageDecodeError`."""
    return preprocess(decode_image(path), size)


def normalize(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 ``(x / 255 - mean) / std`` on ``device`` (ImageNet statistics)."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    x = images.to(device or images.device, non_blocking=True).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
