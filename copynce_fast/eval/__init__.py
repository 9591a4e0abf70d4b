"""Evaluation: metrics (μAP, RP90, recall@k, PR curves) and the benchmark protocols (DISC21, matcher rescoring with
local verification, ...). Search lives in ``copynce_fast.search``, inference in ``copynce_fast.inference``,
pictures in ``copynce_fast.viz``."""
from copynce_fast.eval.metrics import (
    LabelledPredictions,
    Metrics,
    OperatingPoint,
    PRCurve,
    evaluate,
    label_predictions,
    mean_average_precision,
    micro_average_precision,
    precision_recall_curve,
    recall_at_k,
    recall_at_precision,
)

__all__ = [
    "LabelledPredictions", "Metrics", "OperatingPoint", "PRCurve", "evaluate", "label_predictions",
    "mean_average_precision", "micro_average_precision", "precision_recall_curve", "recall_at_k",
    "recall_at_precision",
]
