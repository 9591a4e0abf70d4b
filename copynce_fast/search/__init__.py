"""Search: descriptor feature files, kNN (exact or IVF, faiss or torch; the one faiss index builder), saved
indexes, PCA-whitening, sharded search (exact top-k merge, GPUs, ranks), score normalisation, the CopyIndex
(ids + index + whitening + aux descriptors), and predictions (kNN -> query/reference/score triples, CSV)."""
from copynce_fast.search.copy_index import CopyIndex, Hits
from copynce_fast.search.features import Features, FeatureWriter, consolidate, load_features, save_features
from copynce_fast.search.index import SearchIndex, build_index, load_index, make_index
from copynce_fast.search.knn import faiss_available, faiss_index, ivf_params, knn
from copynce_fast.search.predictions import knn_to_predictions, read_predictions_csv, write_predictions_csv
from copynce_fast.search.score_norm import normalize_copynce, normalize_isc2021, normalize_scores, normalize_sscd
from copynce_fast.search.sharded import merge_topk, search_across_ranks, search_shards
from copynce_fast.search.whitening import Whitening, learn_whitening, load_whitening

__all__ = [
    "Features", "FeatureWriter", "consolidate", "load_features", "save_features",
    "SearchIndex", "build_index", "load_index", "make_index", "CopyIndex", "Hits",
    "Whitening", "learn_whitening", "load_whitening", "merge_topk", "search_shards", "search_across_ranks",
    "faiss_available", "faiss_index", "ivf_params", "knn",
    "knn_to_predictions", "read_predictions_csv", "write_predictions_csv",
    "normalize_copynce", "normalize_isc2021", "normalize_scores", "normalize_sscd",
]
