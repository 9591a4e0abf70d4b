"""kNN search: torch and faiss agree with a brute-force numpy oracle; IVF with every list probed is exact;
bad arguments raise; prediction triples and their CSV round-trip."""
import numpy as np
import pytest
import torch

from copynce_fast.search.knn import faiss_available, knn
from copynce_fast.search.predictions import knn_to_predictions, read_predictions_csv, write_predictions_csv

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss not installed")


def _data(n=37, m=501, d=24, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, d)).astype(np.float32)
    db = rng.standard_normal((m, d)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True), db / np.linalg.norm(db, axis=1, keepdims=True)


def _oracle(q, db, k, metric):
    q64, db64 = q.astype(np.float64), db.astype(np.float64)
    if metric == "ip":
        s = q64 @ db64.T
        idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = ((q64[:, None, :] - db64[None]) ** 2).sum(-1)
        idx = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, 1), idx


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=needs_faiss)])
def test_exact_backends_match_oracle(backend, metric):
    q, db = _data()
    scores, idx = knn(q, db, 10, metric=metric, backend=backend)
    ref_s, ref_i = _oracle(q, db, 10, metric)
    assert scores.dtype == np.float32 and idx.dtype == np.int64 and scores.shape == (37, 10)
    np.testing.assert_array_equal(idx, ref_i)  # gaussian data: no exact ties
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)


def test_torch_chunking_and_tensor_io():
    q, db = _data(n=50, m=300)
    s1, i1 = knn(q, db, 7, backend="torch")
    s2, i2 = knn(torch.from_numpy(q), torch.from_numpy(db), 7, backend="torch", batch_size=8)
    assert isinstance(s2, torch.Tensor) and s2.dtype == torch.float32 and i2.dtype == torch.int64
    np.testing.assert_array_equal(i1, i2.numpy())
    np.testing.assert_allclose(s1, s2.numpy(), atol=1e-6)
    s3, i3 = knn(q.astype(np.float16), db.astype(np.float16), 7, backend="torch")
    assert s3.dtype == np.float32 and (i3[:, 0] == i1[:, 0]).mean() > 0.9  # fp16 inputs: near-identical


@needs_faiss
def test_faiss_and_torch_give_the_same_neighbours():
    q, db = _data(n=64, m=2000, d=32, seed=3)
    sf, i_f = knn(q, db, 5, backend="faiss")
    st, i_t = knn(torch.from_numpy(q), torch.from_numpy(db), 5, backend="torch")
    np.testing.assert_array_equal(i_f, i_t.numpy())
    np.testing.assert_allclose(sf, st.numpy(), atol=1e-5)


@needs_faiss
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_ivf_probing_every_list_is_exact(metric):
    q, db = _data(n=40, m=3000, d=16, seed=1)
    exact_s, exact_i = knn(q, db, 5, metric=metric, backend="faiss")
    s, i = knn(q, db, 5, metric=metric, index="ivf", nlist=20, nprobe=20)
    np.testing.assert_array_equal(i, exact_i)
    np.testing.assert_allclose(s, exact_s, atol=1e-5)


@needs_faiss
def test_ivfpq_returns_valid_neighbours():
    q, db = _data(n=40, m=3000, d=16, seed=2)
    s, i = knn(q, db, 5, index="ivfpq", nlist=16, nprobe=16, pq_m=4)
    assert s.shape == i.shape == (40, 5) and i.min() >= 0 and i.max() < 3000
    assert np.all(np.diff(s, axis=1) <= 1e-6)
    _, exact = knn(q, db, 5, backend="torch")
    assert (i[:, 0] == exact[:, 0]).mean() > 0.3  # coarse codes, still far better than chance (1/3000)


@pytest.mark.parametrize("kwargs, name", [
    (dict(k=0), "k"),
    (dict(k=502), "k=502"),
    (dict(k=2.0), "k"),
    (dict(k=5, metric="cos"), "metric"),
    (dict(k=5, backend="cuda"), "backend"),
    (dict(k=5, index="hnsw"), "index"),
    (dict(k=5, backend="torch", index="ivf"), "index"),
    (dict(k=5, batch_size=0), "batch_size"),
    (dict(k=5, gpu="yes"), "gpu"),
    pytest.param(dict(k=5, index="ivf", nlist=10, nprobe=11), "nprobe", marks=needs_faiss),
    pytest.param(dict(k=5, index="ivf", nlist=0), "nlist", marks=needs_faiss),
    pytest.param(dict(k=5, index="ivfpq", nlist=4, pq_m=5), "pq_m", marks=needs_faiss),
])
def test_bad_arguments_raise_naming_them(kwargs, name):
    q, db = _data()
    with pytest.raises(ValueError, match=name):
        knn(q, db, **kwargs)


def test_bad_inputs_raise():
    q, db = _data()
    with pytest.raises(ValueError, match="queries"):
        knn(q[0], db, 3)
    with pytest.raises(ValueError, match="dims"):
        knn(q[:, :5], db, 3)
    with pytest.raises(ValueError, match="both"):
        knn(torch.from_numpy(q), db, 3)
    with pytest.raises(ValueError, match="database"):
        knn(q, db.astype(np.int64), 3)


def test_knn_to_predictions_and_csv_round_trip(tmp_path):
    scores = np.array([[0.9, 0.5], [0.8, -np.inf]], dtype=np.float32)
    indices = np.array([[2, 0], [1, -1]])
    preds = knn_to_predictions(scores, indices, ["Q0", "Q1"], ["R0", "R1", "R2"])
    assert preds[0].tolist() == ["Q0", "Q0", "Q1"]
    assert preds[1].tolist() == ["R2", "R0", "R1"]
    np.testing.assert_array_equal(preds[2], np.float32([0.9, 0.5, 0.8]).astype(np.float64))
    path = write_predictions_csv(tmp_path / "p.csv", preds)
    assert path.read_text().splitlines()[0] == "query_id,reference_id,score"
    back = read_predictions_csv(path)
    for a, b in zip(preds, back):
        np.testing.assert_array_equal(a, b)  # scores are bit-exact: repr round-trips
    write_predictions_csv(tmp_path / "l.csv", [("Q9", "R9", 0.25)])
    assert [x.tolist() for x in read_predictions_csv(tmp_path / "l.csv")] == [["Q9"], ["R9"], [0.25]]
    (tmp_path / "bad.csv").write_text("q,r,s\n")
    with pytest.raises(ValueError, match="header"):
        read_predictions_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="reference_ids"):
        knn_to_predictions(scores, np.array([[5, 0], [1, 0]]), ["Q0", "Q1"], ["R0"])
