"""Sibling pairs: two disjoint parts of one original, each its own copy pair, side by side in a batch.

NDEC's point (AAAI 2023, arXiv 2205.12358) is that real collections hold *hard negatives*: images that look like
a reference but are not edited copies of it. Our plans know exactly which pixels a view shows, so such negatives
can be made without NDEC's extra training pairs: cut an original into parts A and B (left/right or top/bottom,
with a gap between them), and emit

* pair A = (edited copy of A, A resized to S x S) and
* pair B = (edited copy of B, B resized to S x S)

in the same batch. Both are copy pairs (InfoNCE positives, exact CopyNCE geometry), and the query of one and the
reference of the other are the same photograph with **zero shared pixels**: a hard negative for the in-batch
InfoNCE and for the ASL term (``loss.asl_weight``). ``data.sibling_rate`` is the fraction of batch slots given to
sibling pairs (0 = off, the default).

The query of a part is drawn by the ordinary pipeline (:func:`copynce_fast.data.plan_sampler.sample_query_plan`)
on the part's canvas, then a crop stage to the part is put in front of its geometry, so every view stays a view of
the whole original and PixTrace traces it as usual; a point outside the part maps outside the crop and shows
nothing. Parts are integer pixel boxes separated by a gap of at least one pixel, so no source pixel belongs to
both.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator

import numpy as np

from copynce_fast.data.plan import AugmentPlan
from copynce_fast.data.plan_sampler import PairKey, PairPlan, derive_seed, sample_pair, sample_query_plan
from copynce_fast.data.presets import AugmentConfig
from copynce_fast.pixtrace import stages as st
from copynce_fast.pixtrace.view import View

__all__ = ["SIBLING_PARTS", "split_boxes", "restrict_plan", "sample_sibling_pair", "SiblingBatchSampler"]

SIBLING_PARTS = (1, 2)  # PairKey.part of the two halves; 0 = an ordinary pair
_SPLIT_TAG = 0x51B  # seed key of the split, shared by both parts of an original
MIN_PART_FRACTION = 0.35  # each part keeps at least this share of the cut side
GAP_FRACTION = 0.02  # gap between the parts (>= 1 px): no source pixel in both
MIN_SIDE = 16  # originals with a cut side shorter than this are not split (an ordinary pair instead)

Box = tuple[int, int, int, int]  # (top, left, height, width) in source pixels


def split_boxes(rng: np.random.Generator, hw) -> tuple[Box, Box] | None:
    """Cut a ``(H, W)`` original into two disjoint integer boxes, across its longer side (ties: a coin).

    Returns ``(box_a, box_b)`` or None when the original is too small to split.
    """
    h, w = (int(v) for v in hw)
    vertical_cut = w > h or (w == h and rng.random() < 0.5)  # cut the width: left / right parts
    side = w if vertical_cut else h
    if side < MIN_SIDE:
        return None
    gap = max(1, round(GAP_FRACTION * side))
    lo = int(np.ceil(MIN_PART_FRACTION * side))
    hi = side - gap - lo
    if hi < lo:
        return None
    cut = int(rng.integers(lo, hi + 1))  # part A = [0, cut), part B = [cut + gap, side)
    if vertical_cut:
        return (0, 0, h, cut), (0, cut + gap, h, w - cut - gap)
    return (0, 0, cut, w), (cut + gap, 0, h - cut - gap, w)


def restrict_plan(plan: AugmentPlan, source_hw, box: Box) -> AugmentPlan:
    """``plan`` (drawn on the canvas of ``box``) as a view of the whole original: a crop to ``box`` first.

    The overlay's ``at`` (stages before compositing) moves by one, as every stage does.
    """
    top, left, bh, bw = box
    if tuple(plan.view.source_hw) != (bh, bw):
        raise ValueError(f"plan: drawn on {plan.view.source_hw}, expected the box's {(bh, bw)}")
    hw = tuple(int(v) for v in source_hw)
    view = View(hw, (st.crop(hw, top, left, bh, bw),) + tuple(plan.view.stages))
    overlay = None if plan.overlay is None else replace(plan.overlay, at=plan.overlay.at + 1)
    return replace(plan, view=view, overlay=overlay)


def sample_sibling_pair(cfg: AugmentConfig, seed: int, epoch: int, index: int, hw_of: Callable[[int], tuple],
                        num_images: int, part: int) -> PairPlan:
    """The copy pair of part ``part`` (1 or 2) of original ``index``: (edited copy of the part, the part resized).

    Both parts of one (seed, epoch, index) use the same split. An original too small to split gives the ordinary
    pair of ``index`` for part 1 and for part 2 alike.
    """
    if part not in SIBLING_PARTS:
        raise ValueError(f"part must be one of {SIBLING_PARTS}, got {part!r}")
    hw = tuple(int(v) for v in hw_of(index))
    boxes = split_boxes(np.random.default_rng(derive_seed(seed, epoch, index, _SPLIT_TAG)), hw)
    if boxes is None:
        return sample_pair(cfg, seed, epoch, index, hw_of, num_images, index)
    box = boxes[part - 1]
    rng = np.random.default_rng(derive_seed(seed, epoch, index, _SPLIT_TAG, part))

    def pick_other(r):
        for _ in range(4):
            j = int(r.integers(num_images))
            if j != index and hw_of(j) is not None:
                return j, tuple(hw_of(j))
        return None

    top, left, bh, bw = box
    query = restrict_plan(sample_query_plan(rng, cfg, index, (bh, bw), pick_other), hw, box)
    reference = AugmentPlan(index, View(hw, (st.resized_crop(hw, top, left, bh, bw, (cfg.size, cfg.size)),)))
    return PairPlan(query, reference, True, True)


class SiblingBatchSampler:
    """Wraps a batch sampler and turns a share of each batch into sibling pairs.

    In every batch, ``round(rate * B / 2)`` slot couples ``(2j, 2j + 1)`` (chosen at random, seeded by
    (seed, epoch, batch)) are replaced by ``PairKey(a, epoch, part=1)`` and ``PairKey(a, epoch, part=2)`` with
    ``a`` the couple's first image. Couples keep the descriptor's anchor/neighbour layout intact elsewhere.
    Everything else (``set_epoch``, ``start_batch``, ``len``) is the wrapped sampler's. Render the keys with the
    torch loader: the DALI loader draws the plans but renders a plain reference as a whole-image resize, not the
    part (``train.data`` refuses the combination).

    Args:
        base: an :class:`~copynce_fast.data.batch_samplers.EpochBatchSampler` or a subclass.
        rate: fraction of slots given to sibling pairs, in [0, 1].
        seed: base seed.
    """

    def __init__(self, base, rate: float, seed: int = 0):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate!r}")
        if base.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 for sibling pairs, got {base.batch_size}")
        self.base, self.rate, self.seed = base, float(rate), seed

    def __getattr__(self, name):  # epoch, start_batch, batch_size, ... of the wrapped sampler
        if name == "base":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.base.set_epoch(epoch, start_batch)

    def __len__(self) -> int:
        return len(self.base)

    def epoch_keys(self, epoch: int) -> list[list[PairKey]]:
        out = []
        for b, keys in enumerate(self.base.epoch_keys(epoch)):
            keys = list(keys)
            couples = len(keys) // 2
            n = min(couples, round(self.rate * len(keys) / 2))
            rng = np.random.default_rng(derive_seed(self.seed, epoch, b, _SPLIT_TAG))
            for j in rng.choice(couples, size=n, replace=False) if n else ():
                a = keys[2 * j].index
                keys[2 * j] = PairKey(a, epoch, part=SIBLING_PARTS[0])
                keys[2 * j + 1] = PairKey(a, epoch, part=SIBLING_PARTS[1])
            out.append(keys)
        return out

    def __iter__(self) -> Iterator[list[PairKey]]:
        return iter(self.epoch_keys(self.base.epoch)[self.base.start_batch:])
