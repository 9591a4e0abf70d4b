"""``copynce-fast extract``: descriptors for a folder, a file list or a DISC21 split, resumable."""
from __future__ import annotations

import argparse
from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_model_args,
    add_subparser,
    info,
    load_model_from_args,
    non_negative_int,
    positive_int,
    report_skipped,
    skipped_count,
)
from copynce_fast.cli._video import add_sampling_args, list_video_items, run_video_extraction

DESCRIPTION = """\
Extract L2-normalised global descriptors with a CopyNCE descriptor (or a DINO ViT) and store them with their
image ids (the file stem, or the 'uuid' column of a CSV list).

Images are resized to S×S (bicubic, aspect ratio not kept) and normalised with the ImageNet mean/std, as the
reference evaluation does. Unreadable images are skipped (exit code 0), each named with its reason: on stderr,
or in a skipped.txt beside --out when there are more than 20; the count ends the final line.
Rerunning with the same --out resumes: ids already stored are skipped.

Under torchrun (e.g. 'torchrun --nproc-per-node 8 -m copynce_fast.cli extract ... --out DIR') every rank
extracts its slice of the images into DIR/rank_<r>/ and rank 0 merges DIR/index.json; resumable per rank
(any number of ranks). --whiten W.npz stores PCA-whitened descriptors (W from 'copynce-fast index --pca-dim',
DIR/whitening.npz of an index directory, or the index directory itself).

output:
  --out DIR        a shard directory (index.json + shard_*.npz)
  --out FILE.npz   one .npz (ids, features, meta JSON); shards go to FILE.npz.parts/ until the end

videos (--video): SOURCE is a folder of videos (recursive: .mp4 .mkv .webm .avi .mov ...), a .txt list or one
video; the id is the file stem. Frames are sampled at --fps (sample k stands for [k/fps, (k+1)/fps] and shows
the frame on screen at its middle, as ffmpeg's fps filter that the VSC2022 baseline uses), optionally plus
scene cuts (--scene-threshold), decoded with PyAV in --workers processes (or DALI on the GPU), resized to S×S.
The output is the VSC2022 layout (video_ids, timestamps [start, end] per frame, features), readable by the
official VSC2022 tools; resumable per video; unreadable videos are skipped, counted and named.

examples:
  copynce-fast extract images/ --out refs.npz --weights descriptor_vits_224.pth.tar
  copynce-fast extract /data/DISC21 --split dev --out dev_queries.npz --weights ckpt.pt --batch-size 256
  copynce-fast extract list.txt --out feats/ --random-init --arch vit_tiny --img-size 64
  copynce-fast extract videos/ --video --fps 1 --out q.npz --weights ckpt.pt
  torchrun --nproc-per-node 8 -m copynce_fast.cli extract /data/refs --out refs/ --weights ckpt.pt
"""


def add_extract_args(parser: argparse.ArgumentParser) -> None:
    """Loader / storage flags shared with ``search`` (which can extract folders itself)."""
    g = parser.add_argument_group("extraction")
    g.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    g.add_argument("--workers", type=non_negative_int, default=4,
                   help="decoding worker processes (default 4; 0 = decode in the main process)")
    g.add_argument("--loader", default="auto", choices=("auto", "torch", "dali"),
                   help="image decoding: torch (PIL in worker processes), dali (NVIDIA DALI, GPU decode on CUDA), "
                        "auto = dali on CUDA when installed, else torch")
    g.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="storage dtype")
    g.add_argument("--shard-size", type=positive_int, default=4096,
                   help="rows per shard file: at most this many are recomputed after a crash")


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "extract", "extract descriptors for a folder / file list / DISC21 split",
                      DESCRIPTION)
    p.add_argument("source", type=Path, help="image folder (recursive), a .txt/.csv image list, or a DISC21 root "
                                             "with --split")
    p.add_argument("--out", type=Path, required=True, help="output: a directory, or a file ending in .npz")
    p.add_argument("--split", default=None, choices=("val", "dev", "test", "queries", "references", "training"),
                   help="DISC21 split of the root given as source (val=Q00000-24999, dev=Q25000-49999, "
                        "test=Q50000-99999)")
    p.add_argument("--root", type=Path, default=None, help="base folder for relative paths in a list file")
    p.add_argument("--max-images", type=non_negative_int, default=None,
                   help="stop after this many new images (resume later by rerunning)")
    p.add_argument("--video", action="store_true", help="SOURCE holds videos: per-frame descriptors (see above)")
    p.add_argument("--whiten", type=Path, default=None,
                   help="store PCA-whitened descriptors: a whitening .npz or an index directory holding one")
    p.add_argument("--max-videos", type=non_negative_int, default=None,
                   help="--video: stop after this many new videos (resume later by rerunning)")
    add_sampling_args(p)
    add_extract_args(p)
    add_model_args(p)
    add_common_args(p)


def list_source(flag: str, source: Path, split: str | None = None, root: Path | None = None):
    """Images of ``source`` as ImageItems; errors name ``flag`` and the path."""
    from copynce_fast.inference.images import list_images

    if not source.exists():
        raise CliError(f"{flag}: no such file or folder: {source}")
    try:
        return list_images(source, split=split, root=root)
    except ValueError as e:
        raise CliError(f"{flag}: {e}") from None


def run_extraction(command: str, args, loaded, items, out: Path, max_images: int | None = None):
    """Extract ``items`` into ``out`` with the loader flags of ``args``; report skipped images as warnings."""
    from copynce_fast.inference.extract import extract_features
    from copynce_fast.inference.extract_dist import extract_features_distributed
    from copynce_fast.utils.dist import is_main

    kwargs = dict(batch_size=args.batch_size, num_workers=args.workers, amp=args.amp, dtype=args.dtype,
                  shard_size=args.shard_size, max_images=max_images, progress=args.progress, loader=args.loader,
                  whitening=getattr(args, "whitening", None))
    if getattr(args, "distributed", False):  # torchrun: this rank's slice, rank 0 merges
        result = extract_features_distributed(loaded, items, out, **kwargs)
        if not is_main():
            return result  # rank 0 reports for everyone
    else:
        result = extract_features(loaded, items, out, **kwargs)
    report_skipped(command, result.skipped, out)  # each named, on stderr or in a skipped.txt beside out
    return result


def read_whitening(flag: str, path: Path):
    """A whitening .npz, or the one an index directory holds; CliError naming ``flag`` otherwise."""
    from copynce_fast.search.whitening import load_whitening

    if path.is_dir():
        path = path / "whitening.npz"
    if not path.is_file():
        raise CliError(f"{flag}: no such whitening file: {path}")
    try:
        return load_whitening(path)
    except ValueError as e:
        raise CliError(f"{flag} {path}: {e}") from None


def start_ranks(args) -> bool:
    """Under torchrun with several ranks: join the process group (gloo on CPU, NCCL on CUDA); True then."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from copynce_fast.utils.device import resolve_device
    from copynce_fast.utils.dist import init_distributed

    if args.out.suffix == ".npz":
        raise CliError("--out: under torchrun give a directory (each rank writes its own shards)")
    init_distributed(resolve_device(args.device).type)
    return True


def run_video(args) -> int:
    """``extract --video``: per-frame descriptors of a folder of videos (copynce_fast.video.extract)."""
    for flag, value in (("--split", args.split), ("--root", args.root), ("--max-images", args.max_images),
                        ("--whiten", args.whiten)):
        if value is not None:
            raise CliError(f"{flag} is for images; with --video use a folder, a .txt list or one video "
                           f"(and --max-videos)")
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # ranks would write the same shards
        raise CliError("--video runs in one process (its decoding uses --workers processes); torchrun with "
                       "several ranks is for images")
    if not args.source.exists():
        raise CliError(f"source: no such file or folder: {args.source}")
    videos = list_video_items("source", args.source)
    loaded = load_model_from_args(args, "descriptor")
    for note in loaded.notes:
        info(f"note: {note}")
    result = run_video_extraction("extract", args, loaded, videos, args.out, args.max_videos)
    state = "done" if result.complete else "stopped early (rerun the same command to resume)"
    info(f"{len(videos)} videos: {result.already_done} already stored, {result.extracted} extracted "
         f"({result.frames} frames at {args.fps:g} fps), {skipped_count(result.skipped, args.out)} "
         f"-> {args.out} [{state}]")
    return 0


def run(args) -> int:
    from copynce_fast.utils.dist import is_main

    if args.video:
        return run_video(args)
    if args.max_videos is not None or args.scene_threshold is not None:
        raise CliError("--max-videos / --scene-threshold need --video")
    items = list_source("source", args.source, args.split, args.root)
    args.whitening = read_whitening("--whiten", args.whiten) if args.whiten is not None else None
    args.distributed = start_ranks(args)
    loaded = load_model_from_args(args, "descriptor")
    for note in loaded.notes:
        info(f"note: {note}")
    result = run_extraction("extract", args, loaded, items, args.out, args.max_images)
    if not is_main():
        return 0  # under torchrun rank 0 reports for every rank
    state = "done" if result.complete else "stopped early (rerun the same command to resume)"
    info(f"{len(items)} images: {result.already_done} already stored, {result.extracted} extracted, "
         f"{skipped_count(result.skipped, args.out)} -> {args.out} [{state}]")
    return 0
