"""The package's one image decoder: bytes -> RGB uint8, with the reasons a file is unusable.

Unusable files -- not an image, truncated, corrupt, smaller than ``min_side``, larger than ``max_pixels`` (a
decompression bomb, judged from the header) -- raise :class:`BadImage` with the reason. Convertible files are
converted: CMYK, greyscale and palette to RGB, 16-bit to 8-bit, transparency composited over white (as the
reference does), EXIF orientation applied (as DALI does).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from copynce_fast.utils.skipped import clean_reason

__all__ = ["BadImage", "DecodeLimits", "probe_bytes", "decode_bytes"]


class BadImage(Exception):
    """An image that cannot be used; ``str(e)`` is the reason."""


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 89_478_485  # larger images (by header) are skipped as decompression bombs (PIL's default)
    min_side: int = 16  # images with a side shorter than this are skipped


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large ({clean_reason(e)})") from None
    except Image.UnidentifiedImageError:  # its message holds the repr of our BytesIO: say it plainly
        raise BadImage("not an image (empty, or no format PIL can read)" if not data else
                       "not an image (no format PIL can read)") from None
    except Exception as e:  # PIL raises many types for garbage input
        raise BadImage(f"not a readable image ({type(e).__name__}: {clean_reason(e)})") from None
    w, h = im.size
    if w * h > limits.max_pixels:
        raise BadImage(f"too large ({w}x{h} > max_pixels={limits.max_pixels})")
    if min(w, h) < limits.min_side:
        raise BadImage(f"too small ({w}x{h}, min_side={limits.min_side})")
    tail = data[-4096:].rstrip(b"\x00\r\n ")
    if im.format == "JPEG" and b"\xff\xd9" not in tail[-64:]:
        raise BadImage("truncated JPEG (no end-of-image marker)")
    if im.format == "PNG" and b"IEND" not in tail[-64:]:
        raise BadImage("truncated PNG (no IEND chunk)")
    return im


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # broken EXIF: ignore it (DALI ignores it too)
        return 1


def probe_bytes(data: bytes, limits: DecodeLimits = DecodeLimits()) -> tuple[int, int]:
    """(H, W) of an encoded image after EXIF orientation, from its header; raises BadImage."""
    im = _open(data, limits)
    w, h = im.size
    return (w, h) if _orientation(im) in (5, 6, 7, 8) else (h, w)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if (im.mode.startswith("I;16") or a.max() > 255) else 255.0
        g = np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return np.array(im.convert("RGB"))


def decode_bytes(data: bytes, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """Decode to RGB uint8 [H, W, 3] (EXIF orientation applied); raises BadImage."""
    im = _open(data, limits)
    try:
        im.load()
        im = ImageOps.exif_transpose(im) if _orientation(im) != 1 else im
        arr = _to_rgb(im)
    except BadImage:
        raise
    except Exception as e:
        raise BadImage(f"corrupt image data ({type(e).__name__}: {clean_reason(e)})") from None
    return np.ascontiguousarray(arr)
