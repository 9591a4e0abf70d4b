"""PCA-whitening: faiss and torch learn the same transform, the whitened training set has identity covariance,
the transform travels with the index (queries whitened at search, extract-time whitening recognised), PQ on
whitened descriptors, the CLI flags."""
import numpy as np
import pytest
import torch

from copynce_fast.cli import main
from copynce_fast.search import whitening as W
from copynce_fast.search.features import Features, load_features, save_features
from copynce_fast.search.index import build_index, load_index, make_index
from copynce_fast.search.knn import faiss_available
from copynce_fast.search.whitening import learn_whitening, load_whitening

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss not installed")


def anisotropic(n, d, seed=0, decay=0.8):
    """Unit descriptors with a decaying, well-separated spectrum and a non-zero mean (as real ones have)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x = rng.standard_normal((n, d)) * decay ** np.arange(d) @ basis.T + 0.3 * basis[:, 0]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@needs_faiss
@pytest.mark.parametrize("dim", [16, 6])
def test_faiss_and_torch_learn_the_same_whitening(dim):
    x = anisotropic(600, 16)
    wf = learn_whitening(x, dim, method="faiss", eps=0.0)
    wt = learn_whitening(x, dim, method="torch", eps=0.0)
    assert (wf.meta["method"], wt.meta["method"]) == ("faiss", "torch")
    np.testing.assert_allclose(wf.mean, wt.mean, atol=1e-6)
    np.testing.assert_allclose(wf.eigenvalues, wt.eigenvalues, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(wf.components, wt.components, atol=2e-4)  # sign convention makes them comparable
    np.testing.assert_allclose(wf.apply(x), wt.apply(x), atol=5e-4)


@needs_faiss
def test_our_apply_matches_faiss_pcamatrix_apply():
    """Independent check of how faiss' arrays are read: faiss' own PCAMatrix(eigen_power=-0.5).apply, L2-normalised,
    gives the same similarities (Gram matrix: sign-free) as our transform."""
    import faiss

    x = anisotropic(500, 12, seed=1)
    pca = faiss.PCAMatrix(12, 8, -0.5, False)
    pca.train(x)
    theirs = pca.apply(x)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    ours = learn_whitening(x, 8, method="faiss", eps=0.0).apply(x)
    np.testing.assert_allclose(ours @ ours.T, theirs @ theirs.T, atol=1e-4)


@pytest.mark.parametrize("method", ["torch"] + (["faiss"] if faiss_available() else []))
def test_whitened_training_set_has_identity_covariance(method):
    x = anisotropic(800, 10, seed=2)
    w = learn_whitening(x, 10, method=method, eps=0.0)
    y = (x - w.mean) @ w.components.T * w.scales  # before the final L2 normalisation
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(10), atol=2e-3)
    z = w.apply(x)
    assert z.shape == (800, 10) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # torch input (any float dtype) gives the numpy result, as a tensor
    zt = w.apply(torch.from_numpy(x).double())
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, atol=1e-5)


def test_save_load_digest_and_errors(tmp_path, monkeypatch):
    x = anisotropic(200, 8, seed=3)
    w = learn_whitening(x, 4, method="torch")
    path = w.save(tmp_path / "w.npz")
    back = load_whitening(path)
    assert back.digest == w.digest and back.dim_in == 8 and back.dim_out == 4
    np.testing.assert_array_equal(back.apply(x), w.apply(x))
    assert learn_whitening(x, 4, method="torch", eps=1e-3).digest != w.digest
    # a damaged file is refused
    with np.load(path) as z:
        arrays = dict(z)
    arrays["mean"] = arrays["mean"] + 1
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="digest"):
        load_whitening(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="path: no such"):
        load_whitening(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="dim: must be"):
        learn_whitening(x, 9)
    with pytest.raises(ValueError, match="train: 4 rows"):
        learn_whitening(x[:4], 4)
    with pytest.raises(ValueError, match="x: expected"):
        w.apply(x[:, :5])
    with pytest.raises(ValueError, match="method"):
        learn_whitening(x, 4, method="sklearn")
    monkeypatch.setattr(W, "faiss_available", lambda: False)
    assert learn_whitening(x, 4).meta["method"] == "torch"  # auto without faiss
    with pytest.raises(ValueError, match="method: 'faiss'"):
        learn_whitening(x, 4, method="faiss")


def test_max_rows_subsample_is_seeded():
    x = anisotropic(300, 6, seed=4)
    a = learn_whitening(x, 3, method="torch", max_rows=100, seed=1)
    b = learn_whitening(x, 3, method="torch", max_rows=100, seed=1)
    c = learn_whitening(x, 3, method="torch", max_rows=100, seed=2)
    assert a.digest == b.digest != c.digest and a.meta["count"] == 100


def feats(x, prefix="r", meta=None):
    return Features(np.array([f"{prefix}{i}" for i in range(len(x))]), x, {"model": "m", "img_size": 32, **(meta or {})})


@pytest.mark.parametrize("backend", ["torch"] + (["faiss"] if faiss_available() else []))
def test_index_whitens_references_and_queries(tmp_path, backend):
    refs, queries, train = anisotropic(300, 16, 5), anisotropic(20, 16, 6), anisotropic(400, 16, 7)
    w = learn_whitening(train, 8)
    index = make_index(feats(refs), backend=backend, whitening=w)
    assert index.dim == 8 and index.query_dim == 16
    scores, rows = index.search(queries, 5)
    # independent: exact inner products between the whitened sets
    sims = w.apply(queries) @ w.apply(refs).T
    np.testing.assert_array_equal(rows, np.argsort(-sims, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(sims, rows, 1), atol=1e-5)
    # already-whitened queries are taken as they are
    s2, r2 = index.search(w.apply(queries), 5, whitened=True)
    np.testing.assert_array_equal(r2, rows)
    with pytest.raises(ValueError, match="queries: 8-d"):
        index.search(w.apply(queries), 5)
    # the saved index carries the whitening
    loaded = load_index(index.save(tmp_path / "idx"))
    assert loaded.whitening.digest == w.digest
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], rows)
    # features whitened at extraction (meta names the digest) are not whitened twice
    pre = feats(w.apply(refs), meta={"whitening": w.digest})
    np.testing.assert_array_equal(make_index(pre, backend=backend, whitening=w).search(queries, 5)[1], rows)
    with pytest.raises(ValueError, match="whitening: the features were whitened"):
        make_index(pre, backend=backend)
    with pytest.raises(ValueError, match="another transform"):
        make_index(pre, backend=backend, whitening=learn_whitening(train, 8, eps=0.1))


@needs_faiss
def test_ivfpq_on_whitened_descriptors_keeps_most_neighbours():
    """Compression: 64-d -> PCA 32-d -> IVF-PQ with 8 bytes per vector; neighbours of exact search on the
    whitened vectors mostly survive (nprobe = nlist, so the loss is PQ's alone)."""
    refs, queries = anisotropic(3000, 64, 8, decay=0.95), anisotropic(50, 64, 9, decay=0.95)
    w = learn_whitening(refs, 32)
    exact = make_index(feats(refs), whitening=w).search(queries, 10)[1]
    pq = make_index(feats(refs), kind="ivfpq", nlist=16, pq_m=8, whitening=w)
    assert pq.meta["pq_m"] == 8 and pq.dim == 32
    approx = pq.search(queries, 10, nprobe=16)[1]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert 0.3 < recall <= 1.0  # 8 bytes: a lossy but useful code (a random ranking gives 10 / 3000)


def test_cli_index_pca_dim_then_search(tmp_path):
    refs, queries, train = anisotropic(120, 16, 10), anisotropic(10, 16, 11), anisotropic(200, 16, 12)
    for name, x, prefix in (("r.npz", refs, "r"), ("q.npz", queries, "q"), ("t.npz", train, "t")):
        save_features(tmp_path / name, [f"{prefix}{i}" for i in range(len(x))], x, model="m", img_size=32)
    idx = tmp_path / "idx"
    assert main(["index", str(tmp_path / "r.npz"), "--out", str(idx), "--whiten", str(tmp_path / "t.npz"),
                 "--pca-dim", "8", "--backend", "torch", "--no-progress"]) == 0
    w = load_whitening(idx / "whitening.npz")
    assert w.dim_out == 8 and w.meta["count"] == 200
    np.testing.assert_allclose(w.mean, learn_whitening(train, 8).mean, atol=1e-6)
    preds = tmp_path / "p.csv"
    assert main(["search", "--queries", str(tmp_path / "q.npz"), "--index", str(idx), "--out", str(preds),
                 "-k", "3"]) == 0
    sims = w.apply(queries) @ w.apply(refs).T
    first = [line.split(",")[1] for line in preds.read_text().splitlines()[1::3]]
    assert first == [f"r{i}" for i in sims.argmax(1)]
    # a learned whitening applied to another index; --pca-dim with it is refused
    assert main(["index", str(tmp_path / "r.npz"), "--out", str(tmp_path / "idx2"), "--whiten",
                 str(idx / "whitening.npz"), "--backend", "torch", "--aux", str(tmp_path / "t.npz")]) == 0
    assert load_index(tmp_path / "idx2").whitening.digest == w.digest
    from copynce_fast.search.copy_index import CopyIndex

    with_aux = CopyIndex.load(tmp_path / "idx2")  # --aux is kept for CopyIndex.search(normalize=...)
    np.testing.assert_array_equal(with_aux.aux, train)
    assert with_aux.search(queries, 3, normalize="sscd").scores.shape == (10, 3)
    assert main(["index", str(tmp_path / "r.npz"), "--out", str(tmp_path / "idx3"), "--whiten",
                 str(idx / "whitening.npz"), "--pca-dim", "4"]) == 1
    assert main(["index", str(tmp_path / "r.npz"), "--out", str(tmp_path / "idx3"), "--pca-dim", "17"]) == 1
    # the index features are the raw references; the stored features of the index stay loadable
    assert load_features(tmp_path / "r.npz").dim == 16


def test_cli_error_names_the_flag(tmp_path, capsys):
    x = anisotropic(50, 8, 13)
    save_features(tmp_path / "r.npz", [f"r{i}" for i in range(50)], x, model="m", img_size=32)
    assert main(["index", str(tmp_path / "r.npz"), "--out", str(tmp_path / "i"), "--pca-dim", "9"]) == 1
    assert "--pca-dim: must be an integer in [1, 8]" in capsys.readouterr().err
    save_features(tmp_path / "t.npz", [f"t{i}" for i in range(5)], x[:5], model="m", img_size=32)
    assert main(["index", str(tmp_path / "r.npz"), "--out", str(tmp_path / "i"), "--pca-dim", "6",
                 "--whiten", str(tmp_path / "t.npz")]) == 1
    assert "--whiten: 5 rows cannot define 6" in capsys.readouterr().err
