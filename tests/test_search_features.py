"""Feature files: single-file round trip, sharded writer resumed after a simulated crash equals an
uninterrupted run, mismatched dims / metadata raise."""
import json

import numpy as np
import pytest
import torch

from copynce_fast.search.features import FeatureWriter, consolidate, load_features, save_features

IDS = [f"R{i:06d}" for i in range(100)]
FEATS = np.random.default_rng(0).standard_normal((100, 12)).astype(np.float32)
META = dict(model="vit_test", dim=12, img_size=224)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_single_file_round_trip(tmp_path, dtype):
    path = save_features(tmp_path / "f.npz", IDS, FEATS, model="vit_test", img_size=224, dtype=dtype,
                         extra={"split": "ref"})
    f = load_features(path)
    assert f.ids.tolist() == IDS and f.features.dtype == np.dtype(dtype) and f.dim == 12
    np.testing.assert_array_equal(f.features, FEATS.astype(dtype))
    assert {k: f.meta[k] for k in ("model", "dim", "img_size", "dtype", "count", "split")} == \
        {"model": "vit_test", "dim": 12, "img_size": 224, "dtype": dtype, "count": 100, "split": "ref"}
    with np.load(path, allow_pickle=False) as z:  # documented layout, readable without this package
        assert sorted(z.files) == ["features", "ids", "meta"] and z["ids"].dtype.kind == "U"
        assert json.loads(str(z["meta"]))["format"] == "copynce-fast-features"


def _write(directory, batches, shard_size=16, writer=None):
    w = writer or FeatureWriter(directory, **META, shard_size=shard_size)
    for lo, hi in batches:
        w.append(IDS[lo:hi], FEATS[lo:hi])
    return w


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    full = [(i, i + 10) for i in range(0, 100, 10)]
    with _write(tmp_path / "a", full):
        pass
    a = load_features(tmp_path / "a")

    crashed = _write(tmp_path / "b", full[:5])  # 50 rows: 3 shards of 16 on disk, 2 rows only in memory
    assert crashed.num_written == 48
    del crashed  # killed: never flushed
    (tmp_path / "b" / "shard_000003.npz").write_bytes(b"half a shard")  # written but never indexed

    w = FeatureWriter(tmp_path / "b", **META, shard_size=16)
    todo = w.remaining(IDS)
    assert todo == IDS[48:]
    for lo in range(0, len(todo), 7):
        w.append(todo[lo:lo + 7], FEATS[48 + lo:48 + lo + 7])
    assert w.remaining(IDS) == []
    w.close()
    b = load_features(tmp_path / "b")
    assert b.ids.tolist() == a.ids.tolist() == IDS
    np.testing.assert_array_equal(b.features, a.features)
    np.testing.assert_array_equal(b.features, FEATS)

    consolidate(tmp_path / "b", tmp_path / "b.npz")
    c = load_features(tmp_path / "b.npz")
    assert c.ids.tolist() == IDS and c.meta["model"] == "vit_test"
    np.testing.assert_array_equal(c.features, FEATS)


def test_writer_accepts_tensors_and_float16(tmp_path):
    with FeatureWriter(tmp_path / "h", model="m", dim=12, img_size=288, dtype="float16", shard_size=1000) as w:
        w.append(IDS[:30], torch.from_numpy(FEATS[:30]))
    f = load_features(tmp_path / "h")
    assert f.features.dtype == np.float16 and len(f.ids) == 30
    np.testing.assert_array_equal(f.features, FEATS[:30].astype(np.float16))


def test_mismatches_raise(tmp_path):
    w = _write(tmp_path / "d", [(0, 20)])
    with pytest.raises(ValueError, match="dim"):
        w.append(["X1"], np.zeros((1, 13), np.float32))
    with pytest.raises(ValueError, match="already written"):
        w.append(IDS[5:6], FEATS[5:6])
    with pytest.raises(ValueError, match="different lengths"):
        w.append(["X1", "X2"], FEATS[:1])
    w.close()
    with pytest.raises(ValueError, match="dim=13"):
        FeatureWriter(tmp_path / "d", model="vit_test", dim=13, img_size=224)
    with pytest.raises(ValueError, match="img_size"):
        FeatureWriter(tmp_path / "d", model="vit_test", dim=12, img_size=336)
    with pytest.raises(ValueError, match="dtype"):
        FeatureWriter(tmp_path / "e", **META, dtype="int8")
    with pytest.raises(ValueError, match="features"):
        save_features(tmp_path / "x.npz", IDS[:3], FEATS[:3, 0], model="m", img_size=224)
    with pytest.raises(ValueError, match="duplicates"):
        save_features(tmp_path / "x.npz", ["a", "a"], FEATS[:2], model="m", img_size=224)
