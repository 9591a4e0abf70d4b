"""JPEG headers read from their markers, without PIL: what decode.read_header's PIL path would say, ~4x faster.

Every image is new the first time a loader worker meets it, so its header read is on the pair's path. This reader
only ever *accepts*: each rule below mirrors what Pillow's JPEG plugin, Image.open and getexif do with the same
bytes (Pillow 13); where Pillow would fail, warn differently or read more than we do, ``read`` returns None and PIL
decides (tests/test_data_header.py compares the two on a corpus of odd and broken files and a seeded fuzz). Older
Pillows read odd EXIF blocks differently (which copy of a tag wins, oversized values), so there PIL reads every
header.
"""
from __future__ import annotations

import struct

from PIL import Image

from copynce_fast.utils.pillow import PILLOW_MAJOR, RULES_READ_FROM

__all__ = ["read"]

_PILLOW_RULES = PILLOW_MAJOR >= RULES_READ_FROM  # older Pillows read odd EXIF differently: PIL reads all there

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


def read(data: bytes, min_side: int, max_pixels: int) -> tuple[tuple[int, int], bool] | None:
    """((H, W) after EXIF orientation, plain) as PIL's path reads these JPEG bytes -- plain: 3 components and
    upright, what decode.Header.plain_jpeg says -- or None (let PIL decide) for anything else, including every file
    PIL would refuse under ``min_side`` / ``max_pixels`` (decode.DecodeLimits)."""
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
    if (min(w, h) < max(1, min_side) or w * h > max_pixels
            or (bomb is not None and w * h > 2 * bomb)):
        return None
    if b"\xff\xd9" not in data[-4096:].rstrip(b"\x00\r\n ")[-64:]:  # _open's truncation test
        return None
    return ((w, h) if orientation in (5, 6, 7, 8) else (h, w)), comps == 3 and orientation == 1
