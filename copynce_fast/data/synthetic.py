"""Procedural images: extra originals for demos and benchmarks, and coordinate-encoding images for tests.

- ``synthetic_images(n, size, seed)``: gradients, shapes and stripes (no text), deterministic per seed.
- ``coordinate_image(h, w, tag)``: an RGB uint8 image whose pixels encode their own (row, col) in base 256
  (value = row * w + col + 1, 0 reserved for "no content"; ``tag`` sets the top bit to tell two images apart).
  ``decode_coordinates`` inverts it. Used to prove that executors show the pixel PixTrace reports.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["synthetic_images", "synthetic_image", "coordinate_image", "decode_coordinates", "check_geometry", "TAG_BIT"]

TAG_BIT = 1 << 23


def synthetic_image(seed: int, size=(375, 500)) -> np.ndarray:
    """One procedural RGB image [H, W, 3] uint8: a smooth gradient background with random shapes and stripes."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 4, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
        base[..., c] = 127 + 100 * np.sin(2 * np.pi * (fx * xx / w + fy * yy / h) + ph)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = rng.integers(-w // 4, w), rng.integers(-h // 4, h)
        x1, y1 = x0 + rng.integers(w // 10, w // 2), y0 + rng.integers(h // 10, h // 2)
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=col)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=col)
        else:
            pts = [tuple(int(v) for v in (rng.integers(0, w), rng.integers(0, h))) for _ in range(3)]
            draw.polygon(pts, fill=col)
    for _ in range(int(rng.integers(0, 4))):
        y = int(rng.integers(0, h))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.line((0, y, w, y + int(rng.integers(-h // 3, h // 3))), fill=col,
                  width=int(rng.integers(2, 9)))
    return np.array(img)


def synthetic_images(n: int, size=(375, 500), seed: int = 0) -> list[np.ndarray]:
    """``n`` procedural RGB images [H, W, 3] uint8 of ``size`` = (H, W) (or an int for squares)."""
    if n < 0:
        raise ValueError(f"n: must be >= 0, got {n}")
    if isinstance(size, int):
        size = (size, size)
    return [synthetic_image(seed * 1_000_003 + i, tuple(size)) for i in range(n)]


def coordinate_image(h: int, w: int, tag: bool = False) -> np.ndarray:
    """RGB uint8 [h, w, 3] with pixel (r, c) = base-256 digits of r * w + c + 1 (+ TAG_BIT if ``tag``)."""
    if h * w + 1 >= TAG_BIT:
        raise ValueError(f"h, w: {h}x{w} has too many pixels for a 23-bit coordinate code")
    v = np.arange(h * w, dtype=np.int64).reshape(h, w) + 1 + (TAG_BIT if tag else 0)
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8)


def decode_coordinates(img, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Invert ``coordinate_image`` on [3, H, W] or [H, W, 3] uint8.

    Returns (row, col, has_content, tagged): row/col int64 (-1 where the pixel is 0 = fill).
    """
    a = np.asarray(img).astype(np.int64)
    if a.shape[0] == 3 and a.shape[-1] != 3:
        a = np.moveaxis(a, 0, -1)
    v = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    tagged = v >= TAG_BIT
    code = np.where(tagged, v - TAG_BIT, v)
    has = v > 0
    idx = code - 1
    return np.where(has, idx // w, -1), np.where(has, idx % w, -1), has, tagged


def _erode(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood lies inside ``mask`` (outside the canvas counts as outside the mask)."""
    p = np.pad(mask, 1, constant_values=False)
    h, w = mask.shape
    out = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            out &= p[dy:dy + h, dx:dx + w]
    return out


def check_geometry(rendered, view, tag: bool = False) -> dict:
    """Compare a rendering of ``coordinate_image(*view.source_hw, tag)`` through ``view`` with PixTrace.

    Args:
        rendered: [3, H, W] (or [H, W, 3]) uint8, rendered with nearest sampling and no photometric op.
        view: the pixtrace View it was rendered through (its occluded pixels are left out of the comparison).
        tag: the coordinate image's tag (to tell the copy from an overlay image).

    Returns:
        dict with ``interior`` (pixels valid in PixTrace and not within 1 px of an invalid pixel or the canvas
        edge), ``exact`` / ``within1`` (fractions of the interior showing exactly / within one pixel the original
        pixel PixTrace reports) and ``leaked`` (pixels deep inside PixTrace's invalid region that show this image).
    """
    import torch
    from copynce_fast.pixtrace import View, correspondence_map, pack_paths
    geo = View(view.source_hw, view.stages)
    exp = correspondence_map(pack_paths([geo], [View(view.source_hw)], dtype=torch.float64))[0].numpy()
    row, col, has, tagged = decode_coordinates(rendered, view.source_hw[1])
    mine = has & (tagged == tag)
    valid = exp[0] >= 0
    if view.occluder is not None:
        valid &= ~view.occluder  # occluded pixels show something else by design
    interior = _erode(valid)
    n = int(interior.sum())
    dr, dc = np.abs(row - exp[0]), np.abs(col - exp[1])
    exact = (dr == 0) & (dc == 0) & mine
    near = (dr <= 1) & (dc <= 1) & mine
    return {"interior": n, "exact": float(exact[interior].mean()) if n else 1.0,
            "within1": float(near[interior].mean()) if n else 1.0,
            "leaked": int((mine & _erode(~valid)).sum())}
