"""glyphs.text_mask (a text's coverage assembled from cached glyph bitmaps) against FreeType's whole-string render
(getmask2, as ImageDraw.text calls it): the same bytes, shape and offset for every character alone at every size the
presets draw, every ordered pair of characters at sizes across that range (where glyphs overlap and the overlap
rule shows), thousands of random strings, and render_occluder == render_occluder_pil on the presets' texts."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import ImageFont

from copynce_fast.data import glyphs, occluders
from copynce_fast.data.plan import Occluder
from copynce_fast.data.plan_sampler import TEXT_CHARS, sample_pair, text_font_sizes
from copynce_fast.data.presets import descriptor_preset, matcher_preset

CHARS = "".join(sorted(set(TEXT_CHARS)))
EXTRA = "';\"()[]/\\|_~^%$*+=<>{}`\t\u00e9\u00df\u20ac\u4e2d"  # beyond the presets' alphabet (accents, symbols, CJK)
PRESET_SIZES = (224, 336, 96, 160)


def preset_font_sizes() -> list[int]:
    """Every font size the descriptor and matcher presets draw text at, at the four training sizes."""
    out = set()
    for size in PRESET_SIZES:
        for preset in (descriptor_preset(size=size), matcher_preset(size=size)):
            out.update(text_font_sizes(preset))
    return sorted(out)


FONT_SIZES = preset_font_sizes()


def assert_same_mask(px: int, text: str):
    mask, offset = glyphs.text_mask(px, text)
    ref, ref_offset = glyphs.text_mask_pil(px, text)
    assert offset == ref_offset, (px, text, offset, ref_offset)
    assert mask.dtype == np.uint8 and mask.shape == ref.shape, (px, text, mask.shape, ref.shape)
    assert np.array_equal(mask, ref), (px, text, int((mask != ref).sum()))


def test_sizes_cover_the_presets():
    assert FONT_SIZES[0] == 8 and FONT_SIZES[-1] >= 100  # 0.08 * 96 .. 0.3 * 336
    assert all(glyphs._assemblable(px) for px in FONT_SIZES) == glyphs._RULES_CHECKED


def test_every_character_alone_at_every_size():
    for px in [4, 5, 6, 7] + FONT_SIZES:
        for ch in CHARS + EXTRA:
            assert_same_mask(px, ch)


@pytest.mark.parametrize("px", sorted({4, 6, 7, *FONT_SIZES[::6], FONT_SIZES[-1]}))
def test_every_ordered_pair(px):
    for a in CHARS:
        for b in CHARS:
            assert_same_mask(px, a + b)


def test_random_strings():
    rng = np.random.default_rng(12)
    alphabet = TEXT_CHARS * 3 + EXTRA  # mostly the presets' characters
    for _ in range(3000):
        px = int(rng.choice(FONT_SIZES)) if rng.random() < 0.9 else int(rng.integers(1, 130))
        n = int(rng.integers(1, 26))
        assert_same_mask(px, "".join(alphabet[i] for i in rng.integers(0, len(alphabet), n)))


@pytest.mark.parametrize("text", ["", " ", "   ", "a", "jjjjjjjj", "@@@&&&", "W" * 40, "Tj:f,j"])
def test_edge_strings(text):
    for px in (1, 4, 8, 55, 101, 160):
        assert_same_mask(px, text)


@pytest.mark.skipif(not glyphs._RULES_CHECKED, reason="Pillow version without the assembled path")
@pytest.mark.parametrize("wrong", ["max", "or", "copy", "pen+1"])
def test_a_wrong_rule_is_caught(monkeypatch, wrong):
    """The comparisons are not vacuous: glyphs overlap in these pairs, and a maximum, a bitwise or or a plain copy
    where they do, or a pen one pixel off, gives other bytes than FreeType's."""
    if wrong == "pen+1":
        real = glyphs.glyph.__wrapped__
        monkeypatch.setattr(glyphs, "glyph", lambda px, ch: (lambda g: g and glyphs.Glyph(
            g.ink, g.ink_x + (ch == "j"), g.ink_y, g.x0, g.y0, g.x1, g.y1, g.advance))(real(px, ch)))
    else:
        monkeypatch.setattr(glyphs, "_over", {"max": np.maximum, "or": np.bitwise_or,
                                              "copy": lambda t, s: s}[wrong])
    mismatches = 0
    for a in CHARS:
        for b in "jfT/@&":
            for text in (a + b, b + a):
                mask, offset = glyphs.text_mask(16, text)
                ref, ref_offset = glyphs.text_mask_pil(16, text)
                mismatches += offset != ref_offset or mask.shape != ref.shape or not np.array_equal(mask, ref)
    assert mismatches > 0


@pytest.mark.skipif(not glyphs._RULES_CHECKED, reason="Pillow version without the assembled path")
def test_no_rasterising_once_cached(monkeypatch):
    """Texts of cached characters are assembled without FreeType: getmask2 is never called."""
    for ch in CHARS:
        glyphs.glyph(20, ch)

    def refuse(*args, **kwargs):
        raise AssertionError("getmask2 called")

    monkeypatch.setattr(ImageFont.FreeTypeFont, "getmask2", refuse)
    mask, _ = glyphs.text_mask(20, "Hello, World 42!")
    assert mask.any()


def test_kern_table_sends_to_getmask2():
    def sfnt(*tags):
        head = b"\x00\x01\x00\x00" + struct.pack(">HHHH", len(tags), 0, 0, 0)
        return head + b"".join(t + bytes(12) for t in tags)

    assert not glyphs._has_kern_table(sfnt(b"GPOS", b"cmap", b"glyf"))
    assert glyphs._has_kern_table(sfnt(b"GPOS", b"kern", b"glyf"))
    assert glyphs._has_kern_table(b"ttcf" + bytes(20))  # a collection: not known, so not assumed kern-free
    assert not glyphs._has_kern_table(ImageFont.load_default(size=12).font_bytes)  # the bundled font: no 'kern'


def test_fallback_is_getmask2(monkeypatch):
    monkeypatch.setattr(glyphs, "_assemblable", lambda px: False)
    monkeypatch.setattr(glyphs, "glyph", lambda px, ch: pytest.fail("glyph cache used"))
    assert_same_mask(20, "Fallback?")


def _preset_texts(size: int, pairs: int):
    out = []
    for preset in (descriptor_preset(size=size), matcher_preset(size=size)):
        for k in range(pairs):
            pp = sample_pair(preset, 3, k // 8, k % 8, lambda i: (375, 500), 8)
            for plan in (pp.query, pp.reference):
                out += [(op, plan.out_hw) for op in plan.ops if isinstance(op, Occluder) and op.kind == "text"]
    return out


@pytest.mark.parametrize("size", PRESET_SIZES)
def test_preset_text_occluders_bit_equal(size):
    occs = _preset_texts(size, 120)
    assert len(occs) > 100
    for occ, hw in occs:
        fast = occluders.render_occluder.__wrapped__(occ, hw)
        ref = occluders.render_occluder_pil(occ, hw)
        assert (fast.top, fast.left, fast.out_hw) == (ref.top, ref.left, ref.out_hw), occ
        assert np.array_equal(fast.rgba, ref.rgba), occ


@pytest.mark.parametrize("size", PRESET_SIZES)
def test_text_font_sizes_hold_the_sampled_sizes(size):
    # text_font_sizes (what benchmarks prefill) restates the sampler's rule: every drawn size lies in it, and the
    # range is no wider than the rule (its ends are max(6, round(frac * S)) of the config's fractions).
    sizes = {occ.size for occ, _ in _preset_texts(size, 200)}
    allowed = set(text_font_sizes(descriptor_preset(size=size))) | set(text_font_sizes(matcher_preset(size=size)))
    assert sizes and sizes <= allowed
    lo, hi = descriptor_preset(size=size).text_font_frac
    assert min(text_font_sizes(descriptor_preset(size=size))) == max(6, round(lo * size))
    assert max(text_font_sizes(descriptor_preset(size=size))) == max(6, round(hi * size))
