"""Asymmetric (ASL) search: rescoring against brute force, the repo's hard rule, norms in feature files, the CLI."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from copynce_fast.ops.asl import asymmetric_score_ref
from copynce_fast.search.asymmetric import asymmetric_rescore, provably_exact
from copynce_fast.search.features import FeatureWriter, consolidate, load_features, save_features
from copynce_fast.search.knn import knn


def data(n=12, m=30, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, r = F.normalize(torch.randn(n, d, generator=g), dim=1), F.normalize(torch.randn(m, d, generator=g), dim=1)
    qn, rn = 0.5 + torch.rand(n, generator=g) * 2, 0.5 + torch.rand(m, generator=g) * 2
    return q.numpy(), r.numpy(), qn.numpy(), rn.numpy()


@pytest.mark.parametrize("gamma", [0.0, 0.8, 3.0])
def test_rescoring_all_candidates_equals_brute_force(gamma):
    q, r, qn, rn = data()
    full = asymmetric_score_ref(*map(torch.from_numpy, (q, qn, r, rn)), gamma)
    want_s, want_i = full.topk(5, dim=1)
    cos, idx = knn(q, r, len(r), metric="ip", backend="torch")
    got_s, got_i = asymmetric_rescore(cos, idx, qn, rn, 5, gamma)
    np.testing.assert_allclose(got_s, want_s.numpy(), atol=1e-5)
    np.testing.assert_array_equal(got_i, want_i.numpy())
    assert provably_exact(got_s, cos[:, -1]).all()  # every reference was a candidate


def test_fewer_candidates_are_exact_where_it_is_provable():
    q, r, qn, rn = data(seed=1)
    full = asymmetric_score_ref(*map(torch.from_numpy, (q, qn, r, rn)), 2.0)
    want_s, _ = full.topk(3, dim=1)
    cos, idx = knn(q, r, 8, metric="ip", backend="torch")
    got_s, _ = asymmetric_rescore(cos, idx, qn, rn, 3, 2.0)
    sure = provably_exact(got_s, cos[:, -1])
    assert sure.any()
    np.testing.assert_allclose(got_s[sure], want_s.numpy()[sure], atol=1e-5)


def test_infinite_gamma_drops_larger_queries_and_torch_inputs_stay_torch():
    q, r, qn, rn = data(seed=2)
    cos, idx = knn(torch.from_numpy(q), torch.from_numpy(r), len(r), metric="ip", backend="torch")
    s, i = asymmetric_rescore(cos, idx, torch.from_numpy(qn), torch.from_numpy(rn), len(r), math.inf)
    assert isinstance(s, torch.Tensor) and isinstance(i, torch.Tensor)
    kept = i >= 0
    assert kept.any() and (~kept).any()
    for row in range(len(q)):  # test.py: a pair with q/r > 1 is dropped, every other pair stays
        assert set(i[row][kept[row]].tolist()) == {j for j in range(len(r)) if qn[row] <= rn[j]}
    assert torch.isneginf(s[~kept]).all()


def test_bad_arguments():
    q, r, qn, rn = data()
    cos, idx = knn(q, r, 4, metric="ip", backend="torch")
    with pytest.raises(ValueError, match="k must be"):
        asymmetric_rescore(cos, idx, qn, rn, 5)
    with pytest.raises(ValueError, match="query_norms"):
        asymmetric_rescore(cos, idx, qn[:3], rn, 2)
    with pytest.raises(ValueError, match="positive"):
        asymmetric_rescore(cos, idx, -qn, rn, 2)


def test_feature_files_carry_norms(tmp_path):
    ids = np.asarray([f"R{i}" for i in range(5)])
    feats = np.eye(5, 4, dtype=np.float32)
    norms = np.arange(1, 6, dtype=np.float32)
    f = load_features(save_features(tmp_path / "a.npz", ids, feats, model="m", img_size=32, norms=norms))
    np.testing.assert_array_equal(f.norms, norms)
    assert load_features(save_features(tmp_path / "b.npz", ids, feats, model="m", img_size=32)).norms is None
    with FeatureWriter(tmp_path / "shards", model="m", dim=4, img_size=32, shard_size=2) as w:
        w.append(ids[:3], feats[:3], norms[:3])
        w.append(ids[3:], feats[3:], norms[3:])
    np.testing.assert_array_equal(load_features(tmp_path / "shards").norms, norms)
    np.testing.assert_array_equal(load_features(consolidate(tmp_path / "shards", tmp_path / "c.npz")).norms, norms)
    with FeatureWriter(tmp_path / "mixed", model="m", dim=4, img_size=32, shard_size=10) as w:
        w.append(ids[:3], feats[:3], norms[:3])
        w.append(ids[3:], feats[3:])  # no norms for these rows: the shard stores none
    assert load_features(tmp_path / "mixed").norms is None
    with pytest.raises(ValueError, match="norms must be"):
        save_features(tmp_path / "d.npz", ids, feats, model="m", img_size=32, norms=norms[:2])


def test_cli_asymmetric_search(tmp_path, capsys):
    from PIL import Image

    from copynce_fast.cli import main
    from copynce_fast.search.predictions import read_predictions_csv

    rng = np.random.default_rng(0)
    refs, queries = tmp_path / "refs", tmp_path / "queries"
    refs.mkdir()
    queries.mkdir()
    for i in range(5):
        img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(img).save(refs / f"R{i}.png")
        Image.fromarray(img[8:40, 8:40]).save(queries / f"Q{i}.png")  # a crop of R{i}
    model = ["--random-init", "--arch", "vit_tiny", "--img-size", "32", "--dim", "16", "--workers", "0",
             "--no-progress"]
    qf, rf = tmp_path / "q.npz", tmp_path / "r.npz"
    assert main(["extract", str(queries), "--out", str(qf), *model]) == 0
    assert main(["extract", str(refs), "--out", str(rf), *model]) == 0
    qfe, rfe = load_features(qf), load_features(rf)
    assert qfe.norms is not None and rfe.norms is not None

    def search(out, *extra):
        assert main(["search", "--queries", str(qf), "--references", str(rf), "--out", str(out), "-k", "5",
                     *extra]) == 0
        return read_predictions_csv(out)

    cosine = search(tmp_path / "cos.csv")
    zero = search(tmp_path / "zero.csv", "--score", "asymmetric", "--asl-gamma", "0")
    for a, b in zip(cosine[:2], zero[:2]):  # gamma 0: the cosine ranking
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(cosine[2], zero[2], atol=1e-5)
    hard = search(tmp_path / "hard.csv", "--score", "asymmetric", "--asl-gamma", "inf")
    qn = dict(zip(qfe.ids.tolist(), qfe.norms.tolist()))
    rn = dict(zip(rfe.ids.tolist(), rfe.norms.tolist()))
    assert all(qn[q] <= rn[r] for q, r in zip(hard[0], hard[1]))  # only pairs the repo's rule keeps
    assert len(hard[0]) == sum(qn[q] <= rn[r] for q in qn for r in rn)

    assert main(["search", "--queries", str(qf), "--index", str(tmp_path / "x"), "--out", str(tmp_path / "e.csv"),
                 "--score", "asymmetric"]) == 1
    assert "--score asymmetric needs --references" in capsys.readouterr().err
    old = tmp_path / "old.npz"
    save_features(old, qfe.ids, qfe.features, model=qfe.meta["model"], img_size=32)  # no norms
    assert main(["search", "--queries", str(old), "--references", str(rf), "--out", str(tmp_path / "e.csv"),
                 "--score", "asymmetric"]) == 1
    assert "--queries: the feature file holds no descriptor norms" in capsys.readouterr().err
