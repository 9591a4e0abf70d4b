"""JPEG headers read from their markers (decode._jpeg_header) against PIL's path (decode._pil_header), the reference.

The fast reader may only accept: whenever it returns a Header it must be the one PIL's path returns, and
``read_header`` must give PIL's verdict (Header or BadImage reason, word for word) on every file. The corpus covers
what encoders write (sizes, greyscale, CMYK, progressive, restart markers, ICC, JFIF DPI, camera EXIF in both byte
orders with every orientation, XMP, Photoshop blocks), hand-built EXIF oddities, broken and refused files, other
formats; a seeded fuzz over header bytes checks the same property on files nobody thought of.
"""
import io
import struct

import numpy as np
import pytest
from PIL import Image

from copynce_fast.data import decode as dec
from copynce_fast.data import jpeg_header
from copynce_fast.data.decode import BadImage, DecodeLimits, Header, decode_bytes, read_header
from copynce_fast.data.synthetic import synthetic_images

pytestmark = pytest.mark.filterwarnings("ignore")  # PIL warns about the corrupt EXIF blocks on purpose
IMG = synthetic_images(1, (40, 56), seed=5)[0]
LIMITS = DecodeLimits()
taken_here = pytest.mark.skipif(not jpeg_header._PILLOW_RULES, reason="the fast reader mirrors Pillow >= 13; PIL reads all")


def _save(arr=IMG, fmt="JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    (arr if isinstance(arr, Image.Image) else Image.fromarray(arr)).save(buf, fmt, **kw)
    return buf.getvalue()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _with(data: bytes, *segments: bytes) -> bytes:
    """``data`` with ``segments`` inserted right after SOI."""
    return data[:2] + b"".join(segments) + data[2:]


def _tiff(order: str, entries, prefix: bytes | None = None, ifd_offset: int = 8) -> bytes:
    """A TIFF block with one IFD: entries (tag, type, count, value bytes[, forced data offset])."""
    head = prefix or (b"II*\0" if order == "<" else b"MM\0*")
    data_at = ifd_offset + 2 + 12 * len(entries) + 4
    ifd, area = struct.pack(order + "H", len(entries)), b""
    for tag, typ, count, value, *forced in entries:
        if len(value) <= 4 and not forced:
            field = value.ljust(4, b"\0")
        else:
            field = struct.pack(order + "L", forced[0] if forced else data_at + len(area))
            area += b"" if forced else value
        ifd += struct.pack(order + "HHL", tag, typ, count) + field
    return head + struct.pack(order + "L", ifd_offset) + ifd + b"\0\0\0\0" + area


def _exif(order: str, entries, **kw) -> bytes:
    return _segment(0xE1, b"Exif\0\0" + _tiff(order, entries, **kw))


def _short(order, tag, v, count=1):
    return (tag, 3, count, struct.pack(order + "H" * count, *([v] * count)))


def _rational(order, tag, n, d, typ=5):
    return (tag, typ, 1, struct.pack(order + ("LL" if typ == 5 else "ll"), n, d))


def _camera(order: str, orientation: int | None) -> list:
    """IFD0 as cameras write it: make, model, orientation, resolution, software, date."""
    e = [(0x010F, 2, 6, b"Canon\0"), (0x0110, 2, 21, b"Canon EOS 5D Mark IV\0")]
    e += [_short(order, 0x0112, orientation)] if orientation is not None else []
    e += [_rational(order, 0x011A, 72, 1), _rational(order, 0x011B, 72, 1), _short(order, 0x0128, 2),
          (0x0132, 2, 20, b"2024:01:01 10:00:00\0"), (0x8769, 4, 1, struct.pack(order + "L", 0))]
    return e


def _pil_exif(order: str, orientation: int) -> bytes:
    e = Image.Exif()
    e.endian = order
    e[0x010F], e[0x0112], e[0x011A], e[0x0128], e[0x0131] = "Nikon", orientation, 300.0, 2, "GIMP"
    return e.tobytes()


def _sof_patched(data: bytes, w: int | None = None, h: int | None = None, marker: int | None = None,
                 bits: int | None = None) -> bytes:
    """``data`` with its SOF0/SOF2's size, marker or precision rewritten (the header lies; the scan is unchanged)."""
    b = bytearray(data)
    i = next(i for i in range(2, len(b) - 1) if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC2))
    if marker is not None:
        b[i + 1] = marker
    if bits is not None:
        b[i + 4] = bits
    if h is not None:
        b[i + 5:i + 7] = struct.pack(">H", h)
    if w is not None:
        b[i + 7:i + 9] = struct.pack(">H", w)
    return bytes(b)


def _photoshop(blocks: bytes) -> bytes:
    return _segment(0xED, b"Photoshop 3.0\0" + blocks)


def _8bim(code: int, data: bytes, name: bytes = b"") -> bytes:
    body = b"8BIM" + struct.pack(">HB", code, len(name)) + name
    body += b"\0" * (len(body) & 1)
    return body + struct.pack(">L", len(data)) + data + b"\0" * (len(data) & 1)


BASE = _save(quality=90)
XMP_ROT = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><rdf:Description tiff:Orientation=\"6\"/>")
XMP_PLAIN = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><rdf:Description xmp:Rating=\"5\"/>")

# Files the fast reader must take (the common camera / web JPEG), name -> bytes.
COMMON = {
    "plain q90": BASE,
    "q75 4:2:2": _save(quality=75, subsampling=1),
    "q95 4:4:4 optimised": _save(quality=95, subsampling=0, optimize=True),
    "progressive": _save(quality=80, progressive=True),
    "restart markers": _save(quality=80, restart_marker_blocks=2),
    "greyscale": _save(IMG[..., 1]),
    "CMYK (Adobe APP14)": _save(Image.fromarray(IMG).convert("CMYK")),
    "ICC profile": _save(quality=90, icc_profile=b"\1" * 3000),
    "ICC profile in 2 chunks": _save(quality=90, icc_profile=b"\2" * 70000),
    "JFIF dpi": _save(quality=90, dpi=(300, 300)),
    "odd size 17x33": _save(synthetic_images(1, (17, 33), seed=1)[0]),
    "16x16 (min_side)": _save(synthetic_images(1, (16, 16), seed=2)[0]),
    "500x375": _save(synthetic_images(1, (375, 500), seed=3)[0], quality=90),
    "COM": _with(BASE, _segment(0xFE, b"a comment")),
    "XMP without orientation": _with(BASE, XMP_PLAIN),
    "Photoshop resolution + IPTC": _with(BASE, _photoshop(_8bim(0x03ED, bytes(16)) + _8bim(0x0404, b"iptc", b"n"))),
    "EXIF without orientation II": _with(BASE, _exif("<", _camera("<", None))),
    "EXIF without orientation MM": _with(BASE, _exif(">", _camera(">", None))),
    "EXIF + XMP rotation + ICC, progressive": _with(_save(quality=90, progressive=True, icc_profile=b"\3" * 500),
                                                    _exif("<", _camera("<", 8)), XMP_ROT),
}
for _o in range(1, 9):
    for _order in "<>":
        COMMON[f"EXIF orientation {_o} {_order}"] = _with(BASE, _exif(_order, _camera(_order, _o)))
    COMMON[f"PIL EXIF orientation {_o}"] = _save(quality=90, exif=_pil_exif("<>"[_o % 2], _o))

# Files of every other kind: the fast reader may take them or not, the verdict must be PIL's.
O = "<"
ODD = {
    "orientation 0": _with(BASE, _exif(O, [_short(O, 0x0112, 0)])),
    "orientation 9": _with(BASE, _exif(O, [_short(O, 0x0112, 9)])),
    "orientation as LONG": _with(BASE, _exif(O, [(0x0112, 4, 1, struct.pack("<L", 6))])),
    "orientation count 2": _with(BASE, _exif(O, [_short(O, 0x0112, 6, count=2)])),
    "orientation as BYTE": _with(BASE, _exif(O, [(0x0112, 1, 1, b"\6")])),
    "orientation as ASCII": _with(BASE, _exif(O, [(0x0112, 2, 2, b"6\0")])),
    "orientation of unknown type": _with(BASE, _exif(O, [(0x0112, 99, 1, b"\6\0")])),
    "orientation count 0": _with(BASE, _exif(O, [(0x0112, 3, 0, b"")])),
    "two orientations (first wins)": _with(BASE, _exif(O, [_short(O, 0x0112, 6), _short(O, 0x0112, 1)])),
    "empty then real orientation": _with(BASE, _exif(O, [(0x0112, 3, 0, b""), _short(O, 0x0112, 6)])),
    "value past the end hides orientation": _with(BASE, _exif(O, [(0x010F, 2, 20, b"x" * 20, 5000),
                                                                  _short(O, 0x0112, 6)])),
    "values larger than the block skipped": _with(BASE, _exif(O, [(0x010F, 2, 70000, b"", 8),
                                                                  _short(O, 0x0112, 6)])),
    "IFD count past the end": _with(BASE, _segment(0xE1, b"Exif\0\0" + _tiff(O, [_short(O, 0x0112, 6)])[:-6])),
    "IFD offset past the end": _with(BASE, _exif(O, [_short(O, 0x0112, 6)], ifd_offset=4000)),
    "lenient TIFF prefix MM*\\0": _with(BASE, _exif(">", [_short(">", 0x0112, 6)], prefix=b"MM*\0")),
    "BigTIFF prefix": _with(BASE, _exif(O, [_short(O, 0x0112, 6)], prefix=b"II+\0")),
    "not a TIFF prefix": _with(BASE, _exif(O, [_short(O, 0x0112, 6)], prefix=b"XX*\0")),
    "EXIF block of 5 bytes": _with(BASE, _segment(0xE1, b"Exif\0\0II*\0\x08")),
    "empty EXIF block": _with(BASE, _segment(0xE1, b"Exif\0\0")),
    "Exif header twice": _with(BASE, _segment(0xE1, b"Exif\0\0Exif\0\0" + _tiff(O, [_short(O, 0x0112, 6)]))),
    "two EXIF blocks": _with(BASE, _exif(O, [_short(O, 0x0112, 6)]), _exif(O, [_short(O, 0x0112, 3)])),
    "XMP orientation, EXIF without": _with(BASE, _exif(O, _camera(O, None)), XMP_ROT),
    "XMP orientation, no EXIF": _with(BASE, XMP_ROT),
    "XResolution 0/0": _with(BASE, _exif(O, [_rational(O, 0x011A, 0, 0), _short(O, 0x0128, 3)])),
    "XResolution signed rational": _with(BASE, _exif(O, [_rational(O, 0x011A, -72, 1, typ=10), _short(O, 0x0128, 2)])),
    "XResolution SHORT": _with(BASE, _exif(O, [_short(O, 0x011A, 72), _short(O, 0x0128, 2)])),
    "XResolution BYTE": _with(BASE, _exif(O, [(0x011A, 1, 1, b"H"), _short(O, 0x0128, 2)])),
    "XResolution ASCII": _with(BASE, _exif(O, [(0x011A, 2, 2, b"7\0"), _short(O, 0x0128, 2)])),
    "XResolution 2 rationals": _with(BASE, _exif(O, [(0x011A, 5, 2, struct.pack("<4L", 72, 1, 72, 1)),
                                                     _short(O, 0x0128, 2)])),
    "ResolutionUnit ASCII": _with(BASE, _exif(O, [_rational(O, 0x011A, 72, 1), (0x0128, 2, 2, b"3\0")])),
    "XResolution BYTE, JFIF dpi": _with(_save(quality=90, dpi=(96, 96)),
                                        _exif(O, [(0x011A, 1, 1, b"H"), _short(O, 0x0128, 2)])),
    "Photoshop name length cut": _with(BASE, _photoshop(b"8BIM\x04\x04")),
    "Photoshop size cut": _with(BASE, _photoshop(b"8BIM\x04\x04\0\0\0")),
    "Photoshop short resolution": _with(BASE, _photoshop(_8bim(0x03ED, bytes(8)) + _8bim(0x0404, b"iptc"))),
    "JFIF of 5 bytes": _with(BASE, _segment(0xE0, b"JFIF\0")),
    "JFIF without density": _with(BASE, _segment(0xE0, b"JFIF\0\1\2\1")),
    "Adobe of 6 bytes": _with(BASE, _segment(0xEE, b"Adobe\0")),
    "ICC chunk of 13 bytes": _with(BASE, _segment(0xE2, b"ICC_PROFILE\0\1")),
    "MPF": _with(BASE, _segment(0xE2, b"MPF\0" + _tiff(">", [(0xB001, 4, 1, struct.pack(">L", 2))]))),
    "short DQT": _with(BASE, _segment(0xDB, b"\0" + bytes(30))),
    "16-bit DQT": _with(BASE, _segment(0xDB, b"\x13" + bytes(128))),
    "fill bytes before a marker": BASE[:2] + b"\xff\xff" + BASE[2:],
    "junk between segments": _with(BASE, _segment(0xFE, b"c") + b"\x00\x12"),
    "junk shaped like an EXIF segment": _with(BASE, _segment(0xFE, b"c"), b"\0" + _exif(O, [_short(O, 0x0112, 6)])[1:]),
    "segment length 1": _with(BASE, b"\xff\xfe\x00\x01"),
    "second SOI": _with(BASE, b"\xff\xd8"),
    "DNL segment": _with(BASE, _segment(0xDC, b"\0\x28")),
    "no SOS": BASE[:BASE.index(b"\xff\xda")] + b"\xff\xd9",
    "cut inside the header": BASE[:300],
    "cut before EOI": BASE[:-200],
    "EOI then zero padding": BASE + bytes(1000),
    "EOI then 100 bytes of junk": BASE + b"\x01" * 100,
    "SOF3 lossless": _sof_patched(BASE, marker=0xC3),
    "SOF9 arithmetic": _sof_patched(BASE, marker=0xC9),
    "12-bit SOF": _sof_patched(BASE, bits=12),
    "two SOFs": _with(BASE, BASE[BASE.index(b"\xff\xc0"):BASE.index(b"\xff\xc0") + 19]),
    "width 0": _sof_patched(BASE, w=0),
    "tiny 8x8": _save(synthetic_images(1, (8, 8), seed=4)[0]),
    "10000x10000 header (> max_pixels)": _sof_patched(BASE, w=10000, h=10000),
    "30000x30000 header (bomb)": _sof_patched(BASE, w=30000, h=30000),
    "PNG": _save(fmt="PNG"),
    "WebP": _save(fmt="WEBP"),
    "BMP": _save(fmt="BMP"),
    "GIF": _save(fmt="GIF"),
    "empty": b"",
    "SOI only": b"\xff\xd8\xff",
    "text": b"hello, not an image",
}
LIMIT_SETS = [LIMITS, DecodeLimits(min_side=30), DecodeLimits(max_pixels=2000), DecodeLimits(max_pixels=10 ** 9)]


def _verdict(fn, data, limits=LIMITS):
    try:
        return "ok", fn(data, limits)
    except BadImage as e:
        return "bad", str(e)


def _same_as_pil(data: bytes, limits: DecodeLimits = LIMITS) -> Header | None:
    """The property on one file: an accepted Header is PIL's, and read_header gives PIL's verdict."""
    want = _verdict(dec._pil_header, data, limits)
    fast = dec._jpeg_header(data, limits)
    if fast is not None:
        assert want == ("ok", fast)
    assert _verdict(read_header, data, limits) == want
    return fast


@taken_here
@pytest.mark.parametrize("name", sorted(COMMON))
def test_common_jpegs_take_the_fast_path(name):
    data = COMMON[name]
    assert _same_as_pil(data) is not None


def test_headers_say_what_the_files_are():
    h, w = IMG.shape[:2]
    assert read_header(COMMON["plain q90"]) == Header((h, w), True)
    assert read_header(COMMON["EXIF orientation 1 >"]) == Header((h, w), True)
    assert read_header(COMMON["EXIF orientation 6 <"]) == Header((w, h), False)
    assert read_header(COMMON["PIL EXIF orientation 3"]) == Header((h, w), False)
    assert read_header(COMMON["greyscale"]) == read_header(COMMON["CMYK (Adobe APP14)"]) == Header((h, w), False)


@pytest.mark.parametrize("name", sorted(ODD))
@pytest.mark.parametrize("limits", range(len(LIMIT_SETS)))
def test_other_files_get_pil_verdict(name, limits):
    _same_as_pil(ODD[name], LIMIT_SETS[limits])


@taken_here
def test_some_odd_files_are_refused_and_some_taken():
    """Guards against a reader that hands everything to PIL (the tests above would pass) or takes everything."""
    taken = {name for name, data in ODD.items() if dec._jpeg_header(data, LIMITS) is not None}
    assert {"orientation 0", "orientation 9", "two orientations (first wins)", "XResolution 0/0",
            "value past the end hides orientation", "XResolution BYTE, JFIF dpi"} <= taken
    assert not taken & {"orientation as LONG", "XMP orientation, no EXIF", "MPF", "SOF9 arithmetic", "cut before EOI",
                        "30000x30000 header (bomb)", "tiny 8x8", "Photoshop name length cut", "PNG", "WebP"}
    assert read_header(ODD["value past the end hides orientation"]).hw == IMG.shape[:2]  # PIL stopped before it
    assert read_header(ODD["two orientations (first wins)"]) == Header(IMG.shape[1::-1], False)


def test_without_pil_bomb_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    for data in (ODD["30000x30000 header (bomb)"], ODD["10000x10000 header (> max_pixels)"], BASE):
        for limits in LIMIT_SETS:
            _same_as_pil(data, limits)


@taken_here
def test_fuzzed_headers_get_pil_verdict():
    """Seeded byte flips, length changes and cuts inside the header segments of EXIF/Photoshop/ICC/XMP files."""
    rng = np.random.default_rng(0)
    seeds = [COMMON["EXIF orientation 6 <"], COMMON["EXIF orientation 3 >"], COMMON["Photoshop resolution + IPTC"],
             COMMON["EXIF + XMP rotation + ICC, progressive"], COMMON["PIL EXIF orientation 8"]]
    taken = 0
    for k in range(600):
        data = bytearray(seeds[k % len(seeds)])
        sos = data.index(b"\xff\xda")
        kind = k % 3
        if kind == 0:  # a few random bytes in the header
            for i in rng.integers(2, sos, size=int(rng.integers(1, 4))):
                data[i] = int(rng.integers(0, 256))
        elif kind == 1:  # a value that parsers read as a length, count or offset
            i = int(rng.integers(2, sos - 2))
            data[i:i + 2] = struct.pack(">H", int(rng.choice([0, 1, 2, 7, 13, 255, 4000, 65535])))
        else:  # a cut, sometimes with the end marker put back
            data = data[:int(rng.integers(3, len(data)))] + (b"\xff\xd9" if rng.random() < 0.5 else b"")
        taken += _same_as_pil(bytes(data)) is not None
    assert 100 < taken < 600  # both sides of the property were exercised


@pytest.mark.parametrize("corpus", ["common", "odd"])
def test_decode_without_header_unchanged(corpus, monkeypatch):
    """decode_bytes(header=None) now asks the fast reader first: same pixels or the same reason as PIL's path."""
    files = COMMON if corpus == "common" else ODD
    got = {name: _verdict(lambda d, lim: decode_bytes(d, lim), data) for name, data in files.items()}
    monkeypatch.setattr(dec, "_jpeg_header", lambda data, limits: None)
    for name, data in files.items():
        want = _verdict(lambda d, lim: decode_bytes(d, lim), data)
        assert got[name][0] == want[0], name
        if want[0] == "ok":
            assert np.array_equal(got[name][1], want[1]), name
        else:
            assert got[name][1] == want[1], name
