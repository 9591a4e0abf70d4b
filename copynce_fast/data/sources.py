"""Image sources (folder, file list, DISC21 layout, in-memory arrays) with robust, counted decoding, and the one
grammar for "where the images are" (:func:`open_source`), shared by training, extraction and the kNN table.

A source is indexable: ``len(src)``, ``src.name(i)``, ``src.read_bytes(i)``, ``src.hw(i)`` (a header read, cached;
None = unusable) and ``src.decode(i)`` (RGB uint8 [H, W, 3], or None), decoded by :mod:`copynce_fast.data.decode`.
Unusable files are recorded in the source's ``SkipCounter`` with the decoder's reason, logged once per file, and
skipped by the loaders; an epoch never crashes on one.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from copynce_fast.data.decode import BadImage, DecodeLimits, Header, decode_bytes, read_header
from copynce_fast.utils.skipped import MAX_SHOWN, clean_reason

__all__ = ["SkipCounter", "ImageSource", "FileSource", "ArraySource", "folder_source", "file_list_source", "csv_list_source", "disc21_source", "bundled_source",
           "synthetic_source", "open_source", "IMAGE_EXTENSIONS", "DISC21_SPLITS"]

log = logging.getLogger(__name__)
_RECENT_FILES = 8  # bytes of the last header reads kept for their decode (a pair needs at most ~6 images)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")
DISC21_SPLITS = {  # split -> (disc21_source split, first query number, end number or None = all)
    "val": ("queries", 0, 25_000),
    "dev": ("queries", 25_000, 50_000),
    "test": ("queries", 50_000, 100_000),
    "queries": ("queries", 0, None),
    "references": ("references", 0, None),
    "training": ("train", 0, None),
}


@dataclass
class SkipCounter:
    """Unusable files seen so far: name -> reason; each is logged once (``log=False`` to stay quiet)."""

    files: dict = field(default_factory=dict)
    substitutions: int = 0  # times a loader replaced an unusable sample by another
    log: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, name: str, reason: str) -> bool:
        """Record an unusable file; True if it is new. The first ``MAX_SHOWN`` are logged one by one, then one
        line says the rest are only counted (the trainer lists them all in its run folder's skipped.txt)."""
        reason = clean_reason(reason)
        with self._lock:
            if name in self.files:
                return False
            self.files[name] = reason
            n = len(self.files)
        if self.log and n <= MAX_SHOWN:
            log.warning("skipping image %s: %s", name, reason)
        elif self.log and n == MAX_SHOWN + 1:
            log.warning("skipping image %s: %s; more unusable images are counted, not shown (the run lists them "
                        "in its skipped.txt)", name, reason)
        return True

    @property
    def skipped(self) -> int:
        return len(self.files)

    def __getstate__(self):  # picklable for DataLoader workers (a lock is not)
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class ImageSource:
    """Base class: subclasses implement ``__len__``, ``name(i)`` and ``read_bytes(i)``."""

    def __init__(self, limits: DecodeLimits = DecodeLimits(), skips: SkipCounter | None = None):
        self.limits = limits
        self.skips = skips if skips is not None else SkipCounter()
        # [N, 3] int32: (H, W, plain JPEG 1 / 0) of each header read, (H, W, -1) of a decode without one;
        # (-1, -1, -1) unknown, (0, 0, 0) unusable
        self._hw_cache: np.ndarray | None = None
        # The bytes hw() just read, for the decode that usually follows (a pair is planned from headers, then its
        # images are decoded): each file is read once. A few, newest last; decode() takes its entry out.
        self._recent: OrderedDict[int, bytes] = OrderedDict()

    def _cache(self) -> np.ndarray:
        if self._hw_cache is None:
            self._hw_cache = np.full((len(self), 3), -1, dtype=np.int32)
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
                data = self.read_bytes(i)
                head = read_header(data, self.limits)
            except (BadImage, OSError) as e:
                self.mark_bad(i, str(e))
            else:
                c[i] = (*head.hw, head.plain_jpeg)
                self._remember(i, data)
        return None if c[i, 0] == 0 else (int(c[i, 0]), int(c[i, 1]))

    def _remember(self, i: int, data: bytes) -> None:
        recent = self._recent
        recent[i] = data
        while len(recent) > _RECENT_FILES:
            try:
                recent.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                break

    def decode(self, i: int) -> np.ndarray | None:
        """RGB uint8 [H, W, 3] of image i, or None if it is unusable (recorded)."""
        c = self._cache()
        if c[i, 0] == 0:
            return None
        try:
            data = self._recent.pop(i, None)
            data = self.read_bytes(i) if data is None else data
            # After a header read its checks are not redone, and a plain JPEG skips PIL entirely.
            known = c[i, 0] > 0 and c[i, 2] >= 0
            head = Header((int(c[i, 0]), int(c[i, 1])), bool(c[i, 2])) if known else None
            arr = decode_bytes(data, self.limits, head)
        except (BadImage, OSError) as e:
            self.mark_bad(i, str(e))
            return None
        if not known:  # the size is known now; whether it is a plain JPEG stays for decode_bytes to see each time
            c[i] = (*arr.shape[:2], -1)
        return arr


class FileSource(ImageSource):
    """Images given by paths; ``ids[i]`` names image i (default: the file stem, ``Q25000.jpg`` -> ``Q25000``)."""

    def __init__(self, paths: Sequence[str | os.PathLike], limits: DecodeLimits = DecodeLimits(),
                 skips: SkipCounter | None = None, ids: Sequence[str] | None = None):
        super().__init__(limits, skips)
        self.paths = [str(p) for p in paths]
        self.ids = list(ids) if ids is not None else [Path(p).stem for p in self.paths]
        if len(self.ids) != len(self.paths):
            raise ValueError(f"ids: {len(self.ids)} ids for {len(self.paths)} paths")

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


def csv_list_source(csv_file, root=None, limits: DecodeLimits = DecodeLimits()) -> FileSource:
    """Images listed in a CSV with a ``path`` column and optionally ``uuid`` or ``id`` (the ids; default the stem),
    as DISC21's ``isc_*_query.csv``; relative paths resolve against ``root`` or the CSV's folder."""
    csv_file = Path(csv_file)
    base = Path(root) if root is not None else csv_file.parent
    paths, ids = [], []
    with csv_file.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = [h.strip() for h in (reader.fieldnames or [])]
        if "path" not in fields:
            raise ValueError(f"{csv_file}: a CSV image list needs a 'path' column, got columns {fields}")
        id_col = "uuid" if "uuid" in fields else ("id" if "id" in fields else None)
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            p = Path(row["path"])
            p = p if p.is_absolute() else base / p
            paths.append(p)
            ids.append(row[id_col] if id_col and row[id_col] else p.stem)
    return FileSource(paths, limits, ids=ids)


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


def _builtin(synthetic_images: int, seed: int) -> ArraySource:
    bundled = bundled_source()
    images = [bundled.decode(i) for i in range(len(bundled))]
    names = [bundled.name(i) for i in range(len(bundled))]
    if synthetic_images:
        syn = synthetic_source(synthetic_images, seed=seed)
        images += [syn.decode(i) for i in range(len(syn))]
        names += [syn.name(i) for i in range(len(syn))]
    return ArraySource(images, names)


def _disc21_split(root: Path, split: str, limits: DecodeLimits) -> FileSource:
    if split not in DISC21_SPLITS:
        raise ValueError(f"split must be one of {tuple(DISC21_SPLITS)}, got {split!r}")
    sub, first, end = DISC21_SPLITS[split]
    try:
        src = disc21_source(root, sub, limits)
    except ValueError as e:
        raise ValueError(f"{root} is not a DISC21 root with images for split {split!r} ({e})") from None
    if end is None:
        return src
    # the val / dev / test splits are query id ranges
    keep = [k for k, i in enumerate(src.ids) if i[1:].isdigit() and first <= int(i[1:]) < end]
    return FileSource([src.paths[k] for k in keep], limits, ids=[src.ids[k] for k in keep])


def open_source(spec: str | os.PathLike, *, split: str | None = None, root=None, synthetic_images: int = 0,
                seed: int = 0, limits: DecodeLimits = DecodeLimits()) -> ImageSource:
    """Where the images are, in the package's one grammar.

    ``spec``:

    * ``"builtin"``: the bundled photos (plus ``synthetic_images`` procedural ones, drawn with ``seed``),
      decoded in memory (an :class:`ArraySource`);
    * ``"disc21:ROOT"``, or a DISC21 root folder with ``split``: the DISC21 layout, ``split`` one of
      :data:`DISC21_SPLITS` (default "training"): ``val`` (Q00000-Q24999), ``dev`` (Q25000-Q49999),
      ``test`` (Q50000-Q99999), ``queries`` (query_images/), ``references``, ``training``;
    * a folder: every image below it (recursive), sorted by path;
    * a ``.csv`` file: a ``path`` column and optionally ``uuid`` or ``id`` (:func:`csv_list_source`);
    * any other file: a list, one path per line (:func:`file_list_source`).

    Relative paths in a list resolve against ``root`` (default: the list's folder). File-backed sources carry
    ``ids`` (file stems, or the CSV's ids); they are not checked for uniqueness here.

    Raises:
        ValueError: a missing spec, an unknown split, a folder / list without images, ``synthetic_images``
            without "builtin".
    """
    if str(spec) == "builtin":
        return _builtin(synthetic_images, seed)
    if synthetic_images:
        raise ValueError("synthetic_images: only with the 'builtin' source")
    if isinstance(spec, str) and spec.startswith("disc21:"):
        spec, split = spec[len("disc21:"):], split or "training"
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"no such file or folder: {path}")
    if split is not None:
        src = _disc21_split(path, split, limits)
    elif path.is_dir():
        try:
            src = folder_source(path, limits)
        except ValueError:
            raise ValueError(f"{path}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})") from None
    elif path.suffix.lower() == ".csv":
        src = csv_list_source(path, root, limits)
    else:
        try:
            src = file_list_source(path, root, limits)
        except ValueError:
            raise ValueError(f"{path}: no images found") from None
    if len(src) == 0:
        raise ValueError(f"{path}{f' split {split}' if split else ''}: no images found")
    return src
