"""``copynce-fast knn``: the k-NN table of a training set for global hard-negative mining (REFERENCE.md §4.6)."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_subparser,
    info,
    positive_int,
    read_features,
    report_skipped,
    skipped_count,
)

DESCRIPTION = """\
Build the [N, k] nearest-neighbour table of the training images from their descriptors, in the order the
trainer sees them (--source, the same spec as --data.source), for --data.knn_path.

  copynce-fast extract /data/train --weights dino_deitsmall16_pretrain.pth --format dino --out train.npz
  copynce-fast knn train.npz --source /data/train --k 7 --out knn.npy
  copynce-fast train --preset descriptor_vits_224 --data.source /data/train --data.knn_path knn.npy

Features are matched to images by id (the file stem, as `extract` writes them)."""


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "knn", "k-NN table of the training set for hard-negative mining", DESCRIPTION)
    p.add_argument("features", type=Path, help="feature file or shard directory from `copynce-fast extract`")
    p.add_argument("--source", required=True, help="the training source: a folder, a .txt / .csv file list, disc21:ROOT")
    p.add_argument("--k", type=positive_int, default=7, help="neighbours per image (descriptor 7, matcher 127)")
    p.add_argument("--out", type=Path, required=True, help="output .npy ([N, k] int32)")
    p.add_argument("--backend", default="auto", choices=("auto", "faiss", "torch"), help="search backend")
    add_common_args(p)


def run(args) -> int:
    import numpy as np

    from copynce_fast.data.sources import open_source
    from copynce_fast.train.hnm import build_knn_table, save_knn_table

    feats = read_features("features", args.features)  # names the file; pickled object arrays are refused
    try:
        source = open_source(args.source)
    except ValueError as e:
        raise CliError(f"--source: {e}") from None
    n = len(source)
    names = list(getattr(source, "ids", None) or [Path(source.name(i)).stem for i in range(n)])  # extract's ids
    row_of = {str(i): k for k, i in enumerate(feats.ids)}
    missing = [i for i, name in enumerate(names) if name not in row_of]
    source.skips.log = False
    readable = [i for i in missing if source.hw(i) is not None]  # a header read; unusable files are recorded
    if readable:
        raise CliError(f"features: {len(readable)} training images have no descriptor (first: "
                       f"{source.name(readable[0])}); extract the same --source first")
    good = np.asarray([i for i in range(n) if names[i] in row_of], dtype=np.int64)
    if not 0 < args.k < len(good):
        raise CliError(f"--k: must be in [1, {len(good) - 1}] ({len(good)} images with a descriptor), got {args.k}")
    x = feats.features[[row_of[names[i]] for i in good]].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    table = np.empty((n, args.k), dtype=np.int32)
    # unusable images (extract skipped them) are never anyone's neighbour; their own rows, never used by the
    # trainer (it replaces an unusable anchor), hold the first usable images
    table[:] = good[:args.k]
    table[good] = good[build_knn_table(x, args.k, backend=args.backend)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_knn_table(args.out, table)
    skipped = list(source.skips.files.items())
    report_skipped("knn", skipped, args.out)
    info(f"k-NN table [{len(table)}, {args.k}] -> {args.out}; {skipped_count(skipped, args.out, 'images')}")
    return 0
