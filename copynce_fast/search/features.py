"""On-disk descriptors with their image ids: one ``.npz`` file, or a resumable directory of shards.

**Single file** (``save_features`` / ``load_features``): an uncompressed ``.npz`` holding

* ``ids``: (N,) unicode array, the image ids (e.g. ``"Q25000"``), row ``i`` of ``features`` is ``ids[i]``;
* ``features``: (N, D) float16 or float32;
* ``meta``: 0-d unicode array with a JSON object: ``{"format": "copynce-fast-features", "version": 1,
  "model": str, "dim": D, "img_size": int, "dtype": "float16"|"float32", "count": N, ...extra}``;
* ``norms`` (optional): (N,) float32, each descriptor's length before its L2 normalisation (the input of the
  asymmetric ASL score, ``search --score asymmetric``); files without it load with ``norms=None``.

It loads with ``np.load(path, allow_pickle=False)``; no pickle anywhere.

**Shard directory** (``FeatureWriter``, read back by ``load_features(directory)``)::

    <dir>/index.json         {"format": "copynce-fast-feature-shards", "version": 1, "meta": {...},
                              "shards": [{"file": "shard_000000.npz", "count": n0}, ...], "count": N}
    <dir>/shard_000000.npz   each shard is itself a single-file feature set (format above)

``index.json`` is the only source of truth (the mechanics, shared with the video features, are
:mod:`copynce_fast.search.shards`): an extraction killed at any point leaves a directory whose index lists
complete shards only. Rows appended but not yet flushed to a shard are lost on a crash and recomputed on resume:
``FeatureWriter(dir, ...)`` on an existing directory checks that model / dim / img_size / dtype match and
``remaining(ids)`` returns what is left to extract, in order.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from copynce_fast.search.shards import VERSION, ShardDirectory, atomic_write, read_index, write_index

FORMAT = "copynce-fast-features"
SHARDS_FORMAT = "copynce-fast-feature-shards"
_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class Features:
    """Descriptors with ids. ``ids`` (N,) unicode, ``features`` (N, D) float16/float32, ``meta`` the JSON
    metadata (model, dim, img_size, dtype, count and any extra keys), ``norms`` (N,) float32 pre-normalisation
    lengths or None."""

    ids: np.ndarray
    features: np.ndarray
    meta: dict = field(default_factory=dict)
    norms: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def _to_numpy(features) -> np.ndarray:
    if hasattr(features, "detach"):  # torch tensor, without importing torch here
        features = features.detach().cpu().float().numpy()
    return np.asarray(features)


def _check_meta_args(model: str, dim: int, img_size: int, dtype: str) -> None:
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    for name, v in (("dim", dim), ("img_size", img_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")


def _check_rows(ids, features, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids)
    features = _to_numpy(features)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if features.ndim != 2 or features.shape[1] < 1 or not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"features must be a 2-D float array (N, D>=1), got {features.dtype} {features.shape}")
    if dim is not None and features.shape[1] != dim:
        raise ValueError(f"features have dim {features.shape[1]}, expected dim={dim}")
    if len(ids) != len(features):
        raise ValueError(f"ids ({len(ids)}) and features ({len(features)}) have different lengths")
    ids = ids.astype(str)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("ids contain duplicates")
    return ids, features


def _check_norms(norms, n: int) -> np.ndarray | None:
    if norms is None:
        return None
    norms = _to_numpy(norms).astype(np.float32)
    if norms.shape != (n,) or not (np.isfinite(norms).all() and (norms > 0).all()):
        raise ValueError(f"norms must be ({n},) positive finite values, got shape {norms.shape}")
    return norms


def _npz_bytes(ids: np.ndarray, features: np.ndarray, meta: dict, norms: np.ndarray | None = None) -> bytes:
    buf = io.BytesIO()
    arrays = {} if norms is None else {"norms": norms}
    np.savez(buf, ids=ids, features=features, meta=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)
    return buf.getvalue()


def save_features(path: str | Path, ids, features, *, model: str, img_size: int, dtype: str = "float32",
                  extra: dict | None = None, norms=None) -> Path:
    """Write one ``.npz`` feature file (format in the module docstring).

    Args:
        path: output file, used as given (no ``.npz`` suffix is added).
        ids: (N,) image ids (stored as strings); must be unique.
        features: (N, D) float numpy array or torch tensor.
        model, img_size: recorded in the metadata; ``dim`` is taken from ``features``.
        dtype: "float32" (default) or "float16" storage.
        extra: additional JSON-serialisable metadata.
        norms: optional (N,) pre-normalisation descriptor lengths (stored as ``norms``).
    """
    ids, features = _check_rows(ids, features, None)
    norms = _check_norms(norms, len(ids))
    _check_meta_args(model, features.shape[1], img_size, dtype)
    meta = {**(extra or {}), "format": FORMAT, "version": VERSION, "model": model, "dim": int(features.shape[1]),
            "img_size": int(img_size), "dtype": dtype, "count": len(ids)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _npz_bytes(ids, features.astype(dtype), meta, norms))
    return path


def _load_file(path: Path) -> Features:
    with np.load(path, allow_pickle=False) as z:
        ids, features, meta = z["ids"], z["features"], json.loads(str(z["meta"]))
        norms = z["norms"] if "norms" in z.files else None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (format={meta.get('format')!r})")
    if features.ndim != 2 or features.shape[1] != meta["dim"] or len(ids) != len(features):
        raise ValueError(f"{path}: features {features.shape} / ids {ids.shape} disagree with dim={meta['dim']}")
    if norms is not None and norms.shape != ids.shape:
        raise ValueError(f"{path}: norms {norms.shape} / ids {ids.shape} disagree")
    return Features(ids=ids, features=features, meta=meta, norms=norms)


def load_features(path: str | Path) -> Features:
    """Read a single ``.npz`` feature file, or a shard directory (its shards concatenated in order)."""
    path = Path(path)
    if not path.is_dir():
        return _load_file(path)
    index = _read_index(path)
    if index is None:
        raise ValueError(f"{path}: no index.json, not a feature shard directory")
    meta = index["meta"]
    parts = [_load_file(path / s["file"]) for s in index["shards"]]
    norms = None
    if parts:
        ids = np.concatenate([p.ids for p in parts])
        feats = np.concatenate([p.features for p in parts])
        if all(p.norms is not None for p in parts):  # a shard without norms (an older extraction): none at all
            norms = np.concatenate([p.norms for p in parts])
    else:
        ids, feats = np.zeros(0, dtype=str), np.zeros((0, meta["dim"]), dtype=meta["dtype"])
    return Features(ids=ids, features=feats, meta={**meta, "format": FORMAT, "count": len(ids)}, norms=norms)


def _read_index(directory: Path) -> dict | None:
    return read_index(directory, SHARDS_FORMAT)


class FeatureWriter(ShardDirectory):
    """Append descriptors in shards under ``directory``; reopening an existing directory resumes it.

    Usage::

        with FeatureWriter(out_dir, model="vit_b16", dim=512, img_size=224) as w:
            todo = w.remaining(all_ids)
            for batch_ids, images in batches(todo):
                w.append(batch_ids, model(images))

    Args:
        directory: shard directory (created if missing).
        model, dim, img_size, dtype: metadata; on resume they must equal the stored ones (ValueError
            naming the field otherwise).
        shard_size: rows per shard file; rows are buffered in memory until a shard is full.
        extra: additional JSON metadata (stored on creation, not compared on resume).
    """

    def __init__(self, directory: str | Path, *, model: str, dim: int, img_size: int, dtype: str = "float32",
                 shard_size: int = 65536, extra: dict | None = None):
        _check_meta_args(model, dim, img_size, dtype)
        wanted = {"model": model, "dim": int(dim), "img_size": int(img_size), "dtype": dtype}
        super().__init__(directory, fmt=SHARDS_FORMAT, meta={**(extra or {}), "version": VERSION, **wanted},
                         compare=wanted, shard_size=shard_size)
        self._done: set[str] = set()
        for shard in self.shards:
            with np.load(self.directory / shard["file"], allow_pickle=False) as z:
                self._done.update(z["ids"].tolist())
        self._buf_ids: list[np.ndarray] = []
        self._buf_feats: list[np.ndarray] = []
        self._buf_norms: list[np.ndarray | None] = []
        self._buffered: set[str] = set()

    def remaining(self, ids: Iterable) -> list[str]:
        """The ids (as strings, in the given order) not yet written or buffered."""
        return [i for i in map(str, ids) if i not in self._done and i not in self._buffered]

    def append(self, ids, features, norms=None) -> None:
        """Buffer (N,) ids with their (N, dim) features (and optional (N,) norms); full shards are written as
        they fill up. A shard stores norms only when every row in it came with them."""
        ids, features = _check_rows(ids, features, self._index["meta"]["dim"])
        norms = _check_norms(norms, len(ids))
        clash = [i for i in ids.tolist() if i in self._done or i in self._buffered]
        if clash:
            raise ValueError(f"ids already written: {clash[:3]}{' ...' if len(clash) > 3 else ''}")
        self._buf_ids.append(ids)
        self._buf_feats.append(features.astype(self._index["meta"]["dtype"]))
        self._buf_norms.append(norms if norms is not None else np.full(len(ids), np.nan, dtype=np.float32))
        self._buffered.update(ids.tolist())
        while len(self._buffered) >= self.shard_size:
            self._write_shard(self.shard_size)

    def flush(self) -> None:
        """Write whatever is buffered as one (possibly short) shard."""
        if self._buffered:
            self._write_shard(len(self._buffered))

    close = flush

    def _write_shard(self, n: int) -> None:
        ids, feats = np.concatenate(self._buf_ids), np.concatenate(self._buf_feats)
        norms = np.concatenate(self._buf_norms)  # nan marks rows that came without a norm
        self._buf_ids, self._buf_feats, self._buf_norms = (([ids[n:]], [feats[n:]], [norms[n:]]) if n < len(ids)
                                                           else ([], [], []))
        shard_norms = None if np.isnan(norms[:n]).any() else norms[:n]
        self.commit_shard(_npz_bytes(ids[:n], feats[:n], {**self.meta, "format": FORMAT, "count": n}, shard_norms), n)
        written = ids[:n].tolist()
        self._done.update(written)
        self._buffered.difference_update(written)


def stored_ids(directory: str | Path) -> list[str]:
    """The ids a shard directory's ``index.json`` lists, in order (reads the shards' id arrays only; an
    absent directory or index gives [])."""
    index = _read_index(Path(directory)) if Path(directory).is_dir() else None
    out: list[str] = []
    for s in (index or {}).get("shards", []):
        with np.load(Path(directory) / s["file"], allow_pickle=False) as z:
            out += z["ids"].tolist()
    return out


def merge_part_directories(directory: str | Path, parts: Iterable[str | Path]) -> dict:
    """Write ``directory/index.json`` listing the shards of several shard directories (e.g. one per rank of a
    distributed extraction) so that ``load_features(directory)`` reads them all; returns the index.

    Each part must be a subdirectory of ``directory`` holding an ``index.json``; its shards are listed as
    ``"<part>/shard_*.npz"`` in the order of ``parts``. Shards listed in an existing ``directory/index.json``
    that sit in ``directory`` itself (a single-process extraction into the same folder) are kept, first.
    Metadata (model, dim, img_size, dtype) must agree everywhere (ValueError naming the part otherwise).
    The parts' ids must be disjoint (checked: a duplicate id is a ValueError).
    """
    directory = Path(directory)
    existing = _read_index(directory)
    shards = [s for s in existing["shards"] if "/" not in s["file"]] if existing else []
    meta = existing["meta"] if existing else None
    for part in parts:
        part = Path(part)
        if part.parent.resolve() != directory.resolve():
            raise ValueError(f"parts: {part} is not a subdirectory of {directory}")
        index = _read_index(part)
        if index is None:
            raise ValueError(f"parts: {part} has no index.json")
        if meta is None:
            meta = index["meta"]
        for key in ("model", "dim", "img_size", "dtype"):
            if index["meta"].get(key) != meta.get(key):
                raise ValueError(f"parts: {part} holds {key}={index['meta'].get(key)!r}, {directory} holds "
                                 f"{key}={meta.get(key)!r}")
        shards += [{"file": f"{part.name}/{s['file']}", "count": s["count"]} for s in index["shards"]]
    if meta is None:
        raise ValueError(f"parts: nothing to merge into {directory}")
    seen: set[str] = set()
    for s in shards:
        with np.load(directory / s["file"], allow_pickle=False) as z:
            ids = z["ids"].tolist()
        if seen.intersection(ids):
            raise ValueError(f"parts: {s['file']} repeats ids stored in another shard "
                             f"({sorted(seen.intersection(ids))[:3]})")
        seen.update(ids)
    index = {"format": SHARDS_FORMAT, "version": VERSION, "meta": meta, "shards": shards,
             "count": int(sum(s["count"] for s in shards))}
    directory.mkdir(parents=True, exist_ok=True)
    write_index(directory, index)
    return index


def consolidate(directory: str | Path, path: str | Path) -> Path:
    """Concatenate a shard directory into one ``.npz`` feature file."""
    f = load_features(directory)
    extra = {k: v for k, v in f.meta.items() if k not in ("format", "version", "model", "dim", "img_size",
                                                            "dtype", "count")}
    return save_features(path, f.ids, f.features, model=f.meta["model"], img_size=f.meta["img_size"],
                         dtype=f.meta["dtype"], extra=extra, norms=f.norms)
