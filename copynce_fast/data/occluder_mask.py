"""What PixTrace is told a plan hides: the union of its occluders' masks, and the view it traces the plan with.

An occluder's mask is every pixel its layer touches (alpha > 0 in ``occluders.render_occluder``'s layer, the one the
executors composite: the render is cached, so the mask and the pixels share it), so a pixel an occluder changed is
always in the mask.
"""
from __future__ import annotations

import numpy as np

from copynce_fast.data.geometry import canvas_mask, layer_geometry
from copynce_fast.data.occluders import render_occluder
from copynce_fast.data.photometric import shuffle_indices
from copynce_fast.data.plan import AugmentPlan, Occluder, PhotoOp
from copynce_fast.pixtrace.view import View

__all__ = ["occluder_mask", "traced_view"]


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
