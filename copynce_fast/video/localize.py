"""Copied segments of candidate video pairs: frame similarity matrix -> temporal network -> timed, scored segments.

As the VSC2022 baseline (``vsc/baseline/localization.py``, ``sscd_baseline.py``, our own code):

* the similarity matrix of a pair is the inner product of its frame descriptors (plus ``similarity_bias``:
  the baseline adds 0.5 after score normalisation, since the alignment expects positive similarity where
  frames match);
* each box of :func:`~copynce_fast.video.align.temporal_network` ``(q0, r0, q1, r1)`` becomes the segment
  ``[start of frame q0, end of frame q1]`` × ``[start of frame r0, end of frame r1]`` (frame timestamps);
* its score is ``"max_sim"``: the largest similarity in ``sim[q0:q1, r0:r1]`` (end frames excluded, as the
  baseline slices; bias removed), or ``"candidate"``: the pair's candidate score;
* only the best ``localize_per_query · #query videos`` candidate pairs are aligned (the baseline: 5).
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from copynce_fast.video.align import TNParams, temporal_network
from copynce_fast.video.features import VideoFeatures
from copynce_fast.video.segments import CandidatePair, Match

__all__ = ["similarity_matrix", "boxes_to_matches", "localize_pair", "localize_candidates"]

Scoring = Literal["max_sim", "candidate"]


def similarity_matrix(query: np.ndarray, reference: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(Q, R) float32 inner products of (Q, D) query and (R, D) reference frame descriptors."""
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(f"query and reference must be (N, D) with the same D, got {query.shape} and "
                         f"{reference.shape}")
    q = torch.as_tensor(np.ascontiguousarray(query), dtype=torch.float32, device=device)
    r = torch.as_tensor(np.ascontiguousarray(reference), dtype=torch.float32, device=device)
    return (q @ r.T).cpu().numpy()


def boxes_to_matches(boxes: np.ndarray, sim: np.ndarray, query_id: str, ref_id: str, query_ts: np.ndarray,
                     ref_ts: np.ndarray, *, scoring: Scoring = "max_sim", candidate_score: float | None = None
                     ) -> list[Match]:
    """Frame boxes (B, 4) -> :class:`Match` segments in seconds, scored as the module docstring says.

    Args:
        sim: the (Q, R) similarity matrix the boxes were found in (without any bias).
        query_ts, ref_ts: (Q, 2) / (R, 2) frame ``[start, end]`` seconds.
    """
    if scoring not in ("max_sim", "candidate"):
        raise ValueError(f"scoring must be 'max_sim' or 'candidate', got {scoring!r}")
    if scoring == "candidate" and candidate_score is None:
        raise ValueError("candidate_score is needed with scoring='candidate'")
    out = []
    for q0, r0, q1, r1 in np.asarray(boxes, dtype=np.int64).reshape(-1, 4):
        if scoring == "max_sim":
            region = sim[q0:q1, r0:r1]
            score = float(region.max()) if region.size else float(sim[q0, r0])
        else:
            score = float(candidate_score)
        out.append(Match(query_id, ref_id, float(query_ts[q0, 0]), float(query_ts[q1, 1]), float(ref_ts[r0, 0]),
                         float(ref_ts[r1, 1]), score))
    return out


def localize_pair(query: VideoFeatures, reference: VideoFeatures, *, params: TNParams = TNParams(),
                  similarity_bias: float = 0.0, scoring: Scoring = "max_sim", candidate_score: float | None = None,
                  device: str = "cpu") -> tuple[list[Match], np.ndarray]:
    """Copied segments between one query video and one reference video.

    Args:
        query, reference: the frames of one video each (:meth:`VideoFeatures.video`).
        params: temporal network settings.
        similarity_bias: added to the similarities for the alignment only.
        scoring, candidate_score: see the module docstring.

    Returns:
        ``(segments, sim)`` with ``sim`` the (Q, R) float32 similarity matrix (without bias).
    """
    for name, f in (("query", query), ("reference", reference)):
        if len(f.videos()) != 1:
            raise ValueError(f"{name} must hold the frames of one video, got {len(f.videos())} videos")
    sim = similarity_matrix(query.features, reference.features, device)
    boxes = temporal_network(sim + np.float32(similarity_bias), params)
    matches = boxes_to_matches(boxes, sim, str(query.video_ids[0]), str(reference.video_ids[0]), query.timestamps,
                               reference.timestamps, scoring=scoring, candidate_score=candidate_score)
    return matches, sim


def localize_candidates(queries: VideoFeatures, references: VideoFeatures, candidates: Sequence[CandidatePair], *,
                        localize_per_query: float | None = 5.0, params: TNParams = TNParams(),
                        similarity_bias: float = 0.0, scoring: Scoring = "max_sim",
                        device: str = "cpu") -> list[Match]:
    """Segments of the best candidate pairs (VSC2022 baseline ``localize_and_verify``).

    Args:
        candidates: scored pairs, any order (sorted best first here); their ids must be in the features.
        localize_per_query: align the best ``int(this · #query videos)`` pairs; None = all.
        params, similarity_bias, scoring, device: as :func:`localize_pair`.

    Returns:
        All segments found, in candidate order.
    """
    q_rows = dict(queries.videos())
    r_rows = dict(references.videos())
    ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
    if localize_per_query is not None:
        if not localize_per_query > 0:
            raise ValueError(f"localize_per_query must be positive or None, got {localize_per_query!r}")
        ranked = ranked[:int(localize_per_query * len(q_rows))]
    missing = [c for c in ranked if c.query_id not in q_rows or c.ref_id not in r_rows]
    if missing:
        c = missing[0]
        raise ValueError(f"candidates: {len(missing)} pair(s) name videos without features, e.g. "
                         f"({c.query_id}, {c.ref_id})")
    out: list[Match] = []
    for c in ranked:
        found, _ = localize_pair(queries.select(q_rows[c.query_id]), references.select(r_rows[c.ref_id]),
                                 params=params, similarity_bias=similarity_bias, scoring=scoring,
                                 candidate_score=c.score, device=device)
        out.extend(found)
    return out
