"""``copynce-fast evaluate --protocol vsc-descriptor | vsc-matching``: the VSC2022 video metrics
(:mod:`copynce_fast.eval.vsc`). Used by ``cli/evaluate.py``; not a subcommand of its own."""
from __future__ import annotations

import argparse
from pathlib import Path

from copynce_fast.cli._common import CliError, existing_file, info, one_line
from copynce_fast.cli._video import (
    add_candidate_args,
    add_score_norm_args,
    apply_score_norm,
    read_segments,
    read_video_features,
)

VSC_PROTOCOLS = ("vsc-descriptor", "vsc-matching")

HELP = """\
VSC2022 video protocols (the Meta Video Similarity Challenge definitions, facebookresearch/vsc2022):
  vsc-descriptor  video-level μAP of candidate pairs. From frame descriptors (--queries, --references: video
                  feature files) the 1200 x #query-videos most similar frame pairs overall are max-aggregated
                  to video pairs and the best 25 x #query-videos kept; or give the pairs as PREDICTIONS (CSV
                  query_id,ref_id,score). Ties enter together (scikit-learn's AP).
  vsc-matching    segment-level AP of PREDICTIONS (CSV query_id,ref_id,query_start,query_end,ref_start,ref_end,
                  score; 'copynce-fast match-video' writes it): precision and recall from the lengths of the
                  predicted and true segments' intersections on both time axes (VCSL style), plus the pairwise μAP.
  --gt is the VSC2022 ground truth: CSV query_id,ref_id,query_start,query_end,ref_start,ref_end.
"""


def add_vsc_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("VSC2022 video protocols")
    g.add_argument("--queries", type=Path, default=None, help="vsc-descriptor: query video features (.npz / shards)")
    g.add_argument("--references", type=Path, default=None, help="vsc-descriptor: reference video features")
    add_candidate_args(g, scope="vsc-descriptor: ")
    g.add_argument("--write-candidates", type=Path, default=None,
                   help="vsc-descriptor: also write the generated candidate pairs to this CSV")
    add_score_norm_args(parser)


def _ground_truth(path: Path | None):
    gt_path = existing_file("--gt", path)
    gt = read_segments("--gt", gt_path, is_gt=True)
    if not gt:
        raise CliError(f"--gt {gt_path}: no copied segment: recall is undefined")
    return gt_path, gt


def _report(args, name: str, metrics: dict, curve, title: str, **extra) -> None:
    from copynce_fast.utils.jsonio import write_json_report
    from copynce_fast.viz.curves import plot_pr_curve

    args.out.mkdir(parents=True, exist_ok=True)
    report = write_json_report(args.out / "metrics.json", {"protocol": name, "metrics": metrics}, **extra)
    plot_pr_curve(args.out / "pr_curve.png", (curve.recall, curve.precision), title=args.title or title)
    info(f"report -> {report}, {args.out / 'pr_curve.png'}")


def run_vsc(args) -> int:
    """Dispatch of ``evaluate`` for the two VSC2022 protocols."""
    from copynce_fast.eval.vsc import evaluate_descriptor_track, evaluate_matching_track, pair_uap
    from copynce_fast.video.segments import pairs_from_matches, read_candidates_csv

    gt_path, gt = _ground_truth(args.gt)
    if args.protocol == "vsc-matching":
        if args.predictions is None:
            raise CliError("--protocol vsc-matching needs PREDICTIONS: a segments CSV (match-video's matches.csv)")
        preds_path = existing_file("predictions", args.predictions)
        preds = read_segments("predictions", preds_path)
        res = evaluate_matching_track(gt, preds)
        metrics = {"segment_ap": res.segment.ap, "pairwise_uap": res.pairwise.ap, "n_predictions": len(preds),
                   "n_gt_segments": len(gt), "n_gt_pairs": res.pairwise.n_gt}
        print(f"segment AP    {res.segment.ap:.4f}")
        print(f"pairwise μAP  {res.pairwise.ap:.4f}")
        print(f"segments      {len(preds)} predicted; {len(gt)} true over {res.pairwise.n_gt} pairs")
        _report(args, "vsc-matching", metrics, res.segment, f"{preds_path.name}: segment AP {res.segment.ap:.4f}",
                predictions=str(preds_path), ground_truth=str(gt_path))
        return 0

    if args.predictions is not None:  # scored pairs given: their μAP
        if args.queries is not None or args.references is not None:
            raise CliError("give PREDICTIONS (a pairs CSV) or --queries/--references (features), not both")
        preds_path = existing_file("predictions", args.predictions)
        try:
            candidates = read_candidates_csv(preds_path)
            uap = pair_uap(pairs_from_matches(gt), candidates)
        except ValueError as e:
            raise CliError(f"predictions: {one_line(e)}") from None
        source = {"predictions": str(preds_path)}
    else:
        if args.queries is None or args.references is None:
            raise CliError("--protocol vsc-descriptor needs --queries and --references (video features), or "
                           "PREDICTIONS (a pairs CSV)")
        queries = read_video_features("--queries", args.queries)
        refs = read_video_features("--references", args.references)
        if queries.dim != refs.dim:
            raise CliError(f"--queries are {queries.dim}-d, --references {refs.dim}-d")
        queries, refs = apply_score_norm(args, queries, refs)
        try:
            res = evaluate_descriptor_track(queries, refs, gt, retrieve_per_query=args.retrieve_per_query,
                                            candidates_per_query=args.candidates_per_query)
        except ValueError as e:
            raise CliError(one_line(e)) from None
        uap, candidates = res.uap, res.candidates
        if args.write_candidates is not None:
            from copynce_fast.video.segments import write_candidates_csv

            info(f"candidates -> {write_candidates_csv(args.write_candidates, candidates)}")
        source = {"queries": str(args.queries), "references": str(args.references), "score_norm": args.score_norm}
    metrics = {"uap": uap.ap, "n_predictions": uap.n_predictions, "n_gt": uap.n_gt}
    print(f"μAP      {uap.ap:.4f}")
    print(f"pairs    {uap.n_predictions} candidate pairs; {uap.n_gt} true pairs")
    _report(args, "vsc-descriptor", metrics, uap, f"VSC2022 descriptor track: μAP {uap.ap:.4f}",
            ground_truth=str(gt_path), **source)
    return 0
