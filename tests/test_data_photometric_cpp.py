"""The C++ photometric ops (csrc/photometric.h) against the torch reference (apply_photo_op_torch, composite_torch):
edge and composite bit for bit, colour ops, blur and pixelize within one grey level on a tiny fraction of pixels; the
uint8 short cuts of the torch path (pixelize's gather, jpeg's planes) against the plain formulas they replace."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from copynce_fast import _cpp
from copynce_fast.data import occluders, photometric
from copynce_fast.data.executor_torch import render_plan
from copynce_fast.data.occluders import Layer, composite_torch
from copynce_fast.data.photometric import apply_colour_ops, apply_photo_op, apply_photo_op_torch
from copynce_fast.data.plan import PhotoOp
from copynce_fast.data.synthetic import synthetic_images

needs_cpp = pytest.mark.skipif(not _cpp.HAS_PHOTOMETRIC, reason="copynce_fast._C built without the photometric ops")
MAX_FRACTION = 1e-3  # of pixels allowed one grey level off where the float order differs (seen: < 2e-5)


def images(n=3, hw=(61, 83), seed=0):
    """Natural-looking test images [3, H, W] uint8 (smooth gradients, edges, texture); noise below 8 pixels."""
    if min(hw) < 8:
        g = torch.Generator().manual_seed(seed)
        return [torch.randint(0, 256, (3, *hw), dtype=torch.uint8, generator=g) for _ in range(n)]
    return [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in synthetic_images(n, hw, seed)]


def assert_within_a_grey_level(got, ref):
    assert got.dtype == ref.dtype == torch.uint8 and got.shape == ref.shape
    d = (got.int() - ref.int()).abs()
    assert int(d.max()) <= 1
    assert float((d > 0).float().mean()) <= MAX_FRACTION


def jitter(rng):
    return PhotoOp("jitter", (float(rng.uniform(0.2, 1.8)), float(rng.uniform(0.2, 1.8)),
                              float(rng.uniform(0.2, 1.8)), float(rng.uniform(-0.2, 0.2)),
                              *map(float, rng.permutation(4))))


@needs_cpp
def test_colour_ops_match_torch_op_by_op():
    rng = np.random.default_rng(0)
    others = [PhotoOp("grayscale"), PhotoOp("sepia"), PhotoOp("invert"), PhotoOp("channel_shuffle", (2.0, 0.0, 1.0)),
              PhotoOp("rgb_shift", (12.5, -7.0, 19.0))]
    for k in range(30):
        x = images(1, seed=k)[0]
        ops = [jitter(rng)] + [others[k % 5]] + ([jitter(rng)] if k % 3 == 0 else [])
        ref = x
        for op in ops:
            ref = apply_photo_op_torch(ref, op)
        got = apply_colour_ops(x, ops)
        assert_within_a_grey_level(got, ref)
        assert not torch.equal(got, x)
        # a run in one pass is the ops one at a time: each is still rounded and clamped on its own
        seq = x
        for op in ops:
            seq = apply_photo_op(seq, op)
        assert torch.equal(got, seq)


@needs_cpp
def test_integer_colour_ops_are_exact():
    x = images(1)[0]
    assert torch.equal(apply_photo_op(x, PhotoOp("invert")), 255 - x)
    assert torch.equal(apply_photo_op(x, PhotoOp("channel_shuffle", (1.0, 2.0, 0.0))), x[[1, 2, 0]])
    shifted = (x.int() + torch.tensor([30, -40, 0]).view(3, 1, 1)).clamp(0, 255).to(torch.uint8)
    assert torch.equal(apply_photo_op(x, PhotoOp("rgb_shift", (30.0, -40.0, 0.0))), shifted)


@needs_cpp
@pytest.mark.parametrize("sigma,hw", [(0.2, (61, 83)), (1.3, (61, 83)), (4.0, (61, 83)), (2.0, (5, 40)),
                                      (0.5, (1, 7))])  # 5, 1 rows < radius: replicate border on that axis
def test_blur_matches_torch(sigma, hw):
    noise = torch.randint(0, 256, (3, *hw), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for x in images(2, hw, seed=1) + [noise]:
        op = PhotoOp("blur", (sigma,))
        got = apply_photo_op(x, op)
        assert_within_a_grey_level(got, apply_photo_op_torch(x, op))
    if sigma >= 0.5:  # sigma 0.2 leaves 4e-6 to the neighbours: the identity after rounding
        assert not torch.equal(got, noise)


@needs_cpp
@pytest.mark.parametrize("hw", [(224, 224), (61, 83), (3, 50)])
def test_pixelize_matches_torch(hw):
    noise = torch.randint(0, 256, (3, *hw), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    got, ref = [], []
    for x in images(2, hw, seed=3) + [noise]:
        for r in np.linspace(0.01, 1.0, 17):
            op = PhotoOp("pixelize", (float(r),))
            got.append(apply_photo_op(x, op).flatten())
            ref.append(apply_photo_op_torch(x, op).flatten())
    # over all ratios: the up-scale repeats a small image's pixel (and its rare float tie) 1 / ratio^2 times
    assert_within_a_grey_level(torch.cat(got), torch.cat(ref))
    h, w = hw
    small = torch.from_numpy(_cpp.photometric.resize_antialias(noise.numpy(), max(1, h // 3), w // 3))
    ref = F.interpolate(noise[None].float(), size=tuple(small.shape[1:]), mode="bilinear", antialias=True,
                        align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    assert_within_a_grey_level(small, ref)


@needs_cpp
@pytest.mark.parametrize("hw", [(61, 83), (1, 9), (2, 2), (9, 1)])
def test_edge_is_bit_equal(hw):
    for more in (0.0, 1.0):
        for x in images(2, hw, seed=2) + [torch.randint(0, 256, (3, *hw), dtype=torch.uint8)]:
            op = PhotoOp("edge", (more,))
            assert torch.equal(apply_photo_op(x, op), apply_photo_op_torch(x, op))


@needs_cpp
def test_composite_is_bit_equal_for_every_pixel_colour_and_alpha():
    # img row r has grey r; layer column c has colour (c, 255 - c, c // 2): every (x, c, alpha) of channel 0
    v = torch.arange(256, dtype=torch.uint8)
    img = v.view(1, 256, 1).expand(3, 256, 256).contiguous()
    colour = np.stack([np.arange(256), 255 - np.arange(256), np.arange(256) // 2], -1).astype(np.uint8)
    for a in range(256):
        rgba = np.empty((256, 256, 4), np.uint8)
        rgba[..., :3] = colour[None]
        rgba[..., 3] = a
        layer = Layer(rgba, 0, 0, (256, 256))
        assert torch.equal(occluders.composite(img, layer), composite_torch(img, layer)), a


@needs_cpp
def test_composite_touches_only_the_patch():
    x = images(1)[0]
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (7, 11, 4), dtype=np.uint8)
    layer = Layer(rgba, 50, 60, tuple(x.shape[1:]))
    got = occluders.composite(x, layer)
    assert torch.equal(got, composite_torch(x, layer))
    outside = torch.ones_like(x, dtype=torch.bool)
    outside[:, 50:57, 60:71] = False
    assert torch.equal(got[outside], x[outside]) and not torch.equal(got, x)


@needs_cpp
def test_bad_arguments_raise():
    x = images(1)[0].numpy()
    with pytest.raises(ValueError, match="maps"):
        _cpp.photometric.colour_ops(x, np.full((1, 3, 4), 1e6, np.float32))
    with pytest.raises(ValueError, match="maps"):
        _cpp.photometric.colour_ops(x, np.full((1, 3, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="top, left"):
        _cpp.photometric.composite_rgba(x.copy(), np.zeros((5, 5, 4), np.uint8), 59, 0)
    with pytest.raises(ValueError, match="out_h"):
        _cpp.photometric.resize_antialias(x, x.shape[1] + 1, 5)
    with pytest.raises(TypeError):  # no silent conversion
        _cpp.photometric.edge_enhance(x.astype(np.float32), True)


@pytest.mark.parametrize("hw", [(224, 224), (61, 83)])
def test_pixelize_gather_equals_interpolate(hw):
    x = images(1, hw, seed=4)[0]
    h, w = hw
    for r in np.linspace(0.01, 1.0, 23):
        sh, sw = max(1, round(h * r)), max(1, round(w * r))
        small = F.interpolate(x[None].float(), size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
        ref = F.interpolate(small.round().clamp(0, 255), size=(h, w), mode="nearest-exact")[0].to(torch.uint8)
        assert torch.equal(apply_photo_op_torch(x, PhotoOp("pixelize", (float(r),))), ref), r


def test_jpeg_planes_equal_the_interleaved_round_trip():
    for x in images(2, seed=5):
        for q in (10, 50):
            buf = io.BytesIO()
            Image.fromarray(x.permute(1, 2, 0).contiguous().numpy()).save(buf, "JPEG", quality=q)
            ref = torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1)
            assert torch.equal(apply_photo_op_torch(x, PhotoOp("jpeg", (float(q),))), ref)


def test_render_plan_with_and_without_the_extension(monkeypatch):
    from copynce_fast.data.plan_sampler import sample_pair
    from copynce_fast.data.presets import descriptor_preset
    cfg = descriptor_preset(size=64, positive_rate=1.0, pixelize_p=0.4, jpeg_p=0.4, grayscale_p=0.5, blur_p=0.5,
                            text_p=0.8, emoji_p=0.5, edge_p=0.5, smear_p=0.5, additional_p=1.0, erase_p=0.5)
    src = images(1, (61, 83), seed=6)[0]
    plans = [p for k in range(10) for p in (lambda pp: (pp.query, pp.reference))(
        sample_pair(cfg, 0, 0, k, lambda i: (61, 83), 4))]
    kinds = {op.kind for p in plans for op in p.ops}
    assert {"jitter", "blur", "edge", "text"} <= kinds, kinds  # the test covers the C++ ops

    def render(p):
        return render_plan(p, src, src if p.overlay is not None else None)

    fast = [render(p) for p in plans]
    assert all(torch.equal(a, render(p)) for a, p in zip(fast, plans))  # same plan => same pixels
    monkeypatch.setattr(photometric, "_CPP", None)
    monkeypatch.setattr(occluders, "_CPP", None)
    for a, p in zip(fast, plans):
        assert_within_a_grey_level(a, render(p))


def test_erase_layer_is_the_noise_tile_at_its_offset():
    from copynce_fast.data.occluders import _NOISE, render_occluder
    from copynce_fast.data.plan import Occluder
    rng = np.random.default_rng(7)
    for _ in range(20):
        bh, bw = (int(v) for v in rng.integers(1, 80, 2))
        top, left = int(rng.integers(0, 64)), int(rng.integers(0, 64))
        seed = int(rng.integers(2**31)) if _ % 4 else 511 * 512 + 500  # an offset whose box wraps on both axes
        lay = render_occluder(Occluder("erase", top=top, left=left, size=bh, width=bw, seed=seed), (96, 96))
        oy, ox = divmod(seed % (512 * 512), 512)
        h, w = min(bh, 96 - top), min(bw, 96 - left)
        want = _NOISE[np.ix_((oy + np.arange(h)) % 512, (ox + np.arange(w)) % 512)]
        assert (lay.top, lay.left, lay.rgba.shape) == (top, left, (h, w, 4))
        assert np.array_equal(lay.rgba[..., :3], want) and (lay.rgba[..., 3] == 255).all()
