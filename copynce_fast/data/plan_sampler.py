"""Drawing plans: the reference's lyakaap pipeline (REFERENCE.md §2) drawn as AugmentPlans, pair by pair.

Everything is drawn from one numpy Generator per pair, seeded from (seed, epoch, index, query index), so the
same key gives the same plans in any process and with any executor. Drawing a plan costs tens of
microseconds and touches no pixel.

Query view = Shuffle[crop, geo, aug, additional] then post-process:
- crop (p): one of a RandomResizedCrop to S x S, the copy pasted into another image resized to S x S
  (optional RRC first), or another image laid over the copy (optional RRC first);
- geo: hflip, vflip, then (p) a perspective or a rotation (right-angle snapping) with shear_x, as ONE warp;
- aug: colour jitter (always), pixelisation, pixel shuffle, JPEG, grayscale, blur, text, emoji, edge
  enhancement, smear -- each with its probability, in a random order;
- additional (p): one extra photometric op;
- post: padding (p), resize to S x S, random erasing (p).
"""
from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Callable

import numpy as np

from copynce_fast.data.occluder_mask import traced_view
from copynce_fast.data.plan import AugmentPlan, Occluder, Overlay, PhotoOp, null_view, reference_plan
from copynce_fast.data.presets import AugmentConfig
from copynce_fast.pixtrace import stages as st
from copynce_fast.pixtrace.view import View

__all__ = ["derive_seed", "random_box", "sample_query_plan", "PairPlan", "sample_pair", "PairKey", "TEXT_CHARS",
           "text_font_sizes"]

TEXT_CHARS = string.ascii_letters + string.digits + "      !?.,:-#@&"  # what text occluders are drawn from
OtherPicker = Callable[[np.random.Generator], "tuple[int, tuple[int, int]] | None"]


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (order matters), identical in every process."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys]).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))


def text_font_sizes(cfg: AugmentConfig) -> range:
    """Every pixel size a text occluder of ``cfg`` can be drawn at (``_aug_ops``'s rule: max(6, round(f S)) for f in
    ``cfg.text_font_frac``)."""
    lo, hi = cfg.text_font_frac
    return range(max(6, round(lo * cfg.size)), max(6, round(hi * cfg.size)) + 1)


def _pick(rng, options):
    """``rng.choice(options)`` for a 1-d sequence, as the element itself: the same draw (choice with replacement
    and no weights draws ``integers(0, len, dtype=int64)``; tests/test_data_plan_golden.py checks it) without
    choice's array conversion, ~5x cheaper."""
    return options[int(rng.integers(0, len(options), dtype=np.int64))]


def _uniform(rng, lo_hi) -> float:
    lo, hi = lo_hi
    return float(lo + (hi - lo) * rng.random())


def random_box(rng, hw, scale, ratio) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop.get_params: (top, left, height, width) inside hw, area fraction ~ scale."""
    h, w = hw
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(rng, scale)
        aspect = math.exp(_uniform(rng, log_r))
        bw, bh = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < bw <= w and 0 < bh <= h:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    in_ratio = w / h  # fallback: the central crop with the aspect clamped into range
    if in_ratio < ratio[0]:
        bw, bh = w, max(1, round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        bh, bw = h, max(1, round(h * ratio[1]))
    else:
        bw, bh = w, h
    return (h - bh) // 2, (w - bw) // 2, bh, bw


def _rrc(rng, hw, scale, ratio, size) -> st.Stage:
    top, left, bh, bw = random_box(rng, hw, scale, ratio)
    return st.resized_crop(hw, top, left, bh, bw, (size, size))


def _perspective(rng, hw, distortion) -> st.Stage:
    h, w = hw
    dx, dy = distortion * w / 2, distortion * h / 2
    u = lambda: rng.random()  # noqa: E731
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(u() * dx, u() * dy), (w - u() * dx, u() * dy), (w - u() * dx, h - u() * dy), (u() * dx, h - u() * dy)]
    return st.perspective(hw, src, dst)


def _rotate_shear(rng, hw, cfg: AugmentConfig) -> st.Stage:
    angle = st.snap_angle(_uniform(rng, cfg.rotate_range), cfg.snap_tolerance)
    sx = _uniform(rng, cfg.shear_range)
    # One warp (torchvision applies R . Sh about the centre in a single resampling, no clipping in between).
    m = st.rotate(hw, angle).matrix @ st.shear(hw, sx).matrix
    return st.affine(hw, m)


def _aug_ops(rng, cfg: AugmentConfig, size: int) -> list:
    """The aug group: each op drawn with its probability, then shuffled."""
    ops = []
    b, c, s, h = cfg.jitter_brightness, cfg.jitter_contrast, cfg.jitter_saturation, cfg.jitter_hue
    if max(b, c, s, h) > 0:
        f = lambda r: _uniform(rng, (max(0.0, 1 - r), 1 + r))  # noqa: E731
        ops.append(PhotoOp("jitter", (f(b), f(c), f(s), _uniform(rng, (-h, h)), *map(float, rng.permutation(4)))))
    if rng.random() < cfg.pixelize_p:
        ops.append(PhotoOp("pixelize", (_uniform(rng, cfg.pixelize_ratio),)))
    if rng.random() < cfg.shuffle_p:
        ops.append(PhotoOp("shuffle", (cfg.shuffle_factor,), seed=int(rng.integers(2**31))))
    if rng.random() < cfg.jpeg_p:
        ops.append(PhotoOp("jpeg", (float(_pick(rng, cfg.jpeg_qualities)),)))
    if rng.random() < cfg.grayscale_p:
        ops.append(PhotoOp("grayscale"))
    if rng.random() < cfg.blur_p:
        ops.append(PhotoOp("blur", (_uniform(rng, cfg.blur_sigma),)))
    colour = lambda: tuple(rng.integers(0, 256, 3).tolist())  # noqa: E731
    if rng.random() < cfg.text_p:
        fs = max(6, round(_uniform(rng, cfg.text_font_frac) * size))
        n = int(rng.integers(cfg.text_length[0], cfg.text_length[1] + 1))
        text = "".join(map(TEXT_CHARS.__getitem__, rng.integers(0, len(TEXT_CHARS), n, dtype=np.int64).tolist()))
        top, left = int(rng.integers(0, max(1, size - fs))), int(rng.integers(0, size * 4 // 5))
        ops.append(Occluder("text", top=top, left=left,
                            opacity=_uniform(rng, cfg.text_opacity), colour=colour(), size=fs, text=text))
    if rng.random() < cfg.emoji_p:
        gs = max(4, round(_uniform(rng, cfg.emoji_size) * size))
        ops.append(Occluder("emoji", top=int(rng.integers(0, size - gs + 1)), left=int(rng.integers(0, size - gs + 1)),
                            opacity=_uniform(rng, cfg.emoji_opacity), colour=colour(), size=gs,
                            seed=int(rng.integers(4))))
    if rng.random() < cfg.edge_p:
        ops.append(PhotoOp("edge", (float(rng.random() < 0.5),)))
    if rng.random() < cfg.smear_p:
        top, left, bh, bw = random_box(rng, (size, size), cfg.smear_box_area, cfg.ratio)
        k = int(rng.integers(cfg.smear_points[0], cfg.smear_points[1] + 1))
        xs = (left + rng.random(k) * bw).tolist()  # x draws first, then y
        ys = (top + rng.random(k) * bh).tolist()
        ops.append(Occluder("smear", top=top, left=left, colour=colour(),
                            size=int(rng.integers(cfg.smear_width[0], cfg.smear_width[1] + 1)),
                            points=tuple(zip(xs, ys))))
    return [ops[i] for i in rng.permutation(len(ops))]


def _additional_op(rng, cfg: AugmentConfig) -> list:
    if not cfg.additional_choices or rng.random() >= cfg.additional_p:
        return []
    kind = str(_pick(rng, cfg.additional_choices))
    if kind == "channel_shuffle":
        perm = rng.permutation(3)
        while np.array_equal(perm, np.arange(3)):
            perm = rng.permutation(3)
        return [PhotoOp(kind, tuple(float(v) for v in perm))]
    if kind == "rgb_shift":
        return [PhotoOp(kind, tuple(float(v) for v in rng.uniform(-20, 20, 3)))]
    if kind == "noise":
        return [PhotoOp(kind, (float(rng.uniform(3.0, 8.0)),), seed=int(rng.integers(2**31)))]
    return [PhotoOp(kind)]


def _erase(rng, cfg: AugmentConfig, size: int) -> list:
    if rng.random() >= cfg.erase_p:
        return []
    area = size * size
    log_r = (math.log(cfg.erase_ratio[0]), math.log(cfg.erase_ratio[1]))
    for _ in range(10):
        ea = area * _uniform(rng, cfg.erase_scale)
        ar = math.exp(_uniform(rng, log_r))
        bh, bw = round(math.sqrt(ea * ar)), round(math.sqrt(ea / ar))
        if 0 < bh < size and 0 < bw < size:
            return [Occluder("erase", top=int(rng.integers(0, size - bh + 1)), left=int(rng.integers(0, size - bw + 1)),
                             size=bh, width=bw, seed=int(rng.integers(2**31)))]
    return []


def sample_query_plan(rng: np.random.Generator, cfg: AugmentConfig, index: int, source_hw,
                      pick_other: OtherPicker | None = None) -> AugmentPlan:
    """Draw one edited copy of source ``index`` (size ``source_hw``) with the lyakaap pipeline of ``cfg``.

    ``pick_other(rng)`` returns (index, (H, W)) of another source image, or None; without one, the crop group
    falls back to the resized crop.
    """
    size = cfg.size
    hw = tuple(int(v) for v in source_hw)
    stages: list[st.Stage] = []
    overlay = None
    ops: list = []
    groups = ["crop", "geo", "aug", "additional"]
    if cfg.group_shuffle:
        groups = [groups[i] for i in rng.permutation(4)]
    for g in groups:
        if g == "crop" and rng.random() < cfg.crop_p:
            choice = str(_pick(rng, cfg.crop_choices))
            other = pick_other(rng) if (choice != "rrc" and pick_other is not None) else None
            if other is None:
                choice = "rrc"
            if choice == "rrc":
                stages.append(_rrc(rng, hw, cfg.rrc_scale, cfg.ratio, size))
                hw = (size, size)
            elif choice == "paste":
                if rng.random() < cfg.paste_pre_rrc_p:
                    stages.append(_rrc(rng, hw, cfg.paste_pre_rrc_scale, cfg.ratio, size))
                    hw = (size, size)
                top, left, bh, bw = random_box(rng, (size, size), cfg.paste_scale, cfg.ratio)
                stages.append(st.paste(hw, (size, size), top, left, bh, bw))
                hw = (size, size)
                oi, ohw = other
                overlay = Overlay("beneath", oi, ohw, len(stages), (st.resize(ohw, (size, size)),),
                                  _uniform(rng, cfg.paste_alpha))
            else:
                if rng.random() < cfg.overlay_pre_rrc_p:
                    stages.append(_rrc(rng, hw, cfg.overlay_pre_rrc_scale, cfg.ratio, size))
                    hw = (size, size)
                top, left, bh, bw = random_box(rng, hw, cfg.overlay_scale, cfg.ratio)
                oi, ohw = other
                overlay = Overlay("above", oi, ohw, len(stages), (st.paste(ohw, hw, top, left, bh, bw),),
                                  _uniform(rng, cfg.overlay_opacity))
        elif g == "geo":
            if rng.random() < cfg.hflip_p:
                stages.append(st.hflip(hw))
            if rng.random() < cfg.vflip_p:
                stages.append(st.vflip(hw))
            if rng.random() < cfg.warp_p:
                stages.append(_perspective(rng, hw, cfg.perspective_distortion) if rng.random() < 0.5
                              else _rotate_shear(rng, hw, cfg))
        elif g == "aug":
            ops += _aug_ops(rng, cfg, size)
        elif g == "additional":
            ops += _additional_op(rng, cfg)
    if rng.random() < cfg.pad_p:
        ph, pw = round(cfg.pad_frac * hw[0]), round(cfg.pad_frac * hw[1])
        stages.append(st.pad(hw, ph, ph, pw, pw))
        hw = stages[-1].out_hw
    if hw != (size, size):
        stages.append(st.resize(hw, (size, size)))
    ops += _erase(rng, cfg, size)
    return AugmentPlan(index, View(tuple(int(v) for v in source_hw), tuple(stages)), tuple(ops), overlay,
                       tuple(groups), cfg.track_occluders, cfg.occluder_opacity, cfg.shuffle_is_occluder)


@dataclass(frozen=True)
class PairPlan:
    """One training pair: a query and a reference plan, and whether the query is a copy of the reference."""

    query: AugmentPlan
    reference: AugmentPlan
    is_copy: bool
    copynce: bool

    def traced_views(self) -> tuple[View, View]:
        """(query view, reference view) for pack_pairs: views of the reference's original, occluders included.

        For a negative pair the query view is a view of the reference's original that shows none of it, so
        every correspondence is invalid.
        """
        ref = traced_view(self.reference)
        if not self.is_copy:
            return null_view(ref.source_hw, self.query.out_hw[0]), ref
        return traced_view(self.query), ref


def sample_pair(cfg: AugmentConfig, seed: int, epoch: int, index: int, hw_of: Callable[[int], tuple],
                num_images: int, query_index: int | None = None) -> PairPlan:
    """The pair for key (seed, epoch, index[, query_index]).

    Args:
        hw_of: i -> (H, W) of source image i (a header read), or None for an unusable image.
        num_images: number of images in the source (others are drawn from all of them).
        query_index: None = positive with probability ``cfg.positive_rate``, else a random other image;
            an int = the query's source (== index: a copy; != index: a negative, e.g. a mined hard negative).
    """
    rng = np.random.default_rng(derive_seed(seed, epoch, index, -1 if query_index is None else query_index))
    if query_index is None:
        query_index = index
        if num_images > 1 and rng.random() >= cfg.positive_rate:
            for _ in range(4):  # a negative: any other usable image
                j = int((index + 1 + rng.integers(num_images - 1)) % num_images)
                if hw_of(j) is not None:
                    query_index = j
                    break
    is_copy = query_index == index

    def pick_other(r):
        for _ in range(4):
            j = int(r.integers(num_images))
            hw = hw_of(j)
            if hw is not None:
                return j, tuple(hw)
        return None

    ref_hw = hw_of(index)
    query = sample_query_plan(rng, cfg, query_index, ref_hw if is_copy else hw_of(query_index), pick_other)
    if cfg.pair_mode == "copy_copy":
        reference = sample_query_plan(rng, cfg, index, ref_hw, pick_other)
    else:
        reference = reference_plan(index, ref_hw, cfg.size)
    return PairPlan(query, reference, is_copy, is_copy or cfg.copynce_on_negatives)


@dataclass(frozen=True)
class PairKey:
    """Names one pair: what a batch sampler yields, what :func:`~copynce_fast.data.pair_of_key.plan_pair` draws the
    plans of."""

    index: int  # source index of the reference (and of the query for a copy)
    epoch: int = 0
    query_index: int | None = None  # None: copy with probability positive_rate; else the query's source
    part: int = 0  # 0: an ordinary pair; 1 / 2: a part of a sibling split of ``index`` (data/siblings.py)

