"""Ground truth and candidate pairs of the image protocols (DISC21, NDEC, AnyPattern): file formats, top-k.

Ground truth (:func:`read_ground_truth`):

* CSV with header ``query_id,reference_id`` (the ISC2021 / DISC21 ``*_ground_truth.csv``): one row per query;
  an empty ``reference_id`` lists a query without a match; a query may repeat for several references.
* JSON ``{query_id: [reference_id, ...]}`` (the CopyNCE reference's GT files; ``[]`` = no match; a bare string
  counts as one id).

Candidates / predictions (:func:`read_candidates`): our CSV ``query_id,reference_id,score``, or the reference's
scores JSON ``[[query_id, [[reference_id, score], ...]], ...]``.

Candidate selection, both rules (``copynce-fast evaluate`` applies them in this order):

* top-k per query (:func:`topk_per_query`): keep the ``k`` best-scored references of each query (the CopyNCE
  descriptor evaluation keeps 10);
* a global cap (``max_predictions`` of :func:`copynce_fast.eval.metrics.evaluate`): keep the globally best
  ``n`` pairs, ties at the cut resolved pessimistically. The ISC2021 / DISC21 matching track limited a
  submission to :data:`~copynce_fast.eval.protocols.OFFICIAL_MAX_PREDICTIONS` = 500,000 pairs (``max_results =
  500_000`` in facebookresearch/isc2021 ``scripts/compute_metrics.py``, which refuses longer files); the cap
  drops the excess lowest-scored pairs instead, which scores like a compliant submission of the top 500k.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from copynce_fast.search.predictions import read_predictions_csv

__all__ = ["read_ground_truth", "read_candidates", "topk_per_query"]


def read_ground_truth(path: str | Path) -> dict[str, list[str]]:
    """Read a DISC21 ground-truth CSV or JSON (module docstring) as ``{query_id: [reference_id, ...]}``.

    Every query the file names is a key (with ``[]`` when it has no match).

    Raises:
        ValueError: unknown extension / layout, with the file named.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such ground-truth file: {path}")
    gt: dict[str, list[str]] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object {{query_id: [reference_id, ...]}}")
        for q, refs in data.items():
            if refs is None:
                refs = []
            elif isinstance(refs, (str, int)):
                refs = [refs]
            elif not isinstance(refs, list):
                raise ValueError(f"{path}: query {q!r} maps to {type(refs).__name__}, expected a list of ids")
            gt[str(q)] = [str(r) for r in refs]
        return gt
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header[:2] != ["query_id", "reference_id"]:
            raise ValueError(f"{path}: expected a CSV header 'query_id,reference_id', got {header!r} "
                             f"(or use a .json ground truth)")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            q = row[0].strip()
            r = row[1].strip() if len(row) > 1 else ""
            if not q:
                raise ValueError(f"{path}:{line_no}: empty query_id")
            refs = gt.setdefault(q, [])
            if r and r not in refs:
                refs.append(r)
    return gt


def read_candidates(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read predictions / candidate pairs as ``(query_ids, reference_ids, scores)`` arrays (str, str, float64).

    Accepts our CSV (``query_id,reference_id,score``) or the reference's JSON
    ``[[query_id, [[reference_id, score], ...]], ...]``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such predictions file: {path}")
    if path.suffix.lower() != ".json":
        return read_predictions_csv(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    q, r, s = [], [], []
    try:
        for query, refs in data:
            for ref, score in refs:
                q.append(str(query))
                r.append(str(ref))
                s.append(float(score))
    except (TypeError, ValueError):
        raise ValueError(f"{path}: expected [[query_id, [[reference_id, score], ...]], ...]") from None
    return np.asarray(q, dtype=str), np.asarray(r, dtype=str), np.asarray(s, dtype=np.float64)


def topk_per_query(query_ids: np.ndarray, reference_ids: np.ndarray, scores: np.ndarray,
                   k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``k`` highest-scored pairs of each query (ties: the earlier row wins).

    Returns the kept ``(query_ids, reference_ids, scores)`` grouped by query, best first.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    q = np.asarray(query_ids)
    if len(q) == 0:
        return query_ids, reference_ids, scores
    _, codes = np.unique(q, return_inverse=True)
    order = np.lexsort((np.arange(len(q)), -np.asarray(scores, dtype=np.float64), codes))  # query, score desc
    grouped = codes[order]
    start = np.ones(len(order), dtype=bool)
    start[1:] = grouped[1:] != grouped[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
    keep = order[(np.arange(len(order)) - first) < k]
    return np.asarray(query_ids)[keep], np.asarray(reference_ids)[keep], np.asarray(scores)[keep]
