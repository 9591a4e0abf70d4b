"""Occluders drawn over a view in its final frame: text, emoji-like glyphs, smears, erasing.

Each occluder renders to an RGBA layer [H, W, 4] uint8 (straight alpha) with PIL -- no network, no font files
beyond PIL's bundled default font, glyphs drawn procedurally. The same layer is composited by every
executor, and its alpha gives the occluder's mask: every pixel it touches (alpha > 0), so a pixel the occluder
changed is always in the mask. ``occluder_mask`` unions the masks PixTrace should know about, and
``traced_view`` is the view PixTrace traces a plan with (its geometry plus that mask).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw

from copynce_fast import _cpp
from copynce_fast.data.batch import IMAGENET_MEAN, IMAGENET_STD
from copynce_fast.data.geometry import canvas_mask, layer_geometry
from copynce_fast.data.photometric import shuffle_indices
from copynce_fast.data.plan import AugmentPlan, Occluder, PhotoOp
from copynce_fast.pixtrace.view import View
from copynce_fast.utils.fonts import default_font

__all__ = ["Layer", "render_occluder", "merge_layers", "composite", "composite_torch", "occluder_mask", "traced_view",
           "bezier"]

_MEAN = np.array(IMAGENET_MEAN)
_STD = np.array(IMAGENET_STD)
# Erasing fills with Gaussian noise (torchvision's value='random' in normalised space); a fixed noise tile read at
# a seeded offset costs a copy instead of drawing fresh normals for every box.
_NOISE = np.clip(np.rint((np.random.default_rng(12345).standard_normal((512, 512, 3)) * _STD + _MEAN) * 255),
                 0, 255).astype(np.uint8)
_CPP = _cpp.photometric  # the C++ helpers, or None (composite_torch runs); tests set it to None to compare


def bezier(points, num: int = 0) -> np.ndarray:
    """Points [num, 2] on the Bezier curve with control points [K, 2] (Bernstein form, float64)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2:
        raise ValueError(f"points: expected >= 2 control points (x, y), got shape {p.shape}")
    n = len(p) - 1
    num = num or max(32, 4 * len(p))
    t = np.linspace(0.0, 1.0, num)[:, None]
    k = np.arange(n + 1)[None, :]
    binom = np.array([math.comb(n, i) for i in range(n + 1)], dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 ** 0 = 1 at the end points
        basis = binom * np.power(t, k) * np.power(1.0 - t, n - k)
    return basis @ p


def _glyph(draw: ImageDraw.ImageDraw, x0: int, y0: int, s: int, colour, variant: int):
    """An emoji-like glyph in the box (x0, y0, s): 0 smiley, 1 heart, 2 star, 3 sun."""
    col = tuple(int(c) for c in colour) + (255,)
    dark = (20, 20, 20, 255)
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


@lru_cache(maxsize=128)
def render_occluder(occ: Occluder, out_hw: tuple[int, int]) -> Layer:
    """The occluder as an RGBA Layer (a patch around it) in the out_hw frame; cached (the mask reuses it).

    Drawing happens on a canvas the size of the occluder's box, shifted by whole pixels, so it costs what the
    occluder covers, not the frame.
    """
    h, w = out_hw
    x0, y0, x1, y1 = _bbox(occ)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return Layer(np.zeros((1, 1, 4), np.uint8), 0, 0, tuple(out_hw))
    layer = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if occ.kind == "text":
        draw.text((occ.left - x0, occ.top - y0), occ.text, font=default_font(occ.size), fill=tuple(occ.colour) + (255,))
    elif occ.kind == "emoji":
        _glyph(draw, occ.left - x0, occ.top - y0, max(2, occ.size), occ.colour, occ.seed % 4)
    elif occ.kind == "smear":
        pts = bezier(occ.points) - np.array([x0, y0])
        # tolist(): the same coordinates as Python floats (iterating numpy rows cost ~40 us a smear)
        draw.line(list(map(tuple, pts.tolist())), fill=tuple(occ.colour) + (255,), width=max(1, occ.size),
                  joint="curve")
    elif occ.kind == "erase":
        bh, bw = min(max(1, occ.size), h), min(max(1, occ.width), w)
        oy, ox = divmod(occ.seed % (_NOISE.shape[0] * _NOISE.shape[1]), _NOISE.shape[1])
        rows, cols = (oy + np.arange(bh)) % _NOISE.shape[0], (ox + np.arange(bw)) % _NOISE.shape[1]
        patch = _NOISE.take(rows, axis=0).take(cols, axis=1)  # = _NOISE[np.ix_(rows, cols)], 4x cheaper
        arr = np.array(layer)
        arr[occ.top - y0:occ.top - y0 + bh, occ.left - x0:occ.left - x0 + bw, :3] = patch[:y1 - occ.top, :x1 - occ.left]
        arr[occ.top - y0:occ.top - y0 + bh, occ.left - x0:occ.left - x0 + bw, 3] = 255
        arr.setflags(write=False)
        return Layer(arr, y0, x0, tuple(out_hw))
    arr = np.array(layer)
    if occ.opacity < 1.0:
        arr[..., 3] = np.rint(arr[..., 3] * occ.opacity).astype(np.uint8)
    arr.setflags(write=False)
    return Layer(arr, y0, x0, tuple(out_hw))


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


def occluder_mask(plan: AugmentPlan) -> np.ndarray | None:
    """Bool [H, W] in the plan's final frame: pixels that show no content of the original, or None if none.

    Union of: occluders with opacity >= ``plan.occluder_opacity`` (every pixel they touch), shuffled pixels
    (if ``plan.shuffle_is_occluder``), and the region of an "above" overlay with opacity >= the threshold.
    """
    hw = plan.out_hw
    mask = np.zeros(hw, dtype=bool)
    found = False
    for op in plan.ops:
        if isinstance(op, Occluder) and op.opacity >= plan.occluder_opacity:
            lay = render_occluder(op, hw)
            ph, pw = lay.rgba.shape[:2]
            mask[lay.top:lay.top + ph, lay.left:lay.left + pw] |= lay.rgba[..., 3] > 0
            found = True
        elif isinstance(op, PhotoOp) and op.kind == "shuffle" and plan.shuffle_is_occluder:
            idx, _ = shuffle_indices(op.seed, hw[0] * hw[1], float(op.params[0]))
            mask.reshape(-1)[idx] = True
            found = True
    ov = plan.overlay
    if ov is not None and ov.mode == "above" and ov.alpha >= plan.occluder_opacity:
        geo = layer_geometry(plan)
        cover = canvas_mask(geo.cover_test, hw)
        for t in geo.shared_tests:
            cover &= canvas_mask(t, hw)
        mask |= cover.numpy()
        found = True
    return mask if found else None


def traced_view(plan: AugmentPlan) -> View:
    """The view PixTrace should trace ``plan`` with: its geometry, plus the occluder mask when
    ``plan.track_occluders``."""
    if not plan.track_occluders:
        return plan.view
    return plan.view.with_occluder(occluder_mask(plan))
