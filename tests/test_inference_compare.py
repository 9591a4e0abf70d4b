"""Patch-affinity entropy, mutual nearest neighbours and the comparison picture."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from copynce_fast.inference.compare import affinity_entropy, compare, mutual_nearest_neighbours, patch_cosine
from copynce_fast.inference.images import preprocess
from copynce_fast.viz.compare import HEADER, canvas_size, render_comparison
from copynce_fast.models.loading import load_model

S = 64  # 4x4 patches


def test_entropy_extremes():
    L = 10
    uniform = torch.zeros(3, L)  # equal affinities: the maximum entropy log(L), normalised to 1
    torch.testing.assert_close(affinity_entropy(uniform), torch.ones(3))
    one_hot = torch.full((2, L), -1.0)
    one_hot[:, 4] = 1.0  # one candidate at cosine 1, the others at -1: softmax nearly one-hot at s=16
    h = affinity_entropy(one_hot, scale=16.0)
    p_rest = math.exp(-32) / (1 + (L - 1) * math.exp(-32))
    p_top = 1 - (L - 1) * p_rest
    expected = -(p_top * math.log(p_top) + (L - 1) * p_rest * math.log(p_rest)) / math.log(L)
    torch.testing.assert_close(h, torch.full((2,), expected), atol=1e-6, rtol=1e-4)
    assert affinity_entropy(torch.zeros(4, 1)).eq(0).all()  # a single candidate is a certain match
    with pytest.raises(ValueError):
        affinity_entropy(torch.zeros(3), 16.0)
    with pytest.raises(ValueError):
        affinity_entropy(torch.zeros(3, 3), 0.0)


def test_entropy_is_lower_on_a_copied_region():
    # reference: 16 random patch tokens; query: patches 0-5 copy reference patches 10-15 (plus a little
    # noise), the other 10 are fresh random tokens. The copied patches must have the lowest entropy.
    g = torch.Generator().manual_seed(0)
    C = 64
    ref = torch.randn(16, C, generator=g)
    query = torch.randn(16, C, generator=g)
    query[:6] = ref[10:] + 0.05 * torch.randn(6, C, generator=g)
    cos = patch_cosine(query, ref)
    h = affinity_entropy(cos, 16.0)
    assert h[:6].max() < h[6:].min()
    h_ref = affinity_entropy(cos.T, 16.0)  # the reference side sees the same region
    assert h_ref[10:].max() < h_ref[:10].min()
    matches = mutual_nearest_neighbours(cos, top=6)
    assert sorted((i, j) for i, j, _ in matches) == [(i, 10 + i) for i in range(6)]
    values = [c for _, _, c in matches]
    assert values == sorted(values, reverse=True)


def test_mutual_nearest_neighbours_by_hand():
    cos = torch.tensor([[0.9, 0.1, 0.0],
                        [0.8, 0.2, 0.1],   # row 1's best column is 0, whose best row is 0: not mutual
                        [0.0, 0.3, 0.7]])
    assert mutual_nearest_neighbours(cos) == [(0, 0, pytest.approx(0.9)), (2, 2, pytest.approx(0.7))]
    assert len(mutual_nearest_neighbours(cos, top=1)) == 1


def _noise_image(seed, size=(80, 96)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


@pytest.mark.parametrize("kind", ["descriptor", "matcher"])
def test_identical_images_match_each_patch_to_itself(kind):
    # descriptor: the same tokens on both sides; matcher: the fusion has no segment embedding, so identical
    # inputs give identical fused query / reference tokens. Either way cos(q_i, r_i) = 1 is each row's best.
    loaded = load_model(kind, random_init=True, arch="vit_tiny", img_size=S, seed=1)
    x = preprocess(_noise_image(0), S)
    res = compare(loaded, x, x, top=None)
    assert sorted((i, j) for i, j, _ in res.matches) == [(i, i) for i in range(16)]
    assert all(c == pytest.approx(1.0, abs=1e-4) for _, _, c in res.matches)
    np.testing.assert_allclose(res.query_entropy, res.reference_entropy, atol=1e-4)
    assert res.query_entropy.shape == (4, 4)
    assert ((res.query_entropy >= 0) & (res.query_entropy <= 1)).all()
    if kind == "descriptor":
        assert res.score == pytest.approx(1.0, abs=1e-5)
    else:
        assert 0.0 < res.score < 1.0


def test_picture_size_layout_and_heat():
    loaded = load_model("descriptor", random_init=True, arch="vit_tiny", img_size=S, seed=1)
    a, b = _noise_image(1), _noise_image(2, size=(50, 70))
    res = compare(loaded, preprocess(a, S), preprocess(b, S))
    pic = render_comparison(a, b, res, panel=96, lines=5)
    assert pic.size == canvas_size(96) == (2 * 96 + 16, 96 + HEADER)
    # the heat overlay follows the entropy: force one patch to 0 entropy and the rest to 1
    res.query_entropy = np.ones((4, 4), dtype=np.float32)
    res.query_entropy[0, 0] = 0.0
    res.matches = []
    white = Image.new("RGB", (64, 64), "white")
    pic = np.asarray(render_comparison(white, white, res, panel=64, alpha=1.0)).astype(int)
    hot, cold = pic[HEADER + 4, 4], pic[HEADER + 60, 60]
    assert tuple(hot) == (255, 230, 60) and tuple(cold) == (20, 30, 120)  # the two ends of the ramp
    with pytest.raises(ValueError):
        render_comparison(white, white, res, panel=8)
