"""Edit chains in the official code's own format, and the same edits as copynce-fast views.

The official tracked transforms report what they did as a list of configs ``{"type": Augmentation.X, "params":
{...}}`` (REFERENCE.md section 1.2); its ``MaskMapper`` turns such a list into a dense map. ``view_from_configs``
turns the same list into a ``pixtrace.View`` (the exact geometry of the pixels the transforms produce), so both
sides can be fed one set of edit parameters:

- ``edit_configs(off, kind, native_hw, size)``: one named edit (crop, resize, flips, rotation with snapping,
  shear, perspective, padding, paste into another image, and a chain of them) with fixed parameters, built the
  way the official transforms build their configs (its ``generate_affine_matrix`` and OpenCV's perspective
  solve give the matrices).
- ``random_chain(off, rng, native_hw, size)``: the geometric part of the official ``lyakaap`` query pipeline
  (REFERENCE.md section 2) drawn at random, for when the official augmentation itself cannot run (its
  photometric dependencies are absent). With them, the benchmark records the official pipeline's own configs.

Matrices in the configs use the official pixel-index convention; the views use copynce-fast's continuous one
(DEVELOPING.md). The two describe the same image operation: torchvision/PIL sample at pixel centres, so the
matrix the official code stores is the continuous map of the pixels, and the official dense map applies it to
pixel corners (a half-pixel mismatch, REFERENCE.md section 1.3, which the parity numbers measure).
"""
from __future__ import annotations

import math

import numpy as np

from copynce_fast.pixtrace import View
from copynce_fast.pixtrace import stages as S

EDIT_KINDS = ("resize", "crop_resize", "hflip", "vflip", "rotate90", "rotate_snapped", "rotate_shear",
              "perspective", "padding", "paste", "chain")


def _cfg(off, name: str, **params) -> dict:
    return {"type": off.mask_mapper.Augmentation[name], "params": params}


def view_from_configs(configs: list, native_hw: tuple[int, int]) -> View:
    """The copynce-fast view for an official config list applied to an original of ``native_hw`` = (H, W).

    Raises ValueError (naming the config) for the paste-object configs, which the official pipeline never emits.
    """
    hw, stages = tuple(native_hw), []
    for k, c in enumerate(configs):
        name, p = c["type"].name, c["params"]
        if name == "CROP":
            st = S.crop(hw, p["i"], p["j"], p["h"], p["w"])
        elif name == "RESIZE":
            st = S.resize(hw, (p["h"], p["w"]))
        elif name == "CROP_RESIZE":
            w_out, h_out = p["size"]
            st = S.resized_crop(hw, p["i"], p["j"], p["h"], p["w"], (h_out, w_out))
        elif name == "FLIP":
            st = S.hflip(hw) if p["matrix"][0][0] < 0 else S.vflip(hw)
        elif name == "AFFINE":
            st = S.affine(hw, np.asarray(p["matrix"], dtype=np.float64))
        elif name == "PERSPECTIVE":
            st = S.perspective(hw, p["startpoints"], p["endpoints"])
        elif name == "PADDING":
            st = S.pad(hw, p["top"], p["bottom"], p["left"], p["right"])
        elif name == "PASTE_IMAGE_ONTO":
            w_c, h_c = p["size"]
            st = S.paste(hw, (h_c, w_c), p["i"], p["j"], p["h"], p["w"])
        elif name.startswith("PASTE_OBJECT"):
            raise ValueError(f"configs[{k}]: {name} is not supported (the official pipeline does not emit it)")
        else:  # photometric ops, NO_CHANGE, PASTE_IMAGE_BENEATH: no geometric change
            continue
        stages.append(st)
        hw = st.out_hw
    return View(tuple(native_hw), stages)


# --- fixed edits ------------------------------------------------------------------------------------------------

def _flip(off, hw, horizontal: bool) -> dict:
    h, w = hw
    m = np.eye(3)
    if horizontal:
        m[0, 0], m[0, 2] = -1, w - 1
    else:
        m[1, 1], m[1, 2] = -1, h - 1
    return _cfg(off, "FLIP", matrix=m)


def _affine(off, hw, angle: float, shear_x: float = 0.0) -> dict:
    """What the official snapping RandomAffine emits for (angle, shear_x) on a canvas ``hw``."""
    h, w = hw
    center = [w / 2, h / 2]
    m = off.data_utils.generate_affine_matrix(scale=1.0, angle=-angle, shear=[-shear_x, -0.0], translations=(0, 0),
                                              center=center)
    return _cfg(off, "AFFINE", matrix=m, angle=angle, translations=(0, 0), scale=1.0, shear=(shear_x, 0.0),
                center=center)


def _perspective(off, hw, end_fracs) -> dict:
    """RandomPerspective's config: the image corners (pixel indices) moved to ``end_fracs`` of the canvas."""
    cv2 = off.data_utils.cv2  # the module the official code imported (OpenCV, or the harness's stand-in)
    h, w = hw
    start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    end = [[int(fx * (w - 1)), int(fy * (h - 1))] for fx, fy in end_fracs]
    m = cv2.getPerspectiveTransform(np.array(start, dtype=np.float32), np.array(end, dtype=np.float32))
    return _cfg(off, "PERSPECTIVE", matrix=m, startpoints=start, endpoints=end)


def _padding(off, hw, ratio: float = 0.2) -> dict:
    h, w = hw
    return _cfg(off, "PADDING", left=round(w * ratio), right=round(w * ratio), top=round(h * ratio),
                bottom=round(h * ratio))


def _crop_resize(off, hw, size, box=(0.2, 0.15, 0.55, 0.6)) -> dict:
    """CROP_RESIZE of the fractional box (top, left, height, width) to size x size."""
    h, w = hw
    t, l, bh, bw = box
    return _cfg(off, "CROP_RESIZE", i=int(t * h), j=int(l * w), h=max(1, int(bh * h)), w=max(1, int(bw * w)),
                size=[size, size])


def _paste(off, size, box=(0.3, 0.1, 0.5, 0.6)) -> list[dict]:
    """OverlayImageOntoTheOther's configs: the image resized into a box of a size x size background."""
    t, l, bh, bw = box
    i, j, h, w = int(t * size), int(l * size), int(bh * size), int(bw * size)
    return [_cfg(off, "RESIZE", h=h, w=w), _cfg(off, "PASTE_IMAGE_ONTO", i=i, j=j, h=h, w=w, size=(size, size))]


def edit_configs(off, kind: str, native_hw: tuple[int, int], size: int) -> list[dict]:
    """The official config list of one named edit (``EDIT_KINDS``) of an original ``native_hw``, ending at
    size x size like every official query. Geometric ops act at the native size, as when the official pipeline
    draws the geometry group before the crop group."""
    hw = tuple(native_hw)
    final = _cfg(off, "RESIZE", h=size, w=size)
    if kind == "resize":
        return [final]
    if kind == "crop_resize":
        return [_crop_resize(off, hw, size)]
    if kind in ("hflip", "vflip"):
        return [_flip(off, hw, kind == "hflip"), final]
    if kind == "rotate90":
        return [_affine(off, hw, 90.0), final]
    if kind == "rotate_snapped":  # 100 degrees is within 22.5 of 90: the official affine snaps it
        return [_affine(off, hw, _snap(100.0)), final]
    if kind == "rotate_shear":
        return [_affine(off, hw, 30.0, shear_x=20.0), final]
    if kind == "perspective":
        return [_perspective(off, hw, [(0.1, 0.05), (0.95, 0.15), (0.85, 0.9), (0.05, 0.95)]), final]
    if kind == "padding":
        return [_padding(off, hw), final]
    if kind == "paste":
        return _paste(off, size) + [final]
    if kind == "chain":  # crop, then flip, rotation and padding on the cropped canvas, then the final resize
        sq = (size, size)
        return [_crop_resize(off, hw, size), _flip(off, sq, True), _affine(off, sq, 30.0), _padding(off, sq), final]
    raise ValueError(f"kind: unknown edit {kind!r}; choose one of {', '.join(EDIT_KINDS)}")


def _snap(angle: float, affinity: float = 22.5) -> float:
    """The official RandomAffine's snapping (REFERENCE.md section 2): within ``affinity`` of a right angle."""
    angle %= 360.0
    for right in (0.0, 90.0, 180.0, 270.0, 360.0):
        if abs(angle - right) <= affinity:
            return right % 360.0
    return angle


# --- random lyakaap-like geometry -------------------------------------------------------------------------------

def _rrc_box(rng, hw, scale, ratio) -> tuple[int, int, int, int]:
    """A RandomResizedCrop box (i, j, h, w) with area fraction in ``scale`` and log-uniform aspect ``ratio``."""
    h, w = hw
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        ar = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        bw, bh = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
        if 0 < bw <= w and 0 < bh <= h:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    return 0, 0, h, w


def _crop_group(off, rng, hw, size) -> list[dict]:
    if rng.random() >= 0.3:
        return []
    choice = rng.integers(3)
    if choice == 0:
        i, j, h, w = _rrc_box(rng, hw, (0.25, 0.5), (0.33, 3.0))
        return [_cfg(off, "CROP_RESIZE", i=i, j=j, h=h, w=w, size=[size, size])]
    pre = []
    if rng.random() < 0.5:
        i, j, h, w = _rrc_box(rng, hw, (0.2, 1.0) if choice == 1 else (0.3, 1.0), (0.33, 3.0))
        pre = [_cfg(off, "CROP_RESIZE", i=i, j=j, h=h, w=w, size=[size, size])]
    if choice == 2:  # the other image pasted on top, translucent: geometry unchanged
        return pre + [_cfg(off, "PASTE_IMAGE_BENEATH", i=0, j=0, h=1, w=1, opacity=0.25)]
    i, j, h, w = _rrc_box(rng, (size, size), (0.25, 0.5), (0.33, 3.0))
    return pre + [_cfg(off, "RESIZE", h=h, w=w), _cfg(off, "PASTE_IMAGE_ONTO", i=i, j=j, h=h, w=w, size=(size, size))]


def _geo_group(off, rng, hw) -> list[dict]:
    out = []
    if rng.random() < 0.5:
        out.append(_flip(off, hw, True))
    if rng.random() < 0.1:
        out.append(_flip(off, hw, False))
    if rng.random() < 0.25:
        if rng.random() < 0.5:
            h, w = hw
            dx, dy = int(0.5 * (w // 2)), int(0.5 * (h // 2))
            left, right = (0, dx + 1), (w - dx - 1, w)
            top, bottom = (0, dy + 1), (h - dy - 1, h)
            fr = [(rng.integers(*x), rng.integers(*y)) for x, y in ((left, top), (right, top), (right, bottom),
                                                                     (left, bottom))]
            out.append(_perspective(off, hw, [(x / max(w - 1, 1), y / max(h - 1, 1)) for x, y in fr]))
        else:
            out.append(_affine(off, hw, _snap(rng.uniform(0, 360)), shear_x=rng.uniform(-45, 45)))
    return out


def _out_hw(configs: list, hw: tuple[int, int]) -> tuple[int, int]:
    for c in configs:
        n, p = c["type"].name, c["params"]
        if n in ("RESIZE", "CROP"):
            hw = (p["h"], p["w"])
        elif n == "CROP_RESIZE":
            hw = (p["size"][1], p["size"][0])
        elif n == "PASTE_IMAGE_ONTO":
            hw = (p["size"][1], p["size"][0])
        elif n == "PADDING":
            hw = (hw[0] + p["top"] + p["bottom"], hw[1] + p["left"] + p["right"])
    return hw


def random_chain(off, rng: np.random.Generator, native_hw: tuple[int, int], size: int) -> list[dict]:
    """A random geometric edit chain shaped like the official descriptor query pipeline (crop and geometry groups
    in random order, optional padding, final resize to size x size)."""
    hw, configs = tuple(native_hw), []
    groups = ["crop", "geo"]
    rng.shuffle(groups)
    for g in groups:
        part = _crop_group(off, rng, hw, size) if g == "crop" else _geo_group(off, rng, hw)
        configs += part
        hw = _out_hw(part, hw)
    if rng.random() < 0.15:
        configs.append(_padding(off, hw))
    configs.append(_cfg(off, "RESIZE", h=size, w=size))
    return configs
