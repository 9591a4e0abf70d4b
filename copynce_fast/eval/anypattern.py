"""AnyPattern protocol (Wang, Sun, Tan, Yang, "AnyPattern: Towards In-context Image Copy Detection",
arXiv 2404.13788; repo WangWenhao0716/AnyPattern).

The test set: 25,000 queries made with the 10 *novel* tampering patterns (``query_k1_10_v2_test/``; the repo's
``Test/bind.py`` loops over 25,000 test names) against the reference images (``reference_images/``,
``R000000.jpg`` ..., shipped as ``references_0..19``); the training originals (``original_images/``, ``T*.jpg``)
serve score normalisation (``Test/score_normalization.py``, ``--train_descs``). ``Test/match.sh`` runs score
normalisation with ``--max_results 500000`` and then ``Test/compute_metrics.py``, the ISC2021 metric code
(``isc.metrics.evaluate``), against ``gt_v1_k1_v2_test.csv`` in the ISC2021 CSV format. The paper reports μAP and
recall@1 (``recall_at_rank1``); we report those first, then RP90, recall@10 and mAP from the same ranking.

The support sets (``query_k1_10_v2_support_select10/`` and ``..._support_ori_select10/``: image-replica pairs
used as in-context prompts by ImageStacker) are not read: our models take no prompt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from copynce_fast.eval.protocols import (
    EvalOptions,
    Layout,
    Protocol,
    ProtocolReport,
    evaluate_pairs,
    locate_layout,
)

ANYPATTERN_TEST_QUERIES = 25_000

LAYOUT = """\
anypattern/                            (--root; the layout of the AnyPattern README after unzipping)
  query_k1_10_v2_test/                 the 25,000 test queries (10 novel patterns)
  reference_images/                    R000000.jpg ... (references_0..19 unzipped)
  original_images/                     optional: T000000.jpg ... (score normalisation)
  query_k1_10_v2_support_select10/     not read (ImageStacker's in-context prompts)
  gt_v1_k1_v2_test.csv                 query_id,reference_id (ISC2021 format); --gt overrides"""

GROUND_TRUTH_NAMES = ("gt_v1_k1_v2_test.csv", "ground_truth.csv")
FOLDERS = {"queries": ("query_k1_10_v2_test",), "references": ("reference_images",),
           "training": ("original_images",)}


def _locate(root: Path | None, overrides: Mapping[str, Path | None]) -> Layout:
    return locate_layout("anypattern", root, overrides, ground_truth=GROUND_TRUTH_NAMES, folders=FOLDERS)


def _evaluate(predictions: Path, layout: Layout, options: EvalOptions) -> ProtocolReport:
    return evaluate_pairs("anypattern", predictions, layout, options, expected_queries=ANYPATTERN_TEST_QUERIES,
                          headline=(("μAP", "uap"), ("recall@1", "recall_at_1")))


PROTOCOL = Protocol(
    name="anypattern",
    summary="AnyPattern (novel-pattern test set, 25,000 queries): μAP and recall@1 (ISC2021 definitions)",
    layout_doc=LAYOUT,
    file_roles=(),
    locate=_locate,
    evaluate=_evaluate,
)
