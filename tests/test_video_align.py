"""Temporal network alignment: against a plain networkx transcription of the TN rules, and on planted copies."""
import networkx as nx
import numpy as np
import pytest

from copynce_fast.video.align import TNParams, box_iou, temporal_network


def tn_networkx(sims, p: TNParams):
    """The TN rules written the slow, obvious way: explicit graph, per-row loops, networkx longest path."""
    q, r = sims.shape
    k = min(p.top_k, r)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    g = nx.DiGraph()
    g.add_nodes_from(range(q * k))
    for i in range(q):
        reached = set()
        for j in range(i + 1, min(q, i + p.max_step)):
            new = set()
            for b in range(k):  # destination slot (edge insertion order as VCSL: rows = destinations)
                for a in range(k):
                    ri, rj = top[i, a], top[j, b]
                    if not (0 < rj - ri < p.max_step and sims[j, rj] >= p.min_sim):
                        continue
                    if p.strict_start and sims[i, ri] < p.min_sim:
                        continue
                    if any(ri < m < rj for m in reached):
                        continue
                    g.add_edge(i * k + a, j * k + b, weight=float(sims[j, rj]))
                    new.add(int(rj))
            reached |= new
    boxes = []
    order = sorted(g.nodes)  # a topological order (edges go to later rows): ties go to the lowest node
    for _ in range(p.max_path + 1):
        if not any(d["weight"] > 0 for _, _, d in g.edges(data=True)):
            break
        path = nx.dag_longest_path(g, topo_order=order)
        for u, v in zip(path[:-1], path[1:]):
            g[u][v]["weight"] = 0.0
        qi = np.array([n // k for n in path])
        rj = top[qi, np.array([n % k for n in path])]
        score = sims[qi, rj].sum()
        box = np.array([qi.min(), rj.min(), qi.max(), rj.max()])
        eq, er = box[2] - box[0], box[3] - box[1]
        if min(eq, er) > p.min_length and score / ((eq + er) / 2) > p.min_sim and \
                (not boxes or box_iou(box, np.array(boxes)).max() < p.max_iou):
            boxes.append(box.tolist())
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


def planted(q, r, segments, rng, noise=0.25, level=0.8):
    """Noise in [-noise, noise] plus copies: (q0, r0, length, speed) diagonals at about ``level``."""
    sims = rng.uniform(-noise, noise, (q, r))
    for q0, r0, n, speed in segments:
        for t in range(n):
            sims[q0 + t, int(r0 + round(t * speed))] = level + rng.uniform(-0.1, 0.1)
    return sims


@pytest.mark.parametrize("seed", range(6))
def test_matches_networkx_transcription(seed):
    rng = np.random.default_rng(seed)
    sims = planted(60, 50, [(5, 10, 20, 1.0), (30, 2, 12, 2.0)], rng)
    p = TNParams(max_step=5, top_k=3 + seed % 3, min_length=4, strict_start=seed % 2 == 0)
    np.testing.assert_array_equal(temporal_network(sims, p), tn_networkx(sims, p))


def test_planted_copies_are_found():
    rng = np.random.default_rng(7)
    segs = [(10, 40, 30, 1.0), (55, 5, 20, 2.0), (80, 70, 16, 0.5)]  # normal, 2x faster query, 2x slower
    sims = planted(100, 120, segs, rng, noise=0.1)
    boxes = temporal_network(sims)
    assert len(boxes) == 3
    found = sorted(boxes.tolist())
    for (q0, r0, n, speed), box in zip(sorted(segs), found):
        want = [q0, r0, q0 + n - 1, r0 + round((n - 1) * speed)]
        assert np.abs(np.array(box) - want).max() <= 1, (box, want)


def test_vcsl_start_rule_stretches_boxes_backwards():
    rng = np.random.default_rng(7)
    sims = planted(40, 40, [(10, 12, 15, 1.0)], rng, noise=0.15)
    strict = temporal_network(sims)
    loose = temporal_network(sims, TNParams(strict_start=False))
    np.testing.assert_array_equal(strict, [[10, 12, 24, 26]])
    assert loose[0, 0] < 10 and loose[0, 1] < 12 and (loose[0, 2:] == [24, 26]).all()


def test_noise_only_gives_nothing_and_short_copies_are_dropped():
    rng = np.random.default_rng(3)
    assert len(temporal_network(rng.uniform(-0.15, 0.15, (80, 80)))) == 0
    sims = planted(40, 40, [(5, 5, 5, 1.0)], rng, noise=0.1)  # 5 frames: extent 4, not > min_length
    assert len(temporal_network(sims)) == 0
    assert len(temporal_network(sims, TNParams(min_length=3))) == 1


def test_bad_input():
    with pytest.raises(ValueError, match="sim"):
        temporal_network(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="max_step"):
        TNParams(max_step=1)
