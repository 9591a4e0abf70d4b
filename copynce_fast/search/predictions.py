"""Predictions: a kNN result as ``(query_id, reference_id, score)`` triples (the input of
:mod:`copynce_fast.eval.metrics`), read and written as ``query_id,reference_id,score`` CSV.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from copynce_fast.search.knn import ArrayLike

__all__ = ["knn_to_predictions", "write_predictions_csv", "read_predictions_csv"]


def knn_to_predictions(scores: ArrayLike, indices: ArrayLike, query_ids, reference_ids
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten a kNN result into prediction arrays for :mod:`copynce_fast.eval.metrics`.

    Args:
        scores: (N, k) scores from :func:`copynce_fast.search.knn.knn` (numpy or torch).
        indices: (N, k) int database row indices; -1 entries (IVF padding) are dropped.
        query_ids: (N,) ids of the query rows.
        reference_ids: (M,) ids of the database rows.

    Returns:
        ``(query_ids, reference_ids, scores)``: three (P,) numpy arrays, P = number of valid entries,
        row-major (query by query, best first).
    """
    scores = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    indices = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
    query_ids, reference_ids = np.asarray(query_ids), np.asarray(reference_ids)
    if scores.shape != indices.shape or scores.ndim != 2:
        raise ValueError(f"scores and indices must be (N, k) of the same shape, got {scores.shape} and "
                         f"{indices.shape}")
    if len(query_ids) != scores.shape[0]:
        raise ValueError(f"query_ids has {len(query_ids)} ids for {scores.shape[0]} rows of scores")
    if indices.size and indices.max() >= len(reference_ids):
        raise ValueError(f"indices reach {indices.max()} but reference_ids has only {len(reference_ids)} ids")
    valid = indices >= 0
    rows = np.nonzero(valid)[0]
    return query_ids[rows], reference_ids[indices[valid]], scores[valid].astype(np.float64)


def write_predictions_csv(path: str | Path, predictions) -> Path:
    """Write predictions as CSV with header ``query_id,reference_id,score``.

    Args:
        path: output file.
        predictions: ``(query_ids, reference_ids, scores)`` arrays or a list of triples.

    Scores are written with Python's shortest round-trip ``repr``, so reading gives back the same floats.
    """
    if isinstance(predictions, tuple) and len(predictions) == 3 and all(
            isinstance(a, np.ndarray) for a in predictions):
        rows = zip(predictions[0].tolist(), predictions[1].tolist(), predictions[2].astype(np.float64).tolist())
    else:
        rows = ((q, r, float(s)) for q, r, s in predictions)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("query_id", "reference_id", "score"))
        w.writerows((q, r, repr(s)) for q, r, s in rows)
    return path


def read_predictions_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a ``query_id,reference_id,score`` CSV into ``(query_ids, reference_ids, scores)`` arrays.

    Ids are returned as strings (unicode arrays), scores as float64.
    """
    with Path(path).open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["query_id", "reference_id", "score"]:
            raise ValueError(f"{path}: expected header 'query_id,reference_id,score', got {header!r}")
        q, r, s = [], [], []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 3:
                raise ValueError(f"{path}:{line_no}: expected 3 fields, got {len(row)}")
            q.append(row[0])
            r.append(row[1])
            s.append(float(row[2]))
    return np.asarray(q, dtype=str), np.asarray(r, dtype=str), np.asarray(s, dtype=np.float64)
