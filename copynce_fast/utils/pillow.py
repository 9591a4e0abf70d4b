"""Which Pillow's rules the package restates: its fast paths that give Pillow's own answer without Pillow's per-call
work (data.jpeg_header: JPEG headers; data.glyphs: text masks; data.occluders: drawing on a transparent canvas)
were read from Pillow 13's source and checked bit for bit against it, so each gates on the installed version and
hands everything to Pillow elsewhere."""
from __future__ import annotations

from PIL import __version__ as _version

__all__ = ["PILLOW_MAJOR", "RULES_READ_FROM"]

PILLOW_MAJOR: int = int(_version.split(".")[0])
RULES_READ_FROM = 13  # the Pillow major version the restated rules come from
