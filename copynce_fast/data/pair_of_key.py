"""The pair a batch key names: ``plan_pair(source, cfg, seed, PairKey) -> PairPlan``, what every loader renders.

A key names an ordinary pair (:func:`copynce_fast.data.plan_sampler.sample_pair`) or one part of a sibling split
(:func:`copynce_fast.data.siblings.sample_sibling_pair`); this module sits above both samplers and picks one.
Unusable images (undecodable, recorded by the source) are replaced by deterministic substitutes, so a key gives
the same pair in any process.
"""
from __future__ import annotations

from copynce_fast.data.plan_sampler import PairKey, PairPlan, sample_pair
from copynce_fast.data.presets import AugmentConfig
from copynce_fast.data.siblings import sample_sibling_pair
from copynce_fast.data.sources import ImageSource

__all__ = ["plan_pair", "MAX_TRIES"]

MAX_TRIES = 8  # unusable images replaced before a pair is given up


def plan_pair(source: ImageSource, cfg: AugmentConfig, seed: int, key: PairKey) -> tuple[PairPlan, int]:
    """The pair for ``key``, skipping unusable images: (plan, substitutions made). Decodes nothing."""
    n = len(source)
    for attempt in range(MAX_TRIES):
        idx = (key.index + attempt * 7919) % n  # a deterministic substitute for an unusable reference
        if source.hw(idx) is None:
            continue
        if key.part:
            return sample_sibling_pair(cfg, seed, key.epoch, idx, source.hw, n, key.part), attempt
        qi = key.query_index
        if qi is not None and (qi == key.index or source.hw(qi) is None):
            qi = idx if qi == key.index else None
        return sample_pair(cfg, seed, key.epoch, idx, source.hw, n, qi), attempt
    raise RuntimeError(f"no usable image found after {MAX_TRIES} tries from index {key.index}; "
                       f"skipped so far: {source.skips.skipped}")
