"""VSC2022 (Meta's Video Similarity Challenge) metrics, as facebookresearch/vsc2022 defines them
(``vsc/metrics.py``, ``vsc/descriptor_eval_lib.py``, ``vsc/candidates.py``); our own code.

**Descriptor track** (:func:`evaluate_descriptor_track`): video-level micro average precision (μAP) of
candidate pairs ``(query_id, ref_id, score)``. Candidates come from frame descriptors
(:func:`copynce_fast.video.candidates.vsc_candidates`): the ``1200 · #query videos`` most similar
(query frame, reference frame) pairs over the whole query set (one global threshold, not k per query),
aggregated to video pairs by their maximum similarity, the best ``25 · #query videos`` pairs kept. The AP is
the challenge's "DrivenData" AP (:func:`pair_uap`): rank pairs by score, take precision at each *distinct*
score (tied pairs enter together, as scikit-learn's ``average_precision_score`` does), sum
``precision × (new true pairs) / (all ground-truth pairs)``. Ground-truth pairs never predicted cost recall.

**Matching track** (:func:`segment_ap`): AP of predicted segments
``(query_id, ref_id, query_start, query_end, ref_start, ref_end, score)``, with the VCSL-style
intersection-based precision and recall, one value per axis (query time, reference time):

* predictions are added in decreasing score order, all those with the same score at once;
* per video pair and axis, the predicted length is the length of the *union* of its predicted intervals;
  the matched length is that union intersected with the union of the pair's ground-truth intervals --
  counting only ground-truth segments whose (query × reference) rectangle overlaps (positive area) at
  least one prediction of the pair so far;
* ``P_axis = Σ_pairs matched / Σ_pairs predicted``, ``R_axis = Σ_pairs matched / Σ_pairs ground-truth union``;
  ``P = sqrt(P_query · P_ref)``, ``R = sqrt(R_query · R_ref)``;
* ``AP = Σ P · ΔR`` over the score groups.

Differences from the official code, on purpose: ids are compared as given (no ``Q``/``R`` formatting of
integer ids); a precision with no predicted length yet (only zero-length predictions so far) is 0 instead of a
division error; duplicate ground-truth or predicted pairs in :func:`pair_uap` raise ValueError (the official
code raises AssertionError).
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from copynce_fast.video.segments import CandidatePair, Match, pairs_from_matches

__all__ = ["Intervals", "SegmentAP", "PairAP", "segment_ap", "pair_uap", "MatchingTrackMetrics",
           "evaluate_matching_track", "DescriptorTrackResult", "evaluate_descriptor_track"]


class Intervals:
    """A union of closed intervals on one time axis, kept sorted and disjoint (touching intervals merge)."""

    def __init__(self, intervals: Iterable[tuple[float, float]] = ()):
        merged: list[list[float]] = []
        for start, end in sorted((float(a), float(b)) for a, b in intervals):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.intervals = [(a, b) for a, b in merged]

    def length(self) -> float:
        return sum(b - a for a, b in self.intervals)

    def intersection_length(self, other: "Intervals") -> float:
        """Total length of ``self ∩ other`` (two-pointer sweep over both sorted unions)."""
        i = j = 0
        total = 0.0
        a, b = self.intervals, other.intervals
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if hi > lo:
                total += hi - lo
            if a[i][1] <= b[j][1]:
                i += 1
            else:
                j += 1
        return total


def _overlap_area(a: Match, b: Match) -> float:
    dq = min(a.query_end, b.query_end) - max(a.query_start, b.query_start)
    dr = min(a.ref_end, b.ref_end) - max(a.ref_start, b.ref_start)
    return max(dq, 0.0) * max(dr, 0.0)


_AXES = ((2, 3), (4, 5))  # (start, end) field positions of a Match: query axis, reference axis


class _PairState:
    """Predictions and ground truth of one video pair; ``matched``/``predicted`` per axis after each update."""

    def __init__(self):
        self.gts: list[Match] = []
        self.preds: list[Match] = []
        self.matched = [0.0, 0.0]
        self.predicted = [0.0, 0.0]

    def update(self) -> tuple[list[float], list[float]]:
        """Recompute after ``preds`` grew; returns the (matched, predicted) increments per axis."""
        gts = [g for g in self.gts if any(_overlap_area(g, p) > 0 for p in self.preds)]
        d_matched, d_predicted = [], []
        for axis, (s, e) in enumerate(_AXES):
            pred = Intervals((p[s], p[e]) for p in self.preds)
            truth = Intervals((g[s], g[e]) for g in gts)
            matched, predicted = pred.intersection_length(truth), pred.length()
            d_matched.append(matched - self.matched[axis])
            d_predicted.append(predicted - self.predicted[axis])
            self.matched[axis], self.predicted[axis] = matched, predicted
        return d_matched, d_predicted


@dataclass(frozen=True)
class SegmentAP:
    """Matching-track AP and its precision-recall curve (one point per score group that raised recall)."""

    ap: float
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def segment_ap(ground_truth: Sequence[Match], predictions: Sequence[Match]) -> SegmentAP:
    """VSC2022 matching-track segment AP (module docstring).

    Args:
        ground_truth: copied segments (their scores are ignored); at least one with positive length on both
            axes.
        predictions: predicted segments with scores (any order; non-finite scores raise ValueError).

    Returns:
        :class:`SegmentAP`.
    """
    pairs: dict[tuple[str, str], _PairState] = defaultdict(_PairState)
    for g in ground_truth:
        pairs[g.pair()].gts.append(g)
    gt_length = [0.0, 0.0]
    for state in pairs.values():
        for axis, (s, e) in enumerate(_AXES):
            gt_length[axis] += Intervals((g[s], g[e]) for g in state.gts).length()
    if min(gt_length) <= 0:
        raise ValueError("ground_truth: no segment with positive length on both axes; recall is undefined")
    if any(not math.isfinite(p.score) for p in predictions):
        raise ValueError("predictions: scores must be finite")

    matched, predicted = [0.0, 0.0], [0.0, 0.0]
    ap = recall = 0.0
    curve: list[tuple[float, float, float]] = []
    ranked = sorted(predictions, key=lambda p: p.score, reverse=True)
    for score, group in itertools.groupby(ranked, key=lambda p: p.score):
        touched = set()
        for p in group:
            pairs[p.pair()].preds.append(p)
            touched.add(p.pair())
        for key in touched:
            d_matched, d_predicted = pairs[key].update()
            for axis in range(2):
                matched[axis] += d_matched[axis]
                predicted[axis] += d_predicted[axis]
        prec = [matched[a] / predicted[a] if predicted[a] > 0 else 0.0 for a in range(2)]
        rec = [matched[a] / gt_length[a] for a in range(2)]
        new_recall = math.sqrt(rec[0] * rec[1])
        precision = math.sqrt(prec[0] * prec[1])
        gain = new_recall - recall
        ap += precision * gain
        recall = new_recall
        if gain > 0:
            curve.append((precision, recall, float(score)))
    arr = np.asarray(curve, dtype=np.float64).reshape(-1, 3)
    return SegmentAP(float(ap), arr[:, 0], arr[:, 1], arr[:, 2])


@dataclass(frozen=True)
class PairAP:
    """Pair-level μAP (the challenge's canonical AP) and its curve at each true pair of the ranking."""

    ap: float
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    n_gt: int
    n_predictions: int


def pair_uap(ground_truth: Iterable[tuple[str, str]] | Iterable[CandidatePair],
             predictions: Sequence[CandidatePair]) -> PairAP:
    """Micro AP of scored video pairs against ground-truth pairs (VSC2022 ``drivendata_average_precision``).

    Ties: all pairs with the same score enter at once (precision counted after the whole group).

    Args:
        ground_truth: (query_id, ref_id) pairs (CandidatePair accepted; score ignored); no duplicates.
        predictions: scored pairs; no duplicate (query_id, ref_id); finite scores.

    Returns:
        :class:`PairAP`; ``ap`` is 0 when no prediction is a true pair.
    """
    gt_list = [(g[0], g[1]) for g in ground_truth]
    gt = set(gt_list)
    if len(gt) != len(gt_list):
        raise ValueError("ground_truth: duplicate (query_id, ref_id) pairs")
    if not gt:
        raise ValueError("ground_truth: no pair; recall is undefined")
    keys = [(p[0], p[1]) for p in predictions]
    if len(set(keys)) != len(keys):
        raise ValueError("predictions: duplicate (query_id, ref_id) pairs")
    scores = np.asarray([float(p[2]) for p in predictions], dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("predictions: scores must be finite")
    order = np.argsort(-scores, kind="stable")
    label = np.asarray([keys[i] in gt for i in order], dtype=bool)
    s = scores[order]
    # the last index of each tie group: precision is read there, after the whole group entered
    group_end = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.zeros(0, np.int64)
    cum_tp = np.cumsum(label)
    tp_at_end = cum_tp[group_end] if len(s) else np.zeros(0)
    new_tp = np.diff(np.r_[0, tp_at_end])
    precision = tp_at_end / (group_end + 1.0) if len(s) else np.zeros(0)
    ap = float(np.sum(precision * new_tp) / len(gt))
    keep = new_tp > 0
    return PairAP(ap, precision[keep], (tp_at_end / len(gt))[keep], s[group_end][keep] if len(s) else s,
                  len(gt), len(predictions))


@dataclass(frozen=True)
class MatchingTrackMetrics:
    """``segment``: the matching-track metric; ``pairwise``: μAP of the video pairs the segments name, each
    scored by its best segment (VSC2022's auxiliary "pairwise micro AP": detection without localisation)."""

    segment: SegmentAP
    pairwise: PairAP


def evaluate_matching_track(ground_truth: Sequence[Match], predictions: Sequence[Match]) -> MatchingTrackMetrics:
    """Segment AP and pairwise μAP of predicted segments (VSC2022 ``evaluate_matching_track``)."""
    return MatchingTrackMetrics(segment_ap(ground_truth, predictions),
                                pair_uap(pairs_from_matches(ground_truth), pairs_from_matches(predictions)))


@dataclass(frozen=True)
class DescriptorTrackResult:
    """Descriptor-track μAP and the candidate pairs it was computed on (best first)."""

    uap: PairAP
    candidates: list[CandidatePair]


def evaluate_descriptor_track(queries, references, ground_truth: Sequence[Match] | Iterable[tuple[str, str]], *,
                              retrieve_per_query: float = 1200.0, candidates_per_query: float = 25.0,
                              device: str = "cpu") -> DescriptorTrackResult:
    """VSC2022 descriptor track: candidates from frame descriptors, then their μAP.

    Args:
        queries, references: :class:`copynce_fast.video.features.VideoFeatures` (frame descriptors; use
            :func:`copynce_fast.video.score_norm.normalize_video_features` first for score normalisation).
        ground_truth: copied segments (:class:`Match`) or (query_id, ref_id) pairs.
        retrieve_per_query, candidates_per_query: the challenge's limits (1200 frame pairs and 25 video
            pairs per query video).
        device: where the frame similarities are computed.
    """
    from copynce_fast.video.candidates import vsc_candidates

    gt = list(ground_truth)
    gt_pairs = pairs_from_matches(gt) if gt and isinstance(gt[0], Match) else [(g[0], g[1]) for g in gt]
    candidates = vsc_candidates(queries, references, retrieve_per_query=retrieve_per_query,
                                candidates_per_query=candidates_per_query, device=device)
    return DescriptorTrackResult(pair_uap(gt_pairs, candidates), candidates)
