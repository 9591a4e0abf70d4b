"""Video copy detection costs: decoding + embedding throughput, and localisation of hour-long pairs.

1. **Extraction**: a generated H.264 video (a moving camera over a bundled photo, ``--seconds`` long at
   ``--source-fps``, ``--width`` x ``--height``), copied ``--videos`` times, sampled at ``--fps`` and embedded
   by a ViT descriptor (random weights: the cost does not depend on them) with the package's extraction
   (``copynce_fast.video.extract``): PyAV decoding in ``--workers`` processes, and DALI (NVDEC) on CUDA when it
   is installed. Reported: sampled frames per second end to end, source frames decoded per second, and video
   seconds processed per wall second. A decode-only row (PyAV, no model) shows what the decoder alone costs.
2. **Localisation**: a ``--hours``-hour query against a ``--hours``-hour reference at 1 fps (3600 x 3600 for one
   hour): the similarity matrix from 512-d descriptors (torch matmul, on the GPU with CUDA) and the temporal
   network alignment (numpy + torch top-k on the host), with three copied segments planted in noise.

    python benchmarks/bench_video.py            # CUDA: realistic sizes; CPU: a small run
    python benchmarks/bench_video.py --quick    # CPU smoke run (< 1 min)

CPU timings are smoke tests of the script, never performance numbers (see ``copynce_fast.utils.benchmarking``).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from copynce_fast.models.loading import load_model
from copynce_fast.utils import benchmarking as bench
from copynce_fast.video.align import temporal_network
from copynce_fast.video.decode import iter_frames, probe_times
from copynce_fast.video.decode_dali import dali_video_available
from copynce_fast.video.extract import VideoItem, extract_video_features
from copynce_fast.video.localize import similarity_matrix
from copynce_fast.video.synthetic import bundled_images, camera_clip, write_video


def make_video(folder: Path, seconds: int, fps: int, width: int, height: int) -> Path:
    frames = camera_clip(bundled_images()[0], seconds * fps, (height, width), seed=0)
    return write_video(folder / "source.mp4", frames, fps, quality=23)


def extraction_rows(video: Path, args, device: torch.device) -> list[dict]:
    rows = []
    vt = probe_times(video)
    n_source = len(vt.times)

    t0 = time.perf_counter()
    sampled = sum(1 for _ in iter_frames(video, args.fps, args.img_size))
    dt = time.perf_counter() - t0
    rows.append({"what": "decode only (PyAV, 1 process)", "videos": 1, "sampled": sampled, "s": dt,
                 "sampled_per_s": sampled / dt, "source_per_s": n_source / dt, "video_s_per_s": vt.duration / dt})

    loaded = load_model("descriptor", random_init=True, arch=args.arch, img_size=args.img_size, device=device)
    items = [VideoItem(f"v{i}", video) for i in range(args.videos)]
    loaders = ["torch"] + (["dali"] if device.type == "cuda" and dali_video_available() else [])
    for loader in loaders:
        with tempfile.TemporaryDirectory() as tmp:
            # warm-up: model weights on the device, cuDNN/cuBLAS handles, DALI pipeline build
            extract_video_features(loaded, items[:1], Path(tmp) / "warm", fps=args.fps, num_workers=0,
                                   progress=False, loader=loader, batch_size=args.batch_size)
            bench.sync()
            t0 = time.perf_counter()
            res = extract_video_features(loaded, items, Path(tmp) / "feats", fps=args.fps,
                                         num_workers=args.workers if loader == "torch" else 0, progress=False,
                                         loader=loader, batch_size=args.batch_size)
            bench.sync()
            dt = time.perf_counter() - t0
        how = f"PyAV, {args.workers} workers" if loader == "torch" else "DALI"
        name = f"decode + {args.arch} {args.img_size}px ({how})"
        rows.append({"what": name, "videos": args.videos, "sampled": res.frames, "s": dt,
                     "sampled_per_s": res.frames / dt, "source_per_s": n_source * args.videos / dt,
                     "video_s_per_s": vt.duration * args.videos / dt})
    return rows


def localisation_rows(args, device: torch.device) -> list[dict]:
    n = int(3600 * args.hours)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((n, 512)).astype(np.float32)
    r = rng.standard_normal((n, 512)).astype(np.float32)
    for q0, r0, length in ((n // 30, n // 2, n // 6), (n // 2, n // 30, n // 4), (5 * n // 6, 5 * n // 6, n // 12)):
        r[r0:r0 + length] = q[q0:q0 + length] + 0.5 * rng.standard_normal((length, 512)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    dev = str(device)
    t_sim = bench.measure(lambda: similarity_matrix(q, r, dev), warmup=1, min_reps=args.reps, whole_step=True)
    sim = similarity_matrix(q, r, dev)
    boxes = temporal_network(sim)
    t_tn = bench.measure(lambda: temporal_network(sim), warmup=1, min_reps=args.reps, host=True)
    return [{"what": f"similarity matrix {n}x{n} (512-d, {device.type})", **t_sim.row()},
            {"what": f"temporal network {n}x{n} (host), {len(boxes)} segments found of 3", **t_tn.row()}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, CPU (smoke test)")
    ap.add_argument("--seconds", type=int, default=None, help="length of the generated video")
    ap.add_argument("--source-fps", type=int, default=30)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--videos", type=int, default=None, help="copies of the video to extract")
    ap.add_argument("--fps", type=float, default=1.0, help="sampling rate")
    ap.add_argument("--arch", default="vit_small", choices=("vit_tiny", "vit_small", "vit_base"))
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--hours", type=float, default=None, help="length of both videos of the localisation pair")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    cuda = torch.cuda.is_available() and not args.quick
    device = torch.device("cuda" if cuda else "cpu")
    small = args.quick or not cuda
    args.seconds = args.seconds or (10 if args.quick else 60 if small else 300)
    args.width = args.width or (320 if small else 1280)
    args.height = args.height or (180 if small else 720)
    args.videos = args.videos or (2 if small else 16)
    args.hours = args.hours if args.hours is not None else (0.25 if args.quick else 1.0)
    if args.quick:
        args.arch, args.img_size, args.workers, args.reps = "vit_tiny", 64, 2, 1

    tmp = Path(tempfile.mkdtemp(prefix="bench_video_"))
    try:
        video = make_video(tmp, args.seconds, args.source_fps, args.width, args.height)
        rows = extraction_rows(video, args, device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bench.print_table(rows, ["what", "videos", "sampled", "s", "sampled_per_s", "source_per_s", "video_s_per_s"],
                      title=f"video extraction: {args.seconds} s of {args.width}x{args.height} H.264 at "
                            f"{args.source_fps} fps, sampled at {args.fps} fps")
    loc = localisation_rows(args, device)
    bench.print_table(loc, ["what", "ms", "min-max", "reps", "timer"],
                      title=f"localisation of a {args.hours} h x {args.hours} h pair at 1 fps")
    bench.write_jsonl("video", [{"section": "extraction", **r} for r in rows] +
                      [{"section": "localisation", **r} for r in loc])


if __name__ == "__main__":
    main()
