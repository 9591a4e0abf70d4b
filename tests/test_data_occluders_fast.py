"""render_occluder (PIL's rasterisers without its per-call glue) against render_occluder_pil (plain ImageDraw on an
RGBA canvas): the same bytes, patch, top and left for every occluder kind, on the presets' own draws and on hand-made
edge cases (frame edges, odd texts, tiny and large sizes, wide smears, equal emoji inks, wrapping noise)."""
from __future__ import annotations

import math
import string

import numpy as np
import pytest
from PIL import ImageDraw

from copynce_fast.data import occluders
from copynce_fast.data.plan import Occluder
from copynce_fast.data.plan_sampler import sample_pair
from copynce_fast.data.presets import descriptor_preset, matcher_preset

KINDS = ("text", "emoji", "smear", "erase")


def assert_same_layer(occ, hw):
    fast = occluders.render_occluder.__wrapped__(occ, hw)  # uncached: every call draws
    ref = occluders.render_occluder_pil(occ, hw)
    assert (fast.top, fast.left, fast.out_hw) == (ref.top, ref.left, ref.out_hw), occ
    assert fast.rgba.dtype == np.uint8 and fast.rgba.shape == ref.rgba.shape, occ
    assert np.array_equal(fast.rgba, ref.rgba), (occ, int((fast.rgba != ref.rgba).sum()))
    assert not fast.rgba.flags.writeable  # cached layers are shared


def preset_occluders(preset, pairs: int):
    out = []
    for k in range(pairs):
        pp = sample_pair(preset, 7, k // 8, k % 8, lambda i: (375, 500), 8)
        for plan in (pp.query, pp.reference):
            out += [(op, plan.out_hw) for op in plan.ops if isinstance(op, Occluder)]
    return out


@pytest.mark.parametrize("preset", [descriptor_preset(size=224), matcher_preset(size=160), descriptor_preset(size=96)],
                         ids=["descriptor224", "matcher160", "descriptor96"])
def test_preset_occluders_bit_equal(preset):
    occs = preset_occluders(preset, 500)
    kinds = {o.kind for o, _ in occs}
    assert kinds == set(KINDS)  # every kind met
    for occ, hw in occs:
        assert_same_layer(occ, hw)


def _random_occluder(rng, hw):
    h, w = hw
    kind = KINDS[int(rng.integers(4))]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3)) if rng.random() < 0.9 else (20, 20, 20)
    opacity = float(rng.choice([0.0, 1.0, rng.random(), 0.999, 0.002]))
    top, left = int(rng.integers(-20, h + 5)), int(rng.integers(-40, w + 5))  # frame edges and beyond
    if kind == "text":
        chars = string.ascii_letters + string.digits + "   !?.,:;-#@&'\"()[]/\\|_~^%$*+=<>{}`"
        n = int(rng.integers(1, 25))
        text = "".join(chars[i] for i in rng.integers(0, len(chars), n))
        size = int(rng.choice([4, 5, 6, 7, 9, 13, 24, 40, 67, 120]))
        return Occluder("text", top=top, left=left, opacity=opacity, colour=colour, size=size, text=text)
    if kind == "emoji":
        size = int(rng.integers(1, 140))
        return Occluder("emoji", top=top, left=left, opacity=opacity, colour=colour, size=size,
                        seed=int(rng.integers(0, 100)))
    if kind == "smear":
        k = int(rng.integers(2, 40))
        pts = tuple(zip((rng.random(k) * (w + 60) - 30).tolist(), (rng.random(k) * (h + 60) - 30).tolist()))
        return Occluder("smear", top=top, left=left, opacity=opacity, colour=colour,
                        size=int(rng.integers(0, 13)), points=pts)
    return Occluder("erase", top=top, left=left, size=int(rng.integers(0, h + 3)), width=int(rng.integers(0, w + 3)),
                    seed=int(rng.integers(0, 2**31)), opacity=opacity)


def test_random_occluders_bit_equal():
    rng = np.random.default_rng(2026)
    for _ in range(1500):
        hw = (int(rng.integers(16, 300)), int(rng.integers(16, 300)))
        assert_same_layer(_random_occluder(rng, hw), hw)


@pytest.mark.parametrize("occ", [
    Occluder("text", top=0, left=0, colour=(1, 2, 3), size=6, text="   "),  # spaces only: an empty mask
    Occluder("text", top=5, left=5, size=30, text="a\nb"),  # several lines: the PIL path
    Occluder("text", top=-3, left=-7, size=40, text="jgy|(Q", opacity=0.5),  # clipped top-left
    Occluder("text", top=90, left=90, size=40, text="Wq", opacity=0.37),  # clipped bottom-right
    Occluder("text", top=10, left=0, size=12, text=""),
    Occluder("emoji", top=-10, left=-10, size=50, colour=(20, 20, 20), seed=0),  # outline skipped (equal inks)
    Occluder("emoji", top=80, left=80, size=50, colour=(20, 20, 20), seed=2, opacity=0.7),
    Occluder("smear", top=0, left=0, size=12, colour=(9, 8, 7), points=((1, 1), (90, 5), (3, 90), (95, 95), (50, 0))),
    Occluder("smear", top=0, left=0, size=5, points=((10.0, 10.0), (20.0, 20.0), (30.0, 30.0))),  # straight joints
    Occluder("smear", top=0, left=0, size=6, points=((10.0, 50.0), (60.0, 50.0), (30.0, 50.0))),  # turns back
    Occluder("smear", top=0, left=0, size=11, points=((50.0, 10.0), (50.0, 60.0), (50.0, 30.0), (50.0, 90.0))),
    Occluder("erase", top=0, left=0, size=100, width=100, seed=511),  # noise wraps on both axes
    Occluder("erase", top=-5, left=-5, size=30, width=30, seed=7),  # starts outside: the pixelwise path
    Occluder("erase", top=99, left=99, size=30, width=30, seed=512 * 512 - 1),
])
def test_edge_cases_bit_equal(occ):
    assert_same_layer(occ, (100, 100))


def test_fast_path_taken():
    """The comparison is not vacuous: on a checked Pillow, text skips ImageDraw.text and smears skip its line."""
    if not occluders._FAST_DRAW:
        pytest.skip("Pillow version without the fast path (render_occluder is render_occluder_pil)")

    def refuse(*args, **kwargs):
        raise AssertionError("PIL glue called")

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(ImageDraw.ImageDraw, "text", refuse)
        mp.setattr(ImageDraw.ImageDraw, "line", refuse)
        mp.setattr(ImageDraw.ImageDraw, "pieslice", refuse)
        occluders.render_occluder.__wrapped__(Occluder("text", top=3, left=3, size=20, text="Hi!"), (64, 64))
        occluders.render_occluder.__wrapped__(
            Occluder("smear", top=0, left=0, size=5, points=((1, 1), (60, 3), (2, 60))), (64, 64))
    finally:
        mp.undo()


def test_render_occluder_cached():
    occ = Occluder("text", top=3, left=3, size=20, text="cache")
    assert occluders.render_occluder(occ, (64, 64)) is occluders.render_occluder(occ, (64, 64))


def test_bezier_is_the_bernstein_form():
    """bezier (its basis cached by size) against the Bernstein sum written out point by point."""
    rng = np.random.default_rng(3)
    for k in (2, 3, 7, 30, 50):
        pts = rng.random((k, 2)) * 200
        for num in (0, 5):
            got = occluders.bezier(pts, num)
            n, m = k - 1, num or max(32, 4 * k)
            want = np.array([[sum(math.comb(n, i) * t ** i * (1 - t) ** (n - i) * pts[i, d] for i in range(k))
                              for d in range(2)] for t in np.linspace(0.0, 1.0, m)])
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
            assert np.array_equal(got, occluders.bezier(pts.tolist(), num))  # the cached basis gives the same bits
    with pytest.raises(ValueError, match="points"):
        occluders.bezier([(1.0, 2.0)])
