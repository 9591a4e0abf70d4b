"""The C++ view warp (csrc/warp.h via data.warp_cpp) against its oracle, the torch executor's own path.

Nearest sampling must be bit-equal (samples, canvas tests, overlay blend and rounding) on every preset, random
chains with pastes, overlays beneath and above and perspective; bilinear within one grey level on a small
fraction of pixels. The torch path must still run when the extension is hidden.
"""
import os

import numpy as np
import pytest
import torch

from copynce_fast import _cpp
from copynce_fast.data.executor_torch import _render_layers, render_geometry, render_plan, to_tensor_image
from copynce_fast.data.geometry import CanvasTest, _axis_aligned_box, canvas_mask, layer_geometry
from copynce_fast.data.pair_of_key import plan_pair
from copynce_fast.data.plan import AugmentPlan
from copynce_fast.data.plan_sampler import PairKey, sample_query_plan
from copynce_fast.data.presets import descriptor_preset, matcher_preset, plain_preset
from copynce_fast.data.sources import ArraySource
from copynce_fast.data.synthetic import synthetic_images
from copynce_fast.pixtrace import View
from copynce_fast.pixtrace import stages as st

needs_warp = pytest.mark.skipif(not _cpp.HAS_WARP, reason="copynce_fast._C not built (or lacks render_view)")

H, W, S = 75, 100, 64
OH, OW = 50, 60
PRESETS = {"descriptor": descriptor_preset, "matcher": matcher_preset, "plain": plain_preset}


def test_extension_has_the_kernel():
    """CI builds the extension: a silent fallback to the torch path there would be a packaging bug."""
    if os.environ.get("COPYNCE_NO_EXT", "0") == "1":
        pytest.skip("COPYNCE_NO_EXT=1: the extension is deliberately not built")
    assert _cpp.HAS_WARP, "copynce_fast._C is missing or stale (lacks render_view); rebuild with pip install -e ."


@pytest.fixture(scope="module")
def src():
    return ArraySource(synthetic_images(12, (H, W), seed=5))


def _images(source):
    return [to_tensor_image(source.decode(i)) for i in range(len(source))]


def _torch_uint8(plan, image, other, interp):
    out = _render_layers(plan, image, other, interp, True, impl="torch")
    return out if out.dtype == torch.uint8 else out.round().clamp(0, 255).to(torch.uint8)


def _both(plan, image, other, interp):
    return _torch_uint8(plan, image, other, interp), _render_layers(plan, image, other, interp, True, impl="cpp")


def _preset_views(source, preset, pairs=24):
    cfg = PRESETS[preset](size=S)
    for k in range(pairs):
        pp = plan_pair(source, cfg, 1, PairKey(k % len(source), 0))[0]
        yield pp.query
        yield pp.reference


def _chain_config():
    # Every geometric edit likely, overlays both ways (paste beneath with alpha < 1, overlay above).
    return plain_preset(size=S, crop_p=0.9, hflip_p=0.5, vflip_p=0.5, warp_p=0.9, pad_p=0.5, paste_alpha=(0.4, 1.0),
                        overlay_opacity=(0.2, 0.8), group_shuffle=True)


def _chain_views(n=90, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_query_plan(rng, _chain_config(), 0, (H, W), lambda r: (1, (OH, OW))) for _ in range(n)]


@needs_warp
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_nearest_is_bit_equal_on_presets(src, preset):
    images = _images(src)
    n = 0
    for plan in _preset_views(src, preset):
        other = images[plan.overlay.index] if plan.overlay is not None else None
        want, got = _both(plan, images[plan.source_index], other, "nearest")
        assert got.dtype == torch.uint8 and got.shape == want.shape
        assert torch.equal(want, got), f"{preset}: {(want != got).sum().item()} pixels differ"
        n += 1
    assert n == 48


@needs_warp
def test_nearest_is_bit_equal_on_random_chains():
    # Perspective, pastes, pads, flips, overlays beneath and above: every test kind and both blends occur.
    copy = to_tensor_image(synthetic_images(1, (H, W), seed=1)[0])
    other = to_tensor_image(synthetic_images(1, (OH, OW), seed=2)[0])
    seen = set()
    for plan in _chain_views():
        geo = layer_geometry(plan)
        seen.update(s.name for s in plan.view.stages)
        seen.add(("mode", plan.overlay.mode if plan.overlay else None))
        seen.add(("tests", bool(geo.copy_tests), bool(geo.shared_tests)))
        want, got = _both(plan, copy, other if plan.overlay is not None else None, "nearest")
        assert torch.equal(want, got), f"{(want != got).sum().item()} pixels differ ({[s.name for s in plan.view.stages]})"
    assert {"perspective", "paste", "pad", "hflip", "affine"} <= seen
    assert {("mode", "beneath"), ("mode", "above"), ("mode", None)} <= seen
    assert ("tests", True, False) in seen and any(k[0] == "tests" and k[2] for k in seen if isinstance(k, tuple))


@needs_warp
def test_canvas_masks_are_exact():
    # A flat image shows the masks themselves: 200 exactly where P, Q and the original's own canvas pass.
    flat = torch.full((3, H, W), 200, dtype=torch.uint8)
    checked = 0
    for plan in _chain_views(60, seed=3):
        if plan.overlay is not None:
            continue
        geo = layer_geometry(plan)
        if not geo.copy_tests:
            continue
        got = _render_layers(plan, flat, None, "nearest", True, impl="cpp")
        mask = canvas_mask(CanvasTest(geo.copy_matrix, geo.source_hw), geo.out_hw)
        for t in geo.copy_tests + geo.shared_tests:
            mask &= canvas_mask(t, geo.out_hw)
        assert torch.equal(got, (mask * 200).to(torch.uint8).expand(3, -1, -1)), plan.view.stages
        assert 0 < mask.sum() < mask.numel()
        checked += 1
    assert checked >= 5


def _persp(hw):
    h, w = hw
    return st.perspective(hw, [(0, 0), (w, 0), (w, h), (0, h)], [(9, 4), (w - 3, 11), (w - 14, h - 2), (5, h - 9)])


@needs_warp
@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
def test_perspective_horizon_and_layouts(interp):
    # A perspective whose horizon crosses the view (points behind it are outside), on an HWC-backed image and on a
    # contiguous CHW copy of it (the kernel reads strides).
    hw = (H, W)
    horizon = st.perspective(hw, [(0, 0), (W, 0), (W, H), (0, H)], [(0, 0), (W, 0), (W + 900, H), (-900, H)])
    img = to_tensor_image(synthetic_images(1, hw, seed=4)[0])
    s = (61, 61)  # not a multiple of 4: the kernel's 4-column steps and its one-column tail both run
    for stages in ([_persp(hw), st.resize(hw, s)], [horizon, st.resize(hw, s)],
                   [st.resized_crop(hw, 10, 10, 50, 70, s), _persp(s), st.hflip(s)]):
        plan = AugmentPlan(0, View(hw, stages))
        want = _torch_uint8(plan, img, None, interp)
        for image in (img, img.contiguous()):
            got = _render_layers(plan, image, None, interp, True, impl="cpp")
            diff = (want.int() - got.int()).abs()
            if interp == "nearest":
                assert torch.equal(want, got)
            else:
                assert diff.max() <= 1 and (diff > 0).float().mean() < 2e-3


@needs_warp
def test_bilinear_within_one_grey_level():
    # Presets at 224 px from 375 x 500 originals (crop boxes, pre-shrunk warps, overlays) and random chains.
    source = ArraySource(synthetic_images(6, (375, 500), seed=7))
    images = _images(source)
    differing, total, worst = 0, 0, 0
    views = []
    for preset in ("descriptor", "matcher"):
        cfg = PRESETS[preset](size=224)
        for k in range(10):
            pp = plan_pair(source, cfg, 2, PairKey(k % len(source), 0))[0]
            views += [pp.query, pp.reference]
    boxes = 0
    for plan in views:
        other = images[plan.overlay.index] if plan.overlay is not None else None
        want, got = _both(plan, images[plan.source_index], other, "bilinear")
        diff = (want.int() - got.int()).abs()
        assert diff.max() <= 1
        geo = layer_geometry(plan)
        if all(m is None or _axis_aligned_box(m, geo.out_hw, hw) is not None
               for m, hw in ((geo.copy_matrix, geo.source_hw), (geo.other_matrix, geo.other_hw))):
            assert torch.equal(want, got)  # crop boxes: the same torch resize, then exact tests and blend
            boxes += 1
        worst = max(worst, (diff > 0).float().mean().item())
        differing += int((diff > 0).sum())
        total += diff.numel()
    copy = to_tensor_image(synthetic_images(1, (H, W), seed=1)[0])
    other = to_tensor_image(synthetic_images(1, (OH, OW), seed=2)[0])
    for plan in _chain_views(40, seed=5):
        want, got = _both(plan, copy, other if plan.overlay is not None else None, "bilinear")
        diff = (want.int() - got.int()).abs()
        assert diff.max() <= 1
        worst = max(worst, (diff > 0).float().mean().item())
        differing += int((diff > 0).sum())
        total += diff.numel()
    assert boxes >= 10
    # Measured 2026-12-02: 9e-6 of all pixels (59 of 6.5 M); at most 2.6e-3 of one 64 x 64 view's (11 pixels: a
    # blend with weight 0.5 puts exact .5 ties in the sums, which float noise in the coordinates breaks either way).
    assert differing / total < 1e-4 and worst < 1e-2


@needs_warp
def test_comparison_can_fail():
    # A shift of 1/64 px in the copy's map moves nearest samples somewhere: the equality above is not vacuous.
    img = to_tensor_image(synthetic_images(1, (H, W), seed=4)[0])
    plan = AugmentPlan(0, View((H, W), [st.rotate((H, W), 17), st.resize((H, W), (S, S))]))
    shifted = AugmentPlan(0, View((H, W), [st.rotate((H, W), 17), st.affine((H, W), np.array(
        [[1, 0, 1 / 64], [0, 1, 0], [0, 0, 1.0]])), st.resize((H, W), (S, S))]))
    a = _render_layers(plan, img, None, "nearest", True, impl="cpp")
    b = _render_layers(shifted, img, None, "nearest", True, impl="cpp")
    assert 0 < (a != b).any(0).sum() < S * S


def test_torch_path_runs_without_the_extension(src, monkeypatch):
    # HAS_WARP False (as without the extension): every view is drawn by torch, the kernel is never called.
    images = _images(src)
    plans = list(_preset_views(src, "descriptor", pairs=4))

    def no_kernel(*args, **kwargs):
        raise AssertionError("the C++ kernel ran with HAS_WARP = False")

    monkeypatch.setattr(_cpp, "HAS_WARP", False)
    monkeypatch.setattr(_cpp, "render_view", no_kernel)
    for p in plans:
        other = images[p.overlay.index] if p.overlay else None
        for interp in ("nearest", "bilinear"):
            auto = _render_layers(p, images[p.source_index], other, interp, True)
            assert torch.equal(auto, _render_layers(p, images[p.source_index], other, interp, True, impl="torch"))
        assert render_plan(p, images[p.source_index], other).shape == (3, S, S)
    plain = next(p for p in plans if p.overlay is None)
    with pytest.raises(ValueError, match="impl"):
        _render_layers(plain, images[plain.source_index], None, "nearest", True, impl="cpp")


def test_non_uint8_images_take_the_torch_path():
    ramp = torch.linspace(0, 1, H * W, dtype=torch.float64).reshape(1, H, W).expand(3, -1, -1).contiguous()
    plan = AugmentPlan(0, View((H, W), [st.rotate((H, W), 17), st.resize((H, W), (S, S))]))
    out = render_geometry(plan, ramp, interp="bilinear")
    assert out.dtype == torch.float32 and 0 < out.max() <= 1  # unrounded floats: the torch path drew it
    with pytest.raises(ValueError, match="impl"):
        render_geometry(plan, ramp, impl="cpp")


@needs_warp
@pytest.mark.parametrize("hw", [(40, 53), (7, 2), (5, 1), (1, 9)])
def test_bilinear_paired_and_four_tap_layouts_agree(hw):
    # A planar image (adjacent columns: each row's two taps read as one pair, csrc/warp.cpp BilinearTaps) and the
    # same pixels as an HWC view (four separate taps) must give the same bytes: the pair layout moves the inside tap
    # of a border column into another slot, which must not change the sum. Maps reach past every border (x0 = -1
    # and x0 = W - 1), rotate, mirror and look through a perspective.
    rng = np.random.default_rng(hw[0] * 100 + hw[1])
    hwc = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    planar = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    strided = hwc.transpose(2, 0, 1)
    assert planar.strides[2] == 1 and strided.strides[2] == 3
    no_tests = (np.zeros((0, 3, 3)), np.zeros((0, 2), dtype=np.int64))
    h, w = hw
    out = (37, 41)  # not a multiple of 4: the 4-column steps and the one-column tail
    maps = [np.array([[(w + 3) / out[1], 0, -1.5], [0, (h + 3) / out[0], -1.5], [0, 0, 1]]),
            np.array([[-(w + 2) / out[1], 0, w + 1], [0, (h + 2) / out[0], -1], [0, 0, 1]])]
    for _ in range(12):
        a = rng.uniform(0, 2 * np.pi)
        s = rng.uniform(0.3, 1.5) * max(h, w) / min(out)
        m = np.array([[s * np.cos(a), -s * np.sin(a), rng.uniform(-2, w + 2)],
                      [s * np.sin(a), s * np.cos(a), rng.uniform(-2, h + 2)], [0, 0, 1]])
        if rng.random() < 0.4:
            m[2, :2] = rng.uniform(-2e-3, 2e-3, 2)
        maps.append(m)
    sampled = 0
    for m in maps:
        got = [_cpp.render_view(*out, img, np.ascontiguousarray(m), True, None, None, False, *no_tests, 0, 0,
                                [1.0, 0.0, 0.0, 0.0]) for img in (planar, strided)]
        assert np.array_equal(got[0], got[1])
        sampled += int(got[0].any())
    assert sampled >= len(maps) // 2  # most maps see the image
