"""``copynce-fast index``: build a search index over reference descriptors and save it."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import add_common_args, add_subparser, info, non_negative_int, positive_int, read_features

DESCRIPTION = """\
Build a search index over reference descriptors (a feature file written by 'copynce-fast extract') and
save it as a directory, for 'copynce-fast search --index DIR'.

  flat   exact inner-product search (faiss IndexFlatIP, or torch matmul + top-k with --backend torch)
  ivf    IVF-Flat (approximate; faiss), trained on the references
  ivfpq  IVF-PQ (approximate, compressed; faiss)

example:
  copynce-fast index refs.npz --out refs.index --type ivf --nlist 1024
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
    add_common_args(p)


def run(args) -> int:
    from copynce_fast.search.index import build_index

    feats = read_features("references", args.references)
    out = build_index(feats, args.out, kind=args.index_type, backend=args.backend, nlist=args.nlist,
                      nprobe=args.nprobe, pq_m=args.pq_m, seed=args.seed, source=str(args.references))
    info(f"indexed {len(feats.ids)} references ({feats.dim}-d, {args.index_type}) -> {out}")
    return 0
