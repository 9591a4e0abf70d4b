"""``copynce-fast index``: build a search index over reference descriptors and save it."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_subparser,
    info,
    non_negative_int,
    positive_int,
    read_features,
)

DESCRIPTION = """\
Build a search index over reference descriptors (a feature file written by 'copynce-fast extract') and
save it as a directory, for 'copynce-fast search --index DIR' (and CopyIndex.load in Python).

  flat   exact inner-product search (faiss IndexFlatIP, or torch matmul + top-k with --backend torch)
  ivf    IVF-Flat (approximate; faiss), trained on the references
  ivfpq  IVF-PQ (approximate, compressed to --pq-m bytes per reference; faiss)

Compact descriptors: --pca-dim N learns a PCA-whitening to N dimensions (faiss PCAMatrix, eigen power -0.5,
or torch) on the training descriptors given by --whiten FEATURES (default: the references themselves), then
L2-normalises. --whiten WHITENING.npz applies a whitening learned before (e.g. DIR/whitening.npz of another
index). The whitening is stored in the index and applied to the queries at search time; descriptors
extracted with 'extract --whiten' are recognised as already whitened.

examples:
  copynce-fast index refs.npz --out refs.index --type ivf --nlist 1024
  copynce-fast index refs.npz --out refs.index --whiten train.npz --pca-dim 256 --type ivfpq --pq-m 32
"""


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "index", "build a search index over reference descriptors", DESCRIPTION)
    p.add_argument("references", type=Path, help="reference feature file (.npz) or shard directory")
    p.add_argument("--out", type=Path, required=True, help="index directory to write")
    p.add_argument("--type", dest="index_type", default="flat", choices=("flat", "ivf", "ivfpq"),
                   help="index type (default flat = exact)")
    p.add_argument("--backend", default="auto", choices=("auto", "faiss", "torch"),
                   help="faiss (when installed) or torch (flat only)")
    p.add_argument("--nlist", type=positive_int, default=None, help="IVF lists (default min(M/39, 4·sqrt(M)))")
    p.add_argument("--nprobe", type=positive_int, default=None, help="IVF lists visited per query (default 16)")
    p.add_argument("--pq-m", type=positive_int, default=None, help="PQ sub-quantisers; must divide the dimension")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the IVF training sample")
    w = p.add_argument_group("whitening")
    w.add_argument("--whiten", type=Path, default=None,
                   help="a whitening .npz to apply, or training descriptors (feature file) to learn one from")
    w.add_argument("--pca-dim", type=positive_int, default=None,
                   help="learn a PCA-whitening to this many dimensions (on --whiten features, else the references)")
    w.add_argument("--aux", type=Path, default=None,
                   help="auxiliary descriptors stored with the index for score normalisation (CopyIndex.search)")
    add_common_args(p)


def whitening_or_features(flag: str, path: Path):
    """``path`` as a learned Whitening, else as a feature file (CliError naming ``flag`` if neither)."""
    from copynce_fast.search.whitening import load_whitening

    if not path.exists():
        raise CliError(f"{flag}: no such file or folder: {path}")
    if path.is_file():
        try:
            return load_whitening(path)
        except ValueError:
            pass  # not a whitening file: read it as features
    return read_features(flag, path)


def run(args) -> int:
    from copynce_fast.search.copy_index import CopyIndex
    from copynce_fast.search.whitening import Whitening

    feats = read_features("references", args.references)
    whitening = train = None
    if args.whiten is not None:
        got = whitening_or_features("--whiten", args.whiten)
        if isinstance(got, Whitening):
            if args.pca_dim is not None:
                raise CliError("--pca-dim learns a whitening; --whiten names one already learned (give features)")
            whitening = got
        else:
            train = got
    aux = read_features("--aux", args.aux) if args.aux is not None else None
    index = CopyIndex.build(feats, kind=args.index_type, whitening=whitening, pca_dim=args.pca_dim,
                            whiten_train=train, aux=aux, backend=args.backend, nlist=args.nlist, nprobe=args.nprobe,
                            pq_m=args.pq_m, seed=args.seed, source=str(args.references))
    out = index.save(args.out)
    w = index.whitening
    whitened = f", whitened {w.dim_in} -> {w.dim_out}-d" if w is not None else ""
    info(f"indexed {len(feats.ids)} references ({feats.dim}-d{whitened}, {args.index_type}) -> {out}")
    return 0
