"""The Python API: CopyDetector (embed / extract / index / compare) and CopyIndex (search, score normalisation,
save / load), checked against the engines underneath (extraction, knn, score_norm) and each other."""
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from copynce_fast import CopyDetector, CopyIndex
from copynce_fast.cli import main
from copynce_fast.config import Config, ModelConfig, to_dict
from copynce_fast.inference.extract import extract_features
from copynce_fast.inference.images import ImageItem
from copynce_fast.models.loading import build_model
from copynce_fast.search.features import load_features
from copynce_fast.search.score_norm import normalize_scores
from copynce_fast.search.whitening import learn_whitening
from copynce_fast.viz.compare import canvas_size

S = 32


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(9):
        Image.fromarray(rng.integers(0, 256, (36 + i, 44, 3), dtype=np.uint8)).save(root / f"im{i}.png")
    return root


@pytest.fixture(scope="module")
def det():
    return CopyDetector.random_init(arch="vit_tiny", img_size=S, dim=16, seed=0, num_workers=0, batch_size=4)


def ours_checkpoint(path, kind="descriptor"):
    mc = ModelConfig(kind=kind, arch="vit_tiny", img_size=S, dim=16, ln_eps=1e-4, encoder_depth=2)
    torch.manual_seed(3)
    model = build_model(mc).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": to_dict(replace(Config(), model=mc))}, path)
    return path


def test_embed_accepts_every_image_kind_and_matches_the_extractor(det, folder, tmp_path):
    path = folder / "im3.png"
    pixels = np.asarray(Image.open(path).convert("RGB"))
    items = [str(path), path, Image.open(path), torch.from_numpy(pixels.copy()),
             torch.from_numpy(pixels.transpose(2, 0, 1).copy()), pixels, pixels.transpose(2, 0, 1)]
    f = det.embed(items)
    assert f.shape == (7, 16) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(f, np.repeat(f[:1], 7, axis=0), atol=1e-6)  # one image, seven spellings
    # the extraction engine (DataLoader path, its own batching) gives the same descriptors
    paths = sorted(folder.glob("*.png"))
    extract_features(det.loaded, [ImageItem(p.stem, p) for p in paths], tmp_path / "f.npz", num_workers=0,
                     progress=False, batch_size=2)
    stored = load_features(tmp_path / "f.npz")
    np.testing.assert_allclose(det.embed([str(p) for p in paths], batch_size=5), stored.features, atol=1e-5)
    assert det.embed([]).shape == (0, 16)


def test_embed_names_bad_items(det, folder):
    good = str(folder / "im0.png")
    cases = [
        ([good, str(folder / "missing.jpg")], r"items\[1\] '.*missing.jpg': cannot decode"),
        ([good, good, np.zeros((8, 8, 3), np.float32)], r"items\[2\] \(ndarray float32 \(8, 8, 3\)\): arrays must be uint8"),
        ([np.zeros((8, 8, 4), np.uint8)], r"items\[0\] .*expected \[H, W, 3\]"),
        ([torch.zeros(8, 8, 3)], r"items\[0\] \(Tensor torch.float32"),
        ([42], r"items\[0\] \(int\): expected a path"),
    ]
    for items, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            det.embed(items)
    with pytest.raises(ValueError, match="wrap it in a list"):
        det.embed(good)
    with pytest.raises(ValueError, match="batch_size"):
        det.embed([good], batch_size=0)
    grey = det.embed([np.full((20, 20), 128, np.uint8)])  # grey arrays are repeated to RGB
    np.testing.assert_allclose(grey, det.embed([np.full((20, 20, 3), 128, np.uint8)]), atol=1e-6)


def test_from_checkpoint_file_and_run_directory(folder, tmp_path):
    ckpt = ours_checkpoint(tmp_path / "run" / "checkpoint.pt")
    a = CopyDetector.from_checkpoint(ckpt, num_workers=0)
    b = CopyDetector.from_checkpoint(tmp_path / "run", device="auto" if not torch.cuda.is_available() else "cpu")
    assert a.loaded.name == b.loaded.name and a.dim == 16 and a.img_size == S and a.kind == "descriptor"
    assert CopyDetector.from_checkpoint(tmp_path / "run" / "config.json").loaded.name == a.loaded.name
    np.testing.assert_allclose(a.embed([str(folder / "im1.png")]), b.embed([str(folder / "im1.png")]), atol=1e-6)
    with pytest.raises(ValueError, match="without checkpoint.pt"):
        CopyDetector.from_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="path: no such file"):
        CopyDetector.from_checkpoint(tmp_path / "nope.pt")
    matcher = CopyDetector.from_checkpoint(ours_checkpoint(tmp_path / "m.pt", "matcher"))
    assert matcher.kind == "matcher"
    with pytest.raises(ValueError, match="embed needs a descriptor checkpoint"):
        matcher.embed([str(folder / "im1.png")])
    with pytest.raises(ValueError, match="batch_size"):
        CopyDetector(a.loaded, batch_size=0)


def test_index_search_save_load_and_resume(det, folder, tmp_path, capsys):
    out = tmp_path / "photos.idx"
    # an interrupted extraction (3 of 9), then index(): only the rest is extracted
    det.extract(folder, out / "features", max_images=3, progress=False, shard_size=2)
    first_shard = (out / "features" / "shard_000000.npz").read_bytes()
    index = det.index(folder, out=out, progress=True)
    assert "extract" in capsys.readouterr().err  # the progress bar
    assert isinstance(index, CopyIndex) and len(index) == 9 and index.directory == out
    assert (out / "features" / "shard_000000.npz").read_bytes() == first_shard  # kept, not recomputed
    queries = det.embed([str(folder / f"im{i}.png") for i in (2, 7)])
    ids, scores = index.search(queries, k=3)
    assert ids.shape == scores.shape == (2, 3) and list(ids[:, 0]) == ["im2", "im7"]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    # independent: brute-force cosines over the stored features
    feats = load_features(out / "features")
    sims = queries @ feats.features.T
    np.testing.assert_array_equal(ids, feats.ids[np.argsort(-sims, axis=1, kind="stable")[:, :3]])
    # torch queries, reload from disk, repr
    again = CopyIndex.load(out)
    np.testing.assert_array_equal(again.search(torch.from_numpy(queries), k=3).ids, ids)
    assert "9 references, flat, 16-d" in repr(again)
    with pytest.raises(ValueError, match="an index is a directory"):
        det.index(folder, out=tmp_path / "x.npz")
    # resume=False starts the features over
    fresh = det.index(folder, out=out, resume=False, progress=False)
    assert len(fresh) == 9 and (out / "features" / "shard_000000.npz").read_bytes() != first_shard


def test_search_score_normalisation_and_whitening(det, folder, tmp_path):
    refs = [str(p) for p in sorted(folder.glob("*.png"))]
    aux = det.embed(refs[::-1])  # any non-copy collection works for the arithmetic
    queries = det.embed(refs[:3])
    index = det.index(folder, out=tmp_path / "i", aux=aux, progress=False)
    plain = index.search(queries, k=4)
    normed = index.search(queries, k=4, normalize="isc2021", norm_params={"n": 3, "beta": 2.0})
    np.testing.assert_array_equal(normed.ids, plain.ids)  # one bias per query: the order stays
    np.testing.assert_allclose(normed.scores, normalize_scores(plain.scores, queries, aux, "isc2021", n=3, beta=2.0),
                               atol=1e-6)
    with pytest.raises(ValueError, match="normalize must be one of"):
        index.search(queries, normalize="zscore")
    bare = CopyIndex.load(det.index(folder, out=tmp_path / "j", progress=False).directory)
    with pytest.raises(ValueError, match="needs auxiliary descriptors"):
        bare.search(queries, normalize="copynce")
    # a whitened index: raw queries in, the whitened space's neighbours out
    white = det.index(folder, out=tmp_path / "w", pca_dim=6, whiten_train=aux, progress=False)
    w = learn_whitening(aux, 6)
    assert white.whitening.digest == w.digest and white.index.dim == 6 and white.dim == 16
    sims = w.apply(queries) @ w.apply(det.embed(refs)).T
    np.testing.assert_array_equal(white.search(queries, k=2).ids, np.array([[f"im{j}" for j in row]
                                                                            for row in np.argsort(-sims, 1)[:, :2]]))


def test_compare_descriptor_and_matcher(det, folder, tmp_path):
    a, b = str(folder / "im0.png"), str(folder / "im5.png")
    score, picture = det.compare(a, b, panel=64)
    fa, fb = det.embed([a, b])
    assert score == pytest.approx(float(fa @ fb), abs=1e-5)  # the descriptor score is the cosine
    assert isinstance(picture, Image.Image) and picture.size == canvas_size(64)
    assert det.compare(a, Image.open(a), picture=False) == (pytest.approx(1.0, abs=1e-5), None)
    matcher = CopyDetector.random_init("matcher", arch="vit_tiny", img_size=S, seed=1)
    p, pic = matcher.compare(a, b, panel=48, lines=4)
    assert 0.0 <= p <= 1.0 and pic.size == canvas_size(48)
    with pytest.raises(ValueError, match="panel"):
        det.compare(a, b, panel=8)
    with pytest.raises(ValueError, match=r"^b '.*nope.png': cannot decode"):
        det.compare(a, str(folder / "nope.png"))


def test_cli_extract_whiten_then_index_and_search(det, folder, tmp_path):
    """extract --whiten stores whitened rows (recorded by digest); an index with the same whitening uses them
    as they are; search takes raw or whitened queries alike."""
    w = learn_whitening(det.embed([str(p) for p in sorted(folder.glob("*.png"))] * 2), 8)
    w.save(tmp_path / "w.npz")
    model = ["--random-init", "--arch", "vit_tiny", "--img-size", str(S), "--dim", "16", "--workers", "0",
             "--no-progress", "--device", "cpu"]
    assert main(["extract", str(folder), "--out", str(tmp_path / "white.npz"), "--whiten", str(tmp_path / "w.npz"),
                 *model]) == 0
    assert main(["extract", str(folder), "--out", str(tmp_path / "raw.npz"), *model]) == 0
    white, raw = load_features(tmp_path / "white.npz"), load_features(tmp_path / "raw.npz")
    assert white.dim == 8 and white.meta["whitening"] == w.digest
    np.testing.assert_allclose(white.features, w.apply(raw.features), atol=1e-5)
    assert main(["index", str(tmp_path / "white.npz"), "--out", str(tmp_path / "idx"), "--whiten",
                 str(tmp_path / "w.npz")]) == 0
    for q in ("white.npz", "raw.npz"):
        assert main(["search", "--queries", str(tmp_path / q), "--index", str(tmp_path / "idx"), "--out",
                     str(tmp_path / f"{q}.csv"), "-k", "2"]) == 0
    assert (tmp_path / "white.npz.csv").read_text() .splitlines()[1].split(",")[:2] == ["im0", "im0"]
    rows = lambda name: [line.split(",")[:2] for line in (tmp_path / name).read_text().splitlines()]  # noqa: E731
    assert rows("white.npz.csv") == rows("raw.npz.csv")
    # resuming the whitened file without --whiten is refused
    assert main(["extract", str(folder), "--out", str(tmp_path / "white.npz"), *model]) == 1


def test_package_import_stays_light():
    code = ("import sys, copynce_fast; heavy = [m for m in ('copynce_fast.inference.detector', 'faiss', 'matplotlib', "
            "'copynce_fast.models') if m in sys.modules]; print(heavy); "
            "from copynce_fast import CopyDetector; print(CopyDetector.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "copynce_fast.inference.detector"
    import copynce_fast

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        copynce_fast.Nope  # noqa: B018


@pytest.mark.gpu
def test_embed_on_cuda_matches_cpu(folder):
    cpu = CopyDetector.random_init(arch="vit_tiny", img_size=S, dim=16, seed=0)
    gpu = CopyDetector.random_init(arch="vit_tiny", img_size=S, dim=16, seed=0, device="cuda")
    paths = [str(p) for p in sorted(folder.glob("*.png"))]
    np.testing.assert_allclose(gpu.embed(paths), cpu.embed(paths), atol=3e-2)  # bf16 autocast on CUDA
