"""NDEC protocol: DISC21 queries plus hard-negative queries (Wang, Sun, Yang, "A Benchmark and
Asymmetrical-Similarity Learning for Practical Image Copy Detection", AAAI 2023, arXiv 2205.12358).

The benchmark (paper §1, repo WangWenhao0716/ASL README): 49,252 test queries, of which 24,252 are *hard
negatives* (they look like some reference image but are not edited copies of it), against the DISC21 reference
set; 100,000 extra hard-negative pairs for training. Its code builds on the ISC2021 evaluation, so the metrics are
the ISC2021 ones: μAP and recall at precision 0.9 (RP90) over all queries, predictions capped at 500,000 pairs
(:mod:`copynce_fast.eval.protocols`).

What we add, on the same selected predictions (the ``hard_negatives`` list says which queries are hard
negatives; without it these numbers are None):

* ``uap_without_hard_negatives``: μAP after dropping every prediction of a hard-negative query (the score the
  same ranking would get on the DISC21 part alone; ``uap_without_hard_negatives - uap`` is the hard negatives'
  cost);
* ``uap_copies_vs_hard_negatives``: μAP over the predictions of queries that have a copy or are hard negatives
  (ordinary unmatched queries dropped): the μAP "restricted to hard-negative queries" as distractors;
* ``hard_negatives_above_copy_mean``: over the retrieved true copies, the mean number of hard-negative
  predictions scored at least as high (ties count against the copy, as in μAP);
* ``hard_negative_misorder_rate``: that count summed over copies divided by ``#copies x #hard-negative
  predictions``: the probability that a random hard-negative prediction outranks a random retrieved copy;
* ``hard_negative_queries_above_p90``: hard-negative queries with a prediction at or above the RP90 threshold
  (false alarms at the operating point; None when precision 0.9 is never reached);
* ``hard_negative_pairs_retrieved``: when the list gives the reference each hard negative resembles, how many of
  those (query, reference) pairs are among the predictions.

The official ground-truth file is distributed on Google Drive and could not be read here: we expect the ISC2021
format (``query_id,reference_id``, empty reference = no copy) and a separate hard-negative list. If your copy
marks hard negatives differently, write ``hard_negatives.csv`` from it (one ``query_id`` per line, optionally
``,reference_id``).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

import numpy as np

from copynce_fast.eval.metrics import Metrics, micro_average_precision
from copynce_fast.eval.protocols import (
    EvalOptions,
    GroundTruth,
    Layout,
    Protocol,
    ProtocolReport,
    evaluate_pairs,
    locate_layout,
    pair_labels,
)

NDEC_QUERIES = 49_252
NDEC_HARD_NEGATIVE_QUERIES = 24_252

LAYOUT = """\
ndec/                            (--root)
  query_images/                  the 49,252 NDEC queries (<query_id>.jpg)
  reference_images/              the DISC21 references (R000000.jpg ...), a symlink is fine
  training_images/               optional: DISC21 training images (score normalisation)
  ground_truth.csv               query_id,reference_id  (empty reference_id = not a copy); --gt overrides
  hard_negatives.csv             query_id[,reference_id]: the hard-negative queries (and the reference each
                                 resembles); --hard-negatives overrides; .txt = one query id per line"""

GROUND_TRUTH_NAMES = ("ground_truth.csv", "ndec_ground_truth.csv", "gt.csv", "ground_truth.json")
HARD_NEGATIVE_NAMES = ("hard_negatives.csv", "hard_negatives.txt")
FOLDERS = {"queries": ("query_images", "queries"), "references": ("reference_images", "references"),
           "training": ("training_images", "training")}


def read_hard_negatives(path: str | Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Read a hard-negative list: ``.txt`` one query id per line, or a CSV with header ``query_id`` or
    ``query_id,reference_id``.

    Returns:
        ``(query_ids, pairs)``: the distinct hard-negative query ids in file order, and the ``(query_id,
        reference_id)`` pairs of rows that name a reference (empty when the file names none).

    Raises:
        ValueError: missing file, bad header, an empty query id, an empty list.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"hard_negatives: no such file: {path}")
    queries: dict[str, None] = {}
    pairs: list[tuple[str, str]] = []
    with path.open(newline="") as f:
        if path.suffix.lower() == ".txt":
            for line in f:
                if line.strip():
                    queries[line.strip()] = None
        else:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header or header[0] != "query_id" or header[1:2] not in ([], ["reference_id"]):
                raise ValueError(f"hard_negatives: {path}: expected a header 'query_id' or 'query_id,reference_id',"
                                 f" got {header!r}")
            for line_no, row in enumerate(reader, start=2):
                if not row or not any(c.strip() for c in row):
                    continue
                q = row[0].strip()
                if not q:
                    raise ValueError(f"hard_negatives: {path}:{line_no}: empty query_id")
                queries[q] = None
                if len(row) > 1 and row[1].strip():
                    pairs.append((q, row[1].strip()))
    if not queries:
        raise ValueError(f"hard_negatives: {path} lists no query")
    return list(queries), pairs


def hard_negative_metrics(preds: tuple[np.ndarray, np.ndarray, np.ndarray], gt: GroundTruth,
                          hard_negatives: list[str], hard_pairs: list[tuple[str, str]],
                          threshold_at_p90: float | None) -> dict[str, float | int | None]:
    """The hard-negative numbers of the module docstring.

    Args:
        preds: ``(query_ids, reference_ids, scores)`` (P,) arrays, the predictions the μAP counts (after the cap).
        gt: ``{query_id: [reference_id, ...]}``.
        hard_negatives: hard-negative query ids (none may have a copy in ``gt``).
        hard_pairs: ``(query_id, reference_id)`` look-alike pairs, possibly empty.
        threshold_at_p90: the RP90 score threshold, or None.

    Raises:
        ValueError: a hard-negative query that has a copy in the ground truth.
    """
    with_copy = sorted(q for q in hard_negatives if gt.get(q))
    if with_copy:
        raise ValueError(f"hard_negatives: {len(with_copy)} listed queries have a copy in the ground truth, "
                         f"e.g. {with_copy[0]!r}")
    q, r, s = preds
    is_hn = np.isin(q, np.asarray(hard_negatives, dtype=str)) if len(q) else np.zeros(0, dtype=bool)
    label = pair_labels(q, r, gt)
    positive_queries = np.asarray([k for k, v in gt.items() if v], dtype=str)
    of_positive = np.isin(q, positive_queries) if len(q) else np.zeros(0, dtype=bool)

    def uap(keep: np.ndarray) -> float:
        return micro_average_precision((q[keep], r[keep], s[keep]), gt)

    hn_scores = np.sort(s[is_hn])
    copy_scores = s[label]
    above = len(hn_scores) - np.searchsorted(hn_scores, copy_scores, side="left")  # hn scores >= each copy
    n_pairs = len(copy_scores) * len(hn_scores)
    if threshold_at_p90 is None:
        above_p90 = None
    else:
        above_p90 = len(np.unique(q[is_hn & (s >= threshold_at_p90)]))
    retrieved = None
    if hard_pairs:
        predicted = set(zip(q[is_hn].tolist(), r[is_hn].tolist()))
        retrieved = sum(p in predicted for p in set(hard_pairs))
    return {
        "uap_without_hard_negatives": uap(~is_hn),
        "uap_copies_vs_hard_negatives": uap(is_hn | of_positive),
        "hard_negatives_above_copy_mean": float(above.mean()) if len(above) else None,
        "hard_negative_misorder_rate": float(above.sum() / n_pairs) if n_pairs else None,
        "hard_negative_queries_above_p90": above_p90,
        "hard_negative_pairs_retrieved": retrieved,
        "hard_negative_queries": len(hard_negatives),
        "hard_negative_predictions": int(is_hn.sum()),
        "retrieved_copies": int(label.sum()),
    }


def _locate(root: Path | None, overrides: Mapping[str, Path | None]) -> Layout:
    return locate_layout("ndec", root, overrides, ground_truth=GROUND_TRUTH_NAMES,
                         files={"hard_negatives": HARD_NEGATIVE_NAMES}, folders=FOLDERS)


def _extra(preds, gt: GroundTruth, layout: Layout, metrics: Metrics) -> dict:
    path = layout.files.get("hard_negatives")
    if path is None:
        return {k: None for k in ("uap_without_hard_negatives", "uap_copies_vs_hard_negatives",
                                  "hard_negatives_above_copy_mean", "hard_negative_misorder_rate",
                                  "hard_negative_queries_above_p90", "hard_negative_pairs_retrieved")}
    queries, pairs = read_hard_negatives(path)
    return hard_negative_metrics(preds, gt, queries, pairs, metrics.threshold_at_p90)


def _evaluate(predictions: Path, layout: Layout, options: EvalOptions) -> ProtocolReport:
    report = evaluate_pairs("ndec", predictions, layout, options, expected_queries=NDEC_QUERIES, extra=_extra,
                            headline=(("μAP", "uap"), ("RP90", "recall_at_p90"),
                                      ("μAP w/o hard negatives", "uap_without_hard_negatives"),
                                      ("μAP copies vs hard negatives", "uap_copies_vs_hard_negatives"),
                                      ("hard negatives above a copy (mean)", "hard_negatives_above_copy_mean")))
    if layout.files.get("hard_negatives") is None:
        report.details["notes"].append("no hard-negative list (hard_negatives.csv / --hard-negatives): "
                                       "hard-negative metrics not computed")
    return report


PROTOCOL = Protocol(
    name="ndec",
    summary="NDEC (AAAI 2023): DISC21 + 24,252 hard-negative queries; μAP, RP90 and hard-negative metrics",
    layout_doc=LAYOUT,
    file_roles=("hard_negatives",),
    locate=_locate,
    evaluate=_evaluate,
)
