"""Occluders drawn over a view in its final frame: text, emoji-like glyphs, smears, erasing.

Each occluder renders to an RGBA layer [H, W, 4] uint8 (straight alpha) with PIL -- no network, no font files
beyond PIL's bundled default font, glyphs drawn procedurally. The same layer is composited by every
executor, and its alpha gives the occluder's mask: every pixel it touches (alpha > 0), so a pixel the occluder
changed is always in the mask. ``plan_occluder_mask`` unions the masks PixTrace should know about.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from copynce_fast.data.plan import AugmentPlan, Occluder, PhotoOp

__all__ = ["Layer", "render_occluder", "merge_layers", "composite", "plan_occluder_mask", "bezier"]

_MEAN = np.array([0.485, 0.456, 0.406])
_STD = np.array([0.229, 0.224, 0.225])


@lru_cache(maxsize=32)
def _font(size: int):
    return ImageFont.load_default(size=max(4, int(size)))


def bezier(points, num: int = 0) -> np.ndarray:
    """Points [num, 2] on the Bezier curve with control points [K, 2] (de Casteljau, float64)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2:
        raise ValueError(f"points: expected >= 2 control points (x, y), got shape {p.shape}")
    num = num or max(32, 8 * len(p))
    t = np.linspace(0.0, 1.0, num)[:, None, None]
    q = np.broadcast_to(p, (num, *p.shape))
    while q.shape[1] > 1:
        q = (1 - t) * q[:, :-1] + t * q[:, 1:]
    return q[:, 0]


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


def _tight(arr: np.ndarray, out_hw) -> Layer:
    ys, xs = np.nonzero(arr[..., 3])
    if len(ys) == 0:
        return Layer(np.zeros((1, 1, 4), np.uint8), 0, 0, tuple(out_hw))
    t, b, l, r = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    patch = np.ascontiguousarray(arr[t:b, l:r])
    patch.setflags(write=False)
    return Layer(patch, int(t), int(l), tuple(out_hw))


@lru_cache(maxsize=128)
def render_occluder(occ: Occluder, out_hw: tuple[int, int]) -> Layer:
    """The occluder as a tight RGBA Layer in the out_hw frame; cached (the plan's mask reuses it)."""
    h, w = out_hw
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if occ.kind == "text":
        draw.text((occ.left, occ.top), occ.text, font=_font(occ.size), fill=tuple(occ.colour) + (255,))
    elif occ.kind == "emoji":
        _glyph(draw, occ.left, occ.top, max(2, occ.size), occ.colour, occ.seed % 4)
    elif occ.kind == "smear":
        pts = bezier(occ.points)
        draw.line([tuple(p) for p in pts], fill=tuple(occ.colour) + (255,), width=max(1, occ.size), joint="curve")
    elif occ.kind == "erase":
        rng = np.random.default_rng(occ.seed)
        bh, bw = max(1, occ.size), max(1, occ.width)
        noise = rng.standard_normal((bh, bw, 3)) * _STD + _MEAN  # torchvision value='random' in normalised space
        patch = np.clip(np.rint(noise * 255), 0, 255).astype(np.uint8)
        layer.paste(Image.fromarray(patch).convert("RGBA"), (occ.left, occ.top))
    arr = np.array(layer)
    if occ.opacity < 1.0:
        arr[..., 3] = np.rint(arr[..., 3] * occ.opacity).astype(np.uint8)
    return _tight(arr, out_hw)


def merge_layers(occs, out_hw) -> Layer | None:
    """The occluders' layers composited "over" each other in order, as one tight Layer, or None."""
    occs = list(occs)
    if not occs:
        return None
    if len(occs) == 1:
        return render_occluder(occs[0], tuple(out_hw))
    out = Image.fromarray(render_occluder(occs[0], tuple(out_hw)).full())
    for occ in occs[1:]:
        out = Image.alpha_composite(out, Image.fromarray(render_occluder(occ, tuple(out_hw)).full()))
    return _tight(np.array(out), out_hw)


def composite(img: torch.Tensor, layer: Layer) -> torch.Tensor:
    """img [3, H, W] uint8 with the layer drawn over it (only its patch is touched); uint8 [3, H, W]."""
    h, w = layer.rgba.shape[:2]
    t, l = layer.top, layer.left
    lay = torch.from_numpy(layer.rgba.copy()).permute(2, 0, 1).float()
    a = lay[3:] / 255.0
    out = img.clone()
    region = img[:, t:t + h, l:l + w].float()
    out[:, t:t + h, l:l + w] = (region * (1 - a) + lay[:3] * a).round().clamp(0, 255).to(torch.uint8)
    return out


def plan_occluder_mask(plan: AugmentPlan) -> np.ndarray | None:
    """Bool [H, W] union of the plan's occluding pixels (see AugmentPlan.occluder_mask), or None if none."""
    hw = plan.out_hw
    mask = np.zeros(hw, dtype=bool)
    found = False
    for op in plan.ops:
        if isinstance(op, Occluder) and op.opacity >= plan.occluder_opacity:
            mask |= render_occluder(op, hw).full()[..., 3] > 0
            found = True
        elif isinstance(op, PhotoOp) and op.kind == "shuffle" and plan.shuffle_is_occluder:
            from copynce_fast.data.photometric import shuffle_indices
            idx, _ = shuffle_indices(op.seed, hw[0] * hw[1], float(op.params[0]))
            mask.reshape(-1)[idx] = True
            found = True
    ov = plan.overlay
    if ov is not None and ov.mode == "above" and ov.alpha >= plan.occluder_opacity:
        from copynce_fast.data.geometry import canvas_mask, layer_geometry
        geo = layer_geometry(plan)
        cover = canvas_mask(geo.cover_test, hw)
        for t in geo.shared_tests:
            cover &= canvas_mask(t, hw)
        mask |= cover.numpy()
        found = True
    return mask if found else None
