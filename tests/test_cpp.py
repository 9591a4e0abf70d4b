"""copynce_fast._C against the pure-Python fallbacks in copynce_fast._cpp: bit-identical outputs."""
import os

import numpy as np
import pytest

from copynce_fast import _cpp

needs_cpp = pytest.mark.skipif(not _cpp.HAS_CPP, reason="copynce_fast._C not built")

DTYPES = [np.float32, np.float64, np.int64]
SHAPE = (3, 2, 37, 41)


def test_extension_is_built():
    """CI builds the extension: a silent fallback to Python there would be a packaging bug."""
    if os.environ.get("COPYNCE_NO_EXT", "0") == "1":
        pytest.skip("COPYNCE_NO_EXT=1: the extension is deliberately not built")
    assert _cpp.HAS_CPP, "copynce_fast._C is missing or stale (lacks invert_dense); rebuild with pip install -e ."


def _random_map(rng, shape, dtype, hi_h, hi_w):
    """Coordinates in [-3, hi + 3] with exact .5 ties, -1s, NaN and inf sprinkled in (floats only)."""
    b, _, h, w = shape
    m = np.stack([rng.uniform(-3, hi_h + 3, (b, h, w)), rng.uniform(-3, hi_w + 3, (b, h, w))], axis=1)
    ties = rng.random(m.shape) < 0.1
    m[ties] = np.floor(m[ties]) + 0.5
    m[rng.random(m.shape) < 0.05] = -1
    if np.dtype(dtype).kind == "f":
        m[rng.random(m.shape) < 0.01] = np.nan
        m[rng.random(m.shape) < 0.01] = np.inf
        m[rng.random(m.shape) < 0.01] = -np.inf
        return m.astype(dtype)
    return np.rint(m).astype(dtype)


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_hw", [(37, 41), (20, 50), (64, 16)])
def test_invert_matches_fallback(dtype, out_hw):
    rng = np.random.default_rng(0)
    maps = _random_map(rng, SHAPE, dtype, *out_hw)
    inv_c, holes_c = _cpp._C.invert_dense(maps, *out_hw)
    inv_p, holes_p = _cpp.invert_dense_py(maps, *out_hw)
    assert inv_c.dtype == holes_c.dtype == np.int64
    assert inv_c.shape == (SHAPE[0], 2, *out_hw) and holes_c.shape == (SHAPE[0],)
    np.testing.assert_array_equal(inv_c, inv_p)
    np.testing.assert_array_equal(holes_c, holes_p)
    # the case must be non-trivial: both holes and collisions (more valid sources than filled targets) happen
    m = np.rint(maps.astype(np.float64))
    with np.errstate(invalid="ignore"):
        lim = np.array(out_hw, dtype=np.float64)[None, :, None, None]
        valid_src = ((maps >= 0) & (maps < lim) & (m < lim)).all(axis=1)
    assert 0 < holes_c.sum() < inv_c[:, 0].size
    assert (inv_c[:, 0] >= 0).sum() < valid_src.sum()


@needs_cpp
@pytest.mark.parametrize("dtype_a", DTYPES)
@pytest.mark.parametrize("dtype_b", DTYPES)
def test_compose_matches_fallback(dtype_a, dtype_b):
    rng = np.random.default_rng(1)
    h2, w2 = 29, 53
    a = _random_map(rng, SHAPE, dtype_a, h2, w2)
    b = _random_map(rng, (SHAPE[0], 2, h2, w2), dtype_b, 100, 100)
    if np.dtype(dtype_b).kind == "f":
        b[0, 0, 0, :3] = [1e30, -1e30, 2.0**63]  # no int64 value -> -1
    t_c = _cpp._C.compose_dense(a, b)
    t_p = _cpp.compose_dense_py(a, b)
    assert t_c.dtype == np.int64 and t_c.shape == SHAPE
    np.testing.assert_array_equal(t_c, t_p)
    assert (t_c == -1).any() and (t_c >= 0).any()


@needs_cpp
def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(2)
    maps = _random_map(rng, (7, 2, 23, 19), np.float32, 23, 19)
    b = _random_map(rng, (7, 2, 23, 19), np.float64, 23, 19)
    ref_inv, ref_holes = _cpp._C.invert_dense(maps, 23, 19, num_threads=1)
    ref_t = _cpp._C.compose_dense(maps, b, num_threads=1)
    for threads in (2, 3, 16):
        inv, holes = _cpp._C.invert_dense(maps, 23, 19, num_threads=threads)
        np.testing.assert_array_equal(inv, ref_inv)
        np.testing.assert_array_equal(holes, ref_holes)
        np.testing.assert_array_equal(_cpp._C.compose_dense(maps, b, num_threads=threads), ref_t)


@needs_cpp
def test_extension_rejects_unconverted_input():
    """No silent casts at the boundary: the public API converts, the extension only checks."""
    maps = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(TypeError):
        _cpp._C.invert_dense(maps.astype(np.int32), 4, 4)
    with pytest.raises(TypeError):
        _cpp._C.invert_dense(np.asfortranarray(maps), 4, 4)
    with pytest.raises(ValueError, match="maps: expected shape"):
        _cpp._C.invert_dense(np.zeros((1, 3, 4, 4), np.float32), 4, 4)
    with pytest.raises(ValueError, match="out_hw"):
        _cpp._C.invert_dense(maps, 0, 4)
    with pytest.raises(ValueError, match="b: batch size"):
        _cpp._C.compose_dense(maps, np.zeros((2, 2, 4, 4), np.float32))
