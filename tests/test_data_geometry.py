"""Geometry proofs for the torch executor: rendered pixels are the original pixels PixTrace reports.

Images whose pixels encode their own (row, col) are rendered with nearest sampling through every geometric edit
alone, through overlays, and through random chains from the sampler; the decoded coordinates must agree with
``correspondence_map`` (float64) on >= 99.9% of the interior and within one pixel on all of it, and no copy
content may appear deep inside the invalid region. Bilinear sampling is checked on a linear ramp (no
half-pixel shift), and occluder masks must cover every pixel an occluder changes.
"""
import math

import numpy as np
import pytest
import torch

from copynce_fast.data.executor_torch import render_geometry, render_plan, to_tensor_image
from copynce_fast.data.plan import AugmentPlan, Occluder, Overlay
from copynce_fast.data.presets import plain_preset
from copynce_fast.data.occluder_mask import occluder_mask, traced_view
from copynce_fast.data.plan_sampler import sample_query_plan
from copynce_fast.data.synthetic import check_geometry, coordinate_image, decode_coordinates
from copynce_fast.pixtrace import View, correspondence_map, pack_paths
from copynce_fast.pixtrace import stages as st

H, W, S = 70, 90, 64
OH, OW = 50, 60
HW, SQ = (H, W), (S, S)
IMG = to_tensor_image(coordinate_image(H, W))
OTHER = to_tensor_image(coordinate_image(OH, OW, tag=True))


def _persp(hw):
    h, w = hw
    return st.perspective(hw, [(0, 0), (w, 0), (w, h), (0, h)], [(9, 4), (w - 3, 11), (w - 14, h - 2), (5, h - 9)])


EDITS = {
    "resize": [st.resize(HW, SQ)],
    "crop": [st.resized_crop(HW, 10, 20, 40, 50, SQ)],
    "crop_fractional": [st.resized_crop(HW, 10.3, 20.7, 40.5, 50.25, SQ)],
    "crop_beyond_edges": [st.crop(HW, -10, -15, 80, 100), st.resize((80, 100), SQ)],
    "upscale": [st.resized_crop(HW, 30, 40, 9, 11, SQ)],
    "hflip": [st.hflip(HW), st.resize(HW, SQ)],
    "vflip": [st.vflip(HW), st.resize(HW, SQ)],
    "rotate90": [st.rotate(HW, 90), st.resize(HW, SQ)],
    "rotate30": [st.rotate(HW, 30), st.resize(HW, SQ)],
    "rotate_snapped": [st.rotate(HW, st.snap_angle(200.0)), st.resize(HW, SQ)],
    "shear": [st.shear(HW, 25), st.resize(HW, SQ)],
    "rotate_shear": [st.affine(HW, st.rotate(HW, 140).matrix @ st.shear(HW, -30).matrix), st.resize(HW, SQ)],
    "perspective": [_persp(HW), st.resize(HW, SQ)],
    "pad": [st.pad(HW, 10, 12, 15, 5), st.resize((92, 110), SQ)],
    "crop_then_rotate": [st.resized_crop(HW, 5, 5, 50, 60, SQ), st.rotate(SQ, 45)],
    "rotate_crop_pad": [st.rotate(HW, 60), st.resized_crop(HW, 0, 10, 70, 70, SQ), st.pad(SQ, 8, 8, 8, 8),
                        st.resize((80, 80), SQ)],
    "crop_perspective_flip": [st.resized_crop(HW, 10, 10, 50, 70, SQ), _persp(SQ), st.hflip(SQ)],
}


def _assert_geometry(img, view, tag=False, min_interior=50):
    r = check_geometry(img, view, tag)
    assert r["interior"] >= min_interior, r
    assert r["exact"] >= 0.999, r
    assert r["within1"] == 1.0, r
    assert r["leaked"] == 0, r


@pytest.mark.parametrize("name", sorted(EDITS))
def test_each_edit_matches_pixtrace(name):
    plan = AugmentPlan(0, View(HW, EDITS[name]))
    img = render_plan(plan, IMG, interp="nearest")
    _assert_geometry(img, plan.view)


def test_check_geometry_can_fail():
    # A one-pixel shift of the rendering must be caught (the proof is not vacuous).
    plan = AugmentPlan(0, View(HW, EDITS["rotate30"]))
    img = render_plan(plan, IMG, interp="nearest")
    r = check_geometry(torch.roll(img, 1, dims=2), plan.view)
    assert r["exact"] < 0.5
    # Rendering through a different matrix than PixTrace's (mirror) is caught too.
    wrong = AugmentPlan(0, View(HW, EDITS["hflip"]))
    r = check_geometry(render_plan(wrong, IMG, interp="nearest"), View(HW, EDITS["resize"]))
    assert r["exact"] < 0.1


def _beneath(alpha, pre=()):
    stages = list(pre)
    hw = stages[-1].out_hw if stages else HW
    stages.append(st.paste(hw, SQ, 12, 8, 30, 44))
    ov = Overlay("beneath", 1, (OH, OW), len(stages), (st.resize((OH, OW), SQ),), alpha)
    return AugmentPlan(0, View(HW, tuple(stages) + (st.rotate(SQ, 20),)), overlay=ov)


def test_paste_beneath_shows_copy_and_background():
    plan = _beneath(1.0, pre=[st.resized_crop(HW, 0, 0, 60, 80, SQ), st.rotate(SQ, 30)])
    img = render_plan(plan, IMG, OTHER, interp="nearest")
    _assert_geometry(img, plan.view)  # the copy, clipped by the rotated crop, inside the box
    # Wherever the background shows, it is the background pixel its own view (resize + later stages) reports.
    other_view = plan.overlay.other_view(plan.view)
    exp = correspondence_map(pack_paths([other_view], [View((OH, OW))], dtype=torch.float64))[0].numpy()
    row, col, has, tagged = decode_coordinates(img, OW)
    bg = tagged & (exp[0] >= 0)
    assert bg.sum() > 500
    assert ((row == exp[0]) & (col == exp[1]))[bg].mean() >= 0.999
    assert not (tagged & (exp[0] < 0)).any()  # nothing of the background outside its canvas


def test_overlay_blend_weights():
    # Flat images: copy = 200, other = 40; alpha 0.7 beneath, opacity 0.4 above.
    copy = torch.full((3, H, W), 200, dtype=torch.uint8)
    other = torch.full((3, OH, OW), 40, dtype=torch.uint8)
    plan = _beneath(0.7)
    out = render_geometry(plan, copy, other, interp="nearest")
    vals = set(np.unique(out.round().numpy()).tolist())
    assert vals <= {0.0, 40.0, round(0.7 * 200 + 0.3 * 40)}, vals  # fill, background, blended copy
    assert round(0.7 * 200 + 0.3 * 40) in vals and 40.0 in vals
    box = (2, 5, 30, 40)
    above = AugmentPlan(0, View(HW, (st.resize(HW, SQ),)),
                        overlay=Overlay("above", 1, (OH, OW), 1, (st.paste((OH, OW), SQ, *box),), 0.4))
    out = render_geometry(above, copy, other, interp="nearest").round()
    assert torch.all(out[:, 2:32, 5:45] == round(0.6 * 200 + 0.4 * 40))
    assert torch.all(out[:, 33:, :] == 200) and torch.all(out[:, :, 46:] == 200)


def _geometry_config():
    return plain_preset(size=S, crop_p=0.9, hflip_p=0.5, vflip_p=0.5, warp_p=0.9, pad_p=0.5, paste_alpha=(1.0, 1.0),
                        overlay_opacity=(0.0, 0.0), group_shuffle=True)


def test_random_chains_match_pixtrace():
    cfg = _geometry_config()
    rng = np.random.default_rng(0)
    seen = set()
    for k in range(80):
        plan = sample_query_plan(rng, cfg, 0, HW, lambda r: (1, (OH, OW)))
        seen.update(s.name for s in plan.view.stages)
        img = render_plan(plan, IMG, OTHER if plan.overlay is not None else None, interp="nearest")
        _assert_geometry(img, traced_view(plan), min_interior=20)
    assert {"resized_crop", "paste", "hflip", "vflip", "perspective", "affine", "pad", "resize"} <= seen


def test_bilinear_has_no_half_pixel_shift():
    # A linear ramp is reproduced exactly by bilinear sampling: the value at a view pixel is the ramp at the
    # point PixTrace maps its centre to. With and without the antialiasing pre-shrink (a 3x down-scale).
    yy, xx = torch.meshgrid(torch.arange(210) + 0.5, torch.arange(270) + 0.5, indexing="ij")
    ramp = torch.stack([xx, yy, xx + yy]).double()
    for stages in ([st.affine((210, 270), st.rotate((210, 270), 17).matrix), st.resize((210, 270), SQ)],
                   [st.resized_crop((210, 270), 30.5, 41.25, 120, 150, SQ), _persp(SQ)]):
        plan = AugmentPlan(0, View((210, 270), stages))
        yx = np.stack(np.meshgrid(np.arange(S) + 0.5, np.arange(S) + 0.5, indexing="xy"), -1).reshape(-1, 2)
        src, valid = plan.view.map_to_source(yx)
        inner = valid & (src[:, 0] > 4) & (src[:, 0] < 266) & (src[:, 1] > 4) & (src[:, 1] < 206)
        for antialias in (False, True):
            out = render_geometry(plan, ramp, interp="bilinear", antialias=antialias).reshape(3, -1).numpy()
            tol = 0.02 if not antialias else 0.3  # the antialias filter is linear-exact up to its float grid
            assert np.abs(out[0][inner] - src[inner, 0]).max() < tol
            assert np.abs(out[1][inner] - src[inner, 1]).max() < tol


def _occluder_config(**kw):
    return plain_preset(size=S, text_p=1.0, emoji_p=1.0, smear_p=1.0, erase_p=1.0, occluder_opacity=0.0, **kw)


@pytest.mark.parametrize("seed", range(6))
def test_occluder_masks_cover_changed_pixels(seed):
    rng = np.random.default_rng(seed)
    photo = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, H, W), dtype=np.uint8))
    plan = sample_query_plan(rng, _occluder_config(), 0, HW)
    kinds = {o.kind for o in plan.occluders}
    assert kinds == {"text", "emoji", "smear", "erase"}
    clean = AugmentPlan(0, plan.view)
    changed = (render_plan(plan, photo) != render_plan(clean, photo)).any(0).numpy()
    mask = occluder_mask(plan)
    assert changed.sum() > 20
    assert not (changed & ~mask).any(), f"{int((changed & ~mask).sum())} changed pixels outside the mask"
    assert traced_view(plan).occluder is not None
    untracked = AugmentPlan(0, plan.view, plan.ops, track_occluders=False)
    assert traced_view(untracked).occluder is None  # the reference behaviour


def test_occluder_threshold_and_opaque_overlay():
    faint = Occluder("text", 5, 5, opacity=0.2, colour=(255, 0, 0), size=20, text="faint")
    strong = Occluder("emoji", 30, 30, opacity=0.9, colour=(255, 255, 0), size=20, seed=2)
    view = View(HW, (st.resize(HW, SQ),))
    plan = AugmentPlan(0, view, (faint, strong), occluder_opacity=0.5)
    m = occluder_mask(plan)
    assert m[30:50, 30:50].any() and not m[:25, :].any()  # only the opaque-enough glyph is an occluder
    box = (4, 6, 30, 40)
    ov = Overlay("above", 1, (OH, OW), 1, (st.paste((OH, OW), SQ, *box),), 0.8)
    above = AugmentPlan(0, view, (), ov, occluder_opacity=0.5)
    photo = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, H, W), dtype=np.uint8))
    changed = (render_plan(above, photo, OTHER) != render_plan(AugmentPlan(0, view), photo)).any(0).numpy()
    mask = occluder_mask(above)
    assert mask.sum() == 30 * 40 and not (changed & ~mask).any()
    weak = AugmentPlan(0, view, (), Overlay("above", 1, (OH, OW), 1, ov.other_stages, 0.3), occluder_opacity=0.5)
    assert occluder_mask(weak) is None


def test_shuffled_pixels_are_occluded():
    cfg = plain_preset(size=S, shuffle_p=1.0)
    plan = sample_query_plan(np.random.default_rng(3), cfg, 0, HW)
    photo = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, H, W), dtype=np.uint8))
    changed = (render_plan(plan, photo) != render_plan(AugmentPlan(0, plan.view), photo)).any(0).numpy()
    mask = occluder_mask(plan)
    assert math.isclose(mask.mean(), 0.1, abs_tol=0.01)
    assert changed.sum() > 0.08 * S * S and not (changed & ~mask).any()


def test_bilinear_fast_path_keeps_a_ramp():
    # uint8 crop / resize / flip views take F.interpolate on the source box: same centre-aligned map.
    from copynce_fast.data.geometry import _axis_aligned_box
    yy, xx = np.mgrid[0:210, 0:240]
    ramp = torch.from_numpy(np.stack([xx, yy, (xx + yy) // 2]).clip(0, 255).astype(np.uint8))
    hw = (210, 240)
    yx = np.stack(np.meshgrid(np.arange(S) + 0.5, np.arange(S) + 0.5, indexing="xy"), -1).reshape(-1, 2)
    for stages in ([st.resized_crop(hw, 20, 11, 150, 180, SQ), st.hflip(SQ)],
                   [st.vflip(hw), st.resized_crop(hw, 7, 9, 190, 222, SQ)], [st.resize(hw, SQ)]):
        plan = AugmentPlan(0, View(hw, stages))
        assert _axis_aligned_box(np.linalg.inv(plan.view.matrix()), SQ, hw) is not None  # the fast path runs
        src, valid = plan.view.map_to_source(yx)
        inner = valid & (src[:, 0] > 6) & (src[:, 0] < 234) & (src[:, 1] > 6) & (src[:, 1] < 204)
        for antialias in (False, True):
            out = render_geometry(plan, ramp, interp="bilinear", antialias=antialias).reshape(3, -1).numpy()
            for c in (0, 1):
                err = np.abs(out[c][inner] - (src[inner, c] - 0.5))  # pixel k holds k at its centre k + 0.5
                assert err.mean() < 0.5 and err.max() < 1.6, (stages[0].name, antialias, err.mean(), err.max())
