"""``copynce-fast knn``: the k-NN table of a training set for global hard-negative mining (REFERENCE.md §4.6)."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import CliError, add_common_args, add_subparser, info, positive_int, read_features

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
    source = open_source(args.source)
    names = [Path(source.name(i)).stem for i in range(len(source))]
    row_of = {str(i): k for k, i in enumerate(feats.ids)}
    missing = [n for n in names if n not in row_of]
    if missing:
        raise CliError(f"features: {len(missing)} training images have no descriptor (first: {missing[0]!r}); "
                       f"extract the same --source first")
    x = feats.features[[row_of[n] for n in names]].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    table = build_knn_table(x, args.k, backend=args.backend)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_knn_table(args.out, table)
    info(f"k-NN table [{len(table)}, {args.k}] -> {args.out}")
    return 0
