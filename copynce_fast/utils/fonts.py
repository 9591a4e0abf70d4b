"""The one PIL font helper (text rendered into images, e.g. text occluders; plots use matplotlib's fonts)."""
from __future__ import annotations

from PIL import ImageFont

__all__ = ["default_font"]


def default_font(px: int):
    """PIL's bundled scalable font at ``px`` pixels (offline; Pillow >= 10.1), else its fixed bitmap font."""
    try:
        return ImageFont.load_default(size=max(4, int(px)))
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()
