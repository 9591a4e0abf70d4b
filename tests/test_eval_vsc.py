"""VSC2022 metrics on hand-made cases with hand-computed values, and the candidate generation."""
import math

import numpy as np
import pytest

from copynce_fast.eval.vsc import Intervals, evaluate_descriptor_track, evaluate_matching_track, pair_uap, segment_ap
from copynce_fast.video.candidates import aggregate_max, global_topk_frame_pairs, vsc_candidates
from copynce_fast.video.features import VideoFeatures
from copynce_fast.video.segments import (
    CandidatePair as C,
)
from copynce_fast.video.segments import (
    Match,
    read_candidates_csv,
    read_matches_csv,
    write_candidates_csv,
    write_matches_csv,
)


def M(q0, q1, r0, r1, score=1.0, q="Q1", r="R1"):
    return Match(q, r, q0, q1, r0, r1, score)


def test_interval_union_and_intersection():
    a = Intervals([(2, 5), (7, 8)])
    assert a.length() == 4
    assert Intervals([(1, 3), (2, 4), (4, 5), (7, 8)]).intervals == [(1, 5), (7, 8)]  # touching intervals merge
    assert a.intersection_length(Intervals([(1, 3), (4, 7)])) == pytest.approx(2)  # (2,3) + (4,5)
    assert a.intersection_length(Intervals([(-1, 0), (3.5, 12)])) == pytest.approx(2.5)  # (3.5,5) + (7,8)


def test_segment_ap_perfect_and_split():
    gt = [M(4, 14, 10, 18)]
    assert segment_ap(gt, [M(4, 14, 10, 18)]).ap == pytest.approx(1.0)
    # one segment predicted in two halves: the first (score 2) gives R = sqrt(6/10 * 4/8) at P = 1, then R = 1
    res = segment_ap(gt, [M(4, 8, 10, 14, 1.0), M(8, 14, 14, 18, 2.0)])
    assert res.ap == pytest.approx(1.0)
    assert res.recall.tolist() == pytest.approx([math.sqrt(0.6 * 0.5), 1.0])


def test_segment_ap_ties_enter_together_and_order_matters():
    gt = [M(0, 10, 0, 10)]
    a, b = M(0, 5, 0, 5, 0.9), M(5, 15, 5, 15, 0.9)  # tied: union [0, 15] on both axes, 10 of it true
    far = M(20, 30, 20, 30, 0.5)  # overlaps nothing: predicted length only
    assert segment_ap(gt, [a, b, far]).ap == pytest.approx(2 / 3)
    # ranked first, the far segment dilutes precision at the only recall step: 10 true of 25 predicted
    assert segment_ap(gt, [a, b, far._replace(score=0.95)]).ap == pytest.approx(10 / 25)


def test_segment_ap_counts_only_overlapping_ground_truth():
    # VCSL fig. 4(f): each prediction overlaps the ground truth on one axis only, never as a rectangle
    gt = [M(4, 14, 10, 18), M(20, 28, 21, 29)]
    assert segment_ap(gt, [M(4, 14, 21, 29), M(20, 28, 10, 18)]).ap == pytest.approx(0.0)


def test_segment_ap_axes_and_pairs():
    # a 2x slow-down in the reference predicted at speed 1: query recall 1, reference recall 1/2
    assert segment_ap([M(0, 10, 0, 20)], [M(0, 10, 0, 10)]).ap == pytest.approx(math.sqrt(0.5))
    # the right box on the wrong pairs first: precision 1/3 when the true pair arrives
    gt = [M(4, 14, 10, 18, q="Q1", r="R2")]
    preds = [M(4, 14, 10, 18, 3.0, "Q2", "R2"), M(4, 14, 10, 18, 2.0, "Q1", "R1"), M(4, 14, 10, 18, 1.0, "Q1", "R2")]
    res = evaluate_matching_track(gt, preds)
    assert res.segment.ap == pytest.approx(1 / 3)
    assert res.pairwise.ap == pytest.approx(1 / 3)
    # the order of the input never matters
    rng = np.random.default_rng(0)
    values = {segment_ap(gt, [preds[i] for i in rng.permutation(3)]).ap for _ in range(5)}
    assert len(values) == 1


def test_segment_ap_rejects_bad_input():
    with pytest.raises(ValueError, match="ground_truth"):
        segment_ap([M(1, 1, 0, 5)], [M(0, 1, 0, 1)])
    with pytest.raises(ValueError, match="finite"):
        segment_ap([M(0, 1, 0, 1)], [M(0, 1, 0, 1, float("nan"))])


def test_pair_uap_hand_values():
    gt = [("1", "10"), ("2", "11")]
    assert pair_uap(gt, [C("1", "10", 8), C("2", "11", 4), C("99", "99", 2)]).ap == pytest.approx(1.0)
    assert pair_uap(gt, [C("1", "10", 8), C("2", "11", 4), C("99", "99", 5)]).ap == pytest.approx((1 + 2 / 3) / 2)
    assert pair_uap(gt, [C("1", "10", 3), C("2", "10", 2), C("99", "99", 1)]).ap == pytest.approx(0.5)
    assert pair_uap(gt, [C("1", "10", 2), C("2", "10", 3), C("99", "99", 1)]).ap == pytest.approx(0.25)
    # ties enter as one group: precision 2/3 for both true pairs (not 1 and 1)
    assert pair_uap(gt, [C("1", "10", 5), C("2", "11", 5), C("99", "99", 5)]).ap == pytest.approx(2 / 3)
    # a ground-truth pair never predicted costs recall
    assert pair_uap(gt + [("3", "12")], [C("1", "10", 1)]).ap == pytest.approx(1 / 3)
    assert pair_uap(gt, [C("5", "5", 1)]).ap == 0.0
    with pytest.raises(ValueError, match="duplicate"):
        pair_uap(gt, [C("1", "10", 1), C("1", "10", 2)])


def test_csv_round_trip(tmp_path):
    matches = [M(0.5, 3.25, 10, 12.75, 0.8, "Q9", "R3"), M(1, 2, 3, 4, -0.1)]
    assert read_matches_csv(write_matches_csv(tmp_path / "m.csv", matches)) == matches
    cands = [C("Q1", "R2", 0.25), C("Q3", "R4", 1.5)]
    assert read_candidates_csv(write_candidates_csv(tmp_path / "c.csv", cands)) == cands
    gt = tmp_path / "gt.csv"  # ground truth: columns in any order, no score
    gt.write_text("ref_id,query_id,query_start,query_end,ref_start,ref_end\nR2,Q1,4,14,10,18\n")
    assert read_matches_csv(gt, is_gt=True) == [Match("Q1", "R2", 4, 14, 10, 18, 1.0)]
    with pytest.raises(ValueError, match="score"):
        read_matches_csv(gt)
    bad = tmp_path / "bad.csv"
    bad.write_text("query_id,ref_id,query_start,query_end,ref_start,ref_end\nQ1,R1,5,4,0,1\n")
    with pytest.raises(ValueError, match="line 2"):
        read_matches_csv(bad, is_gt=True)


def test_global_topk_matches_brute_force():
    rng = np.random.default_rng(1)
    q, r = rng.standard_normal((37, 8)), rng.standard_normal((23, 8))
    full = q @ r.T
    for k in (1, 50, 37 * 23, 5000):
        qi, ri, s = global_topk_frame_pairs(q, r, k, max_chunk_elements=100)  # several chunks
        want = np.sort(full.ravel())[::-1][:min(k, full.size)]
        np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(full[qi, ri], s, rtol=1e-5, atol=1e-5)


def test_aggregate_max():
    qv, rv, s = aggregate_max(np.array([0, 0, 1, 0]), np.array([2, 2, 0, 1]), np.array([0.1, 0.7, 0.5, 0.9]))
    assert list(zip(qv.tolist(), rv.tolist())) == [(0, 1), (0, 2), (1, 0)]
    np.testing.assert_allclose(s, [0.9, 0.7, 0.5])


def _videos(spec):
    """VideoFeatures from {video_id: (F, D) array}, one-second frames."""
    ids, ts, feats = [], [], []
    for vid, f in spec.items():
        ids += [vid] * len(f)
        ts += [[i, i + 1] for i in range(len(f))]
        feats.append(f)
    return VideoFeatures(np.array(ids), np.array(ts, float), np.concatenate(feats).astype(np.float32))


def test_vsc_candidates_global_threshold_and_limits():
    e = np.eye(4, dtype=np.float32)
    refs = _videos({"R0": e[[0, 1]], "R1": e[[2]], "R2": e[[3]]})
    # Q0 copies R0 (two frames), Q1 half-resembles R1
    queries = _videos({"Q0": e[[0, 1]], "Q1": 0.5 * e[[2]] + 0.1 * e[[3]]})
    cands = vsc_candidates(queries, refs, retrieve_per_query=1.5, candidates_per_query=10)
    # K = 3 frame pairs over all queries: (Q0f0,R0f0)=1, (Q0f1,R0f1)=1, (Q1,R1)=0.5
    assert [(c.query_id, c.ref_id) for c in cands] == [("Q0", "R0"), ("Q1", "R1")]
    assert [c.score for c in cands] == pytest.approx([1.0, 0.5])
    assert len(vsc_candidates(queries, refs, retrieve_per_query=10, candidates_per_query=0.5)) == 1
    res = evaluate_descriptor_track(queries, refs, [M(0, 2, 0, 2, q="Q0", r="R0")], retrieve_per_query=10)
    assert res.uap.ap == pytest.approx(1.0)  # the true pair ranks first
    with pytest.raises(ValueError, match="retrieve_per_query"):
        vsc_candidates(queries, refs, retrieve_per_query=0)
