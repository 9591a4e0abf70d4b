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

Headers of JPEGs are read from their markers without PIL (:func:`_jpeg_header`, ~6x faster: every image is new the
first time a loader worker meets it). That reader only ever *accepts*: it returns the Header PIL's path would return,
or hands the bytes to PIL whenever anything is unusual or any check fails, so every verdict is still PIL's
(``tests/test_data_header.py`` compares the two on a corpus of odd and broken files).
"""
from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps
from PIL import __version__ as _pillow_version

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


# --- JPEG headers without PIL -------------------------------------------------------------------------------------
# Each rule below mirrors what Pillow's JPEG plugin, Image.open and getexif do with the same bytes (Pillow 13); where
# Pillow would fail, warn differently or read more than we do, the reader returns None and PIL decides. Older Pillows
# read odd EXIF blocks differently (which copy of a tag wins, oversized values), so there PIL reads every header.
_PILLOW_RULES = int(_pillow_version.split(".")[0]) >= 13

_SOF_ACCEPTED = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive (Huffman): what cameras, the web write
_SKIPPED_SEGMENTS = (0xC4, 0xDD, 0xFE)  # DHT, DRI, COM: PIL reads past them
_TIFF_UNIT = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}  # PIL's types
_ORIENTATION, _X_RESOLUTION, _RESOLUTION_UNIT = 0x0112, 0x011A, 0x0128
_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_PLAIN_NUMBERS = ((3, 1), (4, 1), (5, 1), (10, 1))  # (TIFF type, count): one SHORT, LONG or (S)RATIONAL


def _photoshop_ok(s: bytes) -> bool:
    """Whether PIL's walk over an APP13 "Photoshop 3.0" block ends quietly: it stops at a short read (struct.error)
    but an out-of-range name length byte (IndexError) fails its open."""
    n, off = len(s), 14
    while s[off:off + 4] == b"8BIM":
        off += 4
        if off + 2 > n:  # resource code cut off
            return True
        code = int.from_bytes(s[off:off + 2], "big")
        off += 2
        if off >= n:  # the name length byte is missing
            return False
        off += 1 + s[off]
        off += off & 1
        if off + 4 > n:  # data size cut off
            return True
        size = int.from_bytes(s[off:off + 4], "big")
        off += 4
        if code == 0x03ED and min(size, n - off) < 14:  # ResolutionInfo too short to unpack
            return True
        off += size
        off += off & 1
    return True


def _jpeg_markers(data: bytes) -> tuple[int, int, int, bytes | None, bool, bool] | None:
    """Walk the segments from SOI to SOS as PIL does: (width, height, components, EXIF block after "Exif\\0\\0" or
    None, whether the last XMP packet names tiff:Orientation, whether a JFIF segment gives the DPI); None if PIL's
    walk could differ (fill bytes, other markers, a second SOF or EXIF block, MPF, short segments PIL would fail on)."""
    n, pos, sof, exif, xmp, jfif_dpi = len(data), 2, None, None, None, False
    while True:
        if pos + 4 > n or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        body, end = pos + 4, pos + 2 + length
        if length < 2 or end > n:
            return None
        if marker == 0xDA:  # start of scan: PIL's header walk ends here
            break
        if marker == 0xE0:
            if data.startswith(b"JFIF", body, end):
                if length < 9:  # PIL unpacks the version: shorter fails its open
                    return None
                jfif_dpi = jfif_dpi or (length >= 14 and data[body + 7] in (1, 2))
        elif marker == 0xE1:
            if data.startswith(b"Exif\0\0", body, end):
                if exif is not None:  # PIL joins the blocks
                    return None
                exif = data[body + 6:end]
            elif data.startswith(_XMP, body, end):
                xmp = (body + len(_XMP), end)
        elif marker == 0xE2:
            if data.startswith(b"MPF\0", body, end):  # PIL may open it as MPO
                return None
            if data.startswith(b"ICC_PROFILE\0", body, end) and length < 16:  # PIL reads the chunk count
                return None
        elif marker == 0xED:
            if data.startswith(b"Photoshop 3.0\0", body, end) and not _photoshop_ok(data[body:end]):
                return None
        elif marker == 0xEE:
            if data.startswith(b"Adobe", body, end) and length < 9:  # PIL unpacks the version
                return None
        elif marker == 0xDB:  # quantisation tables: PIL fails on a short one
            q = body
            while q < end:
                q += 65 if data[q] < 16 else 129
            if q != end:
                return None
        elif marker in _SOF_ACCEPTED:
            if sof is not None or length < 8:
                return None
            bits, h, w, comps = data[body], *struct.unpack_from(">HH", data, body + 1), data[body + 5]
            if bits != 8 or comps not in (1, 3, 4) or length != 8 + 3 * comps:
                return None
            sof = (w, h, comps)
        elif not (0xE3 <= marker <= 0xEF or marker in _SKIPPED_SEGMENTS):
            return None
        pos = end
    if sof is None:
        return None
    xmp_orientation = xmp is not None and data.find(b"tiff:Orientation", *xmp) >= 0
    return (*sof, exif, xmp_orientation, jfif_dpi)


def _exif_ifd0(tiff: bytes) -> tuple[str, dict[int, tuple[int, int, bytes]]] | None:
    """IFD0 of an EXIF block as PIL's ImageFileDirectory_v2 loads it: (byte order, tag -> (type, count, value bytes)).
    Like PIL: the first copy of a tag wins, unknown types and empty values are skipped, out-of-line values past the
    block's size in total are skipped, and one whose data runs past the end stops the walk. None for headers PIL
    reads otherwise (its lenient or BigTIFF prefixes)."""
    if len(tiff) < 8 or tiff[:4] not in (b"II*\0", b"MM\0*"):
        return None
    order = "<" if tiff[0] == 0x49 else ">"
    limit, tags, total = len(tiff), {}, 0
    (pos,) = struct.unpack_from(order + "L", tiff, 4)
    if pos + 2 > limit:
        return order, tags
    (count,) = struct.unpack_from(order + "H", tiff, pos)
    pos += 2
    for _ in range(count):
        if pos + 12 > limit:
            break
        tag, typ, n, inline = struct.unpack_from(order + "HHL4s", tiff, pos)
        pos += 12
        if tag in tags or typ not in _TIFF_UNIT:
            continue
        size = n * _TIFF_UNIT[typ]
        if size > 4:
            total += size
            if total > limit:
                continue
            (off,) = struct.unpack_from(order + "L", inline)
            if off + size > limit:
                break
            value = tiff[off:off + size]
        else:
            value = inline[:size]
        if value:
            tags[tag] = (typ, n, value)
    return order, tags


def _jpeg_header(data: bytes, limits: DecodeLimits) -> Header | None:
    """The Header ``_pil_header`` would return for these JPEG bytes, read without PIL; None (let PIL decide) for
    anything else, including every file PIL would refuse."""
    if not _PILLOW_RULES or not data.startswith(b"\xff\xd8\xff"):
        return None
    walked = _jpeg_markers(data)
    if walked is None:
        return None
    w, h, comps, exif, xmp_orientation, jfif_dpi = walked
    orientation = None
    if exif is not None:
        ifd0 = _exif_ifd0(exif)
        if ifd0 is None:
            return None
        order, tags = ifd0
        if _ORIENTATION in tags:
            typ, n, value = tags[_ORIENTATION]
            if (typ, n) != (3, 1):  # PIL would coerce other types (or fail to): its call
                return None
            (orientation,) = struct.unpack(order + "H", value)
        # Opening reads the DPI from EXIF when JFIF has none; only plain numbers are sure not to trip it.
        if not jfif_dpi and _RESOLUTION_UNIT in tags and _X_RESOLUTION in tags and (
                tags[_RESOLUTION_UNIT][:2] != (3, 1) or tags[_X_RESOLUTION][:2] not in _PLAIN_NUMBERS):
            return None
    if orientation is None:
        if xmp_orientation:  # PIL takes the orientation from XMP then
            return None
        orientation = 1
    bomb = Image.MAX_IMAGE_PIXELS
    if (min(w, h) < max(1, limits.min_side) or w * h > limits.max_pixels
            or (bomb is not None and w * h > 2 * bomb)):
        return None
    if b"\xff\xd9" not in data[-4096:].rstrip(b"\x00\r\n ")[-64:]:  # _open's truncation test
        return None
    return Header((w, h) if orientation in (5, 6, 7, 8) else (h, w), comps == 3 and orientation == 1)


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
