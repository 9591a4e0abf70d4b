"""PixTrace geometry: stages map points as their closed forms say; chains compose and invert exactly."""
import numpy as np
import pytest
import torch

from copynce_fast.pixtrace import View, pack_paths, pack_pairs, correspondence_map, map_pixels, trace_path
from copynce_fast.pixtrace import stages as S
from copynce_fast.pixtrace.random_views import pixel_centres as centres
from copynce_fast.pixtrace.random_views import random_view as random_chain


# --- closed forms ---------------------------------------------------------------------------------------------

def test_resize_maps_pixel_centres_centre_aligned():
    st = S.resize((10, 20), (5, 40))
    p = st.matrix @ np.array([3.5, 4.5, 1.0])
    np.testing.assert_allclose(p[:2], [7.0, 2.25])


def test_flips_and_right_angle_rotation_are_pixel_permutations():
    h, w = 6, 6
    pts = centres(h, w)
    v = View((h, w), [S.hflip((h, w))])
    out, ok = v.map_from_source(pts)
    assert ok.all()
    np.testing.assert_array_equal(out[:, 0], w - pts[:, 0])
    v = View((h, w), [S.rotate((h, w), 90)])
    out, ok = v.map_from_source(pts)
    assert ok.all()
    # 90° counter-clockwise: the top-right pixel goes to the top-left.
    row, col = np.floor(out[:, 1]).astype(int), np.floor(out[:, 0]).astype(int)
    src_row, src_col = np.floor(pts[:, 1]).astype(int), np.floor(pts[:, 0]).astype(int)
    np.testing.assert_array_equal(row, w - 1 - src_col)
    np.testing.assert_array_equal(col, src_row)


def test_crop_pad_paste_validity():
    v = View((20, 30), [S.crop((20, 30), 5, 10, 10, 10), S.pad((10, 10), 2, 3, 4, 5)])
    assert v.out_hw == (15, 19)
    src, ok = v.map_to_source(centres(15, 19))
    ok = ok.reshape(15, 19)
    assert ok[2:12, 4:14].all() and ok.sum() == 100  # exactly the un-padded block shows content
    np.testing.assert_allclose(src.reshape(15, 19, 2)[2, 4], [10.5, 5.5])
    v = View((8, 8), [S.paste((8, 8), (32, 32), 4, 6, 16, 16)])
    _, ok = v.map_to_source(centres(32, 32))
    ok = ok.reshape(32, 32)
    assert ok[4:20, 6:22].all() and ok.sum() == 256


def test_snap_angle():
    assert S.snap_angle(80.0) == 90.0 and S.snap_angle(100.0, tolerance=5.0) == 100.0
    assert S.snap_angle(-10.0) == 0.0 and S.snap_angle(350.0) == 0.0


# --- composition and inversion ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_chain_composed_with_its_inverse_is_identity_on_valid_pixels(seed):
    rng = np.random.default_rng(seed)
    v = random_chain(rng, (60, 50), (32, 32))
    pts = centres(32, 32)
    out, ok = trace_path(v, v).map_points(pts)
    assert ok.any()
    np.testing.assert_allclose(out[ok], pts[ok], atol=1e-6)
    # Stage.inverted really inverts each stage
    for st in v.stages:
        np.testing.assert_allclose(st.inverted().matrix @ st.matrix, np.eye(3), atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_torch_batch_mapping_equals_numpy_mapping_exactly(seed):
    """map_pixels (torch, float64) == TracePath.map_points (numpy) for every pixel of random chains."""
    rng = np.random.default_rng(100 + seed)
    q = [random_chain(rng, (60, 50), (32, 32)) for _ in range(3)]
    r = [random_chain(rng, (60, 50), (32, 32), n_stages=2) for _ in range(3)]
    paths = pack_paths(q, r, dtype=torch.float64)
    row, col, valid = map_pixels(paths)
    for b in range(3):
        out, ok = trace_path(q[b], r[b]).map_points(centres(32, 32))
        exp_col = np.floor(np.rint(out[:, 0] * 256) / 256).astype(int)
        exp_row = np.floor(np.rint(out[:, 1] * 256) / 256).astype(int)
        np.testing.assert_array_equal(valid[b].numpy().ravel(), ok)
        np.testing.assert_array_equal(row[b].numpy().ravel()[ok], exp_row[ok])
        np.testing.assert_array_equal(col[b].numpy().ravel()[ok], exp_col[ok])


def test_float32_mapping_agrees_with_float64_almost_everywhere():
    rng = np.random.default_rng(7)
    q = [random_chain(rng, (90, 70), (48, 48)) for _ in range(4)]
    r = [random_chain(rng, (90, 70), (48, 48), n_stages=1) for _ in range(4)]
    m32 = correspondence_map(pack_paths(q, r, dtype=torch.float32))
    m64 = correspondence_map(pack_paths(q, r, dtype=torch.float64))
    assert (m32 == m64).float().mean() > 0.999


def test_copy_to_copy_goes_through_the_original():
    """q1 -> q2 equals composing q1 -> original with original -> q2."""
    rng = np.random.default_rng(3)
    a, b = random_chain(rng, (40, 40), (32, 32)), random_chain(rng, (40, 40), (32, 32))
    pts = centres(32, 32)
    direct, ok = trace_path(a, b).map_points(pts)
    mid, ok1 = a.map_to_source(pts)
    two, ok2 = b.map_from_source(mid)
    np.testing.assert_array_equal(ok, ok1 & ok2)
    np.testing.assert_allclose(direct[ok], two[ok], atol=1e-9)


def test_occluders_invalidate_their_pixels():
    occ = np.zeros((16, 16), bool)
    occ[:4] = True
    q = View((16, 16), [S.hflip((16, 16))], occluder=occ)
    r = View((16, 16), [S.vflip((16, 16))], occluder=occ)
    qr, rq = pack_pairs([q], [r])
    _, _, v_qr = map_pixels(qr)
    # query rows 0-3 occluded; query row y maps to reference row 15-y, reference rows 0-3 occluded -> y 12-15
    expected = np.ones((16, 16), bool)
    expected[:4] = False
    expected[12:] = False
    np.testing.assert_array_equal(v_qr[0].numpy(), expected)
    _, _, v_rq = map_pixels(rq)
    np.testing.assert_array_equal(v_rq[0].numpy(), expected)


# --- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, arg", [
    (lambda: S.Stage(np.zeros((3, 3)), (4, 4), (4, 4)), "matrix"),
    (lambda: S.Stage(np.full((3, 3), np.nan), (4, 4), (4, 4)), "matrix"),
    (lambda: S.Stage(np.eye(2), (4, 4), (4, 4)), "matrix"),
    (lambda: S.resize((0, 4), (4, 4)), "in_hw"),
    (lambda: S.resize((4, 4), (4, -1)), "out_hw"),
    (lambda: S.resized_crop((8, 8), 0, 0, 0, 4, (4, 4)), "height"),
    (lambda: S.pad((4, 4), -1, 0, 0, 0), "top"),
    (lambda: S.perspective((4, 4), [[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [1, 0], [1, 1], [0, 1]]), "src_pts"),
    (lambda: View((8, 8), [S.resize((4, 4), (8, 8))]), "stages[0]"),
    (lambda: View((8, 8), [], occluder=np.zeros((4, 4), bool)), "occluder"),
    (lambda: trace_path(View((8, 8)), View((9, 9))), "dst"),
    (lambda: pack_paths([View((8, 8))], [View((8, 8)), View((8, 8))]), "dst_views"),
])
def test_bad_input_raises_value_error_naming_the_argument(make, arg):
    with pytest.raises(ValueError, match=arg.replace("[", r"\[").replace("]", r"\]")):
        make()
