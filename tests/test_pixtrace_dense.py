"""Dense-map inverse / composition / official chain: spec oracle, hand-made cases, three-way parity, properties."""
import numpy as np
import pytest
import torch

from copynce_fast import _cpp
from copynce_fast.pixtrace.dense import compose_dense, invert_dense, reference_correspondence

IMPLS = ["numpy", "torch"] + (["cpp"] if _cpp.HAS_CPP else [])
DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64]


# ---------------------------------------------------------------------------------------------- spec oracle
# Straight from the written spec (REFERENCE.md 1.6), one pixel at a time in Python floats. Python's round() is
# half to even, so this shares no code and no rounding routine with the package.
def _pix(vy, vx, h, w):
    vy, vx = float(vy), float(vx)
    if not (0 <= vy < h and 0 <= vx < w):  # NaN fails, inf fails
        return None
    ry, rx = round(vy), round(vx)
    return (ry, rx) if ry < h and rx < w else None


def _oracle_invert(m, out_h, out_w):
    b_, _, h, w = m.shape
    inv = np.full((b_, 2, out_h, out_w), -1, np.int64)
    for b in range(b_):
        for y in range(h):
            for x in range(w):  # raster order: later writers overwrite
                t = _pix(m[b, 0, y, x], m[b, 1, y, x], out_h, out_w)
                if t is not None:
                    inv[b, :, t[0], t[1]] = (y, x)
    return inv, (inv[:, 0] < 0).sum(axis=(1, 2))


def _oracle_compose(a, bm):
    b_, _, h, w = a.shape
    out = np.full((b_, 2, h, w), -1, np.int64)
    for b in range(b_):
        for y in range(h):
            for x in range(w):
                t = _pix(a[b, 0, y, x], a[b, 1, y, x], bm.shape[2], bm.shape[3])
                if t is not None:
                    out[b, :, y, x] = [round(float(v)) for v in bm[b, :, t[0], t[1]]]
    return out


def _random_map(rng, shape, lim_hw, dtype=np.float32):
    """Coordinates in [-3, lim + 3] with .5 ties and -1s: many collisions and holes."""
    b, _, h, w = shape
    m = np.stack([rng.uniform(-3, lim_hw[0] + 3, (b, h, w)), rng.uniform(-3, lim_hw[1] + 3, (b, h, w))], axis=1)
    ties = rng.random(m.shape) < 0.15
    m[ties] = np.floor(m[ties]) + 0.5
    m[rng.random(m.shape) < 0.05] = -1
    return (m if np.dtype(dtype).kind == "f" else np.rint(m)).astype(dtype)


def _scaled_map(rng, b_, h, w, src_hw):
    """Random scale (0.4x..2.5x) + offset maps into a src_hw frame: down-scales leave holes, up-scales collide."""
    out = np.empty((b_, 2, h, w))
    for b in range(b_):
        s = rng.uniform(0.4, 2.5, 2)
        off = rng.uniform(-5, 5, 2)
        out[b, 0] = ((np.arange(h) + 0.5) * s[0] - 0.5 + off[0])[:, None]
        out[b, 1] = ((np.arange(w) + 0.5) * s[1] - 0.5 + off[1])[None, :]
    return out.astype(np.float32)


def _np(x):
    return x.numpy() if isinstance(x, torch.Tensor) else x


# ---------------------------------------------------------------------------------------------- against the spec
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_hw", [(9, 11), (6, 14)])
def test_invert_matches_spec_oracle(impl, dtype, out_hw):
    rng = np.random.default_rng(10)
    m = _random_map(rng, (2, 2, 9, 11), out_hw, dtype)
    inv, holes = invert_dense(m, out_hw, impl=impl)
    ref_inv, ref_holes = _oracle_invert(m, *out_hw)
    assert inv.dtype == holes.dtype == np.int64
    np.testing.assert_array_equal(inv, ref_inv)
    np.testing.assert_array_equal(holes, ref_holes)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_compose_matches_spec_oracle(impl, dtype):
    rng = np.random.default_rng(11)
    a = _random_map(rng, (2, 2, 9, 11), (7, 13), dtype)
    bm = _random_map(rng, (2, 2, 7, 13), (30, 30), np.float64)
    np.testing.assert_array_equal(compose_dense(a, bm, impl=impl), _oracle_compose(a, bm))


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("kind", ["uniform", "scaled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_all_impls_bit_identical(kind, dtype):
    rng = np.random.default_rng(12)
    shape, hw = (3, 2, 37, 41), (37, 41)
    if kind == "uniform":
        q, r = _random_map(rng, shape, hw, dtype), _random_map(rng, shape, hw, dtype)
    else:
        q, r = _scaled_map(rng, 3, 37, 41, hw).astype(dtype), _scaled_map(rng, 3, 37, 41, hw).astype(dtype)
    results = {impl: reference_correspondence(q, r, impl=impl) for impl in IMPLS}
    torch_in = reference_correspondence(torch.from_numpy(q), torch.from_numpy(r), impl="torch")
    results["torch-tensor"] = tuple(_np(x) for x in torch_in[:2]) + ({k: _np(v) for k, v in torch_in[2].items()},)
    q2r, r2q, info = results["numpy"]
    for name, (a, b, inf) in results.items():
        np.testing.assert_array_equal(a, q2r, err_msg=name)
        np.testing.assert_array_equal(b, r2q, err_msg=name)
        for k in info:
            np.testing.assert_array_equal(inf[k], info[k], err_msg=f"{name} {k}")
    # non-trivial: holes and collisions both occur in the inverses
    assert info["ref_to_que_holes"].sum() > 0 and info["ori_to_ref_holes"].sum() > 0
    assert (r2q[:, 0] >= 0).sum() < (q2r[:, 0] >= 0).sum()  # fewer filled targets than valid sources


@pytest.mark.parametrize("impl", IMPLS)
def test_torch_input_gives_torch_output(impl):
    rng = np.random.default_rng(13)
    m = torch.from_numpy(_random_map(rng, (2, 2, 8, 8), (8, 8))).requires_grad_()
    inv, holes = invert_dense(m, impl=impl)
    assert isinstance(inv, torch.Tensor) and inv.dtype == holes.dtype == torch.int64
    np.testing.assert_array_equal(inv.numpy(), _oracle_invert(m.detach().numpy(), 8, 8)[0])
    t = compose_dense(m, m.detach().double(), impl=impl)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64


def test_torch_bfloat16_and_noncontiguous():
    rng = np.random.default_rng(14)
    m = _random_map(rng, (2, 2, 10, 12), (10, 12))
    t = torch.from_numpy(m).to(torch.bfloat16)
    ref = _oracle_invert(t.float().numpy(), 10, 12)[0]
    for impl in IMPLS:
        np.testing.assert_array_equal(invert_dense(t, impl=impl)[0].numpy(), ref)
    mt = np.ascontiguousarray(m.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # same values, F-order H/W
    for impl in IMPLS:
        np.testing.assert_array_equal(invert_dense(mt, impl=impl)[0], _oracle_invert(m, 10, 12)[0])


# ---------------------------------------------------------------------------------------------- hand-made cases
def _identity(h, w, dtype=np.float32):
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([yy, xx])[None].astype(dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_identity(impl, dtype):
    m = _identity(13, 17, dtype)
    inv, holes = invert_dense(m, impl=impl)
    np.testing.assert_array_equal(inv, m.astype(np.int64))
    assert holes.tolist() == [0]
    np.testing.assert_array_equal(compose_dense(m, m, impl=impl), m.astype(np.int64))


@pytest.mark.parametrize("impl", IMPLS)
def test_downscale_leaves_known_holes(impl):
    # an 8x10 view that is a 2x down-scaled copy of a 16x20 frame: pixel (y, x) shows (2y, 2x)
    m = 2 * _identity(8, 10)
    inv, holes = invert_dense(m[0], (16, 20), impl=impl)
    assert holes.shape == () and int(holes) == 16 * 20 - 8 * 10
    assert (inv[:, ::2, ::2] == _identity(8, 10, np.int64)[0]).all()
    assert (inv[:, 1::2] == -1).all() and (inv[:, :, 1::2] == -1).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_upscale_last_raster_writer_wins(impl):
    # a 16x20 view that is a 2x up-scaled copy of an 8x10 frame: 4 writers per target, the last is (2i+1, 2j+1)
    m = np.floor(_identity(16, 20) / 2)
    inv, holes = invert_dense(m, (8, 10), impl=impl)
    assert holes.tolist() == [0]
    np.testing.assert_array_equal(inv, 2 * _identity(8, 10, np.int64) + 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_collision_both_channels_from_one_writer(impl):
    m = np.full((1, 2, 2, 2), -1.0, np.float32)
    m[0, :, 0, 1] = (0, 0)  # raster index 1
    m[0, :, 1, 0] = (0.4, -0.0)  # raster index 2 -> same target, later: wins. Mixing channels would give (0,0)/(1,1)
    m[0, :, 1, 1] = (1, 2)  # out of range at W' = 2 (raw test)
    inv, holes = invert_dense(m, (2, 2), impl=impl)
    assert inv[0, :, 0, 0].tolist() == [1, 0]
    assert holes.tolist() == [3]


@pytest.mark.parametrize("impl", IMPLS)
def test_rounding_then_range_test(impl):
    m = np.full((1, 2, 1, 6), 5.0, np.float32)
    m[0, 0] = [223.6, 223.4, -0.4, 223.5, 222.5, 0.3]  # rows, at H' = 224
    inv, _ = invert_dense(m, (224, 8), impl=impl)
    hits = {tuple(rc) for rc in np.argwhere(inv[0, 0] >= 0)}
    # 223.6 -> 224 out; 223.4 -> 223; -0.4 out on the raw value; 223.5 -> 224 (even) out; 222.5 -> 222; 0.3 -> 0
    assert hits == {(223, 5), (222, 5), (0, 5)}
    assert inv[0, 1, 223, 5] == 1 and inv[0, 1, 222, 5] == 4 and inv[0, 1, 0, 5] == 5


@pytest.mark.parametrize("impl", IMPLS)
def test_half_to_even(impl):
    m = np.zeros((1, 2, 1, 4), np.float64)
    m[0, 0] = [0.5, 1.5, 2.5, 3.5]  # -> 0, 2, 2, 4
    inv, holes = invert_dense(m, (5, 1), impl=impl)
    assert inv[0, 1, :, 0].tolist() == [0, -1, 2, -1, 3]  # col of the winner; row 2 hit by x=1 then x=2
    assert holes.tolist() == [2]
    a = np.zeros((1, 2, 1, 4))
    a[0, 1] = [0.5, 1.5, 2.5, 3.5]
    b = _identity(1, 5)
    assert compose_dense(a, b, impl=impl)[0, 1, 0].tolist() == [0, 2, 2, 4]


@pytest.mark.parametrize("impl", IMPLS)
def test_non_finite_values_are_invalid(impl):
    m = _identity(1, 4)
    m[0, 0, 0, 0], m[0, 1, 0, 1], m[0, 0, 0, 2] = np.nan, np.inf, -np.inf
    inv, holes = invert_dense(m, impl=impl)
    assert inv[0, 1, 0].tolist() == [-1, -1, -1, 3] and holes.tolist() == [3]
    b = _identity(1, 4)
    b[0, 0, 0, 3] = np.nan
    assert compose_dense(_identity(1, 4), b, impl=impl)[0, :, 0].tolist() == [[0, 0, 0, -1], [0, 1, 2, 3]]


@pytest.mark.parametrize("impl", IMPLS)
def test_compose_carries_minus_one_and_rejects_out_of_range(impl):
    b = _identity(3, 3, np.int64)
    b[0, :, 1, 1] = -1
    a = np.array([[[[1, 0, 2.6, 3]], [[1, 2, 0, 0]]]])  # (1,1) hole in b; (0,2) ok; 2.6 -> 3 out; 3 out raw
    t = compose_dense(a, b, impl=impl)
    assert t[0, :, 0].T.tolist() == [[-1, -1], [0, 2], [-1, -1], [-1, -1]]


@pytest.mark.parametrize("impl", IMPLS)
def test_permutation_inverse_composes_to_identity(impl):
    rng = np.random.default_rng(15)
    b_, h, w = 3, 11, 13
    perm = np.stack([rng.permutation(h * w) for _ in range(b_)])
    m = np.stack([perm // w, perm % w], axis=1).reshape(b_, 2, h, w).astype(np.float64)
    dropped = rng.random((b_, h, w)) < 0.2
    m[:, 0][dropped] = -1
    m = np.where(m >= 0, np.maximum(m + rng.uniform(-0.45, 0.45, m.shape), 0), m)  # jitter that rounds back
    inv, holes = invert_dense(m, impl=impl)
    np.testing.assert_array_equal(holes, dropped.sum(axis=(1, 2)))
    ident = np.broadcast_to(_identity(h, w, np.int64), (b_, 2, h, w))
    t = compose_dense(m, inv, impl=impl)  # pixel -> target -> back to the pixel
    np.testing.assert_array_equal(t, np.where(dropped[:, None], -1, ident))
    t2 = compose_dense(inv, m, impl=impl)  # target -> source pixel -> back to the target
    np.testing.assert_array_equal(t2, np.where((inv < 0).any(axis=1, keepdims=True), -1, ident))


# ---------------------------------------------------------------------------------------------- official chain
@pytest.mark.parametrize("impl", IMPLS)
def test_reference_correspondence_is_the_chain(impl):
    rng = np.random.default_rng(16)
    q, r = _scaled_map(rng, 2, 19, 23, (19, 23)), _scaled_map(rng, 2, 19, 23, (19, 23))
    q2r, r2q, info = reference_correspondence(q, r, impl=impl)
    o2r, o_holes = _oracle_invert(r, 19, 23)
    ref_q2r = _oracle_compose(q, o2r)
    ref_r2q, r_holes = _oracle_invert(ref_q2r, 19, 23)
    np.testing.assert_array_equal(q2r, ref_q2r)
    np.testing.assert_array_equal(r2q, ref_r2q)
    np.testing.assert_array_equal(info["ori_to_ref_holes"], o_holes)
    np.testing.assert_array_equal(info["ref_to_que_holes"], r_holes)
    np.testing.assert_array_equal(info["que_unmatched"], (ref_q2r[:, 0] < 0).sum(axis=(1, 2)))
    single = reference_correspondence(torch.from_numpy(q[1]), torch.from_numpy(r[1]), impl=impl)
    np.testing.assert_array_equal(single[0].numpy(), ref_q2r[1])
    np.testing.assert_array_equal(single[1].numpy(), ref_r2q[1])
    assert single[2]["ref_to_que_holes"].shape == ()


# ---------------------------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    ok = np.zeros((2, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"maps: expected shape \[B,2,H,W\] or \[2,H,W\], got \(2, 3, 4, 4\)"):
        invert_dense(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="maps: expected shape"):
        invert_dense(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="maps: expected a real float or integer dtype, got bool"):
        invert_dense(ok.astype(bool))
    with pytest.raises(ValueError, match="maps: expected a real float or integer dtype"):
        invert_dense(torch.zeros(2, 2, 4, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="maps: expected a numpy array or a torch tensor, got list"):
        invert_dense(ok.tolist())
    for bad in [(0, 4), (4,), (4.0, 4), (-1, 3), (True, 4), "ab", 4]:
        with pytest.raises(ValueError, match="out_hw: expected two positive ints"):
            invert_dense(ok, bad)
    with pytest.raises(ValueError, match="impl: expected one of"):
        invert_dense(ok, impl="cuda")
    with pytest.raises(ValueError, match="b: batch size 3 does not match a's batch size 2"):
        compose_dense(ok, np.zeros((3, 2, 4, 4)))
    with pytest.raises(ValueError, match="b: must be the same kind as a"):
        compose_dense(ok, torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="b: has 3 dims but a has 4"):
        compose_dense(ok, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"que_to_ori: expected shape \[B,2,H,W\]"):
        reference_correspondence(np.zeros((2, 1, 4, 4)), ok)
    with pytest.raises(ValueError, match="ref_to_ori: batch size 1 does not match que_to_ori's batch size 2"):
        reference_correspondence(ok, ok[:1])


# ---------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(17)
    q, r = _random_map(rng, (4, 2, 37, 41), (37, 41)), _scaled_map(rng, 4, 37, 41, (37, 41))
    ref = reference_correspondence(q, r, impl="numpy")
    q_c, r_c = torch.from_numpy(q).cuda(), torch.from_numpy(r).cuda()
    with pytest.raises(ValueError, match="impl: 'cpp' runs on the CPU"):
        reference_correspondence(q_c, r_c, impl="cpp")
    for _ in range(2):  # deterministic run to run
        out = reference_correspondence(q_c, r_c)
        assert out[0].device == q_c.device
        np.testing.assert_array_equal(out[0].cpu().numpy(), ref[0])
        np.testing.assert_array_equal(out[1].cpu().numpy(), ref[1])
        for k in ref[2]:
            np.testing.assert_array_equal(out[2][k].cpu().numpy(), ref[2][k])
