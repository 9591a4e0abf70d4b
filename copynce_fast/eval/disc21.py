"""The DISC21 / ISC2021 protocol: the folder layout, the ground-truth file names, the headline metrics.

Its files (ground truth, candidates) and the top-k rule are the image protocols' common ones
(:mod:`copynce_fast.eval.pair_files`); the pipeline is :func:`copynce_fast.eval.protocols.evaluate_pairs`.
"""
from __future__ import annotations

from copynce_fast.eval.protocols import Protocol, evaluate_pairs, locate_layout

DISC21_LAYOUT = """\
DISC21/                          (--root)
  query_images/                  Q00000.jpg ... (also accepted: queries/, dev_queries/, final_queries/)
  reference_images/              R000000.jpg ... (also: references/)
  training_images/               optional: T000000.jpg ... (score normalisation; also: training/)
  <ground truth>                 one of public_ground_truth.csv (ISC2021 phase 1), dev_ground_truth.csv,
                                 final_ground_truth.csv, ground_truth.csv, or the CopyNCE JSON
                                 isc_25k_matching_dev_set_gt.json / isc_matching_test_set_gt.json; --gt overrides"""

DISC21_GROUND_TRUTH_NAMES = ("public_ground_truth.csv", "dev_ground_truth.csv", "final_ground_truth.csv",
                             "ground_truth.csv", "isc_25k_matching_dev_set_gt.json", "isc_matching_test_set_gt.json")
DISC21_FOLDERS = {"queries": ("query_images", "queries", "dev_queries", "final_queries"),
                  "references": ("reference_images", "references"),
                  "training": ("training_images", "training")}


def _locate(root, overrides):
    return locate_layout("disc21", root, overrides, ground_truth=DISC21_GROUND_TRUTH_NAMES, folders=DISC21_FOLDERS)


def _evaluate(predictions, layout, options):
    return evaluate_pairs("disc21", predictions, layout, options,
                          headline=(("μAP", "uap"), ("RP90", "recall_at_p90")))


PROTOCOL = Protocol(name="disc21",
                    summary="DISC21 / ISC2021 descriptor and matching tracks: μAP, RP90 (+ mAP, recall@k)",
                    layout_doc=DISC21_LAYOUT, file_roles=(), locate=_locate, evaluate=_evaluate)
