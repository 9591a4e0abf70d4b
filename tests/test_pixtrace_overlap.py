"""Patch overlap counts (torch reference): closed forms, consistency with dense maps, a brute-force oracle."""
import numpy as np
import pytest
import torch

from copynce_fast.ops import patch_overlap_from_dense_ref, patch_overlap_ref
from copynce_fast.pixtrace import View, correspondence_map, pack_pairs, pack_paths, trace_path
from copynce_fast.pixtrace import stages as S

from copynce_fast.pixtrace.random_views import pixel_centres as centres
from copynce_fast.pixtrace.random_views import random_view as random_chain


def test_identical_views_give_one_hot_diagonal():
    v = View((100, 80), [S.resize((100, 80), (32, 32))])
    qr, rq = pack_pairs([v], [v])
    for counts in (patch_overlap_ref(qr, 8), patch_overlap_ref(rq, 8)):
        expected = torch.zeros(1, 16, 17, dtype=torch.int32)
        expected[0, torch.arange(16), torch.arange(16)] = 64
        assert torch.equal(counts, expected)


def test_hflip_maps_patches_to_their_mirror():
    r = View((32, 32))
    q = View((32, 32), [S.hflip((32, 32))])
    counts = patch_overlap_ref(pack_paths([q], [r]), 8)[0]
    for i in range(16):
        row, col = divmod(i, 4)
        assert counts[i, row * 4 + (3 - col)] == 64 and counts[i].sum() == 64


def test_zoomed_crop_sends_four_query_patches_into_one_reference_patch():
    o = (64, 64)
    r = View(o, [S.resize(o, (32, 32))])
    q = View(o, [S.crop(o, 0, 0, 32, 32)])  # a 2x zoom relative to r
    counts = patch_overlap_ref(pack_paths([q], [r]), 8)[0]
    for i in (0, 1, 4, 5):
        assert counts[i, 0] == 64
    # reverse direction: reference patch 0 lands spread over 4 query patches, 16 px each; patch 15 is outside q
    back = patch_overlap_ref(pack_paths([r], [q]), 8)[0]
    assert back[0, :16].tolist().count(16) == 4 and back[15, 16] == 64


def brute_force_counts(q: View, r: View, p: int) -> np.ndarray:
    """Independent oracle: loop over query pixels with the float64 numpy path."""
    hs, ws = q.out_hw
    hd, wd = r.out_hw
    ld = (hd // p) * (wd // p)
    out = np.zeros(((hs // p) * (ws // p), ld + 1), np.int64)
    pts, ok = trace_path(q, r).map_points(centres(hs, ws), q.occluder, r.occluder)
    for k, ((x, y), v) in enumerate(zip(pts, ok)):
        row, col = divmod(k, ws)
        i = (row // p) * (ws // p) + col // p
        if v:
            ry, rx = int(np.floor(np.rint(y * 256) / 256)), int(np.floor(np.rint(x * 256) / 256))
            out[i, (ry // p) * (wd // p) + rx // p] += 1
        else:
            out[i, ld] += 1
    return out


@pytest.mark.parametrize("seed", range(3))
def test_counts_equal_brute_force_oracle(seed):
    rng = np.random.default_rng(seed)
    q = random_chain(rng, (50, 60), (24, 32))
    r = random_chain(rng, (50, 60), (16, 16), n_stages=1)
    occ = np.zeros((24, 32), bool)
    occ[rng.integers(0, 24, 30), rng.integers(0, 32, 30)] = True
    q = q.with_occluder(occ)
    counts = patch_overlap_ref(pack_paths([q], [r], dtype=torch.float64), 8)[0].numpy()
    np.testing.assert_array_equal(counts, brute_force_counts(q, r, 8))


@pytest.mark.parametrize("patch", [4, 8, 16])
def test_rows_sum_to_patch_area_and_dense_route_agrees(patch):
    rng = np.random.default_rng(patch)
    q = [random_chain(rng, (70, 90), (48, 32)) for _ in range(4)]
    r = [random_chain(rng, (70, 90), (32, 48), n_stages=2) for _ in range(4)]
    paths = pack_paths(q, r)
    counts = patch_overlap_ref(paths, patch)
    assert counts.shape == (4, (48 // patch) * (32 // patch), (32 // patch) * (48 // patch) + 1)
    assert (counts.sum(-1) == patch * patch).all()
    # the same counts from the dense reference-layout map of the same geometry
    dense = correspondence_map(paths)
    assert torch.equal(patch_overlap_from_dense_ref(dense, (32, 48), patch), counts)


def test_dense_counts_follow_the_reference_rule():
    """Negative or out-of-range entries go to the dummy bin; float maps are floored."""
    maps = torch.full((1, 2, 4, 4), -1.0)
    maps[0, :, 0, 0] = torch.tensor([0.0, 3.7])  # -> pixel (0, 3) -> patch 1 with P=2 on a 4x4 grid
    maps[0, :, 0, 1] = torch.tensor([4.0, 0.0])  # row 4 is outside a 4x4 destination -> dummy
    counts = patch_overlap_from_dense_ref(maps, None, 2)[0]
    assert counts[0, 1] == 1 and counts[0, 4] == 3 and counts[1:, 4].eq(4).all()


def test_bad_patch_size_is_named():
    paths = pack_paths([View((30, 30))], [View((30, 30))])
    with pytest.raises(ValueError, match="src_hw"):
        patch_overlap_ref(paths, 16)
    with pytest.raises(ValueError, match="patch_size"):
        patch_overlap_ref(paths, 0)
