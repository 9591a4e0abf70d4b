"""The decoder's JPEG fast path (libjpeg-turbo via simplejpeg) against PIL, the path every other file takes.

Both are libjpeg-turbo with the same defaults, so the pixels must be equal, not close: a difference would make a
plan's pixels depend on which path decoded its original. The files cover what encoders write (subsampling,
progressive, optimised tables, restart markers, odd sizes, greyscale, CMYK, EXIF orientation) and the broken ones
the fast path must leave to PIL's verdict.
"""
import io

import numpy as np
import pytest
from PIL import Image

from copynce_fast.data import decode as dec
from copynce_fast.data import jpeg_header
from copynce_fast.data.decode import BadImage, DecodeLimits, decode_bytes, read_header
from copynce_fast.data.sources import ArraySource, FileSource
from copynce_fast.data.synthetic import synthetic_images

IMG = synthetic_images(1, (75, 101), seed=3)[0]  # odd sizes: partial MCUs on both axes


def _jpeg(arr=IMG, **kw) -> bytes:
    buf = io.BytesIO()
    (arr if isinstance(arr, Image.Image) else Image.fromarray(arr)).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _pil(data: bytes) -> np.ndarray:
    """What PIL alone decodes (the reference of the fast path)."""
    im = Image.open(io.BytesIO(data))
    im.load()
    return np.asarray(im.convert("RGB"))


VARIANTS = {
    "q90 4:2:0": dict(quality=90),
    "q95 4:4:4": dict(quality=95, subsampling=0),
    "q75 4:2:2": dict(quality=75, subsampling=1),
    "q50 progressive": dict(quality=50, progressive=True),
    "q85 optimised": dict(quality=85, optimize=True),
    "q80 restart markers": dict(quality=80, restart_marker_blocks=2),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_plain_jpeg_fast_path_equals_pil(name):
    pytest.importorskip("simplejpeg")
    data = _jpeg(**VARIANTS[name])
    head = read_header(data)
    assert head.plain_jpeg and head.hw == IMG.shape[:2]
    fast = dec._plain_jpeg(data, head.hw)
    assert fast is not None and fast.flags.writeable and fast.flags.c_contiguous
    assert np.array_equal(fast, _pil(data))
    assert np.array_equal(decode_bytes(data), fast) and np.array_equal(decode_bytes(data, header=head), fast)


def test_other_files_take_the_pil_path(monkeypatch):
    calls = []
    monkeypatch.setattr(dec, "_plain_jpeg", lambda data, hw: calls.append(hw))  # "refused": PIL decides
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = _jpeg(quality=95, exif=exif)
    grey, cmyk = _jpeg(IMG[..., 0]), _jpeg(Image.fromarray(IMG).convert("CMYK"))
    for data in (rotated, grey, cmyk):
        assert not read_header(data).plain_jpeg
        decode_bytes(data)
    assert calls == []
    assert decode_bytes(rotated).shape == (101, 75, 3)
    assert np.array_equal(decode_bytes(grey), np.repeat(_pil(grey)[..., :1], 3, axis=2))
    plain = _jpeg(quality=90)
    assert np.array_equal(decode_bytes(plain), _pil(plain)) and len(calls) == 1  # refused -> PIL's pixels


def test_corrupt_jpeg_gets_pil_verdict():
    """A JPEG whose entropy-coded data is damaged: simplejpeg (strict) refuses it; PIL decides as before."""
    data = bytearray(_jpeg(quality=90))
    mid = len(data) // 2
    data[mid:mid + 40] = b"\xff\x00" * 20  # garbage inside the scan, end marker intact
    data = bytes(data)
    try:
        want = ("ok", _pil(data))
    except Exception as e:  # noqa: BLE001 - whatever PIL raises becomes BadImage
        want = ("bad", type(e).__name__)
    try:
        got = ("ok", decode_bytes(data))
    except BadImage as e:
        got = ("bad", str(e))
    assert got[0] == want[0]
    if got[0] == "ok":
        assert np.array_equal(got[1], want[1])
    else:
        assert got[1].startswith("corrupt image data") and want[1] in got[1]


def test_source_reads_each_file_once_and_header_once(tmp_path, monkeypatch):
    paths = []
    for k in range(3):
        p = tmp_path / f"{k}.jpg"
        p.write_bytes(_jpeg(synthetic_images(1, (40, 60), seed=k)[0], quality=90))
        paths.append(p)
    src = FileSource(paths)
    reads, opens = [], []
    read = src.read_bytes
    monkeypatch.setattr(src, "read_bytes", lambda i: reads.append(i) or read(i))
    real_open = dec._open
    monkeypatch.setattr(dec, "_open", lambda *a, **k: opens.append(1) or real_open(*a, **k))
    assert [src.hw(i) for i in range(3)] == [(40, 60)] * 3
    arrs = [src.decode(i) for i in range(3)]
    assert reads == [0, 1, 2]  # the header read's bytes served the decode
    # plain JPEGs: header read from the markers, pixels by libjpeg-turbo: PIL never opens them
    assert len(opens) == (0 if jpeg_header._PILLOW_RULES else 3) + (0 if dec._simplejpeg is not None else 3)
    fresh = FileSource(paths)  # decode without a header read first: same pixels, the header cached after
    assert all(np.array_equal(fresh.decode(i), a) for i, a in enumerate(arrs))
    assert fresh.hw(1) == (40, 60) and fresh._cache()[1].tolist() == [40, 60, -1]  # size known, no header read


def test_recent_bytes_are_bounded():
    src = ArraySource([IMG] * 20, fmt="BMP")
    for i in range(20):
        FileSource.hw(src, i)  # the base class's header read (ArraySource answers hw from memory)
    assert len(src._recent) == 8 and list(src._recent) == list(range(12, 20))


def test_header_checks_still_apply():
    with pytest.raises(BadImage, match="too small"):
        read_header(_jpeg(quality=90), DecodeLimits(min_side=80))
    with pytest.raises(BadImage, match="truncated JPEG"):
        decode_bytes(_jpeg(quality=90)[:-200])


def test_corrupt_png_is_still_refused(tmp_path):
    """Header and IEND intact, image data zeroed: the header read passes (PNG's EXIF lookup decodes the image and
    ignores its error), the decode must not."""
    buf = io.BytesIO()
    Image.fromarray(IMG).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[60:-40] = bytes(len(data) - 100)
    (tmp_path / "b.png").write_bytes(bytes(data))
    with pytest.raises(BadImage, match="corrupt image data"):
        decode_bytes(bytes(data))
    src = FileSource([tmp_path / "b.png"])
    assert src.hw(0) == IMG.shape[:2] and src.decode(0) is None and "corrupt" in src.skips.files[src.name(0)]
    assert FileSource([tmp_path / "b.png"]).decode(0) is None  # without a header read first
