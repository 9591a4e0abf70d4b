"""Score normalisation of video similarities, folded into the frame descriptors.

The image-side variants (``copynce``, ``isc2021``, ``sscd``; :func:`copynce_fast.search.score_norm.normalize_scores`)
subtract from every score of a query a bias measured by its similarity to an auxiliary set of non-copies.
For video the query is a *frame*: each query frame gets its own bias from its nearest auxiliary frames (or
images), as the VSC2022 baseline does (``vsc/baseline/score_normalization.py``), and the bias goes into the
descriptors themselves:

    query' = [query, -weight · bias(query)],   reference' = [reference, 1]
    query' · reference' = query · reference - weight · bias(query)

so the global frame kNN of the descriptor track, the max aggregation to video pairs and the similarity
matrices of the alignment all see normalised similarities, and the files stay in the VSC2022 layout.

Differences from the VSC2022 baseline (which uses the ``isc2021`` rule with ``n = 1`` and ``beta = 1.2``:
``--sn-param n=1 --sn-param beta=1.2``): the baseline first drops the descriptor dimension of lowest variance
on the auxiliary set (to stay within the challenge's 512 dimensions) and re-normalises; we append a dimension.
"""
from __future__ import annotations

import numpy as np

from copynce_fast.video.features import VideoFeatures

__all__ = ["query_bias_terms", "normalize_video_features"]


def query_bias_terms(queries: np.ndarray, aux: np.ndarray, variant: str = "copynce", **params) -> np.ndarray:
    """``-weight · bias`` of each query row (N,) float32, from the image-side rules of ``variant``.

    Computed as the normalised score of a zero score: ``normalize_scores(0, ...) = 0 - weight · bias``, so every
    variant and parameter means here exactly what it means for images.
    """
    from copynce_fast.search.score_norm import normalize_scores

    if queries.ndim != 2 or aux.ndim != 2 or queries.shape[1] != aux.shape[1]:
        raise ValueError(f"aux must be (A, D) with the queries' D, got {aux.shape} for queries {queries.shape}")
    zeros = np.zeros((len(queries), 1), dtype=np.float32)
    out = normalize_scores(zeros, np.ascontiguousarray(queries, dtype=np.float32),
                           np.ascontiguousarray(aux, dtype=np.float32), variant, **params)
    return np.asarray(out, dtype=np.float32)[:, 0]


def normalize_video_features(queries: VideoFeatures, references: VideoFeatures, aux: np.ndarray,
                             variant: str = "copynce", **params) -> tuple[VideoFeatures, VideoFeatures]:
    """Query and reference frame descriptors with one more dimension each (module docstring).

    Args:
        queries, references: frame descriptors (same dim D).
        aux: (A, D) descriptors of non-copies (frames of unrelated videos, or images); never the references.
        variant, params: the score-normalisation rule and its parameters (as for images).

    Returns:
        ``(queries', references')`` with D + 1 dimensions; their inner products are the normalised scores.
    """
    if queries.dim != references.dim:
        raise ValueError(f"queries have dim {queries.dim}, references {references.dim}")
    terms = query_bias_terms(queries.features, aux, variant, **params)
    q = np.concatenate([queries.features.astype(np.float32), terms[:, None]], axis=1)
    r = np.concatenate([references.features.astype(np.float32), np.ones((len(references), 1), np.float32)], axis=1)
    return queries.with_features(q), references.with_features(r)
