"""The package's one image decoder: bytes -> RGB uint8, with the reasons a file is unusable.

Unusable files -- not an image, truncated, corrupt, smaller than ``min_side``, larger than ``max_pixels`` (a
decompression bomb, judged from the header) -- raise :class:`BadImage` with the reason. Convertible files are
converted: CMYK, greyscale and palette to RGB, 16-bit to 8-bit, transparency composited over white (as the
reference does), EXIF orientation applied (as DALI does).

Plain JPEGs (colour, upright: nearly every training image) are decoded by libjpeg-turbo through ``simplejpeg``
straight into the numpy array: the same pixels as PIL's decoder (both are libjpeg-turbo with its default accurate
DCT and smooth upsampling; ``tests/test_data_decode.py`` compares them), in ~0.6x the time, because PIL keeps RGB
as 4 bytes a pixel and every numpy copy of it repacks. Anything else, anything simplejpeg refuses (its strict mode
turns libjpeg's warnings into errors), and every machine without simplejpeg goes through PIL, whose verdict
(pixels or reason) is the answer.

Headers of JPEGs are read from their markers without PIL (:mod:`copynce_fast.data.jpeg_header`, ~4x faster:
every image is new the first time a loader worker meets it). That reader only ever *accepts*: it returns the Header
PIL's path would return, or hands the bytes to PIL whenever anything is unusual or any check fails, so every
verdict is still PIL's (``tests/test_data_header.py`` compares the two on a corpus of odd and broken files).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from copynce_fast.data import jpeg_header
from copynce_fast.utils.skipped import clean_reason

try:  # optional at import: without it every file takes the PIL path (same pixels, slower)
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency; this keeps a bare install working
    _simplejpeg = None

__all__ = ["BadImage", "DecodeLimits", "Header", "read_header", "probe_bytes", "decode_bytes"]


class BadImage(Exception):
    """An image that cannot be used; ``str(e)`` is the reason."""


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 89_478_485  # larger images (by header) are skipped as decompression bombs (PIL's default)
    min_side: int = 16  # images with a side shorter than this are skipped


@dataclass(frozen=True)
class Header:
    """What the header of a usable image says (:func:`read_header`; every header check passed).

    Attributes:
        hw: (H, W) after EXIF orientation.
        plain_jpeg: an upright colour JPEG, which ``decode_bytes(data, limits, header)`` hands straight to
            libjpeg-turbo without opening it with PIL again.
    """

    hw: tuple[int, int]
    plain_jpeg: bool = False


def _open(data: bytes, limits: DecodeLimits, check: bool = True) -> Image.Image:
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
    if not check:  # read_header already passed these bytes
        return im
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


def _header(im: Image.Image) -> Header:
    w, h = im.size
    orientation = _orientation(im)
    plain = im.format == "JPEG" and im.mode == "RGB" and orientation == 1
    return Header((w, h) if orientation in (5, 6, 7, 8) else (h, w), plain)


def _pil_header(data: bytes, limits: DecodeLimits) -> Header:
    """The Header as PIL's path reads it (the reference of :func:`_jpeg_header`); raises BadImage."""
    return _header(_open(data, limits))


def _jpeg_header(data: bytes, limits: DecodeLimits) -> Header | None:
    """The Header ``_pil_header`` would return for these JPEG bytes, read from their markers without PIL
    (:mod:`copynce_fast.data.jpeg_header`); None (let PIL decide) for anything else, including every refusal."""
    read = jpeg_header.read(data, limits.min_side, limits.max_pixels)
    return None if read is None else Header(read[0], read[1])


def read_header(data: bytes, limits: DecodeLimits = DecodeLimits()) -> Header:
    """The :class:`Header` of an encoded image (every header check of ``decode_bytes``); raises BadImage.

    JPEGs are read from their markers when nothing about them is unusual, all others (and every refusal) by PIL:
    the same Header and the same BadImage reason either way."""
    return _jpeg_header(data, limits) or _pil_header(data, limits)


def probe_bytes(data: bytes, limits: DecodeLimits = DecodeLimits()) -> tuple[int, int]:
    """(H, W) of an encoded image after EXIF orientation, from its header; raises BadImage."""
    return read_header(data, limits).hw


def _plain_jpeg(data: bytes, hw: tuple[int, int]) -> np.ndarray | None:
    """RGB uint8 [H, W, 3] (fresh, writable) by libjpeg-turbo, or None to let PIL decide (no simplejpeg, or
    anything it reports, warnings included)."""
    if _simplejpeg is None:
        return None
    try:
        arr = _simplejpeg.decode_jpeg(data, colorspace="RGB")
    except Exception:
        return None
    return arr if arr.shape == (*hw, 3) else None


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
    # One repack of PIL's 4-byte pixels into a fresh array (im.convert("RGB") of an RGB image would copy first).
    return np.array(im if im.mode == "RGB" else im.convert("RGB"))


def decode_bytes(data: bytes, limits: DecodeLimits = DecodeLimits(), header: Header | None = None) -> np.ndarray:
    """Decode to RGB uint8 [H, W, 3] (contiguous, EXIF orientation applied); raises BadImage.

    ``header``: this very data's :func:`read_header` (e.g. cached by a source), so its checks are not redone.
    """
    if header is None:  # a JPEG read from its markers: a plain one skips PIL; None leaves the file to PIL's checks
        header = _jpeg_header(data, limits)
    if header is not None and header.plain_jpeg:
        arr = _plain_jpeg(data, header.hw)
        if arr is not None:
            return arr
    im = _open(data, limits, check=header is None)
    try:
        # JPEGs only: PIL's PNG getexif() decodes the whole image and _orientation would swallow its errors
        if header is None and im.format == "JPEG" and _header(im).plain_jpeg:
            arr = _plain_jpeg(data, im.size[::-1])
            if arr is not None:
                return arr
        im.load()
        im = ImageOps.exif_transpose(im) if _orientation(im) != 1 else im
        arr = _to_rgb(im)
    except BadImage:
        raise
    except Exception as e:
        raise BadImage(f"corrupt image data ({type(e).__name__}: {clean_reason(e)})") from None
    return np.ascontiguousarray(arr)
