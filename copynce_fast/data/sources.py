"""Image sources (folder, file list, DISC21 layout, in-memory arrays) with robust, counted decoding.

A source is indexable: ``len(src)``, ``src.name(i)``, ``src.read_bytes(i)``, ``src.hw(i)`` (a header read, cached;
None = unusable) and ``src.decode(i)`` (RGB uint8 [H, W, 3], or None). Unusable files -- not an image, truncated,
corrupt, smaller than ``min_side``, larger than ``max_pixels`` (a decompression bomb, judged from the header) --
are recorded in the source's ``SkipCounter`` with a reason, logged once per file, and skipped by the loaders;
an epoch never crashes on one. Convertible files are converted: CMYK, greyscale and palette to RGB, 16-bit to
8-bit, transparency composited over white (as the reference does), EXIF orientation applied (as DALI does).
"""
from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

__all__ = ["BadImage", "DecodeLimits", "SkipCounter", "probe_bytes", "decode_bytes", "ImageSource", "FileSource",
           "ArraySource", "folder_source", "file_list_source", "disc21_source", "bundled_source",
           "synthetic_source", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")


class BadImage(Exception):
    """An image that cannot be used; ``str(e)`` is the reason."""


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 89_478_485  # larger images (by header) are skipped as decompression bombs (PIL's default)
    min_side: int = 16  # images with a side shorter than this are skipped


@dataclass
class SkipCounter:
    """Unusable files seen so far: name -> reason; each is logged once (``log=False`` to stay quiet)."""

    files: dict = field(default_factory=dict)
    substitutions: int = 0  # times a loader replaced an unusable sample by another
    log: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, name: str, reason: str) -> bool:
        """Record an unusable file; True if it is new (and then logged)."""
        with self._lock:
            if name in self.files:
                return False
            self.files[name] = reason
        if self.log:
            log.warning("skipping image %s: %s", name, reason)
        return True

    @property
    def skipped(self) -> int:
        return len(self.files)

    def __getstate__(self):  # picklable for DataLoader workers (a lock is not)
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large ({e})") from None
    except Exception as e:  # PIL raises many types for garbage input
        raise BadImage(f"not a readable image ({type(e).__name__}: {e})") from None
    w, h = im.size
    if w * h > limits.max_pixels:
        raise BadImage(f"too large ({w}x{h} > max_pixels={limits.max_pixels})")
    if min(w, h) < limits.min_side:
        raise BadImage(f"too small ({w}x{h}, min_side={limits.min_side})")
    tail = data[-4096:].rstrip(b"\x00\r\n ")
    if im.format == "JPEG" and b"\xff\xd9" not in tail[-64:]:
        raise BadImage("truncated JPEG (no end-of-image marker)")
    if im.format == "PNG" and b"IEND" not in tail[-64:]:
        raise BadImage("truncated PNG (no IEND chunk)")
    return im


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # broken EXIF: ignore it (DALI ignores it too)
        return 1


def probe_bytes(data: bytes, limits: DecodeLimits = DecodeLimits()) -> tuple[int, int]:
    """(H, W) of an encoded image after EXIF orientation, from its header; raises BadImage."""
    im = _open(data, limits)
    w, h = im.size
    return (w, h) if _orientation(im) in (5, 6, 7, 8) else (h, w)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if (im.mode.startswith("I;16") or a.max() > 255) else 255.0
        g = np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return np.array(im.convert("RGB"))


def decode_bytes(data: bytes, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """Decode to RGB uint8 [H, W, 3] (EXIF orientation applied); raises BadImage."""
    im = _open(data, limits)
    try:
        im.load()
        im = ImageOps.exif_transpose(im) if _orientation(im) != 1 else im
        arr = _to_rgb(im)
    except BadImage:
        raise
    except Exception as e:
        raise BadImage(f"corrupt image data ({type(e).__name__}: {e})") from None
    return np.ascontiguousarray(arr)


class ImageSource:
    """Base class: subclasses implement ``__len__``, ``name(i)`` and ``read_bytes(i)``."""

    def __init__(self, limits: DecodeLimits = DecodeLimits(), skips: SkipCounter | None = None):
        self.limits = limits
        self.skips = skips if skips is not None else SkipCounter()
        self._hw_cache: np.ndarray | None = None  # [N, 2] int32: (H, W), (-1, -1) unknown, (0, 0) unusable

    def _cache(self) -> np.ndarray:
        if self._hw_cache is None:
            self._hw_cache = np.full((len(self), 2), -1, dtype=np.int32)
        return self._hw_cache

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, i: int) -> str:
        raise NotImplementedError

    def read_bytes(self, i: int) -> bytes:
        raise NotImplementedError

    def mark_bad(self, i: int, reason: str) -> None:
        """Remember that image i is unusable (and record it in the SkipCounter)."""
        self._cache()[i] = 0
        self.skips.record(self.name(i), reason)

    def hw(self, i: int) -> tuple[int, int] | None:
        """(H, W) of image i from its header (cached), or None if it is unusable."""
        c = self._cache()
        if c[i, 0] < 0:
            try:
                c[i] = probe_bytes(self.read_bytes(i), self.limits)
            except (BadImage, OSError) as e:
                self.mark_bad(i, str(e))
        return None if c[i, 0] == 0 else (int(c[i, 0]), int(c[i, 1]))

    def decode(self, i: int) -> np.ndarray | None:
        """RGB uint8 [H, W, 3] of image i, or None if it is unusable (recorded)."""
        c = self._cache()
        if c[i, 0] == 0:
            return None
        try:
            arr = decode_bytes(self.read_bytes(i), self.limits)
        except (BadImage, OSError) as e:
            self.mark_bad(i, str(e))
            return None
        c[i] = arr.shape[:2]
        return arr


class FileSource(ImageSource):
    """Images given by paths."""

    def __init__(self, paths: Sequence[str | os.PathLike], limits: DecodeLimits = DecodeLimits(),
                 skips: SkipCounter | None = None):
        super().__init__(limits, skips)
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return self.paths[i]

    def read_bytes(self, i: int) -> bytes:
        with open(self.paths[i], "rb") as f:
            return f.read()


class ArraySource(ImageSource):
    """In-memory RGB arrays; ``read_bytes`` gives a lossless encoding (PNG, or BMP with ``fmt``), cached."""

    def __init__(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None, fmt: str = "PNG",
                 limits: DecodeLimits = DecodeLimits(), skips: SkipCounter | None = None):
        super().__init__(limits, skips)
        self.images = [np.ascontiguousarray(a) for a in images]
        for k, a in enumerate(self.images):
            if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                raise ValueError(f"images[{k}]: expected RGB uint8 [H, W, 3], got {a.shape} {a.dtype}")
        self.names = list(names) if names is not None else [f"array[{k}]" for k in range(len(self.images))]
        self.fmt = fmt
        self._bytes: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self.images)

    def name(self, i: int) -> str:
        return self.names[i]

    def read_bytes(self, i: int) -> bytes:
        if i not in self._bytes:
            buf = io.BytesIO()
            Image.fromarray(self.images[i]).save(buf, self.fmt, **({"compress_level": 1} if self.fmt == "PNG" else {}))
            self._bytes[i] = buf.getvalue()
        return self._bytes[i]

    def hw(self, i: int) -> tuple[int, int]:
        return self.images[i].shape[:2]

    def decode(self, i: int) -> np.ndarray:
        return self.images[i]


def _list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def folder_source(root, limits: DecodeLimits = DecodeLimits()) -> FileSource:
    """Every image under ``root`` (recursive; extensions in IMAGE_EXTENSIONS), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root: {root} is not a directory")
    paths = _list_images(root)
    if not paths:
        raise ValueError(f"root: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return FileSource(paths, limits)


def file_list_source(list_file, root=None, limits: DecodeLimits = DecodeLimits()) -> FileSource:
    """Images listed one per line in a text file (relative paths resolve against ``root`` or the list's folder)."""
    list_file = Path(list_file)
    base = Path(root) if root is not None else list_file.parent
    lines = [ln.strip() for ln in list_file.read_text().splitlines()]
    paths = [p if Path(p).is_absolute() else str(base / p) for p in lines if p and not p.startswith("#")]
    if not paths:
        raise ValueError(f"list_file: {list_file} lists no images")
    return FileSource(paths, limits)


def disc21_source(root, split: str = "train", limits: DecodeLimits = DecodeLimits()) -> FileSource:
    """The DISC21 layout: ``split`` = "train" (training_images/), "references" or "queries"."""
    folders = {"train": "training_images", "references": "reference_images", "queries": "query_images"}
    if split not in folders:
        raise ValueError(f"split: expected one of {sorted(folders)}, got {split!r}")
    return folder_source(Path(root) / folders[split], limits)


def bundled_source(limits: DecodeLimits = DecodeLimits()) -> FileSource:
    """The photos shipped in copynce_fast/assets/images (see the LICENSE.md there)."""
    return folder_source(Path(__file__).resolve().parent.parent / "assets" / "images", limits)


def synthetic_source(n: int, size=(375, 500), seed: int = 0) -> ArraySource:
    """``n`` procedural images (synthetic.synthetic_images) as a source."""
    from copynce_fast.data.synthetic import synthetic_images
    return ArraySource(synthetic_images(n, size, seed), [f"synthetic[{seed}:{k}]" for k in range(n)])
