"""Evaluation: DISC21 metrics, descriptor kNN search, score normalisation, feature files (pictures: ``viz``)."""
from copynce_fast.eval.features import Features, FeatureWriter, consolidate, load_features, save_features
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
from copynce_fast.eval.score_norm import normalize_copynce, normalize_isc2021, normalize_scores, normalize_sscd
from copynce_fast.eval.search import knn, knn_to_predictions, read_predictions_csv, write_predictions_csv

__all__ = [
    "Features", "FeatureWriter", "consolidate", "load_features", "save_features",
    "LabelledPredictions", "Metrics", "OperatingPoint", "PRCurve", "evaluate", "label_predictions",
    "mean_average_precision", "micro_average_precision", "precision_recall_curve", "recall_at_k",
    "recall_at_precision",
    "normalize_copynce", "normalize_isc2021", "normalize_scores", "normalize_sscd",
    "knn", "knn_to_predictions", "read_predictions_csv", "write_predictions_csv",
]
