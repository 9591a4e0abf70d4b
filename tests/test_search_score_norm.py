"""Score normalisation: hand-computed biases for each variant, order within a query unchanged, bad params."""
import numpy as np
import pytest
import torch

from copynce_fast.search.score_norm import (
    aux_bias,
    normalize_copynce,
    normalize_isc2021,
    normalize_scores,
    normalize_sscd,
)

# Inner products with the 2-D queries e_x and e_y are simply the aux coordinates.
QUERIES = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
AUX = np.array([[0.9, 0.1], [0.8, 0.3], [0.5, 0.7], [0.2, 0.6], [0.1, 0.2], [0.0, 0.05]], dtype=np.float32)
# sorted descending: q0 -> 0.9 0.8 0.5 0.2 0.1 0.0 ; q1 -> 0.7 0.6 0.3 0.2 0.1 0.05
SCORES = np.array([[0.95, 0.6], [0.9, 0.2]], dtype=np.float32)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_copynce_hand_computed(backend):
    out = normalize_copynce(SCORES, QUERIES, AUX, backend=backend)  # bias = mean of positions 1..4
    np.testing.assert_allclose(out, SCORES - np.array([[0.4], [0.3]]), atol=1e-6)
    # the pooled order changes: q1's best match (0.9 -> 0.6) now outranks q0's (0.95 -> 0.55)
    assert SCORES[1, 0] < SCORES[0, 0] and out[1, 0] > out[0, 0]
    out = normalize_copynce(SCORES, QUERIES, AUX, start=0, end=1, alpha=0.5, backend=backend)
    np.testing.assert_allclose(out, SCORES - 0.5 * np.array([[0.9], [0.7]]), atol=1e-6)


def test_isc2021_hand_computed():
    out = normalize_isc2021(SCORES, QUERIES, AUX, n=3)  # the 3rd neighbour: 0.5 and 0.3
    np.testing.assert_allclose(out, SCORES - np.array([[0.5], [0.3]]), atol=1e-6)
    out = normalize_isc2021(SCORES, QUERIES, AUX, n=3, beta=2.0, reduction="mean")
    np.testing.assert_allclose(out, SCORES - 2.0 * np.array([[2.2 / 3], [1.6 / 3]]), atol=1e-6)
    with pytest.raises(ValueError, match="end=10"):  # default n = 10 needs 10 aux rows
        normalize_isc2021(SCORES, QUERIES, AUX)


def test_sscd_hand_computed():
    out = normalize_sscd(SCORES, QUERIES, AUX)  # 1.0[0,2]: mean of the 3 nearest
    np.testing.assert_allclose(out, SCORES - np.array([[2.2 / 3], [1.6 / 3]]), atol=1e-6)
    out = normalize_sscd(SCORES, QUERIES, AUX, first=1, last=1, beta=1.5)
    np.testing.assert_allclose(out, SCORES - 1.5 * np.array([[0.8], [0.6]]), atol=1e-6)


def test_dispatch_and_torch_io():
    q, aux, s = torch.from_numpy(QUERIES), torch.from_numpy(AUX), torch.from_numpy(SCORES)
    out = normalize_scores(s, q, aux, "sscd", first=0, last=0)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), SCORES - np.array([[0.9], [0.7]]), atol=1e-6)
    np.testing.assert_allclose(normalize_scores(SCORES, QUERIES, AUX, "isc2021", n=2),
                               SCORES - np.array([[0.8], [0.6]]), atol=1e-6)
    np.testing.assert_allclose(aux_bias(QUERIES, AUX, 1, 5), [0.4, 0.3], atol=1e-6)


@pytest.mark.parametrize("variant, params", [
    ("copynce", {}), ("isc2021", {"n": 4}), ("sscd", {"first": 1, "last": 3}),
])
def test_order_within_a_query_is_unchanged(variant, params):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((30, 16)).astype(np.float32)
    aux = rng.standard_normal((200, 16)).astype(np.float32)
    scores = np.sort(rng.standard_normal((30, 10)).astype(np.float32), axis=1)[:, ::-1]
    out = normalize_scores(scores, q, aux, variant, **params)
    shift = scores - out
    np.testing.assert_allclose(shift, shift[:, :1].repeat(10, axis=1), atol=1e-5)  # one constant per query
    assert np.all(np.argsort(-out, axis=1, kind="stable") == np.argsort(-scores, axis=1, kind="stable"))
    assert np.ptp(shift[:, 0]) > 0.1  # the bias really differs between queries


@pytest.mark.parametrize("call, name", [
    (lambda: normalize_copynce(SCORES, QUERIES, AUX, start=-1), "start"),
    (lambda: normalize_copynce(SCORES, QUERIES, AUX, start=3, end=3), "end"),
    (lambda: normalize_copynce(SCORES, QUERIES, AUX, alpha=float("nan")), "alpha"),
    (lambda: normalize_copynce(SCORES, QUERIES, AUX, end=7), "aux"),
    (lambda: normalize_copynce(SCORES[:1], QUERIES, AUX), "scores"),
    (lambda: normalize_isc2021(SCORES, QUERIES, AUX, n=0), "n must"),
    (lambda: normalize_isc2021(SCORES, QUERIES, AUX, n=2, reduction="avg"), "reduction"),
    (lambda: normalize_isc2021(SCORES, QUERIES, AUX, n=2, beta="1"), "beta"),
    (lambda: normalize_sscd(SCORES, QUERIES, AUX, first=2, last=1), "last"),
    (lambda: normalize_scores(SCORES, QUERIES, AUX, "zscore"), "variant"),
])
def test_bad_params_raise_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()
