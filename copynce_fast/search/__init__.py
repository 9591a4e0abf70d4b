"""Search: descriptor feature files, kNN (exact or IVF, faiss or torch; the one faiss index builder), saved
indexes, score normalisation, and predictions (kNN -> query/reference/score triples, CSV)."""
from copynce_fast.search.features import Features, FeatureWriter, consolidate, load_features, save_features
from copynce_fast.search.index import SearchIndex, build_index, load_index
from copynce_fast.search.knn import faiss_available, faiss_index, ivf_params, knn
from copynce_fast.search.predictions import knn_to_predictions, read_predictions_csv, write_predictions_csv
from copynce_fast.search.score_norm import normalize_copynce, normalize_isc2021, normalize_scores, normalize_sscd

__all__ = [
    "Features", "FeatureWriter", "consolidate", "load_features", "save_features",
    "SearchIndex", "build_index", "load_index",
    "faiss_available", "faiss_index", "ivf_params", "knn",
    "knn_to_predictions", "read_predictions_csv", "write_predictions_csv",
    "normalize_copynce", "normalize_isc2021", "normalize_scores", "normalize_sscd",
]
