"""Small generated videos whose copied segments are known exactly (tests, demos, benchmarks; nothing downloaded).

* :func:`camera_clip`: frames of one still image seen through a moving camera: a linear pan across the image
  with a slow zoom and a vertical sway, so every instant shows different content;
* :func:`edit_plan` / :func:`apply_edit`: one edit of the augmentation zoo (``copynce_fast.data``: resized
  crop, flip, rotation, colour jitter, blur, pixelisation, greyscale, text and emoji overlays), applied the
  same way to every frame of a copied clip, its strength in [0, 1] (0 = untouched);
* :func:`compose_query`: unrelated footage with clips of reference videos inserted at given offsets, at a
  given speed and edit strength; returns the frames and the exact ground-truth segments;
* :func:`write_video`: encode frames with PyAV (H.264 by default, MJPEG for DALI's CPU decoder);
* :func:`make_references`, :func:`make_queries`, :func:`make_dataset`: reference and query folders (plus
  ``ground_truth.csv``).

Timing: a video has ``fps`` frames per second and frame ``i`` is shown during ``[i / fps, (i + 1) / fps)``. A
clip of reference frames ``[a, b)`` inserted at query frame ``c`` at speed ``v`` shows reference frame
``a + floor(m · v)`` at query frame ``c + m``; its ground truth is the query interval
``[c / fps, (c + n) / fps]`` against the reference interval ``[a / fps, (a + n · v) / fps]``
with ``n = (b - a) / v`` query frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from copynce_fast.data.executor_torch import render_plan, to_tensor_image
from copynce_fast.data.plan import AugmentPlan, Occluder, PhotoOp
from copynce_fast.pixtrace import stages as st
from copynce_fast.pixtrace.view import View
from copynce_fast.video.segments import Match, write_matches_csv

__all__ = ["camera_clip", "edit_plan", "apply_edit", "write_video", "Insert", "compose_query", "bundled_images",
           "SyntheticDataset", "make_references", "make_queries", "make_dataset", "demo_queries"]


def camera_clip(image: np.ndarray, n_frames: int, size: tuple[int, int] = (72, 96), seed: int = 0) -> np.ndarray:
    """``n_frames`` RGB frames [n, h, w, 3] uint8 of ``image`` [H, W, 3] filmed by a panning, zooming camera.

    The view box (aspect of ``size``) starts at one side of the image and pans linearly to the other, its
    side drifting between 50 % and 75 % of the image, with a vertical sway; the direction and phases come from
    ``seed``. Sub-pixel boxes are resampled bilinearly.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    h, w = (int(v) for v in size)
    rng = np.random.default_rng(seed)
    ih, iw = image.shape[:2]
    src = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    t = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    zoom = 0.5 + 0.25 * (0.5 + 0.5 * np.sin(2 * np.pi * (0.6 * t + rng.uniform())))
    box_h = zoom * min(ih, iw * h / w)
    box_w = box_h * w / h
    direction = 1.0 if rng.uniform() < 0.5 else -1.0
    cx = iw / 2 + direction * (t - 0.5) * (iw - box_w)
    cy = ih / 2 + 0.5 * (ih - box_h) * np.sin(2 * np.pi * (0.8 * t + rng.uniform()))
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    for i in range(n_frames):
        box = (cx[i] - box_w[i] / 2, cy[i] - box_h[i] / 2, cx[i] + box_w[i] / 2, cy[i] + box_h[i] / 2)
        frames[i] = np.asarray(src.resize((w, h), Image.BILINEAR, box=box))
    return frames


def edit_plan(hw: tuple[int, int], strength: float, seed: int = 0) -> AugmentPlan:
    """One edit of a ``hw`` frame (same output size), stronger as ``strength`` goes from 0 to 1.

    The ladder (each step adds to the previous ones; positions, colours and text come from ``seed``):
    crop keeping ``1 - 0.55 s`` of each side and colour jitter from ``s > 0``; a text caption from 0.2; blur
    from 0.35; rotation by ``12 s`` degrees from 0.5; an emoji from 0.6; horizontal flip from 0.7;
    pixelisation from 0.8; greyscale from 0.9.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    h, w = (int(v) for v in hw)
    rng = np.random.default_rng(seed)
    s = float(strength)
    stages = []
    ops: list = []
    if s > 0:
        keep = 1.0 - 0.55 * s
        ch, cw = keep * h, keep * w
        top, left = rng.uniform(0, h - ch), rng.uniform(0, w - cw)
        stages.append(st.resized_crop((h, w), top, left, ch, cw, (h, w)))
        ops.append(PhotoOp("jitter", (1 + 0.4 * s, 1 - 0.3 * s, 1 - 0.5 * s, 0.05 * s, 0, 1, 2, 3)))
    if s >= 0.5:
        stages.append(st.rotate((h, w), 12.0 * s * (1 if rng.uniform() < 0.5 else -1)))
    if s >= 0.7:
        stages.append(st.hflip((h, w)))
    if s >= 0.35:
        ops.append(PhotoOp("blur", (0.6 + 1.2 * s,)))
    if s >= 0.8:
        ops.append(PhotoOp("pixelize", (0.45,)))
    if s >= 0.9:
        ops.append(PhotoOp("grayscale"))
    if s >= 0.2:
        size = max(6, int(0.18 * h * s))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        ops.append(Occluder("text", top=int(rng.integers(0, max(1, h - 2 * size))), left=int(rng.integers(0, w // 3)),
                            opacity=min(1.0, 0.5 + s / 2), colour=colour, size=size,
                            text="".join(rng.choice(list("COPYREUPLOAD"), 6))))
    if s >= 0.6:
        side = max(6, int(0.35 * h * s))
        ops.append(Occluder("emoji", top=int(rng.integers(0, h - side)), left=int(rng.integers(0, w - side)),
                            opacity=1.0, colour=(250, 200, 30), size=side, seed=int(rng.integers(4))))
    if not stages:
        stages.append(st.identity((h, w)))
    return AugmentPlan(0, View((h, w), tuple(stages)), tuple(ops))


def apply_edit(frames: np.ndarray, plan: AugmentPlan) -> np.ndarray:
    """The plan rendered on every frame [n, h, w, 3] uint8 (bilinear warp, then its ops); same shape.

    Runs torch single-threaded: on frames this small, intra-op threads cost more than they save (20x slower
    on a busy 2-core machine)."""
    out = np.empty((len(frames),) + tuple(plan.out_hw) + (3,), np.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, f in enumerate(frames):
            out[i] = render_plan(plan, to_tensor_image(f)).permute(1, 2, 0).numpy()
    finally:
        torch.set_num_threads(threads)
    return out


def write_video(path: str | Path, frames: np.ndarray, fps: int | Fraction = 8, codec: str = "libx264",
                quality: int = 18) -> Path:
    """Encode RGB frames [n, h, w, 3] uint8 (h, w even) to ``path`` with PyAV; frame i at time i / fps.

    ``codec``: "libx264" (``quality`` = CRF), "mpeg4" or "mjpeg" (``quality`` = qscale, lower is better;
    e.g. in ``.avi``/``.mkv``, which DALI's CPU decoder reads).
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty [n, h, w, 3] uint8 array, got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frames need an even height and width for 4:2:0 video, got {frames.shape[1:3]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.time_base = 1 / rate
        if codec == "mjpeg":
            stream.pix_fmt = "yuvj420p"
            stream.codec_context.qmin = stream.codec_context.qmax = max(2, int(quality) // 6)
        else:
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(quality), "preset": "ultrafast"} if codec == "libx264" else {}
            if codec == "mpeg4":
                stream.codec_context.qmin = stream.codec_context.qmax = max(2, int(quality) // 6)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@dataclass(frozen=True)
class Insert:
    """A clip of reference ``ref_id`` frames ``[ref_start, ref_end)`` (seconds) shown in the query from
    ``query_start`` (seconds) at ``speed`` (2 = twice as fast: half as long), edited with ``strength``."""

    ref_id: str
    ref_start: float
    ref_end: float
    query_start: float
    speed: float = 1.0
    strength: float = 0.0
    seed: int = 0


def _frame(t: float, fps: int, what: str) -> int:
    f = t * fps
    if abs(f - round(f)) > 1e-6:
        raise ValueError(f"{what}={t} s is not on the {fps} fps frame grid")
    return int(round(f))


def compose_query(query_id: str, duration: float, refs: dict[str, np.ndarray], inserts: Sequence[Insert], *,
                  fps: int = 8, size: tuple[int, int] = (72, 96), background: np.ndarray | None = None,
                  seed: int = 0) -> tuple[np.ndarray, list[Match]]:
    """A query video: ``background`` footage (a moving camera over a procedural image by default) with the
    ``inserts`` pasted over it, full frame.

    Args:
        refs: reference frames [n, h, w, 3] by id, at ``fps``.
        inserts: clips to insert (times on the ``fps`` frame grid; clips must not overlap in the query).

    Returns:
        ``(frames [N, h, w, 3] uint8, ground truth)`` with one :class:`Match` per insert (module docstring).
    """
    from copynce_fast.data.synthetic import synthetic_image

    n = _frame(duration, fps, "duration")
    if background is None:
        background = synthetic_image(10_000 + seed, (3 * size[0], 3 * size[1]))
    frames = camera_clip(background, n, size, seed=seed + 1)
    used = np.zeros(n, bool)
    truth = []
    for ins in inserts:
        if ins.ref_id not in refs:
            raise ValueError(f"inserts: unknown reference {ins.ref_id!r}")
        if not ins.speed > 0:
            raise ValueError(f"inserts: speed must be positive, got {ins.speed}")
        a, b = _frame(ins.ref_start, fps, "ref_start"), _frame(ins.ref_end, fps, "ref_end")
        c = _frame(ins.query_start, fps, "query_start")
        count = (b - a) / ins.speed
        if abs(count - round(count)) > 1e-6 or not 0 <= a < b <= len(refs[ins.ref_id]):
            raise ValueError(f"inserts: reference frames [{a}, {b}) at speed {ins.speed} do not make whole query "
                             f"frames inside {ins.ref_id!r} ({len(refs[ins.ref_id])} frames)")
        count = int(round(count))
        if c + count > n or used[c:c + count].any():
            raise ValueError(f"inserts: the clip at query frame {c} ({count} frames) leaves the video or overlaps "
                             "another clip")
        src = refs[ins.ref_id][a + np.floor(np.arange(count) * ins.speed + 1e-9).astype(int)]
        frames[c:c + count] = apply_edit(src, edit_plan(size, ins.strength, ins.seed)) if ins.strength else src
        used[c:c + count] = True
        truth.append(Match(query_id, ins.ref_id, c / fps, (c + count) / fps, a / fps, (a + count * ins.speed) / fps))
    return frames, truth


def bundled_images() -> list[np.ndarray]:
    """The photos in ``copynce_fast/assets/images`` as RGB arrays (the references of :func:`make_dataset`)."""
    from copynce_fast.data.sources import bundled_source

    src = bundled_source()
    return [src.decode(i) for i in range(len(src))]


@dataclass
class SyntheticDataset:
    """What :func:`make_dataset` wrote: ``queries/`` and ``refs/`` folders, the ground truth and its CSV."""

    root: Path
    queries: Path
    refs: Path
    ground_truth: list[Match] = field(default_factory=list)
    ground_truth_csv: Path | None = None


def make_references(folder: str | Path, n_refs: int = 4, *, duration: float = 8.0, fps: int = 8,
                    size: tuple[int, int] = (72, 96), codec: str = "libx264",
                    ext: str = ".mp4") -> dict[str, np.ndarray]:
    """Reference videos ``R000..`` in ``folder``: one bundled photo each under a moving camera.

    Returns:
        their frames by id ([n, h, w, 3] uint8 at ``fps``), for :func:`make_queries`.
    """
    photos = bundled_images()
    if not 1 <= n_refs <= len(photos):
        raise ValueError(f"n_refs must be in [1, {len(photos)}], got {n_refs}")
    n = _frame(duration, fps, "duration")
    refs = {f"R{i:03d}": camera_clip(photos[i], n, size, seed=i) for i in range(n_refs)}
    for rid, frames in refs.items():
        write_video(Path(folder) / f"{rid}{ext}", frames, fps, codec)
    return refs


def make_queries(folder: str | Path, queries: dict[str, tuple[float, list[Insert]]], refs: dict[str, np.ndarray], *,
                 fps: int = 8, size: tuple[int, int] = (72, 96), codec: str = "libx264",
                 ext: str = ".mp4") -> list[Match]:
    """Query videos in ``folder`` (:func:`compose_query` each); returns the ground truth of all of them.

    Args:
        queries: ``{query_id: (duration seconds, [Insert, ...])}``; no inserts = a query with no copy.
        refs: reference frames by id (:func:`make_references`).
    """
    truth: list[Match] = []
    for k, (qid, (duration, inserts)) in enumerate(queries.items()):
        frames, gt = compose_query(qid, duration, refs, inserts, fps=fps, size=size, seed=k)
        write_video(Path(folder) / f"{qid}{ext}", frames, fps, codec)
        truth.extend(gt)
    return truth


def demo_queries() -> dict[str, tuple[float, list[Insert]]]:
    """The query layout of the README's video example (references ``R000``-``R007`` of 12 s): 6 s clips of six
    references inserted at whole seconds -- two unedited, two at edit strength 0.3, one at 0.6, one at double
    speed -- and two queries without a copy."""
    return {
        "Q000": (16.0, [Insert("R000", 2, 8, 5)]),
        "Q001": (14.0, [Insert("R001", 4, 10, 2)]),
        "Q002": (14.0, [Insert("R002", 0, 6, 6, strength=0.3, seed=1)]),
        "Q003": (16.0, [Insert("R003", 3, 9, 8, strength=0.3, seed=2)]),
        "Q004": (14.0, [Insert("R004", 0, 12, 3, speed=2.0, seed=3)]),
        "Q005": (14.0, [Insert("R005", 5, 11, 4, strength=0.6, seed=4)]),
        "Q006": (12.0, []),
        "Q007": (12.0, []),
    }


def make_dataset(root: str | Path, queries: dict[str, tuple[float, list[Insert]]], *, n_refs: int = 4,
                 ref_duration: float = 8.0, fps: int = 8, size: tuple[int, int] = (72, 96),
                 codec: str = "libx264", ext: str = ".mp4") -> SyntheticDataset:
    """``refs/`` (:func:`make_references`), ``queries/`` (:func:`make_queries`) and ``ground_truth.csv``
    under ``root``."""
    root = Path(root)
    ds = SyntheticDataset(root, root / "queries", root / "refs")
    refs = make_references(ds.refs, n_refs, duration=ref_duration, fps=fps, size=size, codec=codec, ext=ext)
    ds.ground_truth = make_queries(ds.queries, queries, refs, fps=fps, size=size, codec=codec, ext=ext)
    ds.ground_truth_csv = write_matches_csv(root / "ground_truth.csv", ds.ground_truth)
    return ds
