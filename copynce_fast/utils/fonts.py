"""The one PIL font helper (text rendered into images, e.g. text occluders; plots use matplotlib's fonts)."""
from __future__ import annotations

from functools import lru_cache

from PIL import ImageFont

__all__ = ["default_font"]


@lru_cache(maxsize=256)  # every size the presets draw text at (336 px matcher views reach 75 sizes)
def default_font(px: int):
    """PIL's bundled scalable font at ``px`` pixels (offline; Pillow >= 10.1), else its fixed bitmap font.

    Cached per size (loading parses the embedded font, ~0.1 ms: a cost per drawn text otherwise); the font object
    is shared within a process, whose drawing is single-threaded (loader workers are processes)."""
    try:
        return ImageFont.load_default(size=max(4, int(px)))
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()
