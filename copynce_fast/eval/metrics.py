"""DISC21 / ISC2021 retrieval metrics: μAP, recall at precision (RP90), recall@k, per-query mAP.

numpy only, pure functions. Every metric starts from the same labelled, globally ranked pair list
(:func:`label_predictions`), so :func:`evaluate` labels once and reports everything.

Definitions (REFERENCE §7.5; the same as the ISC2021 evaluation code):

* A prediction is a ``(query_id, reference_id, score)`` triple, higher score = more similar. Its label
  ``y = 1`` iff ``reference_id`` is in the ground truth of ``query_id``. ``N_gt`` is the total number of
  ground-truth pairs, *not* capped by what was retrieved: a GT pair that no prediction names costs recall.
* Ranking: by score descending; among equal scores the negatives come first (pessimistic tie-break, so
  giving every prediction the same score cannot inflate the result). With ``TP_k`` the number of positives
  in the first ``k``: ``P_k = TP_k / k``, ``R_k = TP_k / N_gt``.
* μAP = ``Σ_k (R_k − R_{k−1}) · P_k`` = ``(1/N_gt) · Σ_{k: y_k=1} P_k``.
* RP90 = ``max R_k`` over ``k`` with ``P_k ≥ 0.9``, with the score at that ``k`` as threshold; None if no
  ``k`` qualifies.
* Duplicate ``(query, reference)`` predictions are rejected (ValueError), as the official code does: a
  duplicate would count one GT pair twice.

Predictions are accepted as a list of triples or as a tuple of three equal-length numpy arrays
``(query_ids, reference_ids, scores)`` (the fast path for millions of pairs). Ground truth is a mapping
``query_id -> iterable of reference ids`` (empty for queries without a match; a bare string counts as one
id) or an iterable of ``(query_id, reference_id)`` pairs. Ids may be strings or integers, but predictions
and ground truth must use the same kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

PredictionsLike = Union[Sequence[tuple], tuple]  # [(q, r, score), ...] or (q_ids, r_ids, scores)
GroundTruthLike = Union[Mapping[object, object], Iterable[tuple]]  # {q: [r, ...]} or [(q, r), ...]


@dataclass(frozen=True)
class LabelledPredictions:
    """Predictions labelled against the ground truth, in global pessimistic rank order.

    Attributes:
        query: (P,) int64, index of each prediction's query into ``query_ids``.
        score: (P,) float64, scores, non-increasing.
        label: (P,) bool, True iff the pair is in the ground truth.
        query_ids: (Q,) the distinct query ids of predictions and ground truth.
        gt_count: (Q,) int64, number of GT references of each query in ``query_ids``.
        n_gt: total number of GT pairs (``gt_count.sum()``).
    """

    query: np.ndarray
    score: np.ndarray
    label: np.ndarray
    query_ids: np.ndarray
    gt_count: np.ndarray
    n_gt: int


@dataclass(frozen=True)
class PRCurve:
    """Precision / recall after each prediction of the global ranking, all (P,) float64.

    ``thresholds[k]`` is the score of the (k+1)-th ranked prediction; recall is non-decreasing.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    n_gt: int


@dataclass(frozen=True)
class OperatingPoint:
    """The highest-recall point of the ranking whose precision is at least the requested one."""

    recall: float
    precision: float
    threshold: float


@dataclass(frozen=True)
class Metrics:
    """Everything :func:`evaluate` reports. ``recall_at_p90`` / ``threshold_at_p90`` are None when the
    ranking never reaches precision 0.9."""

    uap: float
    recall_at_p90: float | None
    threshold_at_p90: float | None
    map: float
    recall_at_k: dict[int, float]
    n_predictions: int
    n_gt: int
    n_gt_queries: int


# ---------------------------------------------------------------------------------------------- input


def _prediction_arrays(predictions: PredictionsLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(predictions, tuple) and len(predictions) == 3 and all(
            isinstance(a, np.ndarray) for a in predictions):
        q, r, s = (np.asarray(a) for a in predictions)
    else:
        triples = list(predictions)
        if any(len(t) != 3 for t in triples):
            raise ValueError("predictions must be (query_id, reference_id, score) triples "
                             "or a tuple of three arrays")
        q = np.asarray([t[0] for t in triples])
        r = np.asarray([t[1] for t in triples])
        s = np.asarray([t[2] for t in triples], dtype=np.float64)
    if not (q.ndim == r.ndim == s.ndim == 1 and len(q) == len(r) == len(s)):
        raise ValueError(f"predictions arrays must be 1-D with equal lengths, got shapes "
                         f"{q.shape}, {r.shape}, {s.shape}")
    s = s.astype(np.float64)  # exact for float32 input: ties stay ties
    if not np.isfinite(s).all():
        raise ValueError("predictions contain a non-finite score")
    return q, r, s


def _ground_truth_arrays(ground_truth: GroundTruthLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt query ids, gt reference ids, ids of every query named by the GT, matched or not)."""
    gq, gr = [], []
    if isinstance(ground_truth, Mapping):
        all_q = list(ground_truth.keys())
        for q, refs in ground_truth.items():
            if refs is None:
                continue
            if isinstance(refs, (str, bytes, int, np.integer)):
                refs = (refs,)
            for r in refs:
                gq.append(q)
                gr.append(r)
    else:
        for pair in ground_truth:
            if len(pair) != 2:
                raise ValueError(f"ground_truth pairs must be (query_id, reference_id), got {pair!r}")
            gq.append(pair[0])
            gr.append(pair[1])
        all_q = gq
    gq_arr, gr_arr = np.asarray(gq), np.asarray(gr)
    if len(gq_arr) == 0:  # keep a dtype that concatenates cleanly with the predictions' ids
        gq_arr, gr_arr = np.asarray([], dtype=np.asarray(all_q).dtype), np.asarray([], dtype=np.int64)
    return gq_arr, gr_arr, np.asarray(all_q)


def _concat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a
    if (a.dtype.kind in "iu") != (b.dtype.kind in "iu"):  # numpy would silently turn 1 into "1"
        raise ValueError(f"predictions and ground_truth ids must be of the same kind, got {a.dtype} and {b.dtype}")
    return np.concatenate([a, b])


def label_predictions(predictions: PredictionsLike, ground_truth: GroundTruthLike, *,
                      max_predictions: int | None = None) -> LabelledPredictions:
    """Label every prediction against the ground truth and rank them globally (pessimistic ties).

    Args:
        predictions: list of ``(query_id, reference_id, score)`` or a tuple of three (P,) arrays.
        ground_truth: ``{query_id: [reference_id, ...]}`` (queries without a match allowed) or an
            iterable of ``(query_id, reference_id)`` pairs.
        max_predictions: keep only the top ``max_predictions`` predictions of the global ranking (ties at
            the cut resolved pessimistically, like the ranking). None = no cap. The ISC2021 matching
            track capped the number of predictions a submission may contain (its baseline scripts
            default to ``max_results=500_000``); a cap is part of the protocol, so pass it explicitly.

    Returns:
        :class:`LabelledPredictions`.

    Raises:
        ValueError: duplicate ``(query, reference)`` predictions (one is named), malformed input, a
            non-finite score, or a bad ``max_predictions``.
    """
    if max_predictions is not None and (isinstance(max_predictions, bool) or int(max_predictions) != max_predictions
                                        or max_predictions < 0):
        raise ValueError(f"max_predictions must be a non-negative integer or None, got {max_predictions!r}")
    pq, pr, ps = _prediction_arrays(predictions)
    gq, gr, all_gt_q = _ground_truth_arrays(ground_truth)
    n = len(pq)

    # Integer codes for ids, shared between predictions and GT, then one int64 key per (q, r) pair.
    query_ids, q_codes = np.unique(_concat(_concat(pq, gq), all_gt_q), return_inverse=True)
    ref_ids, r_codes = np.unique(_concat(pr, gr), return_inverse=True)
    q_codes, r_codes = q_codes.astype(np.int64), r_codes.astype(np.int64)
    n_ref = max(len(ref_ids), 1)
    if len(query_ids) * n_ref >= 2**62:
        raise ValueError("too many distinct ids to encode (query, reference) pairs in int64")
    pred_q = q_codes[:n]
    pred_key = pred_q * n_ref + r_codes[:n]
    gt_q = q_codes[n:n + len(gq)]
    gt_key = np.unique(gt_q * n_ref + r_codes[n:])  # the same GT pair listed twice counts once

    sorted_keys = np.sort(pred_key)
    dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if len(dup):
        key = sorted_keys[dup[0]]
        raise ValueError(f"predictions contain {len(dup)} duplicate (query, reference) pair(s), e.g. "
                         f"({query_ids[key // n_ref]!r}, {ref_ids[key % n_ref]!r})")

    label = np.isin(pred_key, gt_key)
    gt_count = np.bincount(gt_key // n_ref, minlength=len(query_ids)).astype(np.int64)

    # lexsort: last key is primary. Score descending, then label ascending = negatives first among ties.
    order = np.lexsort((label, -ps))
    if max_predictions is not None:
        order = order[:max_predictions]
    return LabelledPredictions(query=pred_q[order], score=ps[order], label=label[order],
                               query_ids=query_ids, gt_count=gt_count, n_gt=int(len(gt_key)))


def _check_n_gt(lp: LabelledPredictions) -> None:
    if lp.n_gt == 0:
        raise ValueError("ground_truth contains no (query, reference) pair: recall is undefined")


# -------------------------------------------------------------------------------- global (pooled) metrics


def _precision_recall(lp: LabelledPredictions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _check_n_gt(lp)
    tp = np.cumsum(lp.label, dtype=np.int64)
    precision = tp / np.arange(1, len(tp) + 1)
    return tp, precision, tp / lp.n_gt


def _uap(lp: LabelledPredictions) -> float:
    tp, precision, _ = _precision_recall(lp)
    return float(precision[lp.label].sum() / lp.n_gt)


def _recall_at_precision(lp: LabelledPredictions, p: float) -> OperatingPoint | None:
    tp, precision, recall = _precision_recall(lp)
    valid = np.flatnonzero(precision >= p)
    if len(valid) == 0:
        return None
    best = valid[np.argmax(recall[valid])]  # first k reaching the best recall: its score is the threshold
    return OperatingPoint(recall=float(recall[best]), precision=float(precision[best]),
                          threshold=float(lp.score[best]))


def micro_average_precision(predictions: PredictionsLike, ground_truth: GroundTruthLike, *,
                            max_predictions: int | None = None) -> float:
    """μAP over all predictions pooled (see the module docstring). Inputs as :func:`label_predictions`.

    Returns:
        μAP in [0, 1]; 0.0 when there are no predictions.

    Raises:
        ValueError: duplicate predictions, a ground truth without any pair, or bad arguments.
    """
    return _uap(label_predictions(predictions, ground_truth, max_predictions=max_predictions))


def recall_at_precision(predictions: PredictionsLike, ground_truth: GroundTruthLike, p: float = 0.9, *,
                        max_predictions: int | None = None) -> OperatingPoint | None:
    """Highest recall ``R_k`` over ranks ``k`` with ``P_k ≥ p`` (RP90 for ``p = 0.9``).

    Returns:
        :class:`OperatingPoint` (recall, precision and the score threshold at that rank), or None if no
        rank reaches precision ``p``.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p!r}")
    return _recall_at_precision(label_predictions(predictions, ground_truth, max_predictions=max_predictions), p)


def precision_recall_curve(predictions: PredictionsLike, ground_truth: GroundTruthLike, *,
                           max_predictions: int | None = None) -> PRCurve:
    """Precision and recall after each prediction of the global pessimistic ranking (for plotting)."""
    lp = label_predictions(predictions, ground_truth, max_predictions=max_predictions)
    _, precision, recall = _precision_recall(lp)
    return PRCurve(precision=precision, recall=recall, thresholds=lp.score.copy(), n_gt=lp.n_gt)


# ------------------------------------------------------------------------------------- per-query metrics


def _per_query_ranks(lp: LabelledPredictions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group predictions by query, keeping the pessimistic order inside each group.

    Returns, in grouped order: query code, label, 0-based rank within its query, and for each element
    the position where its query's group starts.
    """
    order = np.argsort(lp.query, kind="stable")  # stable: the global rank order survives inside a query
    q = lp.query[order]
    label = lp.label[order]
    is_start = np.ones(len(q), dtype=bool)
    is_start[1:] = q[1:] != q[:-1]
    starts = np.flatnonzero(is_start)
    group_start = np.repeat(starts, np.diff(np.append(starts, len(q))))
    return q, label, np.arange(len(q)) - group_start, group_start


def _n_positive_queries(lp: LabelledPredictions, what: str) -> int:
    n = int((lp.gt_count > 0).sum())
    if n == 0:
        raise ValueError(f"ground_truth contains no query with a match: {what} is undefined")
    return n


def _recall_at_k(lp: LabelledPredictions, k: int) -> float:
    n_pos_queries = _n_positive_queries(lp, "recall@k")
    q, label, rank, _ = _per_query_ranks(lp)
    return len(np.unique(q[label & (rank < k)])) / n_pos_queries


def _map(lp: LabelledPredictions) -> float:
    n_pos_queries = _n_positive_queries(lp, "mAP")
    q, label, rank, group_start = _per_query_ranks(lp)
    cum = np.cumsum(label, dtype=np.int64)
    tp_in_query = cum - (cum - label)[group_start]  # positives so far minus those before the query's group
    prec_at_pos = tp_in_query[label] / (rank[label] + 1)
    ap_sum = np.bincount(q[label], weights=prec_at_pos, minlength=len(lp.query_ids))
    pos = lp.gt_count > 0
    return float((ap_sum[pos] / lp.gt_count[pos]).sum() / n_pos_queries)


def recall_at_k(predictions: PredictionsLike, ground_truth: GroundTruthLike, k: int = 1, *,
                max_predictions: int | None = None) -> float:
    """Fraction of GT-positive queries with a GT reference among their top ``k`` predictions by score.

    Each query's predictions are ranked by score, ties pessimistically (negatives first). The
    denominator is every query with at least one GT reference, including queries absent from the
    predictions (they count as misses). The CopyNCE code divides by the positive queries present in
    the results instead; the two agree whenever every query has predictions (kNN output without a cap).
    With several GT references per query, one of them in the top ``k`` is a hit (DISC21 has at most one).
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return _recall_at_k(label_predictions(predictions, ground_truth, max_predictions=max_predictions), int(k))


def mean_average_precision(predictions: PredictionsLike, ground_truth: GroundTruthLike, *,
                           max_predictions: int | None = None) -> float:
    """Per-query mAP (REFERENCE §7.5 ``map``).

    For each query with a non-empty GT: ``AP_q = Σ_k y_k · P@k / |gt[q]|`` over its predictions ranked by
    score (ties pessimistic); mAP = mean of ``AP_q`` over all GT-positive queries, those without any
    prediction contributing 0.
    """
    return _map(label_predictions(predictions, ground_truth, max_predictions=max_predictions))


def evaluate(predictions: PredictionsLike, ground_truth: GroundTruthLike, *, ks: Sequence[int] = (1, 10),
             max_predictions: int | None = None) -> Metrics:
    """μAP, RP90 (+ threshold), mAP and recall@k for each ``k`` in ``ks``, from one labelling pass."""
    for k in ks:
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"ks must hold positive integers, got {k!r}")
    lp = label_predictions(predictions, ground_truth, max_predictions=max_predictions)
    op = _recall_at_precision(lp, 0.9)
    return Metrics(
        uap=_uap(lp),
        recall_at_p90=None if op is None else op.recall,
        threshold_at_p90=None if op is None else op.threshold,
        map=_map(lp),
        recall_at_k={int(k): _recall_at_k(lp, int(k)) for k in ks},
        n_predictions=len(lp.score),
        n_gt=lp.n_gt,
        n_gt_queries=int((lp.gt_count > 0).sum()),
    )
