"""Parity with the official CopyNCE code itself, run from its checkout (skipped with the reason when absent).

The official code is imported at run time from ``$COPYNCE_OFFICIAL_SRC`` or ``../shared/official-copynce`` (beside
the repository; CI has it) by ``benchmarks/official_harness.py`` in its light mode: only torch + numpy are needed,
missing modules it imports but these paths do not use are stubbed while it imports, and ``.cuda()`` is a no-op on
the CPU. Each check compares with the official code's own output, not with a restatement of it.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the harness lives there
import official_compare as C  # noqa: E402
import official_edits as E  # noqa: E402
import official_harness as H  # noqa: E402

from copynce_fast import CopyNCELoss  # noqa: E402
from copynce_fast.ops import patch_overlap  # noqa: E402
from copynce_fast.pixtrace import pack_pairs  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one torch thread is fastest and does not collapse when the CPU is oversubscribed."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def off():
    try:
        return H.load_official(full=False)
    except H.OfficialUnavailable as e:
        pytest.skip(f"official code not available: {e}")


def _batch(off, seed: int, size: int, n: int):
    """n random official-style edit chains of originals of assorted sizes, plus one negative pair (maps all -1)."""
    rng = np.random.default_rng(seed)
    hws = [(int(rng.integers(size // 2, 4 * size)), int(rng.integers(size // 2, 4 * size))) for _ in range(n)]
    configs = [E.random_chain(off, rng, hw, size) for hw in hws]
    qo, ro = C.pair_maps(off, configs, hws, size)
    neg = -torch.ones(1, 2, size, size, dtype=qo.dtype)
    return torch.cat([qo, neg]), torch.cat([ro, neg]), configs, hws


@pytest.mark.parametrize("gamma,weight,lamb", [(3.0, 5.0, 0.5), (1.0, 3.0, 0.3)])
def test_loss_and_gradients_match_the_official_loss_fp64(off, gamma, weight, lamb):
    size, C_ = 64, 48  # 16 tokens of 48 channels (divisible by the official 6 "heads": all channels are used)
    qo, ro, _, _ = _batch(off, seed=int(gamma), size=size, n=5)
    B, L = qo.shape[0], (size // 16) ** 2
    q0 = torch.randn(B, L, C_, dtype=torch.float64)
    r0 = q0 + 0.5 * torch.randn(B, L, C_, dtype=torch.float64)
    flags = torch.ones(B, dtype=torch.bool)
    flags[1] = False  # one positive pair switched off; the negative pair stays flagged, as the official data does

    q, r = q0.clone().requires_grad_(), r0.clone().requires_grad_()
    ref = H.official_copynce_loss(H.official_copynce(off, gamma=gamma, weight=weight, lamb=lamb), q, r, qo, ro, flags)
    ref.backward()
    gq_ref, gr_ref = q.grad.clone(), r.grad.clone()

    q, r = q0.clone().requires_grad_(), r0.clone().requires_grad_()
    loss = CopyNCELoss(scale=16.0, gamma=gamma, lamb=lamb, weight=weight, impl="torch")  # fp64: the torch path
    ours = loss(q, r, que_to_ori=qo, ref_to_ori=ro, flags=flags)
    ours.backward()
    assert abs(ours.item() - ref.item()) <= 1e-5 * abs(ref.item())
    for g, g_ref in ((q.grad, gq_ref), (r.grad, gr_ref)):
        assert float((g - g_ref).abs().max()) <= 1e-5 * float(g_ref.abs().max())
    assert float(gq_ref[1].abs().max()) == 0.0  # the unflagged pair gets no gradient on either side


def test_counts_from_official_maps_equal_the_official_counts(off):
    size = 96
    qo, ro, _, _ = _batch(off, seed=7, size=size, n=6)
    _, que_to_ref, ref_to_que = H.official_correspondence(off, qo, ro)
    want_qr, want_rq = H.official_patch_counts(off, que_to_ref), H.official_patch_counts(off, ref_to_que)
    tokens = torch.zeros(qo.shape[0], (size // 16) ** 2, 8)
    got_qr, got_rq = CopyNCELoss().counts(tokens, tokens, que_to_ori=qo, ref_to_ori=ro)
    assert torch.equal(got_qr.long(), want_qr) and torch.equal(got_rq.long(), want_rq)
    assert int(want_qr.sum(-1).unique().numel()) == 1  # every patch row sums to P², dummy column included


@pytest.mark.parametrize("kind", E.EDIT_KINDS)
def test_correspondences_agree_within_two_pixels_for_large_originals(off, kind):
    """768x1024 originals (downscaled 3.4-4.6x): no official holes, so both sides trace the same share of the query
    and the traced reference pixels differ by the official half-pixel conventions only (<= 2 px)."""
    r = C.correspondence_parity(off, E.edit_configs(off, kind, (768, 1024), 224), (768, 1024), 224)
    assert r["ori_to_ref_holes"] == 0.0
    assert abs(r["official_to_reference"] - r["ours_to_reference"]) <= 0.01, r
    assert abs(r["official_to_original"] - r["ours_to_original"]) <= 0.01, r
    assert r["ref_max_px"] <= 2, r
    assert r["ref_agree_1px"] >= 0.85, r


def test_official_holes_for_small_originals_that_exact_geometry_does_not_have(off):
    """REFERENCE.md 1.8: a 300x300 original leaves about half of ori_to_ref as holes at 224 px, so a crop loses
    query pixels the official way; the exact geometry traces all of them."""
    plain = C.correspondence_parity(off, E.edit_configs(off, "resize", (300, 300), 224), (300, 300), 224)
    assert 0.5 < plain["ori_to_ref_holes"] < 0.6
    assert plain["ours_to_reference"] == 1.0 and plain["ref_agree_1px"] == 1.0
    crop = C.correspondence_parity(off, E.edit_configs(off, "crop_resize", (300, 300), 224), (300, 300), 224)
    assert crop["ours_to_reference"] == 1.0 and crop["official_to_reference"] < 0.7


def test_counts_official_maps_vs_exact_geometry(off):
    """The counts the official maps imply against ours from the same edits' geometry: close for large originals
    (conventions only), further apart for small ones (holes)."""
    size = 224
    diffs = {}
    for hw in ((768, 1024), (256, 256)):
        kinds = ("crop_resize", "hflip", "rotate_shear", "padding")
        configs, hws = [E.edit_configs(off, k, hw, size) for k in kinds], [hw] * len(kinds)
        qo, ro = C.pair_maps(off, configs, hws, size)
        tokens = torch.zeros(len(kinds), (size // 16) ** 2, 8)
        from_maps = CopyNCELoss().counts(tokens, tokens, que_to_ori=qo, ref_to_ori=ro)[0]
        qr, _ = pack_pairs(*C.pair_views(configs, hws, size))
        diffs[hw] = C.counts_difference(from_maps, patch_overlap(qr, 16))
    assert diffs[(768, 1024)] < 0.1 < diffs[(256, 256)], diffs


def test_view_from_configs_matches_the_official_matrices(off):
    """The converted view maps pixel centres where the official matrix maps them (continuous convention)."""
    hw = (300, 400)
    for kind in ("rotate_shear", "perspective"):
        cfg = E.edit_configs(off, kind, hw, 224)[0]
        view = E.view_from_configs([cfg], hw)
        pts = np.array([[10.5, 20.5], [200.5, 150.5], [350.5, 280.5]])
        m = np.asarray(cfg["params"]["matrix"], dtype=np.float64)
        p = np.c_[pts, np.ones(3)] @ m.T
        np.testing.assert_allclose(view.stages[0].matrix @ np.c_[pts, np.ones(3)].T, p.T, atol=2e-3)
    with pytest.raises(ValueError, match="configs\\[0\\]"):
        E.view_from_configs([{"type": off.mask_mapper.Augmentation.PASTE_OBJECT_ONTO, "params": {}}], hw)


def test_harness_leaves_no_stub_behind_and_rejects_a_wrong_path(off, tmp_path, monkeypatch):
    for name in ("loguru", "kornia", "cv2", "timm"):
        mod = sys.modules.get(name)
        assert mod is None or not getattr(mod, "__copynce_stub__", False), name
    with pytest.raises(ValueError, match="official-src"):
        H.find_official_src(tmp_path)
    monkeypatch.setenv(H.ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match=H.ENV_VAR):
        H.find_official_src()
    assert not torch.Tensor.cuda.__name__ == "<lambda>"  # cpu_cuda() restored it


def test_bench_official_runs_and_writes_its_report(off, tmp_path):
    """The benchmark's correspondence item end to end (light mode is enough): markdown table and JSONL rows."""
    import bench_official
    out = tmp_path / "official.md"
    assert bench_official.main(["--quick", "--items", "2", "--out", str(out), "--official-src", str(off.src)]) == 0
    text = out.read_text()
    assert "correspondence parity" in text and "| 1024x768 |" in text
    rows = [__import__("json").loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert {r["edit"] for r in rows if r["section"] == "2e"} == set(E.EDIT_KINDS)
    assert bench_official.main(["--items", "2", "--official-src", str(tmp_path)]) == 2  # not a checkout: one line
