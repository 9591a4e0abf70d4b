"""Ground truth for item 2: which original pixel each query pixel really shows, read off rendered pixels.

An original whose pixels encode their own coordinates (and an alpha of 255) goes through the same edit
parameters with torchvision's functional ops, as the official transforms call them, but with nearest sampling,
so every output pixel is a copy of exactly one original pixel (or of the fill, alpha 0). Decoding the result
says where each query pixel came from; both traces (the official dense map, our geometry) are scored against it.
Needs torchvision (the ``full`` mode's dependencies).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from copynce_fast.pixtrace.view import pixel_index


def coordinate_image(hw: tuple[int, int]) -> Image.Image:
    """RGBA original: R, G = low bytes of x, y; B = their high nibbles; A = 255."""
    h, w = hw
    y, x = np.mgrid[0:h, 0:w]
    rgba = np.stack([x & 255, y & 255, (x >> 8) | ((y >> 8) << 4), np.full_like(x, 255)], -1).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def decode(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) [H, W] of the original pixel shown, and valid [H, W] (alpha 255)."""
    a = np.asarray(img).astype(np.int64)
    col = a[..., 0] | ((a[..., 2] & 15) << 8)
    row = a[..., 1] | ((a[..., 2] >> 4) << 8)
    return row, col, a[..., 3] == 255


def render(configs: list, original: Image.Image) -> Image.Image:
    """Apply an official config list to ``original`` with torchvision's ops and nearest sampling."""
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode
    nearest = InterpolationMode.NEAREST
    img = original
    for c in configs:
        name, p = c["type"].name, c["params"]
        if name == "CROP":
            img = F.crop(img, p["i"], p["j"], p["h"], p["w"])
        elif name == "RESIZE":
            img = F.resize(img, [p["h"], p["w"]], nearest)
        elif name == "CROP_RESIZE":
            img = F.resized_crop(img, p["i"], p["j"], p["h"], p["w"], [p["size"][1], p["size"][0]], nearest)
        elif name == "FLIP":
            img = F.hflip(img) if p["matrix"][0][0] < 0 else F.vflip(img)
        elif name == "AFFINE":
            img = F.affine(img, p["angle"], list(p["translations"]), p["scale"], list(p["shear"]), nearest, fill=0)
        elif name == "PERSPECTIVE":
            img = F.perspective(img, p["startpoints"], p["endpoints"], nearest, fill=0)
        elif name == "PADDING":
            img = F.pad(img, [p["left"], p["top"], p["right"], p["bottom"]], fill=0)
        elif name == "PASTE_IMAGE_ONTO":
            canvas = Image.new("RGBA", tuple(p["size"]), (0, 0, 0, 0))
            canvas.paste(img, (p["j"], p["i"]))
            img = canvas
    return img


def truth_scores(configs: list, native_hw: tuple[int, int], size: int, official_map: torch.Tensor, view) -> dict:
    """Share of the query pixels that show the original whose traced original pixel is the true one.

    Args:
        official_map: the official que_to_ori [2, S, S] (native index scaled by S / native size).
        view: our ``pixtrace.View`` of the same edits.
    """
    h0, w0 = native_hw
    row, col, shown = decode(render(configs, coordinate_image(native_hw)))
    m = official_map.double().numpy()
    o_row, o_col = np.rint(m[0] * h0 / size), np.rint(m[1] * w0 / size)
    o_ok = (m[0] >= 0) & (m[1] >= 0)
    hq, wq = view.out_hw
    ys, xs = np.meshgrid(np.arange(hq) + 0.5, np.arange(wq) + 0.5, indexing="ij")
    xy, ok = view.map_to_source(np.stack([xs.ravel(), ys.ravel()], 1))
    u_col, u_row = pixel_index(xy[:, 0]).reshape(hq, wq), pixel_index(xy[:, 1]).reshape(hq, wq)
    ok = ok.reshape(hq, wq)
    n = max(1, int(shown.sum()))

    def score(r, c, valid):
        d = np.maximum(np.abs(r - row), np.abs(c - col))
        return float((valid & shown & (d == 0)).sum() / n), float((valid & shown & (d <= 1)).sum() / n)

    oe, o1 = score(o_row, o_col, o_ok)
    ue, u1 = score(u_row, u_col, ok)
    return {"shown": float(shown.mean()), "official_true": oe, "official_true_1px": o1, "ours_true": ue,
            "ours_true_1px": u1, "ours_traces_unshown": float((ok & ~shown).mean()),
            "official_traces_unshown": float((o_ok & ~shown).mean())}
