"""Evaluation image listing / preprocessing and the resumable extraction engine (library level)."""
import numpy as np
import pytest
import torch
from PIL import Image

from copynce_fast.inference.extract import ImageDataset, collate_images, extract_features
from copynce_fast.search.features import load_features
from copynce_fast.inference.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageItem,
    decode_image,
    list_images,
    normalize,
    preprocess,
)
from copynce_fast.models.loading import load_model

S = 32


@pytest.fixture(scope="module")
def descriptor():
    return load_model("descriptor", random_init=True, arch="vit_tiny", img_size=S, dim=8, seed=0)


def make_images(folder, names, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in names:
        Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(folder / n)
    return [ImageItem(n.rsplit(".", 1)[0], folder / n) for n in names]


def test_preprocess_is_a_bicubic_square_resize_and_normalize_uses_imagenet_stats():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    x = preprocess(img, S)
    assert x.dtype == torch.uint8 and x.shape == (3, S, S)
    expected = np.asarray(img.resize((S, S), Image.BICUBIC))  # aspect ratio not kept
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), expected)
    y = normalize(x[None])
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(y[0], (x.float() / 255 - mean) / std)
    with pytest.raises(ValueError, match="uint8"):
        normalize(x.float()[None])


def test_decode_converts_modes(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(cmyk)  # CMYK red
    r, g, b = np.asarray(decode_image(cmyk))[10, 10]
    assert r > 200 and g < 60 and b < 60
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)).save(deep)  # 16-bit white
    assert np.asarray(decode_image(deep)).min() == 255
    half = tmp_path / "half.png"
    Image.fromarray(np.full((20, 20), 32896, dtype=np.uint16)).save(half)  # 16-bit mid grey, not clipped
    assert abs(int(np.asarray(decode_image(half))[0, 0, 0]) - 128) <= 1


def test_list_images_sources(tmp_path):
    make_images(tmp_path / "a" / "sub", ["x2.png", "x1.jpg"])
    make_images(tmp_path / "a", ["x0.png"])
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    assert [it.id for it in list_images(tmp_path / "a")] == ["x1", "x2", "x0"]  # recursive, sorted by path
    csv_file = tmp_path / "l.csv"
    csv_file.write_text("uuid,path\nfirst,a/sub/x2.png\n,a/x0.png\n")
    assert [(it.id, it.path) for it in list_images(csv_file)] == [("first", tmp_path / "a/sub/x2.png"),
                                                                  ("x0", tmp_path / "a/x0.png")]
    with pytest.raises(ValueError, match="'path' column"):
        bad = tmp_path / "bad.csv"
        bad.write_text("uuid,file\nq,a.png\n")
        list_images(bad)
    with pytest.raises(ValueError, match="no such file"):
        list_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a DISC21 root"):
        list_images(tmp_path / "a", split="dev")
    with pytest.raises(ValueError, match="split"):
        list_images(tmp_path / "a", split="nope")


def test_disc21_query_ranges(tmp_path):
    make_images(tmp_path / "query_images", ["Q24999.jpg", "Q25000.jpg", "Q49999.jpg", "Q50000.jpg"])
    ids = {s: [it.id for it in list_images(tmp_path, split=s)] for s in ("val", "dev", "test", "queries")}
    assert ids == {"val": ["Q24999"], "dev": ["Q25000", "Q49999"], "test": ["Q50000"],
                   "queries": ["Q24999", "Q25000", "Q49999", "Q50000"]}


def test_dataset_reports_failures_and_collate_splits_them(tmp_path):
    items = make_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    items.append(ImageItem("c", tmp_path / "c.png"))
    items.append(ImageItem("d", tmp_path / "gone.png"))
    ds = ImageDataset(items, S)
    idx, images, failures = collate_images([ds[i] for i in range(4)])
    assert idx.tolist() == [0, 1] and images.shape == (2, 3, S, S)
    assert [i for i, _ in failures] == [2, 3]
    assert "cannot read" in failures[1][1]


def test_extract_features_matches_the_model_and_resumes(tmp_path, descriptor):
    items = make_images(tmp_path / "imgs", [f"i{k}.png" for k in range(5)])
    out = tmp_path / "f.npz"
    first = extract_features(descriptor, items, out, batch_size=2, num_workers=0, max_images=2, progress=False)
    assert not first.complete and first.extracted == 2 and not out.exists()
    second = extract_features(descriptor, items, out, batch_size=2, num_workers=0, progress=False)
    assert second.complete and second.already_done == 2 and second.extracted == 3 and out.is_file()
    feats = load_features(out)
    x = normalize(torch.stack([preprocess(decode_image(it.path), S) for it in items]))
    with torch.no_grad():
        expected = descriptor.model(x)["feat"].numpy()
    assert feats.ids.tolist() == [it.id for it in items]
    np.testing.assert_allclose(feats.features, expected, atol=1e-5)
    assert feats.meta["model"] == descriptor.name and feats.meta["img_size"] == S

    # a new image appears: only it is extracted, the finished .npz keeps the rest
    items += make_images(tmp_path / "imgs", ["i9.png"], seed=9)
    third = extract_features(descriptor, items, out, num_workers=0, progress=False)
    assert third.already_done == 5 and third.extracted == 1 and third.complete
    assert load_features(out).ids.tolist() == [it.id for it in items]


def test_extract_features_float16_and_output_checks(tmp_path, descriptor):
    items = make_images(tmp_path / "imgs", ["a.png", "b.png"])
    res = extract_features(descriptor, items, tmp_path / "d", dtype="float16", num_workers=0, progress=False)
    assert res.complete
    assert load_features(tmp_path / "d").features.dtype == np.float16
    with pytest.raises(ValueError, match="dtype"):  # resuming with another storage dtype
        extract_features(descriptor, items, tmp_path / "d", dtype="float32", num_workers=0, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        extract_features(descriptor, items, tmp_path / "file", num_workers=0, progress=False)
    matcher = load_model("matcher", random_init=True, arch="vit_tiny", img_size=S)
    with pytest.raises(ValueError, match="descriptor"):
        extract_features(matcher, items, tmp_path / "m", num_workers=0, progress=False)


def test_extract_with_worker_processes(tmp_path, descriptor):
    items = make_images(tmp_path / "imgs", [f"w{k}.png" for k in range(4)])
    (tmp_path / "imgs" / "bad.png").write_bytes(b"nope")
    items.append(ImageItem("bad", tmp_path / "imgs" / "bad.png"))
    res = extract_features(descriptor, items, tmp_path / "w.npz", batch_size=2, num_workers=2, progress=False)
    assert res.complete and res.extracted == 4 and [p for p, _ in res.skipped] == [str(items[-1].path)]
    serial = extract_features(descriptor, items, tmp_path / "s.npz", batch_size=3, num_workers=0, progress=False)
    assert serial.extracted == 4
    np.testing.assert_allclose(load_features(tmp_path / "w.npz").features, load_features(tmp_path / "s.npz").features,
                               atol=1e-6)


def test_dali_cpu_loader_agrees_with_the_pil_path(tmp_path, descriptor):
    pytest.importorskip("nvidia.dali")
    from copynce_fast.inference.extract_dali import DaliImageBatches

    items = make_images(tmp_path / "imgs", [f"d{k}.png" for k in range(5)])
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 junk")
    items.insert(2, ImageItem("bad", tmp_path / "imgs" / "bad.jpg"))
    batches = list(DaliImageBatches(items, S, batch_size=4, device_id=None, num_threads=2))
    idx = torch.cat([b[0] for b in batches]).tolist()
    assert idx == [0, 1, 3, 4, 5] and [f for b in batches for f in b[2]][0][0] == 2
    dali_px = torch.cat([b[1] for b in batches if b[1] is not None]).int()
    pil_px = torch.stack([preprocess(decode_image(items[i].path), S) for i in idx]).int()
    assert dali_px.shape == pil_px.shape
    assert (dali_px - pil_px).abs().float().mean() < 1.0  # cubic vs bicubic resize: within a grey level
    res = extract_features(descriptor, items, tmp_path / "dali.npz", loader="dali", batch_size=4, num_workers=2,
                           progress=False)
    assert res.complete and res.extracted == 5 and len(res.skipped) == 1


def test_dali_failure_inside_a_batch_falls_back_to_pil(tmp_path):
    pytest.importorskip("nvidia.dali")
    from copynce_fast.inference.extract_dali import DaliImageBatches

    items = make_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    data = bytearray((tmp_path / "imgs" / "b.png").read_bytes())
    data[60:-40] = bytes(len(data) - 100)  # header and IEND intact: passes the header probe, not the decode
    (tmp_path / "imgs" / "b.png").write_bytes(bytes(data))
    loader = DaliImageBatches(items, S, batch_size=3, device_id=None, num_threads=1)
    (idx, images, failures), = list(loader)
    assert loader.rebuilds == 1
    assert idx.tolist() == [0, 2] and images.shape == (2, 3, S, S) and [i for i, _ in failures] == [1]
    np.testing.assert_array_equal(images[1].numpy(), preprocess(decode_image(items[2].path), S).numpy())


@pytest.mark.gpu
@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_cuda_bf16_extraction_is_close_to_cpu_fp32(tmp_path, loader):
    if loader == "dali":
        pytest.importorskip("nvidia.dali")
    items = make_images(tmp_path / "imgs", [f"g{k}.png" for k in range(6)])
    cpu = load_model("descriptor", random_init=True, arch="vit_small", img_size=64, seed=0)
    gpu = load_model("descriptor", random_init=True, arch="vit_small", img_size=64, seed=0, device="cuda")
    extract_features(cpu, items, tmp_path / "cpu.npz", num_workers=0, progress=False, loader="torch")
    extract_features(gpu, items, tmp_path / "gpu.npz", num_workers=0, progress=False, loader=loader)
    a, b = load_features(tmp_path / "cpu.npz").features, load_features(tmp_path / "gpu.npz").features
    cos = (a * b).sum(1)
    assert cos.min() > 0.99  # bf16 autocast (and DALI's resize) vs fp32 PIL on the same unit descriptors
