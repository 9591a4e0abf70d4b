"""The C++ antialiased uint8 resize (csrc/resize.h via data.resize) against its oracle, torch's F.interpolate.

Bit-equal on random sizes (down, up, mixed axes, 1-pixel sides, large factors), 1..4 channels, HWC-strided,
planar and arbitrarily strided inputs, crops touching the image edges; both the AVX2 and the scalar path. Property
tests (which need no torch) catch a constant image that drifts, a swapped axis and a box shifted by one pixel.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from copynce_fast import _cpp
from copynce_fast.data.geometry import antialiased_source
from copynce_fast.data.resize import can_resize_cpp, resize_antialiased

needs_resize = pytest.mark.skipif(not _cpp.HAS_RESIZE, reason="copynce_fast._C not built (or lacks resize_bilinear_aa)")
PATHS = [True, False]  # simd on (AVX2 where the CPU has it), off (the scalar path)


def torch_resize(image: torch.Tensor, box, out_hw) -> np.ndarray:
    """The oracle, written out here (independent of data.resize): crop, F.interpolate, uint8."""
    t, l, h, w = box
    crop = image[None, :, t:t + h, l:l + w]
    return F.interpolate(crop, size=tuple(out_hw), mode="bilinear", antialias=True, align_corners=False)[0].numpy()


def kernel(image: torch.Tensor, box, out_hw, simd=True, channels_last=True) -> np.ndarray:
    return _cpp.resize_bilinear_aa(image.numpy(), *box, *out_hw, channels_last, simd)


def random_image(rng, c, h, w, layout):
    """[C, H, W] uint8 with the given memory layout: "hwc" (a permuted HWC buffer), "chw", or "odd" (a strided
    slice of a bigger buffer: every stride differs from a dense one)."""
    if layout == "hwc":
        return torch.from_numpy(rng.integers(0, 256, (h, w, c), dtype=np.uint8)).permute(2, 0, 1)
    if layout == "chw":
        return torch.from_numpy(rng.integers(0, 256, (c, h, w), dtype=np.uint8))
    big = torch.from_numpy(rng.integers(0, 256, (2 * h + 1, 3 * w, c + 2), dtype=np.uint8))
    return big[1::2, ::3, 1:c + 1].permute(2, 0, 1)


def test_extension_has_the_kernel():
    """CI builds the extension: a silent fallback to torch there would be a packaging bug."""
    if os.environ.get("COPYNCE_NO_EXT", "0") == "1":
        pytest.skip("COPYNCE_NO_EXT=1: the extension is deliberately not built")
    assert _cpp.HAS_RESIZE, "copynce_fast._C is missing or stale (lacks resize_bilinear_aa); rebuild with pip install -e ."


@needs_resize
@pytest.mark.parametrize("simd", PATHS)
def test_bit_equal_random(simd):
    rng = np.random.default_rng(7 + simd)
    for i in range(250):
        c = int(rng.integers(1, 5))
        h, w = (int(v) for v in rng.integers(1, 90, size=2))
        img = random_image(rng, c, h, w, ("hwc", "chw", "odd")[i % 3])
        top, left = int(rng.integers(0, h)), int(rng.integers(0, w))
        if i % 4 == 0:  # boxes touching the bottom-right edge (the kernel's reads past a row end)
            bh, bw = h - top, w - left
        else:
            bh, bw = int(rng.integers(1, h - top + 1)), int(rng.integers(1, w - left + 1))
        oh, ow = (int(v) for v in rng.integers(1, 120, size=2))
        got, want = kernel(img, (top, left, bh, bw), (oh, ow), simd), torch_resize(img, (top, left, bh, bw), (oh, ow))
        assert np.array_equal(got, want), (c, h, w, (top, left, bh, bw), (oh, ow), i)


@needs_resize
@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("box, out_hw", [
    ((0, 0, 375, 500), (224, 224)),   # the loader's main case (2.2x / 1.7x down)
    ((12, 40, 150, 200), (224, 224)),  # up-scale
    ((30, 50, 300, 340), (224, 224)),  # mild down
    ((0, 0, 375, 500), (55, 73)),      # the pre-shrink's large factors
    ((0, 0, 375, 500), (7, 500)),      # 53x down one axis, the other kept (one pass only)
    ((0, 0, 375, 500), (375, 7)),
    ((100, 0, 1, 500), (1, 3)),        # 1-pixel box side
    ((0, 499, 375, 1), (9, 4)),        # 1-pixel wide box at the right edge, up-scaled
    ((0, 0, 375, 500), (375, 500)),    # identity: a copy
    ((374, 0, 1, 500), (5, 250)),      # the last row of the buffer
])
def test_bit_equal_loader_shapes(simd, box, out_hw):
    rng = np.random.default_rng(3)
    for c in (3, 1, 4):
        img = random_image(rng, c, 375, 500, "hwc")
        assert np.array_equal(kernel(img, box, out_hw, simd), torch_resize(img, box, out_hw)), c


@needs_resize
def test_layouts_and_strides_match_torch():
    """resize_antialiased returns torch's layout (channels-last for a box; for a whole image what torch suggests:
    planar for a permuted HWC view, whose batch stride breaks torch's channels-last rule). Values equal always."""
    rng = np.random.default_rng(1)
    hwc = random_image(rng, 3, 40, 50, "hwc")
    cases = ((hwc, (3, 4, 30, 41)), (hwc, None), (hwc.contiguous(), None), (hwc.contiguous(), (0, 0, 40, 50)),
             (random_image(rng, 2, 40, 50, "odd"), None), (random_image(rng, 1, 40, 50, "hwc"), None))
    for image, box in cases:
        a = resize_antialiased(image, box, (17, 23), impl="cpp")
        b = resize_antialiased(image, box, (17, 23), impl="torch")
        assert a.stride() == b.stride(), (box, a.stride(), b.stride())
        assert torch.equal(a, b)
    got = kernel(hwc, (0, 0, 40, 50), (17, 23), channels_last=False)
    assert got.flags.c_contiguous and np.array_equal(got, torch_resize(hwc, (0, 0, 40, 50), (17, 23)))


@needs_resize
def test_antialiased_source_same_with_and_without_kernel(monkeypatch):
    """geometry.antialiased_source gives the same pixels through the kernel and through torch (box and
    pre-shrink paths)."""
    rng = np.random.default_rng(5)
    img = random_image(rng, 3, 75, 100, "hwc")
    box_matrix = np.array([[80 / 64, 0, 10], [0, 60 / 48, 5], [0, 0, 1]])  # view 48x64 -> source box 60x80 at (5, 10)
    shrink_matrix = np.array([[3.0, 0.4, 1.0], [-0.2, 3.1, 2.0], [0, 0, 1]])  # rotated, 3x down: pre-shrink
    for matrix, hw in ((box_matrix, (48, 64)), (shrink_matrix, (20, 24))):
        got = antialiased_source(img, matrix, hw)
        monkeypatch.setattr(_cpp, "HAS_RESIZE", False)
        want = antialiased_source(img, matrix, hw)
        monkeypatch.setattr(_cpp, "HAS_RESIZE", True)
        assert got[2] == want[2] and np.array_equal(got[1], want[1])
        assert torch.equal(got[0], want[0]) and got[0].stride() == want[0].stride()


@needs_resize
@pytest.mark.parametrize("simd", PATHS)
def test_constant_image_stays_constant(simd):
    """Weights sum to 1 in fixed point up to rounding: a flat image must come out flat, at its value."""
    for v in (0, 1, 128, 254, 255):
        img = torch.full((3, 97, 131), v, dtype=torch.uint8)
        for out_hw in ((224, 224), (13, 5), (97, 300)):
            out = kernel(img, (2, 3, 90, 120), out_hw, simd)
            assert out.shape == (3, *out_hw) and (out == v).all(), (v, out_hw)


@needs_resize
@pytest.mark.parametrize("simd", PATHS)
def test_axes_and_box_are_not_swapped_or_shifted(simd):
    """A horizontal ramp stays a horizontal ramp (no swapped axis); an identity-sized box is exactly the crop (no
    off-by-one in top / left); a box whose one changed axis is resized keeps the other axis's pixels."""
    ramp = torch.arange(200, dtype=torch.uint8).repeat(3, 150, 1)  # value = column
    out = kernel(ramp, (0, 0, 150, 200), (75, 100), simd)
    assert (out == out[:, :1, :]).all()  # every row the same: only x varies
    assert (np.diff(out[0, 0].astype(int)) > 0).all()
    rng = np.random.default_rng(11)
    img = random_image(rng, 3, 60, 70, "hwc")
    crop = img[:, 7:50, 9:61].numpy()
    assert np.array_equal(kernel(img, (7, 9, 43, 52), (43, 52), simd), crop)
    only_y = kernel(img, (7, 9, 43, 52), (20, 52), simd)  # x kept: column j of the output reads column 9 + j only
    one_col = kernel(img[:, :, 9 + 31:9 + 32].contiguous(), (7, 0, 43, 1), (20, 1), simd)
    assert np.array_equal(only_y[:, :, 31:32], one_col)


def test_torch_fallback_without_kernel(monkeypatch):
    """Without the extension (or for a float image) resize_antialiased is F.interpolate itself."""
    monkeypatch.setattr(_cpp, "HAS_RESIZE", False)
    rng = np.random.default_rng(2)
    img = random_image(rng, 3, 30, 40, "hwc")
    assert not can_resize_cpp(img)
    out = resize_antialiased(img, (1, 2, 20, 30), (11, 13))
    assert np.array_equal(out.numpy(), torch_resize(img, (1, 2, 20, 30), (11, 13)))
    f = img.float()
    assert torch.equal(resize_antialiased(f, None, (11, 13)), F.interpolate(f[None], size=(11, 13), mode="bilinear",
                                                                            antialias=True)[0])
    with pytest.raises(ValueError, match="impl"):
        resize_antialiased(img, None, (11, 13), impl="cpp")


def test_bad_arguments_name_the_parameter():
    img = torch.zeros((3, 10, 10), dtype=torch.uint8)
    with pytest.raises(ValueError, match="box"):
        resize_antialiased(img, (5, 5, 6, 2), (4, 4))
    with pytest.raises(ValueError, match="out_hw"):
        resize_antialiased(img, None, (0, 4))
    with pytest.raises(ValueError, match="impl"):
        resize_antialiased(img, None, (4, 4), impl="fast")
    if _cpp.HAS_RESIZE:
        with pytest.raises(ValueError, match="image"):
            _cpp.resize_bilinear_aa(np.zeros((5, 4, 4), np.uint8), 0, 0, 4, 4, 2, 2)
        with pytest.raises(ValueError, match="box"):
            _cpp.resize_bilinear_aa(np.zeros((3, 4, 4), np.uint8), 1, 0, 4, 4, 2, 2)
