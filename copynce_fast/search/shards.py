"""A resumable shard directory: ``index.json`` is the only source of truth, every file is written atomically.

Both feature writers are one of these (image descriptors: :class:`~copynce_fast.search.features.FeatureWriter`;
video frame descriptors: :class:`~copynce_fast.video.features.VideoFeatureWriter`). The writer decides what a
shard holds and when it is full; this class decides how a shard reaches the disk and how a rerun resumes::

    <dir>/index.json         {"format": <kind>, "version": 1, "meta": {...}, "count": N,
                              "shards": [{"file": "shard_000000.npz", "count": n0, ...}, ...]}
    <dir>/shard_000000.npz

A shard is written to a temporary name and renamed into place, then the index is rewritten the same way, so a
writer killed at any point leaves a directory whose index lists complete shards only; a shard file the index
does not list is ignored and overwritten. Reopening a directory checks that the metadata a rerun asks for
equals the stored one (ValueError naming the first field that differs).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

VERSION = 1

__all__ = ["ShardDirectory", "atomic_write", "read_index", "write_index"]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half of one


def read_index(directory: Path, fmt: str) -> dict | None:
    """``directory/index.json`` (None when absent); ValueError when it is an index of another ``format``."""
    p = Path(directory) / "index.json"
    if not p.exists():
        return None
    index = json.loads(p.read_text())
    if index.get("format") != fmt:
        raise ValueError(f"{p}: not a {fmt} index")
    return index


def write_index(directory: Path, index: dict) -> None:
    atomic_write(Path(directory) / "index.json", json.dumps(index, indent=1, sort_keys=True).encode())


class ShardDirectory:
    """The shards and index of one directory; subclasses buffer rows and call :meth:`commit_shard`.

    Args:
        directory: created if missing; an existing index is resumed.
        fmt: the index's ``format`` string (one per kind of shard).
        meta: the metadata a new index stores.
        compare: keys of ``meta`` that must equal the stored ones when the directory already has an index.
        shard_size: rows per shard (how a subclass uses it is its own business), a positive integer.
    """

    def __init__(self, directory: str | Path, *, fmt: str, meta: dict, compare: Iterable[str], shard_size: int):
        if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
        self.directory = Path(directory)
        self.shard_size = int(shard_size)
        self.directory.mkdir(parents=True, exist_ok=True)
        index = read_index(self.directory, fmt)
        if index is None:
            index = {"format": fmt, "version": VERSION, "meta": meta, "shards": [], "count": 0}
            write_index(self.directory, index)
        else:
            for key in compare:
                if index["meta"].get(key) != meta.get(key):
                    raise ValueError(f"{self.directory} holds {key}={index['meta'].get(key)!r}, "
                                     f"asked {key}={meta.get(key)!r}")
        self._index = index

    @property
    def meta(self) -> dict:
        return dict(self._index["meta"])

    @property
    def shards(self) -> list[dict]:
        """The index's shard records, in order (``file``, ``count`` and what the subclass stored)."""
        return list(self._index["shards"])

    @property
    def num_written(self) -> int:
        """Rows stored in indexed shards (not counting what a subclass still buffers)."""
        return int(self._index["count"])

    def commit_shard(self, data: bytes, count: int, **record) -> str:
        """Write the next shard file (``data``: its bytes, ``count`` rows) and list it in the index, with
        ``record``'s extra keys; returns its file name."""
        name = f"shard_{len(self._index['shards']):06d}.npz"
        atomic_write(self.directory / name, data)
        self._index["shards"].append({"file": name, "count": int(count), **record})
        self._index["count"] += int(count)
        write_index(self.directory, self._index)  # the shard counts only once the index names it
        return name

    def flush(self) -> None:
        """Write what the subclass buffers (a subclass overrides it)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.flush()  # buffered rows are complete even when the loop raised: keep them
