"""AugmentPlan: one edited view as data (host, numpy, tiny), before any pixel exists.

A plan holds
- the geometry: a pixtrace ``View`` (source size + 3x3 stages) -- the very matrices the executors warp with;
- an optional overlay: another source image composited with the copy at some point of the chain, either as
  the background the copy is pasted into ("beneath") or laid over the copy ("above");
- the photometric ops and the occluders (text, emoji-like glyphs, smears, erasing), in the order they are
  applied on the warped image, each with its parameters and seeds.

Deviation from the reference (documented on purpose): all geometry of a view is rendered as ONE composed warp
(per layer) and every photometric op and occluder runs afterwards, in the plan's order, on the S x S warped
image. The reference interleaves them in its shuffled group order, so e.g. text drawn before a rotation is
rotated there and is upright here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from copynce_fast.pixtrace import stages as st
from copynce_fast.pixtrace.view import View

__all__ = ["PhotoOp", "Occluder", "Overlay", "AugmentPlan", "reference_plan", "null_view", "PHOTO_KINDS",
           "OCCLUDER_KINDS"]

# Photometric ops and their params (see photometric.py for the exact maths):
#   jitter (brightness, contrast, saturation, hue, o0, o1, o2, o3): factors, then the order of the four ops
#   grayscale (), invert (), sepia (), channel_shuffle (p0, p1, p2), rgb_shift (dr, dg, db)
#   pixelize (ratio,), shuffle (factor,) + seed, jpeg (quality,), blur (sigma,), edge (more,), noise (std,) + seed
PHOTO_KINDS = ("jitter", "grayscale", "invert", "sepia", "channel_shuffle", "rgb_shift", "pixelize", "shuffle",
               "jpeg", "blur", "edge", "noise")
OCCLUDER_KINDS = ("text", "emoji", "smear", "erase")


@dataclass(frozen=True)
class PhotoOp:
    """A photometric op on the warped S x S image: ``kind`` in PHOTO_KINDS, numbers in ``params``."""

    kind: str
    params: tuple[float, ...] = ()
    seed: int = 0  # for ops that draw random pixels (shuffle, noise)

    def __post_init__(self):
        if self.kind not in PHOTO_KINDS:
            raise ValueError(f"kind: expected one of {PHOTO_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Occluder:
    """Something drawn over the view in its final frame; rendered by occluders.render_occluder.

    Args:
        kind: "text" | "emoji" | "smear" | "erase".
        top, left: anchor of the drawing in the final frame (pixels).
        opacity: in [0, 1]; with ``track_occluders`` an occluder with opacity >= the plan's threshold is marked.
        colour: (r, g, b) uint8 colour (text, emoji, smear).
        size: font size (text), glyph side (emoji), stroke width (smear), box height (erase).
        width: box width (erase).
        text: the string (text).
        points: Bezier control points (x, y) in the final frame (smear).
        seed: glyph variant (emoji) or noise seed (erase).
    """

    kind: str
    top: int
    left: int
    opacity: float = 1.0
    colour: tuple[int, int, int] = (255, 255, 255)
    size: int = 0
    width: int = 0
    text: str = ""
    points: tuple[tuple[float, float], ...] = ()
    seed: int = 0

    def __post_init__(self):
        if self.kind not in OCCLUDER_KINDS:
            raise ValueError(f"kind: expected one of {OCCLUDER_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity: must be in [0, 1], got {self.opacity}")


@dataclass(frozen=True)
class Overlay:
    """Another source image composited with the copy after ``at`` stages of the view.

    Args:
        mode: "beneath" = the copy (stage ``at - 1`` is its paste) lies over the other image, with alpha
            ``alpha``; "above" = the other image lies over the copy with opacity ``alpha``.
        index: source index of the other image.
        other_hw: (H, W) of the other original.
        at: number of the view's stages applied before compositing (the composite lives on
            ``view.stages[at - 1].out_hw``); both layers then go through ``view.stages[at:]``.
        other_stages: stages taking the other original onto that canvas (a resize for "beneath", a paste
            into the overlay box for "above").
        alpha: see ``mode``.
    """

    mode: Literal["beneath", "above"]
    index: int
    other_hw: tuple[int, int]
    at: int
    other_stages: tuple[st.Stage, ...]
    alpha: float

    def __post_init__(self):
        if self.mode not in ("beneath", "above"):
            raise ValueError(f"mode: expected 'beneath' or 'above', got {self.mode!r}")
        if self.at < (1 if self.mode == "beneath" else 0):
            raise ValueError(f"at: must be >= 1 for 'beneath' (it follows the paste) and >= 0, got {self.at}")
        View(self.other_hw, self.other_stages)  # validates the chain

    def other_view(self, view: View) -> View:
        """The other image's own geometry: its stages followed by the stages after the composite."""
        return View(self.other_hw, tuple(self.other_stages) + tuple(view.stages[self.at:]))


Op = Union[PhotoOp, Occluder]


@dataclass(frozen=True)
class AugmentPlan:
    """One view of source image ``source_index``: geometry, overlay, photometric ops and occluders.

    Args:
        source_index: index of the original in its source.
        view: geometry (no occluder); its ``out_hw`` is the view's size.
        ops: photometric ops and occluders in the order they are applied on the warped image.
        overlay: optional other image composited into the chain.
        group_order: the order the reference groups were drawn in (crop / geo / aug / additional; for logs).
        track_occluders: mark occluders in the traced view (``occluder_mask.traced_view``; False = the reference
            behaviour).
        occluder_opacity: an occluder or laid-over image with opacity >= this counts as occluding.
        shuffle_is_occluder: shuffled pixels count as occluded.
    """

    source_index: int
    view: View
    ops: tuple[Op, ...] = ()
    overlay: Overlay | None = None
    group_order: tuple[str, ...] = ()
    track_occluders: bool = True
    occluder_opacity: float = 0.5
    shuffle_is_occluder: bool = True

    def __post_init__(self):
        if self.view.occluder is not None:
            raise ValueError("view: the plan's view carries geometry only; occluders are derived from ops")
        if self.overlay is not None and self.overlay.at > len(self.view.stages):
            raise ValueError(f"overlay: at={self.overlay.at} exceeds the {len(self.view.stages)} stages of the view")
        if self.overlay is not None and self.overlay.mode == "beneath" and \
                self.view.stages[self.overlay.at - 1].name != "paste":
            raise ValueError("overlay: a 'beneath' overlay must follow the copy's paste stage")

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.view.out_hw

    @property
    def occluders(self) -> tuple[Occluder, ...]:
        return tuple(op for op in self.ops if isinstance(op, Occluder))


def reference_plan(source_index: int, source_hw, size: int) -> AugmentPlan:
    """The reference view: a plain resize of the original to size x size, no other edit."""
    hw = tuple(int(v) for v in source_hw)
    return AugmentPlan(source_index, View(hw, (st.resize(hw, (size, size)),)))


def null_view(source_hw, size: int) -> View:
    """A size x size view of ``source_hw`` that shows none of it (for negative pairs: nothing corresponds)."""
    h, w = (int(v) for v in source_hw)
    return View((h, w), (st.crop((h, w), h + size, w + size, size, size),))
