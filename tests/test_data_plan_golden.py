"""Plans are pinned: a golden digest of 50 keys per preset, and the cheaper ways plans are built checked against
the plain ones they replaced.

Why a golden digest: plan drawing was rewritten for speed (issue 12: ``rng.choice`` replaced by the draw it makes,
3x3 checks in Python, inverses in one LAPACK call) under the rule that every plan stays identical. The digest
below was made with the code before those changes (git 697d86c) and covers ordinary pairs, hard negatives and
sibling parts on both presets (every stage kind, both overlay modes, every occluder kind). Matrices enter it at 10
significant digits, so BLAS kernels that differ in the last bits on another CPU do not matter; numbers drawn by
numpy's Generator and Python arithmetic enter exactly. If it fails after a numpy upgrade, the relative tests below
tell whether our code or numpy's stream moved.
"""
import hashlib

import numpy as np
import pytest
import torch

from copynce_fast.data.pair_of_key import plan_pair
from copynce_fast.data.plan_sampler import TEXT_CHARS, PairKey, _pick
from copynce_fast.data.presets import descriptor_preset, matcher_preset
from copynce_fast.data.sources import SkipCounter
from copynce_fast.pixtrace import View, pack_pairs, trace_path
from copynce_fast.pixtrace import stages as S

GOLDEN = {  # plan_digest(preset) of git 697d86c
    "descriptor": "08a86de6ff101d8a32c85adb46715fe3e37fcfd133fdfe3a6a0a024f76605ec7",
    "matcher": "a55c8b42270c52f6107b11a1182de554e9e428f833f5cf3cde734d62f2768067",
}


class HeaderSource:
    """Just headers: 300 originals of assorted sizes, every 37th unusable (plans draw substitutes for it)."""

    def __init__(self, n: int = 300):
        rng = np.random.default_rng(0)
        self.sizes = [(int(rng.integers(200, 700)), int(rng.integers(200, 700))) for _ in range(n)]
        self.sizes[::37] = [None] * len(self.sizes[::37])
        self.skips = SkipCounter(log=False)

    def __len__(self):
        return len(self.sizes)

    def hw(self, i):
        return self.sizes[i]


def golden_keys(n: int) -> list:
    """Ordinary pairs, hard negatives (query_index) and both sibling parts, over a few epochs."""
    rng = np.random.default_rng(1)
    keys = []
    for k in range(n):
        idx, epoch = int(rng.integers(300)), int(rng.integers(3))
        if k % 5 == 0:
            keys.append(PairKey(idx, epoch, int(rng.integers(300))))
        elif k % 5 == 1:
            keys.append(PairKey(idx, 1, None, 1 + (k // 5) % 2))
        else:
            keys.append(PairKey(idx, epoch))
    return keys


def _stages(stages) -> str:
    return ";".join(f"{s.name}{s.in_hw}{s.out_hw}" + ",".join(f"{x:.9e}" for x in s.matrix.ravel().tolist())
                    for s in stages)


def plan_digest(preset: str, n: int = 50) -> str:
    cfg = descriptor_preset() if preset == "descriptor" else matcher_preset()
    src = HeaderSource()
    h = hashlib.sha256()
    for key in golden_keys(n):
        pair, subs = plan_pair(src, cfg, 7, key)
        h.update(repr((pair.is_copy, pair.copynce, subs)).encode())
        for p in (pair.query, pair.reference):
            h.update(repr((p.source_index, p.view.source_hw, p.group_order, p.track_occluders, p.occluder_opacity,
                           p.shuffle_is_occluder, p.ops)).encode())
            h.update(_stages(p.view.stages).encode())
            if p.overlay is not None:
                o = p.overlay
                h.update(repr((o.mode, o.index, o.other_hw, o.at, o.alpha)).encode() + _stages(o.other_stages).encode())
    return h.hexdigest()


@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_plans_match_the_golden_digest(preset):
    assert plan_digest(preset) == GOLDEN[preset]


@pytest.mark.parametrize("options", [("rrc", "paste", "overlay"), (10, 20, 30, 50), ("a", "b"), ("x",)])
def test_pick_is_the_draw_rng_choice_makes(options):
    for seed in range(300):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert _pick(a, options) == b.choice(options) and a.random() == b.random()  # same value, same stream
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    for n in (1, 7, 12):
        text = "".join(map(TEXT_CHARS.__getitem__, a.integers(0, len(TEXT_CHARS), n, dtype=np.int64).tolist()))
        assert text == "".join(b.choice(list(TEXT_CHARS), n))


def _plans(preset="matcher", n=40):
    cfg = descriptor_preset() if preset == "descriptor" else matcher_preset()
    src = HeaderSource()
    return [plan_pair(src, cfg, 3, k)[0] for k in golden_keys(n)]


def test_stage_inverses_are_bitwise_np_linalg_inv():
    stages = [s for pp in _plans() for p in (pp.query, pp.reference) for s in p.view.stages]
    assert len(stages) > 100
    for s in stages:
        assert np.array_equal(s.inverse.view(np.uint64), np.linalg.inv(s.matrix).view(np.uint64)), s.name
    lone = S.resize((10, 20), (7, 9))  # not in a view: computed on first use
    assert np.array_equal(lone.inverse, np.linalg.inv(lone.matrix)) and lone.inverse is lone.inverse


def test_singularity_is_decided_like_np_linalg_det():
    rng = np.random.default_rng(0)
    cases = [np.diag([1.0, 1.0, d]) for d in np.geomspace(1e-14, 1e-10, 41)]
    for _ in range(200):  # rank-2 matrices nudged by ~1e-12: LAPACK's determinant decides near the threshold
        m = rng.standard_normal((3, 3)) * rng.uniform(0.1, 100)
        nudge = rng.standard_normal(3) * 1e-12 * abs(m).max()
        m[2] = m[0] * rng.standard_normal() + m[1] * rng.standard_normal() + nudge
        cases.append(m)
    for m in cases:
        singular = abs(np.linalg.det(m / np.abs(m).max())) < 1e-12
        try:
            S.Stage(m, (4, 4), (4, 4))
            made = True
        except ValueError as e:
            made = False
            assert "singular" in str(e)
        assert made != singular, m


def _reference_pack(src_views, dst_views):
    """pack_paths as it was: trace_path per pair, padded, stacked."""
    paths = [trace_path(s, d) for s, d in zip(src_views, dst_views)]
    steps = max(len(p.matrices) for p in paths)
    paths = [p.padded(steps) for p in paths]
    occ = lambda vs, hw: None if all(v.occluder is None for v in vs) else np.stack(  # noqa: E731
        [v.occluder if v.occluder is not None else np.zeros(hw, bool) for v in vs])
    return (np.stack([p.matrices for p in paths]).astype(np.float32), np.stack([p.canvases for p in paths]),
            occ(src_views, paths[0].src_hw), occ(dst_views, paths[0].dst_hw))


def test_pack_pairs_equals_trace_path_stacking():
    rng = np.random.default_rng(2)
    views = [pp.traced_views() for pp in _plans("descriptor", 30)]
    qv, rv = [v[0] for v in views], [v[1] for v in views]
    qv[3] = qv[3].with_occluder(rng.random(qv[3].out_hw) < 0.1)  # occluders on some views only
    for a, b in ((qv, rv), (rv, qv)):
        got = pack_pairs(a, b)[0]
        want = _reference_pack(a, b)
        assert torch.equal(got.matrices, torch.from_numpy(want[0])) and got.canvases.dtype == torch.int32
        assert np.array_equal(got.canvases.numpy(), want[1])
        for g, w in ((got.src_occluder, want[2]), (got.dst_occluder, want[3])):
            assert (g is None and w is None) or np.array_equal(g.numpy(), w)
    bare = [View((5, 7)), View((5, 7), (S.hflip((5, 7)),))]  # a pair without any stage: one identity step
    got = pack_pairs(bare[:1] * 2, bare[:1] * 2)[0]
    want = _reference_pack(bare[:1] * 2, bare[:1] * 2)
    assert torch.equal(got.matrices, torch.from_numpy(want[0])) and np.array_equal(got.canvases.numpy(), want[1])
    got = pack_pairs([bare[0], bare[1]], [bare[1], bare[0]])[0]  # different lengths: padded on dst's canvas
    want = _reference_pack([bare[0], bare[1]], [bare[1], bare[0]])
    assert torch.equal(got.matrices, torch.from_numpy(want[0])) and np.array_equal(got.canvases.numpy(), want[1])
    with pytest.raises(ValueError, match="different originals"):
        pack_pairs([View((5, 7))], [View((5, 8))])
    with pytest.raises(ValueError, match="pair 1"):
        pack_pairs([bare[0], View((6, 7))], [bare[0], View((6, 7))])
