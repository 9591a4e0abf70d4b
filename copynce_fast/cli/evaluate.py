"""``copynce-fast evaluate``: predictions + a benchmark protocol -> μAP, RP90, recall@k, mAP, PR curve, JSON report."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_subparser,
    existing_file,
    info,
    non_negative_int,
    one_line,
    positive_int,
    warn,
)
from copynce_fast.cli._evaluate_vsc import HELP as VSC_HELP
from copynce_fast.cli._evaluate_vsc import add_vsc_args, run_vsc

DESCRIPTION = """\
Score predictions (CSV 'query_id,reference_id,score', or the reference's scores JSON) with a benchmark's protocol.

Image protocols (--protocol disc21 | ndec | anypattern; the ISC2021 metric definitions, REFERENCE §7.5): μAP
over all pairs ranked globally by score (ties pessimistic), recall at precision 0.9 (RP90) with its score
threshold, per-query mAP, recall@k. Recall always counts every ground-truth pair, retrieved or not.
  disc21      μAP, RP90. Ground truth: CSV 'query_id,reference_id' (empty reference = no match) or JSON
              {query: [refs]}, from --gt or found under --root (public_ground_truth.csv, dev_ground_truth.csv, ...).
  ndec        NDEC (AAAI 2023): μAP, RP90 plus hard-negative metrics: μAP without the hard-negative queries,
              μAP of copies vs hard negatives only, how many hard negatives outrank each copy, hard negatives
              above the RP90 threshold. --root holds ground_truth.csv and hard_negatives.csv
              (query_id[,reference_id]); --gt / --hard-negatives override.
  anypattern  AnyPattern (novel patterns): μAP and recall@1. --root holds gt_v1_k1_v2_test.csv.
The README section "Other benchmarks" shows each folder layout.

Candidate selection: --topk keeps the k best pairs per query first; --max-predictions then keeps the globally
best n pairs (default 500000, the ISC2021/DISC21 limit, also used by the NDEC and AnyPattern code; 0 = no cap).

Writes <out>/metrics.json and <out>/pr_curve.png.

examples:
  copynce-fast evaluate preds.csv --gt dev_ground_truth.csv --out eval_dev/
  copynce-fast evaluate preds.csv --protocol ndec --root /data/ndec --out eval_ndec/
"""

FLAG_OF_ROLE = {"ground_truth": "--gt", "hard_negatives": "--hard-negatives", "root": "--root",
                "max_predictions": "--max-predictions", "predictions": "predictions"}


def _ks(text: str) -> list[int]:
    try:
        ks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise CliError(f"--recall-k: expected comma-separated integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise CliError(f"--recall-k: expected positive integers, got {text!r}")
    return ks


def add_parser(subparsers) -> None:
    from copynce_fast.eval.protocols import OFFICIAL_MAX_PREDICTIONS, protocol_names

    p = add_subparser(subparsers, "evaluate", "μAP / RP90 / recall@k of predictions against a ground truth",
                      DESCRIPTION + "\n" + VSC_HELP)
    p.add_argument("predictions", type=Path, nargs="?", default=None,
                   help="predictions CSV (query_id,reference_id,score) or scores JSON; vsc-matching: segments CSV")
    # the choices are the registry's (copynce_fast/eval/protocols.py): image and video protocols in one list
    p.add_argument("--protocol", default="disc21", choices=protocol_names(),
                   help="benchmark protocol (default disc21; ndec, anypattern: image pairs; vsc-*: videos, see above)")
    p.add_argument("--gt", type=Path, default=None,
                   help="ground truth: CSV query_id,reference_id or JSON (image protocols: or found under --root)")
    p.add_argument("--root", type=Path, default=None,
                   help="image protocols: the benchmark folder (its ground truth and layout; see the README)")
    p.add_argument("--hard-negatives", type=Path, default=None,
                   help="ndec: hard-negative queries, CSV query_id[,reference_id] or .txt (default: under --root)")
    p.add_argument("--out", type=Path, required=True, help="report folder (metrics.json, pr_curve.png)")
    p.add_argument("--topk", type=positive_int, default=None, help="keep the k best pairs per query first")
    p.add_argument("--max-predictions", type=non_negative_int, default=OFFICIAL_MAX_PREDICTIONS,
                   help=f"global cap on pairs (default {OFFICIAL_MAX_PREDICTIONS}, the ISC2021 rule; 0 = none)")
    p.add_argument("--recall-k", default="1,10", help="ranks for recall@k (default 1,10)")
    p.add_argument("--title", default=None, help="PR plot title (default: the predictions file name)")
    add_vsc_args(p)
    add_common_args(p)


def _flagged(e: Exception) -> str:
    """A library message ``"<role>: ..."`` with the role replaced by its flag."""
    msg = one_line(e)
    role, sep, rest = msg.partition(": ")
    return f"{FLAG_OF_ROLE[role]}: {rest}" if sep and role in FLAG_OF_ROLE else msg


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def run(args) -> int:
    from copynce_fast.eval.protocols import EvalOptions, get_protocol
    from copynce_fast.utils.jsonio import write_json_report
    from copynce_fast.viz.curves import plot_pr_curve

    protocol = get_protocol(args.protocol)
    if protocol.kind == "video":
        if args.root is not None or args.hard_negatives is not None:
            raise CliError(f"--root / --hard-negatives: image protocols only, not {args.protocol}")
        return run_vsc(args)
    if args.protocol != "ndec" and args.hard_negatives is not None:
        raise CliError(f"--hard-negatives: only --protocol ndec reads a hard-negative list, not {args.protocol}")
    ks = _ks(args.recall_k)
    preds_path = existing_file("predictions", args.predictions)
    overrides = {"ground_truth": args.gt}
    if "hard_negatives" in protocol.file_roles:
        overrides["hard_negatives"] = args.hard_negatives
    options = EvalOptions(topk=args.topk, max_predictions=args.max_predictions, recall_ks=tuple(ks))
    try:
        layout = protocol.locate(args.root, overrides)
        report = protocol.evaluate(preds_path, layout, options)
    except ValueError as e:
        raise CliError(_flagged(e)) from None

    metrics, sel = report.metrics, report.selection
    if sel["max_predictions"] is not None and sel["after_topk"] > sel["max_predictions"]:
        warn("evaluate", f"{sel['after_topk']} predictions exceed --max-predictions {sel['max_predictions']}: only "
                         f"the best {sel['max_predictions']} count")
    if report.details["unknown_predicted_queries"]:
        warn("evaluate", f"{report.details['unknown_predicted_queries']} predicted query id(s) are not in the "
                         f"ground truth (counted as non-matching)")
    for note in report.details["notes"]:
        warn("evaluate", note)
    args.out.mkdir(parents=True, exist_ok=True)
    flat = report.flat()
    json_path = write_json_report(args.out / "metrics.json", metrics, protocol=protocol.name,
                                  headline={key: flat.get(key) for _, key in report.headline},
                                  protocol_metrics=report.extra, predictions=str(preds_path),
                                  ground_truth=str(layout.ground_truth), selection=sel, layout=report.details)
    plot_pr_curve(args.out / "pr_curve.png", report.curve,
                  title=args.title or f"{preds_path.name}: μAP {metrics.uap:.4f}")
    rp90 = "n/a" if metrics.recall_at_p90 is None else f"{metrics.recall_at_p90:.4f} (score >= " \
                                                       f"{metrics.threshold_at_p90:.4g})"
    print(f"μAP      {metrics.uap:.4f}")
    print(f"RP90     {rp90}")
    print(f"mAP      {metrics.map:.4f}")
    for k, v in metrics.recall_at_k.items():
        print(f"recall@{k:<3} {v:.4f}")
    for key, value in report.extra.items():
        print(f"{key:<32} {_fmt(value)}")
    print(f"pairs    {metrics.n_predictions} evaluated of {sel['input_pairs']}; GT pairs {metrics.n_gt} over "
          f"{metrics.n_gt_queries} queries")
    print(f"{protocol.name}: " + ", ".join(f"{label} {_fmt(flat.get(key))}" for label, key in report.headline))
    info(f"report -> {json_path}, {args.out / 'pr_curve.png'}")
    return 0
