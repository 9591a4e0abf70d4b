"""Occluders drawn over a view in its final frame: text, emoji-like glyphs, smears, erasing.

Each occluder renders to an RGBA layer [H, W, 4] uint8 (straight alpha) with PIL -- no network, no font files
beyond PIL's bundled default font, glyphs drawn procedurally. ``render_occluder_pil`` draws it the plain way
(ImageDraw on an RGBA canvas: the reference); ``render_occluder`` gives the same bytes with less of PIL's per-call
glue (on the Pillow versions checked, ``_FAST_DRAW``): text is FreeType's coverage mask, assembled from cached glyph
bitmaps (data.glyphs), coloured in numpy, smears draw their joints with PIL's core calls directly, erasing copies
whole slices of its noise tile. The same layer is composited by every executor, and its alpha gives the occluder's
mask: every pixel it touches (alpha > 0), so a pixel the occluder changed is always in the mask
(data.occluder_mask).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from copynce_fast import _cpp
from copynce_fast.data.batch import IMAGENET_MEAN, IMAGENET_STD
from copynce_fast.data.glyphs import text_mask
from copynce_fast.data.plan import Occluder
from copynce_fast.utils.fonts import default_font
from copynce_fast.utils.pillow import PILLOW_MAJOR, RULES_READ_FROM

__all__ = ["Layer", "render_occluder", "render_occluder_pil", "merge_layers", "composite", "composite_torch",
           "bezier"]

_MEAN = np.array(IMAGENET_MEAN)
_STD = np.array(IMAGENET_STD)
# Erasing fills with Gaussian noise (torchvision's value='random' in normalised space); a fixed noise tile read at
# a seeded offset costs a copy instead of drawing fresh normals for every box.
_NOISE = np.clip(np.rint((np.random.default_rng(12345).standard_normal((512, 512, 3)) * _STD + _MEAN) * 255),
                 0, 255).astype(np.uint8)
_NOISE_RGBA = np.concatenate([_NOISE, np.full((*_NOISE.shape[:2], 1), 255, np.uint8)], axis=2)  # opaque
_CPP = _cpp.photometric  # the C++ helpers, or None (composite_torch runs); tests set it to None to compare
# render_occluder's arithmetic is PIL's for an RGBA canvas that starts transparent, read from Pillow 13's C source
# (fill_mask_L's alpha-channel rule, draw_bitmap = ImagingFill2) and checked bit for bit against
# render_occluder_pil (tests/test_data_occluders_fast.py); other Pillow versions draw the plain PIL way.
_FAST_DRAW = PILLOW_MAJOR == RULES_READ_FROM
_DARK = (20, 20, 20)  # the emoji outline colour
_RAMP = np.arange(256, dtype=np.uint8)  # a coverage value's alpha at full opacity
_EMPTY = np.zeros((1, 1, 4), np.uint8)  # the layer of an occluder wholly outside the frame
_EMPTY.setflags(write=False)


@lru_cache(maxsize=256)
def _bernstein(n: int, num: int) -> np.ndarray:
    """Bernstein basis [num, n + 1] float64 of degree n at num evenly spaced t in [0, 1], read-only: it depends on
    the two sizes only, and its powers are most of a smear's maths (~90 us at 30 control points)."""
    t = np.linspace(0.0, 1.0, num)[:, None]
    k = np.arange(n + 1)[None, :]
    binom = np.array([math.comb(n, i) for i in range(n + 1)], dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 ** 0 = 1 at the end points
        basis = binom * np.power(t, k) * np.power(1.0 - t, n - k)
    basis.setflags(write=False)
    return basis


def bezier(points, num: int = 0) -> np.ndarray:
    """Points [num, 2] on the Bezier curve with control points [K, 2] (Bernstein form, float64)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2:
        raise ValueError(f"points: expected >= 2 control points (x, y), got shape {p.shape}")
    return _bernstein(len(p) - 1, num or max(32, 4 * len(p))) @ p


def _glyph(draw: ImageDraw.ImageDraw, x0: int, y0: int, s: int, col, dark, variant: int):
    """An emoji-like glyph in the box (x0, y0, s) with RGBA inks ``col`` (fill) and ``dark`` (outline, features):
    0 smiley, 1 heart, 2 star, 3 sun."""
    x1, y1 = x0 + s - 1, y0 + s - 1
    if variant == 0:
        draw.ellipse((x0, y0, x1, y1), fill=col, outline=dark, width=max(1, s // 24))
        e = max(1, s // 10)
        for ex in (x0 + s * 0.33, x0 + s * 0.67):
            draw.ellipse((ex - e, y0 + s * 0.33 - e, ex + e, y0 + s * 0.33 + e), fill=dark)
        draw.arc((x0 + s * 0.25, y0 + s * 0.3, x0 + s * 0.75, y0 + s * 0.78), 20, 160, fill=dark,
                 width=max(1, s // 16))
    elif variant == 1:
        r = s / 4
        draw.ellipse((x0, y0 + r * 0.4, x0 + 2 * r, y0 + 2.4 * r), fill=col)
        draw.ellipse((x0 + 2 * r, y0 + r * 0.4, x1, y0 + 2.4 * r), fill=col)
        draw.polygon([(x0 + r * 0.15, y0 + 1.8 * r), (x1 - r * 0.15, y0 + 1.8 * r), (x0 + s / 2, y1)], fill=col)
    elif variant == 2:
        cx, cy, ro, ri = x0 + s / 2, y0 + s / 2, s / 2, s / 5
        pts = [(cx + (ro if k % 2 == 0 else ri) * math.sin(k * math.pi / 5),
                cy - (ro if k % 2 == 0 else ri) * math.cos(k * math.pi / 5)) for k in range(10)]
        draw.polygon(pts, fill=col, outline=dark)
    else:
        cx, cy = x0 + s / 2, y0 + s / 2
        for k in range(8):
            a = k * math.pi / 4
            draw.line((cx, cy, cx + s / 2 * math.cos(a), cy + s / 2 * math.sin(a)), fill=col, width=max(1, s // 12))
        draw.ellipse((cx - s / 3.2, cy - s / 3.2, cx + s / 3.2, cy + s / 3.2), fill=col, outline=dark)


@dataclass(frozen=True)
class Layer:
    """An RGBA patch [h, w, 4] uint8 (straight alpha) placed at (top, left) of an out_hw frame; nothing elsewhere."""

    rgba: np.ndarray
    top: int
    left: int
    out_hw: tuple[int, int]

    def full(self) -> np.ndarray:
        """The layer over the whole frame, [H, W, 4] uint8."""
        out = np.zeros((*self.out_hw, 4), np.uint8)
        h, w = self.rgba.shape[:2]
        out[self.top:self.top + h, self.left:self.left + w] = self.rgba
        return out


def _bbox(occ: Occluder) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1) holding everything the occluder draws (a margin for antialiasing)."""
    if occ.kind == "text":  # a generous box instead of measuring (glyphs are narrower than the em size)
        return occ.left - 2, occ.top - 2, occ.left + occ.size * len(occ.text) + 4, occ.top + 2 * occ.size + 4
    if occ.kind == "emoji":
        s = max(2, occ.size)
        return occ.left - 2, occ.top - 2, occ.left + s + 2, occ.top + s + 2
    if occ.kind == "smear":
        p = np.asarray(occ.points)
        m = max(1, occ.size) + 2
        return (int(math.floor(p[:, 0].min())) - m, int(math.floor(p[:, 1].min())) - m,
                int(math.ceil(p[:, 0].max())) + m, int(math.ceil(p[:, 1].max())) + m)
    return occ.left, occ.top, occ.left + max(1, occ.width), occ.top + max(1, occ.size)


def _canvas_box(occ: Occluder, out_hw) -> tuple[int, int, int, int] | None:
    """The occluder's box clipped to the frame, (x0, y0, x1, y1), or None when nothing of it is inside."""
    h, w = out_hw
    x0, y0, x1, y1 = _bbox(occ)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def _erase_layer(occ: Occluder, out_hw, box) -> Layer:
    """The erased box filled from the noise tile, read from (row, col) = divmod(seed) on at the box's corner, with
    whole slices (opaque; the occluder's opacity plays no part)."""
    x0, y0, x1, y1 = box
    oy, ox = divmod(occ.seed % (_NOISE.shape[0] * _NOISE.shape[1]), _NOISE.shape[1])
    return Layer(_tile_block(_NOISE_RGBA, oy + y0 - occ.top, ox + x0 - occ.left, y1 - y0, x1 - x0), y0, x0,
                 tuple(out_hw))


def _erase_layer_ref(occ: Occluder, out_hw, box) -> Layer:
    """``_erase_layer`` pixel by pixel: the reference. (The box clipped to the frame is the canvas, so the noise
    covers all of it.)"""
    x0, y0, x1, y1 = box
    oy, ox = divmod(occ.seed % (_NOISE.shape[0] * _NOISE.shape[1]), _NOISE.shape[1])
    rows = (oy + y0 - occ.top + np.arange(y1 - y0)) % _NOISE.shape[0]
    cols = (ox + x0 - occ.left + np.arange(x1 - x0)) % _NOISE.shape[1]
    arr = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
    arr[..., :3] = _NOISE.take(rows, axis=0).take(cols, axis=1)  # = _NOISE[np.ix_(rows, cols)]
    arr[..., 3] = 255
    arr.setflags(write=False)
    return Layer(arr, y0, x0, tuple(out_hw))


def _tile_block(tile: np.ndarray, oy: int, ox: int, dh: int, dw: int) -> np.ndarray:
    """tile[(oy + i) % H, (ox + j) % W] for i < dh, j < dw, [dh, dw, C], read-only: whole slices copied, split
    where they wrap (a gather of every pixel cost ~50 us an erase)."""
    th, tw = tile.shape[:2]
    out = np.empty((dh, dw, tile.shape[2]), tile.dtype)
    i = 0
    while i < dh:
        r = (oy + i) % th
        n = min(dh - i, th - r)
        j = 0
        while j < dw:
            c = (ox + j) % tw
            m = min(dw - j, tw - c)
            out[i:i + n, j:j + m] = tile[r:r + n, c:c + m]
            j += m
        i += n
    out.setflags(write=False)
    return out


def render_occluder_pil(occ: Occluder, out_hw: tuple[int, int]) -> Layer:
    """``render_occluder`` the plain PIL way (ImageDraw on an RGBA canvas, then a copy): the reference; uncached.

    Drawing happens on a canvas the size of the occluder's box, shifted by whole pixels, so it costs what the
    occluder covers, not the frame.
    """
    box = _canvas_box(occ, out_hw)
    if box is None:
        return Layer(_EMPTY, 0, 0, tuple(out_hw))
    if occ.kind == "erase":
        return _erase_layer_ref(occ, out_hw, box)
    x0, y0, x1, y1 = box
    layer = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if occ.kind == "text":
        draw.text((occ.left - x0, occ.top - y0), occ.text, font=default_font(occ.size), fill=tuple(occ.colour) + (255,))
    elif occ.kind == "emoji":
        _glyph(draw, occ.left - x0, occ.top - y0, max(2, occ.size), tuple(int(c) for c in occ.colour) + (255,),
               _DARK + (255,), occ.seed % 4)
    elif occ.kind == "smear":
        pts = bezier(occ.points) - np.array([x0, y0])
        # tolist(): the same coordinates as Python floats (iterating numpy rows cost ~40 us a smear)
        draw.line(list(map(tuple, pts.tolist())), fill=tuple(occ.colour) + (255,), width=max(1, occ.size),
                  joint="curve")
    arr = np.array(layer)
    if occ.opacity < 1.0:
        arr[..., 3] = np.rint(arr[..., 3] * occ.opacity).astype(np.uint8)
    arr.setflags(write=False)
    return Layer(arr, y0, x0, tuple(out_hw))


def _ink_table(lut: np.ndarray, opacity: float) -> np.ndarray:
    """uint32 [256]: the RGBA pixel (native byte order) each value of an "L" drawing stands for, from ``lut``
    [256, 4] uint8 (r, g, b, coverage), alpha scaled by the opacity and rounded the way render_occluder_pil
    rounds it (the same numpy expression, on every value at once)."""
    if opacity < 1.0:
        lut[:, 3] = np.rint(lut[:, 3] * opacity).astype(np.uint8)
    return lut.view(np.uint32).reshape(256)


def _text_layer(occ: Occluder, out_hw, box) -> Layer:
    """draw.text on a transparent RGBA canvas without the canvas: FreeType's coverage mask m (getmask2, called as
    ImageDraw.text calls it; assembled from cached glyphs by glyphs.text_mask, the same bytes) placed at its offset
    and clipped as draw_bitmap clips it. Pillow 13's fill_mask_L on an RGBA pixel of alpha 0 writes the ink's colour
    wherever m > 0 (its colour mask becomes 255) and alpha DIV255(255 m) = m, so the pixel is (colour, m) and
    (0, 0, 0, 0) where m = 0. (The ink plays no part in an "L" mask.)"""
    x0, y0, x1, y1 = box
    r, g, b = (int(c) for c in occ.colour)
    mask, (ox, oy) = text_mask(occ.size, occ.text)
    mh, mw = mask.shape
    cx, cy = occ.left - x0 + ox, occ.top - y0 + oy  # the mask's corner on the canvas (may lie outside it)
    sx, sy = max(0, -cx), max(0, -cy)
    ex, ey = min(mw, x1 - x0 - cx), min(mh, y1 - y0 - cy)
    out = np.zeros((y1 - y0, x1 - x0), np.uint32)
    if ex > sx and ey > sy:
        lut = np.empty((256, 4), np.uint8)
        lut[:, :3] = (r, g, b)
        lut[0, :3] = 0
        lut[:, 3] = _RAMP
        table = _ink_table(lut, occ.opacity)
        out[cy + sy:cy + ey, cx + sx:cx + ex] = table[mask[sy:ey, sx:ex]]
    arr = out.view(np.uint8).reshape(y1 - y0, x1 - x0, 4)
    arr.setflags(write=False)
    return Layer(arr, y0, x0, tuple(out_hw))


def _curve_line(draw, pts: list, ink, width: int) -> None:
    """ImageDraw.line(pts, ink, width, joint="curve") without its per-joint glue: the same float expressions (each
    segment's angle computed once, not twice), the same core calls (draw_lines, then a pieslice per bent joint,
    gap lines past width 8)."""
    core = draw.draw
    core.draw_lines(pts, ink, width)
    if width <= 4:
        return
    angle = [math.degrees(math.atan2(end[0] - start[0], start[1] - end[1])) % 360 for start, end in zip(pts, pts[1:])]
    for i in range(1, len(pts) - 1):
        a0, a1 = angle[i - 1], angle[i]
        if a0 == a1:  # a straight line: no joint
            continue
        point = pts[i]
        flipped = (a1 > a0 and a1 - 180 > a0) or (a1 < a0 and a1 + 180 > a0)
        coords = [(point[0] - width / 2 + 1, point[1] - width / 2 + 1),
                  (point[0] + width / 2 - 1, point[1] + width / 2 - 1)]
        start, end = (a1 + 90, a0 + 90) if flipped else (a0 - 90, a1 - 90)
        core.draw_pieslice(coords, start - 90, end - 90, ink, 1)
        if width > 8:  # PIL covers gaps between the line and the joint
            side = [a + 90 for a in (a0, a1)] if flipped else [a - 90 for a in (a0, a1)]
            core.draw_lines([_at_angle(point, side[0], width), point, _at_angle(point, side[1], width)], ink, 3)


def _at_angle(point, angle: float, width: int) -> tuple:
    """ImageDraw.line's coord_at_angle: ``point`` moved width/2 - 1 along ``angle`` - 90 degrees, truncated away."""
    angle -= 90
    distance = width / 2 - 1
    return tuple(p + (math.floor(d) if d > 0 else math.ceil(d))
                 for p, d in ((point[0], distance * math.cos(math.radians(angle))),
                              (point[1], distance * math.sin(math.radians(angle)))))


def _drawn_layer(occ: Occluder, out_hw, box) -> Layer:
    """Emoji and smear as render_occluder_pil draws them, less its glue: the smear's joints through _curve_line,
    the canvas read without a second copy, and the opacity as a minimum: PIL writes these opaque inks without
    blending, so alpha is 0 or 255 and rint(alpha * opacity) is min(alpha, rint(255 * opacity))."""
    x0, y0, x1, y1 = box
    canvas = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    ink = tuple(int(c) for c in occ.colour) + (255,)
    if occ.kind == "emoji":
        _glyph(draw, occ.left - x0, occ.top - y0, max(2, occ.size), ink, _DARK + (255,), occ.seed % 4)
    else:
        pts = bezier(occ.points) - np.array([x0, y0])
        _curve_line(draw, list(map(tuple, pts.tolist())), draw.draw.draw_ink(ink), max(1, occ.size))
    arr = np.asarray(canvas)
    if occ.opacity < 1.0:
        arr = arr.copy()
        np.minimum(arr[..., 3], np.rint(_RAMP[255:] * occ.opacity).astype(np.uint8), out=arr[..., 3])
        arr.setflags(write=False)
    return Layer(arr, y0, x0, tuple(out_hw))


@lru_cache(maxsize=128)
def render_occluder(occ: Occluder, out_hw: tuple[int, int]) -> Layer:
    """The occluder as an RGBA Layer (a patch around it) in the out_hw frame; cached (the mask reuses it).

    Bit-equal to ``render_occluder_pil`` (same patch, top, left), without PIL's per-call glue where ``_FAST_DRAW``;
    the canvas is the occluder's box, so it costs what the occluder covers, not the frame.
    """
    box = _canvas_box(occ, out_hw)
    if box is None:
        return Layer(_EMPTY, 0, 0, tuple(out_hw))
    if occ.kind == "erase":
        return _erase_layer(occ, out_hw, box)
    if _FAST_DRAW:
        if occ.kind == "text" and "\n" not in occ.text and isinstance(default_font(occ.size), ImageFont.FreeTypeFont):
            return _text_layer(occ, out_hw, box)
        if occ.kind in ("emoji", "smear"):
            return _drawn_layer(occ, out_hw, box)
    return render_occluder_pil(occ, out_hw)


def merge_layers(occs, out_hw) -> Layer | None:
    """The occluders' layers composited "over" each other in order, as one Layer over their union, or None."""
    layers = [render_occluder(o, tuple(out_hw)) for o in occs]
    if not layers:
        return None
    if len(layers) == 1:
        return layers[0]
    t = min(lay.top for lay in layers)
    l = min(lay.left for lay in layers)  # noqa: E741
    b = max(lay.top + lay.rgba.shape[0] for lay in layers)
    r = max(lay.left + lay.rgba.shape[1] for lay in layers)
    out = Image.new("RGBA", (r - l, b - t), (0, 0, 0, 0))
    for lay in layers:
        out.alpha_composite(Image.fromarray(lay.rgba), dest=(lay.left - l, lay.top - t))
    return Layer(np.array(out), t, l, tuple(out_hw))


def composite(img: torch.Tensor, layer: Layer) -> torch.Tensor:
    """img [3, H, W] uint8 with the layer drawn over it (only its patch is touched); uint8 [3, H, W].

    C++ (integer maths) when the extension is built, bit-equal to ``composite_torch``: the exact value
    (x (255 - A) + c A) / 255 is never within float32's error of a rounding tie (csrc/photometric.cpp)."""
    if _CPP is None:
        return composite_torch(img, layer)
    out = img.contiguous().clone()
    _CPP.composite_rgba(out.numpy(), np.ascontiguousarray(layer.rgba), layer.top, layer.left)
    return out


def composite_torch(img: torch.Tensor, layer: Layer) -> torch.Tensor:
    """``composite`` in torch float32 (the reference)."""
    h, w = layer.rgba.shape[:2]
    t, l = layer.top, layer.left
    lay = torch.from_numpy(layer.rgba.copy()).permute(2, 0, 1).float()
    a = lay[3:] / 255.0
    out = img.clone()
    region = img[:, t:t + h, l:l + w].float()
    out[:, t:t + h, l:l + w] = (region * (1 - a) + lay[:3] * a).round().clamp(0, 255).to(torch.uint8)
    return out
