"""Image sources: layouts, robust decoding of awkward files, skip counting, and a loader that never crashes."""
import io
import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from copynce_fast.data.torch_loader import PairLoader
from copynce_fast.data.presets import matcher_preset
from copynce_fast.data.decode import DecodeLimits, decode_bytes, probe_bytes
from copynce_fast.data.sources import bundled_source, disc21_source, file_list_source, folder_source, synthetic_source
from copynce_fast.data.synthetic import synthetic_images

RNG = np.random.default_rng(0)
GOOD = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _png_header(w, h) -> bytes:
    """A PNG whose header claims w x h pixels (8-bit RGB) with one empty data chunk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _jpeg(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture
def zoo(tmp_path):
    """A folder with good and awkward files; returns (root, expected_bad_names)."""
    (tmp_path / "sub").mkdir()
    Image.fromarray(GOOD).save(tmp_path / "good.png")
    (tmp_path / "sub" / "good.JPG").write_bytes(_jpeg(GOOD, quality=95))
    (tmp_path / "truncated.jpg").write_bytes(_jpeg(GOOD)[:700])
    (tmp_path / "random.jpg").write_bytes(RNG.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.png").write_bytes(b"")
    Image.fromarray(GOOD).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(GOOD).convert("L").save(tmp_path / "grey.jpg")
    g16 = np.tile(np.array([0, 32768, 65535], np.uint16), (30, 20))
    Image.fromarray(g16).save(tmp_path / "grey16.png")
    rgba = np.dstack([GOOD, np.full(GOOD.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(GOOD).convert("P").save(tmp_path / "palette.png", transparency=0)
    Image.fromarray(GOOD[:1, :1]).save(tmp_path / "tiny.png")
    (tmp_path / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    (tmp_path / "big.png").write_bytes(_png_header(10_000, 9_500))  # above max_pixels, under PIL's hard limit
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    (tmp_path / "rotated.jpg").write_bytes(_jpeg(GOOD, quality=95, exif=exif))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, {"truncated.jpg", "random.jpg", "empty.png", "tiny.png", "bomb.png", "big.png"}


def test_folder_source_decodes_or_skips_everything(zoo, caplog):
    root, bad = zoo
    src = folder_source(root)
    names = [p.split("/")[-1] for p in src.paths]
    assert "notes.txt" not in names and "good.JPG" in names and src.paths == sorted(src.paths)  # recursive, sorted
    assert len(src) == 14
    with caplog.at_level(logging.WARNING):
        for i in range(len(src)):
            src.hw(i)
            src.decode(i)
        for i in range(len(src)):  # a second pass logs nothing new
            src.hw(i)
            src.decode(i)
    skipped = {n.split("/")[-1] for n in src.skips.files}
    assert skipped == bad, src.skips.files
    assert src.skips.skipped == len(bad)
    warned = [r for r in caplog.records if "skipping image" in r.getMessage()]
    assert len(warned) == len(bad)  # once per file
    reasons = {n.split("/")[-1]: r for n, r in src.skips.files.items()}
    assert "truncated" in reasons["truncated.jpg"] and "too small" in reasons["tiny.png"]
    assert "too large" in reasons["bomb.png"] and "too large" in reasons["big.png"]
    by_name = {n: i for i, n in enumerate(names)}
    for name in ("cmyk.jpg", "grey.jpg", "grey16.png", "rgba.png", "palette.png", "good.png", "good.JPG"):
        arr = src.decode(by_name[name])
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name
        assert src.hw(by_name[name]) == arr.shape[:2], name
    g16 = src.decode(by_name["grey16.png"])
    assert g16[0, :3, 0].tolist() == [0, 128, 255]  # 16-bit scaled, not clipped
    assert src.decode(by_name["rgba.png"])[0, 0].tolist() == [255, 255, 255]  # transparency over white
    rot = src.decode(by_name["rotated.jpg"])
    assert rot.shape[:2] == (64, 48) and src.hw(by_name["rotated.jpg"]) == (64, 48)  # EXIF orientation applied


def test_limits_are_configurable():
    data = _jpeg(GOOD)
    assert probe_bytes(data) == (48, 64)
    from copynce_fast.data.decode import BadImage
    with pytest.raises(BadImage, match="too large"):
        decode_bytes(data, DecodeLimits(max_pixels=1000))
    with pytest.raises(BadImage, match="too small"):
        probe_bytes(data, DecodeLimits(min_side=60))


def test_file_list_and_disc21_layouts(tmp_path):
    for split in ("training_images", "reference_images", "query_images"):
        (tmp_path / split).mkdir()
        for k in range(2):
            Image.fromarray(GOOD).save(tmp_path / split / f"{split[0]}{k}.jpg")
    assert len(disc21_source(tmp_path, "train")) == 2 and len(disc21_source(tmp_path, "queries")) == 2
    with pytest.raises(ValueError, match="split"):
        disc21_source(tmp_path, "val")
    lst = tmp_path / "list.txt"
    lst.write_text("# training images\ntraining_images/t0.jpg\n\nreference_images/r1.jpg\n")
    src = file_list_source(lst)
    assert len(src) == 2 and src.decode(1).shape == (48, 64, 3)
    with pytest.raises(ValueError, match="root"):
        folder_source(tmp_path / "missing")


def test_bundled_and_synthetic_sources():
    src = bundled_source()
    assert len(src) == 13 and all(src.hw(i) is not None for i in range(len(src)))
    a, b = synthetic_images(3, (40, 50), seed=1), synthetic_images(3, (40, 50), seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1]) and a[0].shape == (40, 50, 3)
    syn = synthetic_source(4, (32, 48))
    assert len(syn) == 4 and syn.hw(2) == (32, 48)
    assert np.array_equal(decode_bytes(syn.read_bytes(2)), syn.decode(2))  # lossless bytes for DALI


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_survives_bad_files(zoo, caplog, workers):
    root, bad = zoo
    loader = PairLoader(folder_source(root), matcher_preset(size=32), batch_size=3, num_workers=workers, seed=2)
    with caplog.at_level(logging.WARNING):
        for epoch in range(3):
            loader.set_epoch(epoch)
            for batch in loader:
                assert batch["query"].shape == (3, 3, 32, 32)
                assert set(batch["source_index"].tolist()).isdisjoint(
                    {i for i, p in enumerate(loader.dataset.source.paths) if p.split("/")[-1] in bad})
    found = {n.split("/")[-1] for n in loader.skips.files}
    assert found == bad
    assert loader.skips.substitutions >= 1
    warned = [r.getMessage() for r in caplog.records if "skipping image" in r.getMessage()]
    assert len(warned) == len(set(warned)) == len(found)  # once per file, from the main process
