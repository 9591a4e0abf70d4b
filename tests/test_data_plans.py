"""Plans and presets: the reference's probabilities and ranges, determinism, pair kinds, photometric maths."""
import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from copynce_fast.data.executor_torch import render_plan
from copynce_fast.data.photometric import apply_photo_op, colour_matrix, compose_colour
from copynce_fast.data.plan import AugmentPlan, PhotoOp
from copynce_fast.data.presets import AugmentConfig, descriptor_preset, matcher_preset, plain_preset
from copynce_fast.data.plan_sampler import derive_seed, sample_pair, sample_query_plan
from copynce_fast.pixtrace import map_pixels, pack_pairs

HW = (300, 400)


def test_presets_follow_the_reference():
    d, m = descriptor_preset(), matcher_preset()
    # (field, descriptor, matcher) from REFERENCE.md §2; text is the effective probability 1 - p.
    table = [("crop_p", 0.3, 0.5), ("rrc_scale", (0.25, 0.5), (0.15, 0.5)), ("paste_scale", (0.25, 0.5), (0.15, 0.5)),
             ("overlay_scale", (0.3, 0.7), (0.5, 0.8)), ("warp_p", 0.25, 0.35), ("jitter_brightness", 0.5, 0.8),
             ("jitter_hue", 0.1, 0.2), ("pixelize_p", 0.15, 0.25), ("shuffle_p", 0.15, 0.25), ("jpeg_p", 0.25, 0.35),
             ("grayscale_p", 0.25, 0.25), ("blur_p", 0.2, 0.25), ("text_p", 0.75, 0.65), ("emoji_p", 0.25, 0.35),
             ("edge_p", 0.25, 0.3), ("smear_p", 0.25, 0.3), ("additional_p", 0.15, 0.15), ("pad_p", 0.15, 0.25),
             ("erase_p", 0.15, 0.25), ("hflip_p", 0.5, 0.5), ("vflip_p", 0.1, 0.1), ("positive_rate", 1.0, 0.3)]
    for name, dv, mv in table:
        assert getattr(d, name) == dv and getattr(m, name) == mv, name
    assert d.paste_alpha == (0.5, 1.0) and d.overlay_opacity == (0.0, 0.5) and d.jpeg_qualities == (10, 20, 30, 50)
    assert d.ratio == (0.33, 3.0) and d.snap_tolerance == 22.5 and d.shear_range == (-45.0, 45.0)
    assert d.track_occluders and d.group_shuffle


@pytest.mark.parametrize("kw, field", [({"crop_p": 1.5}, "crop_p"), ({"rrc_scale": (0.6, 0.2)}, "rrc_scale"),
                                       ({"crop_choices": ("zoom",)}, "crop_choices"), ({"size": 4}, "size"),
                                       ({"pair_mode": "pairs"}, "pair_mode"),
                                       ({"jpeg_qualities": (0,)}, "jpeg_qualities")])
def test_config_rejects_bad_values(kw, field):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**kw)


def _plans(cfg, n, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_query_plan(rng, cfg, 0, HW, lambda r: (1, (200, 250))) for _ in range(n)]


def _freq_ok(hits, n, p):
    sigma = math.sqrt(p * (1 - p) / n)
    return abs(hits / n - p) <= 4.5 * sigma + 1e-9


@pytest.mark.parametrize("preset", [descriptor_preset, matcher_preset])
def test_sampled_frequencies_match_the_config(preset):
    cfg = preset(size=64)
    n = 2500
    plans = _plans(cfg, n)
    kinds = [Counter(o.kind for o in p.ops) for p in plans]
    names = [[s.name for s in p.view.stages] for p in plans]
    crop = sum(1 for p, s in zip(plans, names) if p.overlay is not None or "resized_crop" in s or "paste" in s)
    checks = {
        "crop": (crop, cfg.crop_p),
        "text": (sum(k["text"] for k in kinds), cfg.text_p),
        "emoji": (sum(k["emoji"] for k in kinds), cfg.emoji_p),
        "jpeg": (sum(k["jpeg"] for k in kinds), cfg.jpeg_p),
        "grayscale": (sum(k["grayscale"] for k in kinds), cfg.grayscale_p),
        "erase": (sum(k["erase"] for k in kinds), cfg.erase_p),
        "hflip": (sum("hflip" in s for s in names), cfg.hflip_p),
        "warp": (sum(("perspective" in s) or ("affine" in s) for s in names), cfg.warp_p),
        "pad": (sum("pad" in s for s in names), cfg.pad_p),
        "additional": (sum(any(k[a] for a in cfg.additional_choices) for k in kinds), cfg.additional_p),
    }
    for name, (hits, p) in checks.items():
        assert _freq_ok(hits, n, p), (name, hits / n, p)
    modes = Counter(p.overlay.mode for p in plans if p.overlay is not None)
    assert _freq_ok(modes["beneath"], n, cfg.crop_p / 3) and _freq_ok(modes["above"], n, cfg.crop_p / 3)
    orders = Counter(p.group_order for p in plans)
    assert len(orders) == 24 and min(orders.values()) > n / 24 / 2
    assert all(p.out_hw == (64, 64) for p in plans)


def test_rotation_snaps_to_right_angles():
    cfg = plain_preset(size=64, warp_p=1.0)
    angles = []
    for p in _plans(cfg, 1500):
        for s in p.view.stages:
            if s.name == "affine":  # R(angle) @ Sh_x: the first column is the rotated x axis
                angles.append(math.degrees(math.atan2(-s.matrix[1, 0], s.matrix[0, 0])) % 360)
    angles = np.array(angles)
    right = np.isclose(angles % 90, 0, atol=1e-9) | np.isclose(angles % 90, 90, atol=1e-9)
    assert len(angles) > 500 and _freq_ok(right.sum(), len(angles), 0.5)


def test_same_key_same_plan_same_pixels():
    cfg = matcher_preset(size=64, positive_rate=1.0, jpeg_p=1.0, shuffle_p=1.0, additional_p=1.0,
                         additional_choices=("noise",))
    hw_of = lambda i: (120 + 10 * i, 160)  # noqa: E731
    a = sample_pair(cfg, 7, 3, 5, hw_of, 10)
    b = sample_pair(cfg, 7, 3, 5, hw_of, 10)
    c = sample_pair(cfg, 7, 4, 5, hw_of, 10)
    assert a.query.ops == b.query.ops and a.query.ops != c.query.ops
    assert all(np.array_equal(x.matrix, y.matrix) for x, y in zip(a.query.view.stages, b.query.view.stages))
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 256, (3, *hw_of(5)), dtype=np.uint8))
    plan = replace(a.query, overlay=None) if a.query.overlay is None else a.query
    other = torch.from_numpy(rng.integers(0, 256, (3, *hw_of(plan.overlay.index)), dtype=np.uint8)) \
        if plan.overlay is not None else None
    assert torch.equal(render_plan(plan, img, other), render_plan(b.query, img, other))
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) != derive_seed(1, 3, 2)


def test_negative_pairs_have_no_correspondence():
    cfg = matcher_preset(size=48, positive_rate=0.0)
    hw_of = lambda i: (100, 120 + i)  # noqa: E731
    pairs = [sample_pair(cfg, 0, 0, i, hw_of, 6) for i in range(6)]
    assert not any(p.is_copy or p.copynce for p in pairs)
    assert all(p.query.source_index != p.reference.source_index for p in pairs)
    qr, rq = pack_pairs(*zip(*[p.traced_views() for p in pairs]))
    assert not map_pixels(qr)[2].any() and not map_pixels(rq)[2].any()
    assert sample_pair(replace(cfg, copynce_on_negatives=True), 0, 0, 1, hw_of, 6).copynce  # the reference quirk
    pos = [sample_pair(matcher_preset(size=48), 0, 0, i, hw_of, 6).is_copy for i in range(400)]
    assert _freq_ok(sum(pos), 400, 0.3)


def test_explicit_query_index_and_copy_copy():
    cfg = descriptor_preset(size=48, pair_mode="copy_copy")
    hw_of = lambda i: (90, 110)  # noqa: E731
    neg = sample_pair(cfg, 0, 0, 2, hw_of, 5, query_index=4)
    assert not neg.is_copy and neg.query.source_index == 4
    pair = sample_pair(cfg, 0, 0, 2, hw_of, 5, query_index=2)
    assert pair.is_copy and len(pair.reference.view.stages) >= 1 and pair.reference.ops  # a second edited copy
    # q -> r -> q comes back to the same pixel (within one) wherever both directions are valid.
    qv, rv = pair.traced_views()
    qr, rq = pack_pairs([qv], [rv], dtype=torch.float64)
    row, col, ok = map_pixels(qr)
    back_r, back_c, ok2 = map_pixels(rq)
    ys, xs = torch.nonzero(ok[0], as_tuple=True)
    rr, cc = row[0, ys, xs], col[0, ys, xs]
    good = ok2[0, rr, cc]
    if good.sum() > 20:
        assert (back_r[0, rr, cc][good] - ys[good]).abs().max() <= 1
        assert (back_c[0, rr, cc][good] - xs[good]).abs().max() <= 1


def test_colour_matrices():
    x = torch.from_numpy(np.random.default_rng(0).integers(40, 216, (3, 8, 8), dtype=np.uint8))
    grey = apply_photo_op(x, PhotoOp("grayscale"))
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert torch.equal(apply_photo_op(x, PhotoOp("invert")), 255 - x)
    ident = PhotoOp("jitter", (1.0, 1.0, 1.0, 0.0, 3, 1, 0, 2))
    np.testing.assert_allclose(colour_matrix(ident), np.hstack([np.eye(3), np.zeros((3, 1))]), atol=1e-12)
    assert torch.equal(apply_photo_op(x, PhotoOp("channel_shuffle", (2, 0, 1))), x[[2, 0, 1]])
    # Composition equals sequential application (no clamping happens for these mild ops).
    ops = [PhotoOp("jitter", (1.1, 0.9, 0.8, 0.05, 0, 1, 2, 3)), PhotoOp("rgb_shift", (3.0, -2.0, 1.0))]
    seq = x
    for op in ops:
        seq = apply_photo_op(seq, op)
    m = torch.from_numpy(compose_colour(ops)).float()
    once = (torch.einsum("ij,jhw->ihw", m[:, :3], x.float()) + m[:, 3].view(3, 1, 1)).round()
    assert (once - seq.float()).abs().max() <= 1
    order_a = colour_matrix(PhotoOp("jitter", (1.5, 0.5, 1.0, 0.0, 0, 1, 2, 3)))
    order_b = colour_matrix(PhotoOp("jitter", (1.5, 0.5, 1.0, 0.0, 1, 0, 2, 3)))
    assert not np.allclose(order_a, order_b)  # the drawn order of brightness / contrast matters


@pytest.mark.parametrize("more", [False, True])
def test_edge_enhance_matches_pil(more):
    arr = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(arr).filter(ImageFilter.EDGE_ENHANCE_MORE if more else ImageFilter.EDGE_ENHANCE))
    got = apply_photo_op(torch.from_numpy(arr).permute(2, 0, 1), PhotoOp("edge", (float(more),)))
    diff = np.abs(got.permute(1, 2, 0).numpy().astype(int) - want.astype(int))[1:-1, 1:-1]
    assert diff.max() <= 1


def test_nonlinear_ops_are_seeded_and_shaped():
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, 32, 40), dtype=np.uint8))
    for op in [PhotoOp("pixelize", (0.25,)), PhotoOp("shuffle", (0.1,), seed=3), PhotoOp("jpeg", (10.0,)),
               PhotoOp("blur", (1.5,)), PhotoOp("noise", (5.0,), seed=4)]:
        y = apply_photo_op(x, op)
        assert y.shape == x.shape and y.dtype == torch.uint8
        assert torch.equal(y, apply_photo_op(x, op)) and not torch.equal(y, x), op.kind
    px = apply_photo_op(x, PhotoOp("pixelize", (0.25,)))
    assert len(torch.unique(px[0].reshape(-1))) <= 8 * 10  # at most one value per 4x4 block
    sh = apply_photo_op(x, PhotoOp("shuffle", (0.1,), seed=3))
    assert torch.equal(torch.sort(sh.reshape(3, -1), dim=1)[0], torch.sort(x.reshape(3, -1), dim=1)[0])
    moved = (sh != x).any(0).float().mean().item()
    assert 0.05 < moved <= 0.1 + 1e-6


def test_plan_validation():
    from copynce_fast.data.plan import Occluder, Overlay
    from copynce_fast.pixtrace import View
    from copynce_fast.pixtrace import stages as st
    with pytest.raises(ValueError, match="kind"):
        PhotoOp("sharpen")
    with pytest.raises(ValueError, match="opacity"):
        Occluder("text", 0, 0, opacity=1.5)
    v = View((10, 10), (st.resize((10, 10), (8, 8)),))
    with pytest.raises(ValueError, match="overlay"):
        AugmentPlan(0, v, overlay=Overlay("beneath", 1, (5, 5), 1, (st.resize((5, 5), (8, 8)),), 1.0))
