"""Per-frame video descriptors on disk, in the VSC2022 layout: one ``.npz`` or a resumable shard directory.

**Single file** (:func:`save_video_features` / :func:`load_video_features`): an uncompressed ``.npz`` with

* ``video_ids``: (N,) unicode, the video of each frame row; the rows of one video are contiguous;
* ``timestamps``: (N, 2) float64, ``[start, end]`` seconds of the time interval each frame stands for;
* ``features``: (N, D) float32 or float16;
* ``meta``: 0-d unicode JSON (``{"format": "copynce-fast-video-features", "model", "dim", "img_size", "dtype",
  "fps", ...}``), an extra key the official ``vsc.storage.load_features`` ignores.

These are the three arrays the VSC2022 tools read (``np.load(f, allow_pickle=False)``), so our files work with
the official descriptor evaluation, and the official files (no ``meta``) load here.

**Shard directory** (:class:`VideoFeatureWriter`, a :class:`~copynce_fast.search.shards.ShardDirectory` as the
image features'): ``index.json`` (format, meta, shards with their video ids) and ``shard_*.npz`` files in the
single-file layout, each holding whole videos. A killed extraction leaves complete shards only; the videos not
yet in an indexed shard are redone on resume.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from copynce_fast.search.shards import VERSION, ShardDirectory, atomic_write, read_index

__all__ = ["VideoFeatures", "save_video_features", "load_video_features", "VideoFeatureWriter",
           "consolidate_video_features", "FORMAT"]

FORMAT = "copynce-fast-video-features"
SHARDS_FORMAT = "copynce-fast-video-feature-shards"
_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class VideoFeatures:
    """Frame descriptors of several videos.

    Attributes:
        video_ids: (N,) unicode, one per frame row; each video's rows are contiguous.
        timestamps: (N, 2) float64 ``[start, end]`` seconds.
        features: (N, D) float.
        meta: JSON metadata (empty for official VSC files).
    """

    video_ids: np.ndarray
    timestamps: np.ndarray
    features: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        _check(self.video_ids, self.timestamps, self.features)

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def videos(self) -> list[tuple[str, slice]]:
        """``(video_id, rows)`` of each video, in file order."""
        return list(_runs(self.video_ids))

    def video(self, video_id: str) -> "VideoFeatures":
        """The rows of one video (ValueError if absent)."""
        for vid, rows in _runs(self.video_ids):
            if vid == video_id:
                return self.select(rows)
        raise ValueError(f"video_id: {video_id!r} is not in these features")

    def select(self, rows) -> "VideoFeatures":
        return VideoFeatures(self.video_ids[rows], self.timestamps[rows], self.features[rows], dict(self.meta))

    def with_features(self, features: np.ndarray) -> "VideoFeatures":
        """Same videos and timestamps, other descriptors (N rows, any dim)."""
        return VideoFeatures(self.video_ids, self.timestamps, np.asarray(features), dict(self.meta))


def _runs(video_ids: np.ndarray) -> Iterator[tuple[str, slice]]:
    if len(video_ids) == 0:
        return
    cuts = np.r_[0, np.nonzero(video_ids[1:] != video_ids[:-1])[0] + 1, len(video_ids)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        yield str(video_ids[a]), slice(int(a), int(b))


def _check(video_ids, timestamps, features) -> None:
    if video_ids.ndim != 1:
        raise ValueError(f"video_ids must be 1-D, got shape {video_ids.shape}")
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"features must be a 2-D float array, got {features.dtype} {features.shape}")
    if timestamps.shape != (len(video_ids), 2):
        raise ValueError(f"timestamps must be (N, 2) = ({len(video_ids)}, 2), got {timestamps.shape}")
    if len(features) != len(video_ids):
        raise ValueError(f"features ({len(features)}) and video_ids ({len(video_ids)}) differ in length")
    seen: set[str] = set()
    for vid, _ in _runs(video_ids):
        if vid in seen:
            raise ValueError(f"video_ids: the frames of {vid!r} are not contiguous")
        seen.add(vid)


def _npz_bytes(f: VideoFeatures, meta: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, video_ids=f.video_ids.astype(str), timestamps=f.timestamps.astype(np.float64),
             features=f.features, meta=np.asarray(json.dumps(meta, sort_keys=True)))
    return buf.getvalue()


def _meta(model: str, dim: int, img_size: int, dtype: str, extra: dict | None) -> dict:
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    return {**(extra or {}), "format": FORMAT, "version": VERSION, "model": model, "dim": int(dim),
            "img_size": int(img_size), "dtype": dtype}


def save_video_features(path: str | Path, video_ids, timestamps, features, *, model: str = "unknown",
                        img_size: int = 0, dtype: str = "float32", extra: dict | None = None) -> Path:
    """Write one ``.npz`` in the VSC2022 layout (module docstring).

    Args:
        video_ids: (N,) ids, rows of a video contiguous; timestamps: (N, 2) seconds; features: (N, D).
        model, img_size, dtype, extra: metadata; ``dtype`` ("float32" | "float16") is the storage dtype.
    """
    f = VideoFeatures(np.asarray(video_ids).astype(str), np.asarray(timestamps, np.float64),
                      np.asarray(features).astype(dtype))
    meta = {**_meta(model, f.dim, img_size, dtype, extra), "count": len(f), "videos": len(f.videos())}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _npz_bytes(f, meta))
    return path


def _load_file(path: Path) -> VideoFeatures:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("video_ids", "timestamps", "features") if k not in z.files]
            if missing:
                raise ValueError(f"{path}: not a video feature file (no {', '.join(missing)})")
            meta_text = str(z["meta"]) if "meta" in z.files else "{}"
            ids, ts, feats = z["video_ids"].astype(str), z["timestamps"].astype(np.float64), z["features"]
    except ValueError:
        raise
    except Exception as e:  # OSError, EOFError, zipfile.BadZipFile, JSON errors: a damaged or foreign file
        raise ValueError(f"{path}: unreadable video feature file ({type(e).__name__}: {e})") from None
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: its meta is not JSON ({e})") from None
    if ts.ndim == 1:  # the official tools accept one timestamp per frame: an instant
        ts = np.stack([ts, ts], axis=1)
    try:
        return VideoFeatures(ids, ts, feats, meta)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def load_video_features(path: str | Path) -> VideoFeatures:
    """Read a ``.npz`` (ours or an official VSC2022 file) or a shard directory (shards concatenated)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if not path.is_dir():
        return _load_file(path)
    index = read_index(path, SHARDS_FORMAT)
    if index is None:
        raise ValueError(f"{path}: no index.json, not a video feature shard directory")
    parts = [_load_file(path / s["file"]) for s in index["shards"]]
    meta = {**index["meta"], "format": FORMAT}
    if not parts:
        return VideoFeatures(np.zeros(0, str), np.zeros((0, 2)), np.zeros((0, index["meta"]["dim"]), np.float32),
                             meta)
    return VideoFeatures(np.concatenate([p.video_ids for p in parts]), np.concatenate([p.timestamps for p in parts]),
                         np.concatenate([p.features for p in parts]), meta)


class VideoFeatureWriter(ShardDirectory):
    """Append whole videos to shards under ``directory``; reopening an existing directory resumes it.

    Args:
        directory: shard directory (created if missing).
        model, dim, img_size, dtype: metadata; on resume they must equal the stored ones, and so must the
            ``match`` entries of ``extra`` (e.g. the sampling rate), else ValueError naming the field.
        shard_size: frame rows per shard (a shard closes at the first whole video past this many rows).
        extra: more JSON metadata.
        match: keys of ``extra`` that must agree on resume.
    """

    def __init__(self, directory: str | Path, *, model: str, dim: int, img_size: int, dtype: str = "float32",
                 shard_size: int = 65536, extra: dict | None = None, match: Iterable[str] = ()):
        super().__init__(directory, fmt=SHARDS_FORMAT, meta=_meta(model, dim, img_size, dtype, extra),
                         compare=("model", "dim", "img_size", "dtype", *match), shard_size=shard_size)
        self._done = {v for s in self.shards for v in s["videos"]}
        self._buffer: list[VideoFeatures] = []

    def remaining(self, video_ids: Iterable[str]) -> list[str]:
        """The ids, in order, not yet stored or buffered."""
        buffered = {str(b.video_ids[0]) for b in self._buffer}
        return [v for v in map(str, video_ids) if v not in self._done and v not in buffered]

    def append(self, video_id: str, timestamps, features) -> None:
        """Buffer one whole video: ``timestamps`` (F, 2), ``features`` (F, dim); F >= 1."""
        feats = np.asarray(features.detach().cpu().float() if hasattr(features, "detach") else features)
        if feats.ndim != 2 or feats.shape[1] != self._index["meta"]["dim"] or len(feats) == 0:
            raise ValueError(f"features of {video_id!r} must be (F>=1, {self._index['meta']['dim']}), "
                             f"got {feats.shape}")
        if not self.remaining([video_id]):
            raise ValueError(f"video {video_id!r} is already written")
        ids = np.full(len(feats), str(video_id))
        self._buffer.append(VideoFeatures(ids, np.asarray(timestamps, np.float64),
                                          feats.astype(self._index["meta"]["dtype"])))
        if sum(len(b) for b in self._buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered videos as one shard (nothing if empty)."""
        if not self._buffer:
            return
        part = VideoFeatures(np.concatenate([b.video_ids for b in self._buffer]),
                             np.concatenate([b.timestamps for b in self._buffer]),
                             np.concatenate([b.features for b in self._buffer]))
        videos = [str(b.video_ids[0]) for b in self._buffer]
        self.commit_shard(_npz_bytes(part, {**self.meta, "count": len(part)}), len(part), videos=videos)
        self._done.update(videos)
        self._buffer = []


def consolidate_video_features(directory: str | Path, path: str | Path) -> Path:
    """Concatenate a shard directory into one ``.npz`` (same meta)."""
    f = load_video_features(directory)
    meta = {k: v for k, v in f.meta.items() if k not in ("format", "version", "count", "videos")}
    return save_video_features(path, f.video_ids, f.timestamps, f.features, **{
        "model": meta.pop("model"), "img_size": meta.pop("img_size"), "dtype": meta.pop("dtype"),
        "extra": {k: v for k, v in meta.items() if k != "dim"}})
