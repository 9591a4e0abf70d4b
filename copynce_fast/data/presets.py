"""AugmentConfig: every probability and range of the copy-augmentation zoo, and its named presets.

The presets reproduce the reference's ``lyakaap`` pipeline (REFERENCE.md §2) for the descriptor (D) and the
matcher (M). Effective probabilities are written down, not the reference's constructor arguments: its
RandomOverlayText(p) applies with probability 1 - p because of an inverted test, so D's p=0.25 becomes
``text_p=0.75`` here and M's p=0.35 becomes ``text_p=0.65``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

__all__ = ["AugmentConfig", "descriptor_preset", "matcher_preset", "plain_preset"]


@dataclass(frozen=True)
class AugmentConfig:
    size: int = 224  # S: side of the query and reference views (pixels)
    pair_mode: Literal["reference", "copy_copy"] = "reference"  # reference: resize of the original; copy_copy: 2 copies
    positive_rate: float = 1.0  # probability that a pair is a copy (the matcher draws negatives)
    copynce_on_negatives: bool = False  # reference quirk: True (negatives count in the CopyNCE mean)
    group_shuffle: bool = True  # draw a random order of the crop / geo / aug / additional groups per view
    # crop group: RandomApply(p) of a uniform choice among resized crop, paste-into-other, other-laid-over
    crop_p: float = 0.3  # probability that the crop group does anything
    crop_choices: tuple[str, ...] = ("rrc", "paste", "overlay")  # the choices the crop group draws from
    rrc_scale: tuple[float, float] = (0.25, 0.5)  # RandomResizedCrop area fraction of the current canvas
    ratio: tuple[float, float] = (0.33, 3.0)  # aspect ratio (w/h) range of every random box
    paste_scale: tuple[float, float] = (0.25, 0.5)  # area fraction of the S x S background the copy is pasted into
    paste_pre_rrc_p: float = 0.5  # probability of a resized crop (to S x S) before pasting
    paste_pre_rrc_scale: tuple[float, float] = (0.2, 1.0)  # its area range
    paste_alpha: tuple[float, float] = (0.5, 1.0)  # alpha of the pasted copy over the background
    overlay_pre_rrc_p: float = 0.5  # probability of a resized crop (to S x S) before laying another image over
    overlay_pre_rrc_scale: tuple[float, float] = (0.3, 1.0)  # its area range
    overlay_scale: tuple[float, float] = (0.3, 0.7)  # area fraction of the current canvas the laid-over image covers
    overlay_opacity: tuple[float, float] = (0.0, 0.5)  # opacity of the image laid over the copy
    # geo group: hflip, vflip, then RandomApply(p) of a choice between perspective and a snapping affine
    hflip_p: float = 0.5  # horizontal flip
    vflip_p: float = 0.1  # vertical flip
    warp_p: float = 0.25  # probability of a perspective or rotation+shear warp (chosen 50/50)
    perspective_distortion: float = 0.5  # torchvision RandomPerspective distortion_scale
    rotate_range: tuple[float, float] = (0.0, 360.0)  # rotation angle range (degrees, counter-clockwise)
    snap_tolerance: float = 22.5  # angles within this many degrees of a right angle snap to it
    shear_range: tuple[float, float] = (-45.0, 45.0)  # shear_x range (degrees) of the affine warp
    # aug group: every op below, in a random order per view; none is geometric
    jitter_brightness: float = 0.5  # ColorJitter brightness factor range [1 - b, 1 + b] (always applied)
    jitter_contrast: float = 0.5  # ColorJitter contrast
    jitter_saturation: float = 0.5  # ColorJitter saturation
    jitter_hue: float = 0.1  # ColorJitter hue shift range [-h, h] (fraction of a turn)
    pixelize_p: float = 0.15  # augly RandomPixelization
    pixelize_ratio: tuple[float, float] = (0.1, 1.0)  # down-scale ratio of the pixelisation
    shuffle_p: float = 0.15  # augly ShufflePixels
    shuffle_factor: float = 0.1  # fraction of pixels shuffled among themselves
    jpeg_p: float = 0.25  # OneOf JPEG qualities
    jpeg_qualities: tuple[int, ...] = (10, 20, 30, 50)  # JPEG qualities to choose from
    grayscale_p: float = 0.25  # RandomGrayscale
    blur_p: float = 0.2  # augly RandomBlur
    blur_sigma: tuple[float, float] = (0.2, 4.0)  # Gaussian sigma at S px (augly's radius 0..10 at native size)
    text_p: float = 0.75  # RandomOverlayText, effective (reference: p=0.25 applied with 1 - p)
    text_opacity: tuple[float, float] = (0.1, 1.0)  # opacity of the text
    text_font_frac: tuple[float, float] = (0.08, 0.3)  # font size as a fraction of S
    text_length: tuple[int, int] = (3, 20)  # number of characters
    emoji_p: float = 0.25  # RandomOverlayEmoji (procedural emoji-like glyphs, nothing downloaded)
    emoji_size: tuple[float, float] = (0.1, 0.5)  # glyph side as a fraction of S
    emoji_opacity: tuple[float, float] = (0.7, 1.0)  # opacity of the glyph
    edge_p: float = 0.25  # EdgeEnhance or EdgeEnhanceMore (50/50)
    smear_p: float = 0.25  # RandomSmearing: a Bezier stroke
    smear_points: tuple[int, int] = (5, 50)  # number of control points
    smear_box_area: tuple[float, float] = (0.08, 0.8)  # area fraction of the box holding the control points
    smear_width: tuple[int, int] = (1, 5)  # stroke width in pixels
    # additional group: OneOf(p) of photometric ops (the reference has 25 albumentations ops; see photometric.py)
    additional_p: float = 0.15  # probability of one additional op
    additional_choices: tuple[str, ...] = ("invert", "sepia", "channel_shuffle", "rgb_shift", "noise")  # its ops
    # post process: RandomPadding, resize to S x S, RandomErasing
    pad_p: float = 0.15  # RandomPadding
    pad_frac: float = 0.2  # padding on each side as a fraction of the canvas side
    erase_p: float = 0.15  # RandomErasing with Gaussian-noise fill, after the final resize
    erase_scale: tuple[float, float] = (0.02, 0.33)  # erased area fraction
    erase_ratio: tuple[float, float] = (0.3, 3.3)  # erased box aspect ratio
    # tracking
    track_occluders: bool = True  # mark occluded pixels invalid in PixTrace (False = the reference: ignore them)
    occluder_opacity: float = 0.5  # an occluder / laid-over image with opacity >= this counts as occluding
    shuffle_is_occluder: bool = True  # shuffled pixels count as occluded (when tracking)

    def __post_init__(self):
        if self.size < 8:
            raise ValueError(f"size: must be >= 8, got {self.size}")
        if self.pair_mode not in ("reference", "copy_copy"):
            raise ValueError(f"pair_mode: expected 'reference' or 'copy_copy', got {self.pair_mode!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_p") or f.name in ("positive_rate", "occluder_opacity", "shuffle_factor"):
                if not 0.0 <= float(v) <= 1.0:
                    raise ValueError(f"{f.name}: must be a probability in [0, 1], got {v}")
            elif isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
                if v[0] > v[1]:
                    raise ValueError(f"{f.name}: range must be (low, high) with low <= high, got {v}")
        unknown = set(self.crop_choices) - {"rrc", "paste", "overlay"}
        if unknown or not self.crop_choices:
            raise ValueError(f"crop_choices: expected a non-empty subset of rrc/paste/overlay, got {self.crop_choices}")
        unknown = set(self.additional_choices) - {"invert", "sepia", "channel_shuffle", "rgb_shift", "noise"}
        if unknown:
            raise ValueError(f"additional_choices: unknown ops {sorted(unknown)}")
        if not self.jpeg_qualities or not all(1 <= q <= 100 for q in self.jpeg_qualities):
            raise ValueError(f"jpeg_qualities: expected qualities in [1, 100], got {self.jpeg_qualities}")


def descriptor_preset(**overrides) -> AugmentConfig:
    """The reference descriptor pipeline (lyakaap, D column of REFERENCE.md §2); all pairs positive."""
    return replace(AugmentConfig(), **overrides)


def matcher_preset(**overrides) -> AugmentConfig:
    """The reference matcher pipeline (M column): stronger edits, 30% positives."""
    m = replace(
        AugmentConfig(), positive_rate=0.3, crop_p=0.5, rrc_scale=(0.15, 0.5), paste_scale=(0.15, 0.5),
        overlay_scale=(0.5, 0.8), warp_p=0.35, jitter_brightness=0.8, jitter_contrast=0.8, jitter_saturation=0.8,
        jitter_hue=0.2, pixelize_p=0.25, shuffle_p=0.25, jpeg_p=0.35, blur_p=0.25, text_p=0.65, emoji_p=0.35,
        edge_p=0.3, smear_p=0.3, pad_p=0.25, erase_p=0.25)
    return replace(m, **overrides)


def plain_preset(**overrides) -> AugmentConfig:
    """Nothing but the final resize (every edit off): a baseline for tests and ablations."""
    off = {f.name: 0.0 for f in fields(AugmentConfig) if f.name.endswith("_p")}
    off.update(jitter_brightness=0.0, jitter_contrast=0.0, jitter_saturation=0.0, jitter_hue=0.0,
               group_shuffle=False)
    return replace(AugmentConfig(**off), **overrides)
