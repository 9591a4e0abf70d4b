"""Metrics on hand-made rankings with hand-computed answers, plus a property test against a slow,
loop-based implementation written here from the definitions (REFERENCE §7.5)."""
import random

import numpy as np
import pytest

from copynce_fast.eval.metrics import (
    evaluate,
    label_predictions,
    mean_average_precision,
    micro_average_precision,
    precision_recall_curve,
    recall_at_k,
    recall_at_precision,
)

GT = {"q1": ["r1"], "q2": ["r2"], "q3": []}


def test_perfect_ranking_is_one():
    preds = [("q1", "r1", 0.9), ("q2", "r2", 0.8), ("q1", "r5", 0.5), ("q3", "r3", 0.4)]
    assert micro_average_precision(preds, GT) == pytest.approx(1.0)
    assert recall_at_precision(preds, GT).recall == pytest.approx(1.0)
    assert mean_average_precision(preds, GT) == pytest.approx(1.0)


def test_false_positive_ranked_first():
    preds = [("q3", "r3", 0.95), ("q1", "r1", 0.9), ("q2", "r2", 0.8)]
    # y = 0, 1, 1 -> P = 0, 1/2, 2/3 ; uAP = (1/2 + 2/3) / 2
    assert micro_average_precision(preds, GT) == pytest.approx(7 / 12)


def test_ties_are_pessimistic():
    preds = [("q1", "r1", 0.9), ("q3", "r3", 0.9), ("q2", "r2", 0.5)]
    # the positive tied with a negative is ranked after it: same as the false-positive-first case
    assert micro_average_precision(preds, GT) == pytest.approx(7 / 12)
    assert micro_average_precision(preds[::-1], GT) == pytest.approx(7 / 12)
    # all scores equal: every negative is ranked above every positive
    flat = [("q3", "r3", 0.5), ("q1", "r1", 0.5), ("q1", "rx", 0.5), ("q2", "r2", 0.5)]
    assert micro_average_precision(flat, GT) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_n_gt_counts_pairs_never_retrieved():
    gt = {"q1": ["r1"], "q2": ["r2"], "q3": ["r3"], "q4": ["r4"], "q5": []}
    preds = [("q1", "r1", 0.9), ("q2", "r9", 0.8)]
    assert micro_average_precision(preds, gt) == pytest.approx(0.25)
    curve = precision_recall_curve(preds, gt)
    np.testing.assert_allclose(curve.recall, [0.25, 0.25])
    np.testing.assert_allclose(curve.precision, [1.0, 0.5])
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8])


def test_duplicates_raise_and_name_the_pair():
    preds = [("q1", "r1", 0.9), ("q2", "r2", 0.8), ("q1", "r1", 0.3)]
    with pytest.raises(ValueError, match=r"duplicate.*'q1'.*'r1'"):
        micro_average_precision(preds, GT)


def test_max_predictions_keeps_the_global_top():
    preds = [("q2", "r2", 0.7), ("q1", "r1", 0.9), ("q3", "rx", 0.8)]
    assert micro_average_precision(preds, GT) == pytest.approx((1 + 2 / 3) / 2)
    assert micro_average_precision(preds, GT, max_predictions=2) == pytest.approx(0.5)
    assert micro_average_precision(preds, GT, max_predictions=0) == 0.0
    with pytest.raises(ValueError, match="max_predictions"):
        micro_average_precision(preds, GT, max_predictions=-1)


def test_recall_at_precision_hand_case_and_none():
    y = [1] * 9 + [0, 1, 0, 0]
    preds = [(f"q{i}", f"r{i}" if yi else f"x{i}", 1.0 - i / 100) for i, yi in enumerate(y)]
    gt = {f"q{i}": [f"r{i}"] for i in range(12)}  # N_gt = 12: two positives never retrieved
    # P_10 = 0.9, P_11 = 10/11 >= 0.9, P_12 = 10/12 < 0.9 -> best recall 10/12 at k=11
    op = recall_at_precision(preds, gt, 0.9)
    assert op.recall == pytest.approx(10 / 12)
    assert op.precision == pytest.approx(10 / 11)
    assert op.threshold == pytest.approx(1.0 - 10 / 100)
    assert recall_at_precision([("q3", "r3", 0.9), ("q1", "r1", 0.8)], GT) is None
    with pytest.raises(ValueError, match="p must"):
        recall_at_precision(preds, gt, 0.0)


def test_recall_at_k_hand_case():
    gt = {"q1": ["r1"], "q2": ["r2"], "q3": [], "q4": ["r4"], "q5": ["r5"]}
    preds = [
        ("q1", "r9", 0.9), ("q1", "r1", 0.8),  # positive at rank 1
        ("q2", "r2", 0.7), ("q2", "r8", 0.1),  # positive at rank 0
        ("q3", "r3", 0.99),                     # query without a match: not in the denominator
        ("q5", "r5", 0.5), ("q5", "r6", 0.5),  # tie: pessimistic rank 1
    ]                                           # q4 has no prediction: a miss
    assert recall_at_k(preds, gt, 1) == pytest.approx(1 / 4)
    assert recall_at_k(preds, gt, 2) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="k must"):
        recall_at_k(preds, gt, 0)


def test_map_hand_case():
    gt = {"q1": ["r1", "r2"], "q2": ["r3"], "q4": ["r4"], "q5": []}
    preds = [
        ("q1", "r1", 0.9), ("q1", "rx", 0.8), ("q1", "r2", 0.7),  # AP = (1 + 2/3) / 2
        ("q2", "ry", 0.6), ("q2", "r3", 0.5),                     # AP = 1/2
        ("q5", "rz", 0.95),                                       # not a positive query
    ]                                                             # q4: AP = 0
    assert mean_average_precision(preds, gt) == pytest.approx((5 / 6 + 1 / 2 + 0) / 3)


def test_input_forms_agree():
    preds = [("q1", "r1", 0.9), ("q3", "r3", 0.9), ("q2", "r2", 0.5), ("q2", "r7", 0.6)]
    arrays = tuple(np.array(col) for col in zip(*preds))
    pairs = [("q1", "r1"), ("q2", "r2"), ("q3", "r3")]
    gt = {"q1": "r1", "q2": ["r2"], "q3": ["r3"]}
    a = evaluate(preds, gt)
    assert evaluate(arrays, gt) == a
    assert evaluate(preds, pairs) == a
    ints = [(int(q[1:]), int(r[1:]), s) for q, r, s in preds]
    assert evaluate(ints, {1: [1], 2: [2], 3: [3]}) == a
    with pytest.raises(ValueError, match="same kind"):
        evaluate(ints, gt)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate([("q1", "r1", float("nan"))], gt)
    with pytest.raises(ValueError, match="no .* pair"):
        micro_average_precision(preds, {"q1": []})


# ------------------------------------------------------------------ property test vs a slow implementation


def _slow_metrics(preds, gt, k_values):
    positives = {(q, r) for q, refs in gt.items() for r in refs}
    n_gt = len(positives)
    items = [(s, (q, r) in positives, q) for q, r, s in preds]
    items.sort(key=lambda t: (-t[0], t[1]))  # score descending, negatives (False) first among ties
    tp, uap, best = 0, 0.0, None
    for i, (s, y, _) in enumerate(items, start=1):
        tp += y
        if y:
            uap += tp / i / n_gt
        if tp / i >= 0.9 and (best is None or tp / n_gt > best[0]):
            best = (tp / n_gt, s)
    pos_queries = [q for q, refs in gt.items() if refs]
    recalls = {}
    for k in k_values:
        hits = 0
        for q in pos_queries:
            mine = [(s, r in gt[q]) for qq, r, s in preds if qq == q]
            ranks = [sum(1 for s2, y2 in mine if s2 > s or (s2 == s and not y2)) for s, y in mine if y]
            hits += bool(ranks) and min(ranks) < k
        recalls[k] = hits / len(pos_queries)
    ap_total = 0.0
    for q in pos_queries:
        mine = sorted(((s, r in gt[q]) for qq, r, s in preds if qq == q), key=lambda t: (-t[0], t[1]))
        tp_q, ap = 0, 0.0
        for i, (_, y) in enumerate(mine, start=1):
            if y:
                tp_q += 1
                ap += tp_q / i
        ap_total += ap / len(gt[q])
    return uap, best, recalls, ap_total / len(pos_queries)


@pytest.mark.parametrize("seed", range(20))
def test_matches_slow_implementation(seed):
    rng = random.Random(seed)
    n_q, n_r = rng.randint(3, 15), rng.randint(3, 30)
    gt = {f"q{i}": sorted(rng.sample([f"r{j}" for j in range(n_r)], rng.choice([0, 0, 1, 1, 2])))
          for i in range(n_q)}
    if not any(gt.values()):
        gt["q0"] = ["r0"]
    preds = []
    for i in range(n_q):
        for j in rng.sample(range(n_r), rng.randint(0, min(n_r, 8))):
            preds.append((f"q{i}", f"r{j}", rng.randint(0, 6) / 4))  # few distinct scores: many ties
    rng.shuffle(preds)
    uap, best, recalls, map_ = _slow_metrics(preds, gt, (1, 3))
    m = evaluate(preds, gt, ks=(1, 3))
    assert m.uap == pytest.approx(uap, abs=1e-12)
    assert m.map == pytest.approx(map_, abs=1e-12)
    assert m.recall_at_k == pytest.approx(recalls, abs=1e-12)
    if best is None:
        assert m.recall_at_p90 is None and m.threshold_at_p90 is None
    else:
        assert m.recall_at_p90 == pytest.approx(best[0]) and m.threshold_at_p90 == pytest.approx(best[1])
    lp = label_predictions(preds, gt)
    assert lp.n_gt == sum(len(v) for v in gt.values()) and np.all(np.diff(lp.score) <= 0)


# ------------------------------------------------------------------ PR plot (viz.curves) and report (utils.jsonio)


def test_pr_curve_png_draws_the_data(tmp_path):
    from PIL import Image

    from copynce_fast.viz.curves import PALETTE, data_to_pixel, plot_pr_curve

    size = (500, 400)
    recall, precision = np.array([0.1, 0.5, 0.9]), np.array([0.7, 0.7, 0.3])
    path = plot_pr_curve(tmp_path / "pr.png", {"model": (recall, precision)}, size=size, title="test")
    img = Image.open(path).convert("RGB")
    assert img.size == size
    colour = PALETTE[0]
    assert img.getpixel(data_to_pixel(0.3, 0.7, size)) == colour  # on the horizontal segment
    x, y = data_to_pixel(0.7, 0.5, size)  # middle of the sloped segment: within a pixel of the line
    assert any(img.getpixel((x + dx, y + dy)) == colour for dx in (-1, 0, 1) for dy in (-1, 0, 1))
    assert img.getpixel(data_to_pixel(0.3, 0.3, size)) == (255, 255, 255)  # away from the curve
    assert img.getpixel(data_to_pixel(0.95, 0.95, size)) != colour

    curve = precision_recall_curve([("q1", "r1", 0.9), ("q3", "r3", 0.8), ("q2", "r2", 0.7)], GT)
    img = Image.open(plot_pr_curve(tmp_path / "c.png", curve)).convert("RGB")
    assert img.size == (640, 480)
    assert img.getpixel(data_to_pixel(0.5, 1.0, (640, 480))) == colour  # the first point: R=0.5, P=1


def test_json_report(tmp_path):
    import json

    from copynce_fast.utils.jsonio import write_json_report

    m = evaluate([("q1", "r1", 0.9), ("q3", "r3", np.float32(0.5))], GT)
    path = write_json_report(tmp_path / "r.json", m, model="vit", scores=np.array([0.5, np.nan]))
    data = json.loads(path.read_text())
    assert data["uap"] == pytest.approx(0.5) and data["recall_at_k"] == {"1": 0.5, "10": 0.5}
    assert data["model"] == "vit" and data["scores"] == [0.5, None]
