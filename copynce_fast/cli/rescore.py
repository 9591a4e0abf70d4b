"""``copynce-fast rescore``: score candidate pairs with the matcher (optionally with local verification)."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_model_args,
    add_subparser,
    existing_file,
    info,
    load_model_from_args,
    non_negative_int,
    positive_int,
    report_skipped,
    skipped_count,
)
from copynce_fast.cli.extract import list_source

SPLITS = ("val", "dev", "test", "queries", "references", "training")  # data.sources.DISC21_SPLITS

DESCRIPTION = """\
Rescore candidate pairs (e.g. the top-10 of 'copynce-fast search') with the CopyNCE matcher: the new score
is the copy probability sigmoid(logit). Each unique image is encoded once per chunk of pairs; only the fusion
runs per pair. With --local-verification every pair is scored as the maximum over 35 view combinations
(26 query views x full reference + full query x 9 reference views, REFERENCE §7.4).

Candidates: CSV 'query_id,reference_id,score' or the reference's JSON [[q, [[r, score], ...]], ...]; ids
are matched to image file stems (or the 'uuid' column of a CSV image list).

example:
  copynce-fast rescore preds.csv --query-images q/ --reference-images r/ --weights matcher_vits_224.pth.tar \\
      --out rescored.csv --local-verification
  copynce-fast evaluate rescored.csv --gt gt.csv --out eval_matcher/
"""


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "rescore", "rescore candidate pairs with the matcher (+ local verification)",
                      DESCRIPTION)
    p.add_argument("candidates", type=Path, help="candidate pairs: predictions CSV or scores JSON")
    p.add_argument("--query-images", type=Path, required=True, help="query image folder / list / DISC21 root")
    p.add_argument("--reference-images", type=Path, required=True, help="reference image folder / list")
    p.add_argument("--query-split", default=None, choices=SPLITS,
                   help="DISC21 split when --query-images is a DISC21 root")
    p.add_argument("--reference-split", default=None, choices=SPLITS,
                   help="DISC21 split when --reference-images is a root")
    p.add_argument("--out", type=Path, required=True, help="rescored predictions CSV")
    p.add_argument("--topk", type=positive_int, default=None, help="rescore only the k best candidates per query")
    p.add_argument("--local-verification", action="store_true", help="max over the 35 local-crop combinations")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per encoder pass / pairs per "
                                                                       "fusion pass (default 64)")
    p.add_argument("--workers", type=non_negative_int, default=4, help="decoding worker processes (default 4)")
    p.add_argument("--chunk-pairs", type=positive_int, default=1024,
                   help="pairs whose encoded images are cached together (default 1024)")
    add_model_args(p)
    add_common_args(p)


def run(args) -> int:
    import numpy as np

    from copynce_fast.eval.matcher_eval import rescore_pairs
    from copynce_fast.eval.pair_files import read_candidates, topk_per_query
    from copynce_fast.search.predictions import write_predictions_csv

    path = existing_file("candidates", args.candidates)
    try:
        q, r, s = read_candidates(path)
    except ValueError as e:
        raise CliError(f"candidates: {e}") from None
    if len(q) == 0:
        raise CliError(f"candidates {path}: no pairs")
    if args.topk is not None:
        q, r, s = topk_per_query(q, r, s, args.topk)
    q_paths = {it.id: it.path for it in list_source("--query-images", args.query_images, args.query_split)}
    r_paths = {it.id: it.path for it in list_source("--reference-images", args.reference_images,
                                                    args.reference_split)}
    for flag, ids, paths in (("--query-images", q, q_paths), ("--reference-images", r, r_paths)):
        missing = sorted(set(ids.tolist()) - set(paths))
        if missing:
            raise CliError(f"{flag}: {len(missing)} candidate id(s) have no image there, e.g. {missing[:3]}")
    loaded = load_model_from_args(args, "matcher")
    for note in loaded.notes:
        info(f"note: {note}")
    result = rescore_pairs(loaded, q.tolist(), r.tolist(), q_paths, r_paths,
                           local_verification=args.local_verification, batch_size=args.batch_size,
                           num_workers=args.workers, amp=args.amp, chunk_pairs=args.chunk_pairs,
                           progress=args.progress)
    ok = ~np.isnan(result.scores)
    skipped = list(dict(result.failed).items())  # an image is loaded once per chunk: name it once
    report_skipped("rescore", skipped, args.out)
    write_predictions_csv(args.out, (q[ok], r[ok], result.scores[ok]))
    info(f"rescored {int(ok.sum())} pairs ({result.encoded_views} encoded views, {result.fusions} fusion passes)"
         f" -> {args.out}; {skipped_count(skipped, args.out, 'images')}, {int((~ok).sum())} pairs dropped")
    return 0
