"""Score normalisation folded into video frame descriptors: inner products = normalised similarities."""
import numpy as np
import pytest

from copynce_fast.video.features import VideoFeatures
from copynce_fast.video.score_norm import normalize_video_features


def unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def videos(rng, counts):
    ids = np.concatenate([[f"V{i}"] * c for i, c in enumerate(counts)])
    ts = np.stack([np.arange(len(ids)), np.arange(1, len(ids) + 1)], 1).astype(float)
    return VideoFeatures(ids, ts, unit(rng, len(ids)))


@pytest.mark.parametrize("variant,params,bias", [
    ("copynce", {}, lambda s: 1.0 * s[:, 1:5].mean(1)),                  # 2nd-5th neighbours
    ("isc2021", {"n": 1, "beta": 1.2}, lambda s: 1.2 * s[:, 0]),          # the VSC2022 baseline's rule
    ("sscd", {"first": 0, "last": 2, "beta": 0.5}, lambda s: 0.5 * s[:, :3].mean(1)),
])
def test_inner_products_are_normalised_scores(variant, params, bias):
    rng = np.random.default_rng(0)
    q, r, aux = videos(rng, [3, 4]), videos(rng, [5]), unit(rng, 30)
    qn, rn = normalize_video_features(q, r, aux, variant, **params)
    assert qn.dim == rn.dim == 17 and qn.video_ids.tolist() == q.video_ids.tolist()
    sorted_aux = -np.sort(-(q.features @ aux.T), axis=1)  # brute force, independent of the search code
    want = q.features @ r.features.T - bias(sorted_aux)[:, None]
    np.testing.assert_allclose(qn.features @ rn.features.T, want, atol=1e-5)


def test_dimension_mismatch_is_named():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="aux"):
        normalize_video_features(videos(rng, [2]), videos(rng, [2]), unit(rng, 10, 8))
