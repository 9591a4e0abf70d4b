"""``copynce-fast evaluate``: predictions + ground truth -> μAP, RP90, recall@k, mAP, PR curve, JSON report."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_subparser,
    existing_file,
    info,
    non_negative_int,
    positive_int,
    warn,
)
from copynce_fast.cli._evaluate_vsc import HELP as VSC_HELP
from copynce_fast.cli._evaluate_vsc import VSC_PROTOCOLS, add_vsc_args, run_vsc

DESCRIPTION = """\
Score predictions (CSV 'query_id,reference_id,score', or the reference's scores JSON) against a DISC21 ground
truth (CSV 'query_id,reference_id' with empty reference for unmatched queries, or JSON {query: [refs]}).

Metrics (REFERENCE §7.5, the ISC2021 definitions): μAP over all pairs ranked globally by score (ties
pessimistic), recall at precision 0.9 (RP90) with its score threshold, per-query mAP, recall@k. Recall always
counts every ground-truth pair, retrieved or not.

Candidate selection: --topk keeps the k best pairs per query first; --max-predictions then keeps the globally
best n pairs (default 500000, the ISC2021/DISC21 matching-track limit; 0 = no cap).

Writes <out>/metrics.json and <out>/pr_curve.png.

example:
  copynce-fast evaluate preds.csv --gt dev_ground_truth.csv --out eval_dev/
"""


def _ks(text: str) -> list[int]:
    try:
        ks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise CliError(f"--recall-k: expected comma-separated integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise CliError(f"--recall-k: expected positive integers, got {text!r}")
    return ks


# --protocol choices; "disc21" is the image protocol of this module, the vsc-* ones are in _evaluate_vsc.py
PROTOCOLS = ("disc21", *VSC_PROTOCOLS)


def add_parser(subparsers) -> None:
    from copynce_fast.eval.disc21 import OFFICIAL_MAX_PREDICTIONS

    p = add_subparser(subparsers, "evaluate", "μAP / RP90 / recall@k of predictions against a ground truth",
                      DESCRIPTION + "\n" + VSC_HELP)
    p.add_argument("predictions", type=Path, nargs="?", default=None,
                   help="predictions CSV (query_id,reference_id,score) or scores JSON; vsc-matching: segments CSV")
    p.add_argument("--protocol", default="disc21", choices=PROTOCOLS,
                   help="what is evaluated (default disc21: image pairs; vsc-*: videos, see above)")
    p.add_argument("--gt", type=Path, required=True, help="ground truth: CSV query_id,reference_id or JSON")
    p.add_argument("--out", type=Path, required=True, help="report folder (metrics.json, pr_curve.png)")
    p.add_argument("--topk", type=positive_int, default=None, help="keep the k best pairs per query first")
    p.add_argument("--max-predictions", type=non_negative_int, default=OFFICIAL_MAX_PREDICTIONS,
                   help=f"global cap on pairs (default {OFFICIAL_MAX_PREDICTIONS}, the ISC2021 rule; 0 = none)")
    p.add_argument("--recall-k", default="1,10", help="ranks for recall@k (default 1,10)")
    p.add_argument("--title", default=None, help="PR plot title (default: the predictions file name)")
    add_vsc_args(p)
    add_common_args(p)


def run(args) -> int:
    from copynce_fast.eval.disc21 import read_candidates, read_ground_truth, topk_per_query
    from copynce_fast.eval.metrics import evaluate, precision_recall_curve
    from copynce_fast.utils.jsonio import write_json_report
    from copynce_fast.viz.curves import plot_pr_curve

    if args.protocol in VSC_PROTOCOLS:
        return run_vsc(args)
    ks = _ks(args.recall_k)
    preds_path = existing_file("predictions", args.predictions)
    gt_path = existing_file("--gt", args.gt)
    try:
        preds = read_candidates(preds_path)
    except ValueError as e:
        raise CliError(f"predictions: {e}") from None
    try:
        gt = read_ground_truth(gt_path)
    except ValueError as e:
        raise CliError(f"--gt: {e}") from None
    n_gt = sum(len(v) for v in gt.values())
    if n_gt == 0:
        raise CliError(f"--gt {gt_path}: no (query, reference) pair: recall is undefined")
    n_input = len(preds[0])
    if args.topk is not None:
        preds = topk_per_query(*preds, args.topk)
    cap = args.max_predictions or None
    if cap is not None and len(preds[0]) > cap:
        warn("evaluate", f"{len(preds[0])} predictions exceed --max-predictions {cap}: only the best {cap} count")
    unknown = len(set(preds[0].tolist()) - set(gt))
    if unknown:
        warn("evaluate", f"{unknown} predicted query id(s) are not in the ground truth (counted as non-matching)")

    metrics = evaluate(preds, gt, ks=ks, max_predictions=cap)
    curve = precision_recall_curve(preds, gt, max_predictions=cap)
    args.out.mkdir(parents=True, exist_ok=True)
    selection = {"input_pairs": n_input, "topk": args.topk, "after_topk": len(preds[0]), "max_predictions": cap,
                 "evaluated": metrics.n_predictions}
    report = write_json_report(args.out / "metrics.json", metrics, predictions=str(preds_path),
                               ground_truth=str(gt_path), selection=selection)
    plot_pr_curve(args.out / "pr_curve.png", curve,
                  title=args.title or f"{preds_path.name}: μAP {metrics.uap:.4f}")
    rp90 = "n/a" if metrics.recall_at_p90 is None else f"{metrics.recall_at_p90:.4f} (score >= " \
                                                       f"{metrics.threshold_at_p90:.4g})"
    print(f"μAP      {metrics.uap:.4f}")
    print(f"RP90     {rp90}")
    print(f"mAP      {metrics.map:.4f}")
    for k, v in metrics.recall_at_k.items():
        print(f"recall@{k:<3} {v:.4f}")
    print(f"pairs    {metrics.n_predictions} evaluated of {n_input}; GT pairs {metrics.n_gt} over "
          f"{metrics.n_gt_queries} queries")
    info(f"report -> {report}, {args.out / 'pr_curve.png'}")
    return 0
