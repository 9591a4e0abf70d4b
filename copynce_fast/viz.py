"""Pictures of correspondences: a query and its reference side by side with their traced patch matches."""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = ["pair_panel", "save_panels"]


def _rgb(x: torch.Tensor) -> Image.Image:
    """[3, H, W] uint8 (or float in [0, 1]) -> PIL RGB."""
    a = x.detach().cpu()
    if a.is_floating_point():
        a = (a.clamp(0, 1) * 255).round()
    return Image.fromarray(a.to(torch.uint8).permute(1, 2, 0).numpy())


def pair_panel(query: torch.Tensor, reference: torch.Tensor, counts_qr: torch.Tensor, patch: int,
               scale: int = 3, max_lines: int = 40, seed: int = 0) -> Image.Image:
    """Query | reference, enlarged ``scale`` times, with lines from query patches to their best reference patch.

    Query patches are shaded by their invalid fraction (dark = no correspondence); each line's colour is the
    query patch's, its end the reference patch that received most of its pixels (from the exact counts).

    Args:
        query, reference: [3, H, W] uint8 images.
        counts_qr: [Lq, Lr + 1] overlap counts of this pair (last column = invalid pixels).
        patch: patch size in pixels.
    """
    q, r = _rgb(query), _rgb(reference)
    qw, qh = q.size
    rw, rh = r.size
    gap = 12
    W, H = scale * (qw + rw) + gap, scale * max(qh, rh)
    canvas = Image.new("RGB", (W, H), "white")
    canvas.paste(q.resize((scale * qw, scale * qh), Image.NEAREST), (0, 0))
    canvas.paste(r.resize((scale * rw, scale * rh), Image.NEAREST), (scale * qw + gap, 0))
    shade = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    sd = ImageDraw.Draw(shade)
    c = counts_qr.detach().cpu().to(torch.float64)
    gq_w, gr_w = qw // patch, rw // patch
    invalid = (c[:, -1] / c.sum(1).clamp_min(1)).numpy()
    for i, frac in enumerate(invalid):
        y, x = divmod(i, gq_w)
        box = [scale * x * patch, scale * y * patch, scale * (x + 1) * patch - 1, scale * (y + 1) * patch - 1]
        sd.rectangle(box, fill=(0, 0, 0, int(160 * frac)))
    canvas = Image.alpha_composite(canvas.convert("RGBA"), shade).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    best = c[:, :-1].argmax(1).numpy()
    valid = np.nonzero(c[:, :-1].max(1).values.numpy() > 0)[0]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(valid, size=min(max_lines, len(valid)), replace=False) if len(valid) else []
    for n, i in enumerate(sorted(chosen)):
        colour = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(n / max(len(chosen), 1), 0.9, 1.0))
        qy, qx = divmod(int(i), gq_w)
        ry, rx = divmod(int(best[i]), gr_w)
        p0 = (scale * (qx + 0.5) * patch, scale * (qy + 0.5) * patch)
        p1 = (scale * qw + gap + scale * (rx + 0.5) * patch, scale * (ry + 0.5) * patch)
        draw.line([p0, p1], fill=colour, width=2)
        for p in (p0, p1):
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], outline=colour, width=2)
    return canvas


def save_panels(panels: list[Image.Image], path, titles: list[str] | None = None) -> Path:
    """Stack panels vertically (with optional one-line titles) into one PNG."""
    title_h = 16 if titles else 0
    W = max(p.size[0] for p in panels)
    H = sum(p.size[1] + title_h + 8 for p in panels)
    out = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(out)
    y = 0
    for k, p in enumerate(panels):
        if titles:
            d.text((4, y + 2), titles[k], fill=(0, 0, 0))
        out.paste(p, (0, y + title_h))
        y += p.size[1] + title_h + 8
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path
