"""Random chains of every kind of geometric stage: for property tests, fuzzing and benchmarks."""
from __future__ import annotations

import numpy as np

from copynce_fast.pixtrace import stages as S
from copynce_fast.pixtrace.view import View

__all__ = ["random_view", "pixel_centres"]


def pixel_centres(h: int, w: int) -> np.ndarray:
    """(x, y) centres of all pixels of an h x w image in raster order: [h*w, 2] float64."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)


def _random_stage(rng: np.random.Generator, hw: tuple[int, int]) -> S.Stage:
    h, w = hw
    kind = rng.integers(0, 10)
    if kind == 0:
        ch, cw = int(rng.integers(max(1, h // 2), h + 1)), int(rng.integers(max(1, w // 2), w + 1))
        return S.crop(hw, int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw)
    if kind == 1:
        return S.resize(hw, (int(rng.integers(16, 80)), int(rng.integers(16, 80))))
    if kind == 2:
        bh, bw = rng.uniform(0.3, 1.0) * h, rng.uniform(0.3, 1.0) * w
        return S.resized_crop(hw, rng.uniform(0, h - bh), rng.uniform(0, w - bw), bh, bw, (48, 40))
    if kind == 3:
        return S.hflip(hw)
    if kind == 4:
        return S.vflip(hw)
    if kind == 5:
        return S.rotate(hw, S.snap_angle(rng.uniform(0, 360), tolerance=float(rng.choice([0.0, 22.5]))))
    if kind == 6:
        return S.shear(hw, rng.uniform(-40, 40))
    if kind == 7:
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
        dst = src + rng.uniform(-0.15, 0.15, size=(4, 2)) * np.array([w, h])
        return S.perspective(hw, src, dst)
    if kind == 8:
        return S.pad(hw, *(int(x) for x in rng.integers(0, 10, size=4)))
    ch, cw = int(rng.integers(h, 2 * h)), int(rng.integers(w, 2 * w))
    bh, bw = rng.uniform(0.3, 1) * ch, rng.uniform(0.3, 1) * cw
    return S.paste(hw, (ch, cw), rng.uniform(0, ch - bh), rng.uniform(0, cw - bw), bh, bw)


def random_view(rng: np.random.Generator, src_hw: tuple[int, int], out_hw: tuple[int, int],
                n_stages: int = 4) -> View:
    """A view of an original of size ``src_hw``: ``n_stages`` random stages, then a resize to ``out_hw``."""
    v = View(src_hw)
    for _ in range(n_stages):
        v = v.then(_random_stage(rng, v.out_hw))
    return v.then(S.resize(v.out_hw, out_hw))
