"""Per-frame descriptors of a folder of videos, in the VSC2022 layout: batched, resumable, bad videos skipped.

Output (``out``), as the image extraction's (the same :class:`~copynce_fast.inference.extract.ResumableOutput`):

* a directory: a :class:`~copynce_fast.video.features.VideoFeatureWriter` shard directory, read back by
  :func:`~copynce_fast.video.features.load_video_features`;
* a path ending in ``.npz``: shards go to ``<out>.parts/`` while running; once every video is done they are
  consolidated into the single ``.npz`` (``video_ids``, ``timestamps``, ``features`` + ``meta``) and the parts
  folder removed.

Resuming: rerunning with the same output skips the videos already stored (model, dim, img_size, dtype,
fps and scene threshold must match, else ValueError). The unit of work and of crash safety is a whole video.
``max_videos`` stops cleanly after that many new videos. Videos that cannot be decoded are skipped and
reported (path and reason), not stored, so a rerun tries them again.

Pipeline: decoding runs in DataLoader worker processes (PyAV, one video per worker at a time, frames handed
over in chunks of ``chunk_frames`` so an hour of video never sits in memory), or in DALI (GPU with a CUDA
model; ``loader``); the main process normalises on the device and runs the descriptor under bf16 autocast on
CUDA (fp32 on CPU), ``batch_size`` frames per forward pass. Descriptors are the model's L2-normalised outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from copynce_fast.data.batch import normalise_images
from copynce_fast.inference.extract import ResumableOutput, items_to_do
from copynce_fast.models import CopyDescriptor
from copynce_fast.models.loading import LoadedModel
from copynce_fast.utils.device import autocast
from copynce_fast.video.decode import VIDEO_EXTENSIONS, BadVideo, frame_intervals, iter_frames
from copynce_fast.video.decode_dali import DaliVideoChunks, dali_video_available
from copynce_fast.video.features import VideoFeatureWriter, consolidate_video_features, load_video_features

__all__ = ["VideoItem", "list_videos", "VideoChunks", "VideoExtractResult", "extract_video_features"]


@dataclass(frozen=True)
class VideoItem:
    id: str
    path: Path


def list_videos(source: str | Path) -> list[VideoItem]:
    """Videos of a folder (recursive, by extension, sorted by path), of a ``.txt`` list (one path per line,
    relative to the list's folder) or one video file. The id is the file stem; ids must be unique."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    elif source.is_file() and source.suffix.lower() in (".txt", ".lst"):
        lines = [ln.strip() for ln in source.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        paths = [p if p.is_absolute() else source.parent / p for p in map(Path, lines)]
    elif source.is_file():
        paths = [source]
    else:
        raise ValueError(f"{source}: no such file or folder")
    if not paths:
        raise ValueError(f"{source}: no video files (extensions {', '.join(VIDEO_EXTENSIONS)})")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise ValueError(f"{source}: two videos share the id {p.stem!r}: {seen[p.stem]} and {p}")
        seen[p.stem] = p
    return [VideoItem(k, v) for k, v in seen.items()]


class VideoChunks(IterableDataset):
    """PyAV decoding as an IterableDataset: yields ``("chunk", i, starts (n,) float64, uint8 [n, 3, S, S],
    None)`` per chunk of video ``i`` and ``("end", i, None, None, None)`` after it, or ``("bad", i, None, None,
    reason)``. Workers take videos ``i % num_workers == worker_id``, so a video's chunks come in order."""

    def __init__(self, paths: Sequence[Path], fps: float, size: int, scene_threshold: float | None = None,
                 chunk_frames: int = 64):
        self.paths = np.asarray([str(p).encode() for p in paths], dtype=np.bytes_)  # one buffer, shared by forks
        self.fps, self.size, self.scene_threshold, self.chunk_frames = fps, size, scene_threshold, chunk_frames

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        mine = range(len(self.paths)) if info is None else range(info.id, len(self.paths), info.num_workers)
        for i in mine:
            starts: list[float] = []
            frames: list[np.ndarray] = []
            try:
                for start, rgb in iter_frames(self.paths[i].decode(), self.fps, self.size, self.scene_threshold):
                    starts.append(start)
                    frames.append(rgb)
                    if len(frames) == self.chunk_frames:
                        yield "chunk", i, np.asarray(starts), _chw(frames), None
                        starts, frames = [], []
            except BadVideo as e:
                yield "bad", i, None, None, str(e)
                continue
            if frames:
                yield "chunk", i, np.asarray(starts), _chw(frames), None
            yield "end", i, None, None, None


def _chw(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def _identity(x):
    return x


@dataclass
class VideoExtractResult:
    """What an extraction did. ``skipped``: ``(path, reason)`` of undecodable videos (not stored)."""

    out: Path
    total: int
    already_done: int
    extracted: int
    frames: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = True


def extract_video_features(loaded: LoadedModel, videos: Sequence[VideoItem], out: str | Path, *, fps: float = 1.0,
                           scene_threshold: float | None = None, batch_size: int = 64, num_workers: int = 2,
                           amp: str = "bf16", dtype: str = "float32", shard_size: int = 65536,
                           chunk_frames: int = 64, max_videos: int | None = None, progress: bool = True,
                           loader: str = "auto") -> VideoExtractResult:
    """Extract per-frame descriptors of ``videos`` into ``out`` (module docstring), resuming what is there.

    Args:
        loaded: a descriptor from :func:`copynce_fast.models.loading.load_model`.
        videos: the videos (unique ids).
        out: shard directory, or a ``.npz`` file path.
        fps: samples per second; scene_threshold: also sample scene cuts (PyAV loader only).
        batch_size: frames per forward pass; num_workers: decoding processes (0 = in the main process).
        amp: "bf16" (autocast on CUDA) or "none"; dtype: "float32" or "float16" storage.
        shard_size: frame rows per shard file.
        chunk_frames: frames handed from a decoder to the model at a time.
        max_videos: stop after this many new videos (None = all).
        progress: tqdm bar (videos).
        loader: "torch" (PyAV in worker processes), "dali" (DALI; GPU with a CUDA model) or "auto" (DALI on
            CUDA when installed and no scene cuts are asked, else PyAV).
    """
    if not isinstance(loaded.model, CopyDescriptor):
        raise ValueError(f"extraction needs a descriptor model, got a {loaded.kind}")
    for name, v, lo in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("shard_size", shard_size, 1),
                        ("chunk_frames", chunk_frames, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if loader not in ("auto", "torch", "dali"):
        raise ValueError(f"loader must be auto, torch or dali, got {loader!r}")
    if loader == "dali" and scene_threshold is not None:
        raise ValueError("scene_threshold: scene cuts need the PyAV loader (loader='torch')")
    if max_videos is not None and max_videos < 0:
        raise ValueError(f"max_videos must be >= 0, got {max_videos}")
    output = ResumableOutput.at(out)
    by_id = {v.id: v for v in videos}
    if len(by_id) != len(videos):
        raise ValueError("videos contain duplicate ids")
    model: CopyDescriptor = loaded.model
    device = loaded.device
    meta = {"model": loaded.name, "dim": model.dim, "img_size": loaded.img_size, "dtype": dtype}
    extra = {"kind": "video-descriptor", "fps": float(fps), "scene_threshold": scene_threshold}
    match = ("fps", "scene_threshold")  # the sampling: a resumed output must have been sampled the same way

    seed = None
    if output.finished_file():
        seed = load_video_features(output.path)  # a finished .npz: new videos are added through a parts folder
        output.check_stored(seed.meta, {**meta, **{k: extra[k] for k in match}})
        stored = {vid for vid, _ in seed.videos()}
        if all(v in stored for v in by_id):
            return VideoExtractResult(output.path, len(videos), len(videos), 0)
    writer = output.open(lambda d: VideoFeatureWriter(d, **meta, shard_size=shard_size, extra=extra, match=match))
    if seed is not None:
        for vid, rows in seed.videos():
            writer.append(vid, seed.timestamps[rows], seed.features[rows])
        writer.flush()

    todo, already = items_to_do(writer, by_id, max_videos)
    result = VideoExtractResult(output.path, len(videos), already, 0)
    failed: set[str] = set()
    if todo:
        use_dali = loader == "dali" or (loader == "auto" and device.type == "cuda" and scene_threshold is None
                                        and dali_video_available())
        if use_dali:
            chunks = DaliVideoChunks([v.path for v in todo], fps, loaded.img_size,
                                     (device.index or 0) if device.type == "cuda" else None, chunk_frames)
        else:
            dataset = VideoChunks([v.path for v in todo], fps, loaded.img_size, scene_threshold, chunk_frames)
            chunks = DataLoader(dataset, batch_size=None, num_workers=min(num_workers, len(todo)),
                                collate_fn=_identity, pin_memory=device.type == "cuda")
        bar = tqdm(total=len(todo), unit="video", desc="extract", disable=not progress, dynamic_ncols=True)
        state: dict[int, tuple[list, list]] = {}  # video index -> (starts, features) of chunks so far
        with writer, torch.inference_mode():
            for kind, i, starts, frames, reason in chunks:
                if kind == "chunk":
                    feats = []
                    for a in range(0, len(frames), batch_size):
                        x = normalise_images(frames[a:a + batch_size], device, torch.float32)
                        with autocast(device, amp):
                            feats.append(model(x)["feat"].float().cpu())
                    got = state.setdefault(i, ([], []))
                    got[0].append(starts)
                    got[1].append(torch.cat(feats).numpy())
                    continue
                got = state.pop(i, ([], []))
                if kind == "bad" or not got[0]:
                    result.skipped.append((str(todo[i].path), reason or "no frames"))
                    failed.add(todo[i].id)
                else:
                    order, ts = frame_intervals(np.concatenate(got[0]), fps)
                    writer.append(todo[i].id, ts, np.concatenate(got[1])[order])
                    result.extracted += 1
                    result.frames += len(ts)
                bar.update(1)
        bar.close()

    result.complete = output.finish(writer, by_id, failed, consolidate_video_features)
    return result
