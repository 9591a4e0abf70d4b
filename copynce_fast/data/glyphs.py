"""A text's FreeType coverage mask assembled from per-character glyph bitmaps cached in the process.

``text_mask(px, text)`` returns what ``default_font(px).getmask2(text, "L", ..., anchor="la")`` returns (the coverage
[h, w] uint8 and its offset from the anchor), bit for bit, without rasterising every glyph again on every call.
The rules are Pillow 13's ``font_render`` with its basic layout (``_imagingft.c``), restated:

- layout: each character's glyph advances the pen by its hinted advance (26.6 fixed point); kerning only when the
  font has a 'kern' table (then: not reproduced here, the string goes to getmask2);
- size: the box holds every glyph's pixel box at its pen position and the pen line from 0 to the end of the text,
  and the baseline row; offset = (box left, ascender - box top), the "la" anchor;
- drawing: each glyph's bitmap is placed at its pen position in the box, and where a glyph's coverage s > 0 meets
  earlier coverage t the pixel becomes min(255, s + MULDIV255(t, 255 - s)) (coverage "over" coverage).

With whole-pixel advances (this font's hinted advances, checked per glyph), a glyph drawn alone is the same bitmap
shifted by whole pixels, so ``getmask2(ch)`` with its offset gives each glyph's bitmap and pixel box, and the
string's box is the union of the glyphs' boxes (each holds its pen line and the baseline). Anything outside those
conditions (another Pillow, a font with a 'kern' table or raqm layout, fractional or negative advances, an empty
text) is answered by getmask2 itself. tests/test_data_glyphs.py checks the equality on every character, every
ordered pair and thousands of strings at every size the presets draw.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFont

from copynce_fast.utils.fonts import default_font
from copynce_fast.utils.pillow import PILLOW_MAJOR, RULES_READ_FROM

__all__ = ["Glyph", "glyph", "prefill", "text_mask", "text_mask_pil"]

# The layout and overlap rules above are read from Pillow 13's C source; other versions take getmask2's answer.
_RULES_CHECKED = PILLOW_MAJOR == RULES_READ_FROM


@dataclass(frozen=True)
class Glyph:
    """One character at one size as getmask2 draws it alone.

    ink: [h, w] uint8 read-only, the nonzero part of its coverage (None when it draws nothing, e.g. a space);
    ink_x, ink_y: ink's corner relative to (pen, anchor top); x0, y0, x1, y1: its pixel box (pen line and baseline
    included) relative to the same point; advance: the pen's step in whole pixels.
    """

    ink: np.ndarray | None
    ink_x: int
    ink_y: int
    x0: int
    y0: int
    x1: int
    y1: int
    advance: int


def text_mask_pil(px: int, text: str) -> tuple[np.ndarray, tuple[int, int]]:
    """getmask2 as ImageDraw.text calls it for an "L" mask (no stroke, "la" anchor, start (0, 0)): the reference.
    Returns (coverage [h, w] uint8, (x, y) offset of its corner from the anchor)."""
    core, offset = default_font(px).getmask2(text, "L", None, None, None, 0, "la", 0, (0.0, 0.0),
                                             stroke_filled=True)
    return np.asarray(Image.Image()._new(core)), offset


def _has_kern_table(font_bytes: bytes) -> bool:
    """True when the sfnt has a 'kern' table (FreeType's FT_HAS_KERNING, which the basic layout obeys), or when the
    file is not a plain sfnt (a collection, say): then the answer is not known and the caller must not assume none."""
    if len(font_bytes) < 12 or font_bytes[:4] not in (b"\x00\x01\x00\x00", b"true", b"OTTO"):
        return True
    count = struct.unpack(">H", font_bytes[4:6])[0]
    return any(font_bytes[12 + 16 * i:16 + 16 * i] == b"kern" for i in range(count))


@lru_cache(maxsize=256)  # one per font size
def _assemblable(px: int) -> bool:
    """Whether default_font(px) is laid out by the rules this module reproduces."""
    font = default_font(px)
    return (_RULES_CHECKED and isinstance(font, ImageFont.FreeTypeFont)
            and font.layout_engine == ImageFont.Layout.BASIC and not _has_kern_table(font.font_bytes))


@lru_cache(maxsize=8192)  # ~70 characters x ~100 sizes; a few hundred bytes each
def glyph(px: int, ch: str) -> Glyph | None:
    """The Glyph of character ``ch`` at default_font(px), or None when its advance is not a whole, non-negative
    number of pixels (the string must then be drawn by getmask2)."""
    advance64 = default_font(px).getlength(ch) * 64  # getlength is the 26.6 sum / 64: exact
    if advance64 < 0 or advance64 % 64:
        return None
    mask, (ox, oy) = text_mask_pil(px, ch)
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    ink = None
    ink_x, ink_y = ox, oy
    if len(rows):
        ink = np.ascontiguousarray(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
        ink.setflags(write=False)
        ink_x, ink_y = ox + int(cols[0]), oy + int(rows[0])
    return Glyph(ink, ink_x, ink_y, ox, oy, ox + w, oy + h, int(advance64) // 64)


def prefill(sizes, chars: str) -> int:
    """Draw every glyph of ``chars`` at each of ``sizes`` into the cache: what a long-lived loader worker holds after
    its first few thousand texts (~86 us a glyph, once). Benchmarks call it to time the steady state. Returns how
    many glyphs the cache holds for them."""
    return sum(glyph(int(px), ch) is not None for px in sizes for ch in chars)


def _over(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Coverage s drawn over coverage t as font_render does it (uint8 in, uint8 out, same shape): where s > 0,
    t > 0 ? CLIP8(s + MULDIV255(t, 255 - s)) : s; the one expression is exact for s = 0 (t) and t = 0 (s) too."""
    s16, tmp = s.astype(np.int32), t.astype(np.int32) * (255 - s.astype(np.int32)) + 128
    return np.minimum(s16 + (((tmp >> 8) + tmp) >> 8), 255).astype(np.uint8)


def text_mask(px: int, text: str) -> tuple[np.ndarray, tuple[int, int]]:
    """``text_mask_pil(px, text)`` from cached glyphs: (coverage [h, w] uint8, (x, y) offset from the anchor), the
    same bytes, shape and offset; getmask2's own answer where the rules above do not hold."""
    if not text or not _assemblable(px):
        return text_mask_pil(px, text)
    glyphs = []
    for ch in text:
        g = glyph(px, ch)
        if g is None:
            return text_mask_pil(px, text)
        glyphs.append(g)
    # The box: the union of the glyphs' boxes at their pen positions (pen positions are whole pixels).
    pen = 0
    x0 = y0 = 1 << 30
    x1 = y1 = -(1 << 30)
    for g in glyphs:
        x0, x1 = min(x0, pen + g.x0), max(x1, pen + g.x1)
        y0, y1 = min(y0, g.y0), max(y1, g.y1)
        pen += g.advance
    out = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pen = -x0
    inked_to = 0  # every column at or right of this is still blank: a glyph starting there is copied, not blended
    for g in glyphs:
        if g.ink is not None:
            c, r = pen + g.ink_x, g.ink_y - y0
            h, w = g.ink.shape
            if c >= inked_to:
                out[r:r + h, c:c + w] = g.ink
            else:
                region = out[r:r + h, c:c + w]
                region[...] = _over(region, g.ink)
            inked_to = max(inked_to, c + w)
        pen += g.advance
    return out, (x0, y0)
