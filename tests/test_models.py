"""ViT / attention backends / descriptor / matcher: parity with the math reference, shapes, properties."""
import importlib.util
import warnings

import pytest
import torch
import torch.nn.functional as F

from copynce_fast.models import (
    Attention,
    CopyDescriptor,
    attention_math,
    descriptor_vit_tiny,
    gem,
    interpolate_pos_embed,
    matcher_vit_tiny,
    set_attn_impl,
    vit_tiny,
)
from copynce_fast.models import attention as attention_mod

ATOL = RTOL = 1e-5  # fp32 CPU
HAS_XFORMERS = importlib.util.find_spec("xformers") is not None


def assert_close(actual, expected, atol=ATOL, rtol=RTOL):
    diff = (actual - expected).abs()
    rel = (diff / expected.abs().clamp_min(1e-12)).max().item()
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (
        f"max abs diff {diff.max().item():.3g}, max rel diff {rel:.3g},"
        f" worst index {tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))}"
    )


def images(b=2, h=224, w=224, seed=0):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- attention backends


@pytest.mark.parametrize("n_tokens", [197, 50])
def test_sdpa_matches_math(n_tokens):
    torch.manual_seed(0)
    attn = Attention(96, 3, attn_impl="sdpa")
    x = torch.randn(2, n_tokens, 96)
    out_sdpa = attn(x)
    set_attn_impl(attn, "math")
    assert attn.attn_impl == "math"
    assert_close(out_sdpa, attn(x))


def test_math_is_explicit_softmax():
    # independent oracle: per-head loop with torch.softmax over explicit scores
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 2, 3, 17, 32).unbind(0)
    expected = torch.stack([
        torch.stack([torch.softmax(q[b, h] @ k[b, h].T / 32 ** 0.5, dim=-1) @ v[b, h] for h in range(3)])
        for b in range(2)
    ])
    assert_close(attention_math(q, k, v), expected)


def test_vit_backends_agree():
    torch.manual_seed(0)
    ref = vit_tiny(attn_impl="math")
    fast = vit_tiny(attn_impl="sdpa")
    fast.load_state_dict(ref.state_dict())
    x = images()
    out_ref, out_fast = ref(x), fast(x)
    for key in ("cls", "patch_tokens", "last_block_patch_tokens"):
        assert_close(out_fast[key], out_ref[key], atol=1e-4)


@pytest.mark.skipif(HAS_XFORMERS, reason="checks the fallback when xformers is absent")
def test_xformers_falls_back_with_one_warning():
    attention_mod._xformers_attention.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = vit_tiny(attn_impl="xformers")
        b = descriptor_vit_tiny(attn_impl="xformers")  # 8 more Attention modules, still one warning
    ours = [w for w in caught if "xformers" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert issubclass(ours[0].category, RuntimeWarning)
    assert a.attn_impl == "sdpa" and b.backbone.attn_impl == "sdpa"
    x = images(1)
    assert torch.isfinite(a(x)["cls"]).all()


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and HAS_XFORMERS), reason="needs CUDA and xformers")
def test_xformers_matches_math_cuda():
    torch.manual_seed(0)
    attn = Attention(384, 6, attn_impl="xformers").cuda()
    assert attn.attn_impl == "xformers"
    x = torch.randn(4, 197, 384, device="cuda")
    out = attn(x)
    set_attn_impl(attn, "math")
    assert_close(out, attn(x), atol=1e-3, rtol=1e-3)


def test_bad_attn_impl():
    with pytest.raises(ValueError, match="attn_impl"):
        vit_tiny(attn_impl="flash")


# ---------------------------------------------------------------- ViT shapes and pos-embed


@pytest.mark.parametrize("hw", [(224, 224), (336, 336), (224, 320)])
def test_vit_shapes(hw):
    model = vit_tiny()
    out = model(images(2, *hw), return_block_outputs=True)
    L = (hw[0] // 16) * (hw[1] // 16)
    assert out["cls"].shape == (2, 96) and out["last_block_cls"].shape == (2, 96)
    assert out["patch_tokens"].shape == out["last_block_patch_tokens"].shape == (2, L, 96)
    assert len(out["block_outputs"]) == 4 and out["block_outputs"][-1].shape == (2, 1 + L, 96)
    # last-block tokens are the raw last block output; the normed ones its LayerNorm
    assert torch.equal(out["last_block_patch_tokens"], out["block_outputs"][-1][:, 1:])
    assert_close(out["patch_tokens"], model.norm(out["block_outputs"][-1])[:, 1:])


def test_vit_rejects_bad_sizes():
    with pytest.raises(ValueError, match="divisible"):
        vit_tiny()(images(1, 224, 200))
    with pytest.raises(ValueError, match="img_size"):
        vit_tiny(img_size=230)


def test_interpolate_pos_embed_identity_and_shapes():
    pos = torch.randn(1, 1 + 14 * 14, 8)
    assert interpolate_pos_embed(pos, (14, 14)) is pos
    for grid in [(21, 21), (14, 20), (7, 7)]:
        out = interpolate_pos_embed(pos, grid)
        assert out.shape == (1, 1 + grid[0] * grid[1], 8)
        assert torch.equal(out[:, 0], pos[:, 0])  # CLS kept
    # bicubic reproduces a constant field exactly
    const = torch.ones(1, 1 + 14 * 14, 8) * 0.3
    assert_close(interpolate_pos_embed(const, (21, 21)), torch.full((1, 1 + 441, 8), 0.3))
    with pytest.raises(ValueError, match="square"):
        interpolate_pos_embed(torch.randn(1, 1 + 14 * 20, 8), (21, 21))


def test_runtime_interpolation_equals_stored_resolution():
    # running a 224-model at 336 == a 336-model whose stored pos-embed is the interpolated one
    torch.manual_seed(0)
    m224 = vit_tiny(img_size=224)
    m336 = vit_tiny(img_size=336)
    state = m224.state_dict()
    state["pos_embed"] = interpolate_pos_embed(state["pos_embed"], (21, 21))
    m336.load_state_dict(state)
    x = images(1, 336, 336)
    assert_close(m224(x)["cls"], m336(x)["cls"])


def test_ctor_kwargs_freeze_and_no_weight_decay():
    model = vit_tiny(dtype=torch.float64, freeze_patch_embed=True, ln_eps=1e-4)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert model.blocks[0].norm1.eps == 1e-4
    assert model(images(1).double())["cls"].dtype == torch.float64
    names = dict(model.named_parameters())
    assert model.no_weight_decay() <= names.keys()
    matcher = matcher_vit_tiny()
    assert matcher.no_weight_decay() <= dict(matcher.named_parameters()).keys()
    assert "fusion.cls_token" in matcher.no_weight_decay()


# ---------------------------------------------------------------- descriptor


@pytest.mark.parametrize("pool", ["cls", "gem"])
def test_descriptor_matches_manual_head(pool):
    torch.manual_seed(0)
    # a backbone WITH a final norm, so that pooling the normed CLS instead of the raw last block would fail
    desc = CopyDescriptor(vit_tiny(), dim=32, pool=pool, use_final_norm=False)
    with torch.no_grad():  # non-trivial running statistics so that eval BN is not the identity
        desc.bn.running_mean.normal_()
        desc.bn.running_var.uniform_(0.5, 2.0)
        desc.bn.weight.normal_()
    desc.eval()
    x = images(3)
    out = desc(x)
    feats = desc.backbone(x)
    pooled = feats["last_block_cls"] if pool == "cls" else gem(feats["last_block_patch_tokens"], 3.0)
    h = pooled @ desc.fc.weight.T
    h = (h - desc.bn.running_mean) / torch.sqrt(desc.bn.running_var + desc.bn.eps) * desc.bn.weight + desc.bn.bias
    assert_close(out["feat"], F.normalize(h, dim=1))
    assert_close(out["feat"].norm(dim=1), torch.ones(3))
    assert torch.equal(out["tokens"], feats["last_block_patch_tokens"])
    assert out["feat"].shape == (3, 32) and out["tokens"].shape == (3, 196, 96)


def test_descriptor_train_mode_unit_norm_and_final_norm_option():
    desc = descriptor_vit_tiny(use_final_norm=True).train()
    out = desc(images(4, 224, 320))
    assert_close(out["feat"].norm(dim=1), torch.ones(4))
    assert out["tokens"].shape == (4, 14 * 20, 96)
    with pytest.raises(ValueError, match="final_norm"):
        CopyDescriptor(vit_tiny(final_norm=False), use_final_norm=True)
    with pytest.raises(ValueError, match="pool"):
        CopyDescriptor(vit_tiny(), pool="max")


def test_gem_limits():
    t = torch.rand(2, 10, 4) + 0.1
    assert_close(gem(t, p=1.0), t.mean(1))
    assert_close(gem(t, p=200.0), t.amax(1), atol=2e-2, rtol=2e-2)


# ---------------------------------------------------------------- matcher


def test_matcher_shapes_and_one_encoder_call():
    matcher = matcher_vit_tiny()
    calls = []
    matcher.encoder.patch_embed.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    out = matcher(images(2, seed=1), images(2, seed=2))
    assert calls == [4]  # query and reference stacked into one encoder call of 2B images
    assert out["logit"].shape == (2,)
    assert out["query_tokens"].shape == out["reference_tokens"].shape == (2, 196, 96)
    assert out["fused_cls"].shape == (2, 96)
    # the fusion head's LayerNorm (weight 1, bias 0 at init) makes every token zero-mean, unit-variance
    assert_close(out["query_tokens"].mean(-1), torch.zeros(2, 196), atol=1e-4)


def test_matcher_swap_symmetry():
    # no segment embedding: swapping q and r permutes the fusion tokens, which attention ignores
    torch.manual_seed(0)
    matcher = matcher_vit_tiny().eval()
    q, r = images(3, seed=1), images(3, seed=2)
    a, b = matcher(q, r), matcher(r, q)
    assert_close(a["logit"], b["logit"], atol=1e-5)
    assert_close(a["query_tokens"], b["reference_tokens"], atol=1e-4)
    assert_close(a["reference_tokens"], b["query_tokens"], atol=1e-4)
    assert not torch.allclose(a["query_tokens"], a["reference_tokens"])


def test_matcher_non_square_and_mixed_sizes():
    matcher = matcher_vit_tiny()
    out = matcher(images(2, 224, 320), images(2, 224, 224))
    assert out["query_tokens"].shape == (2, 280, 96) and out["reference_tokens"].shape == (2, 196, 96)


def test_matcher_gradients_reach_every_parameter():
    matcher = matcher_vit_tiny()
    out = matcher(images(2, seed=1), images(2, seed=2))
    loss = out["logit"].sum() + out["query_tokens"].sum() + out["reference_tokens"].sum()
    loss.backward()
    for name, p in matcher.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- bf16 autocast on CPU


def test_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    desc = descriptor_vit_tiny().eval()
    matcher = matcher_vit_tiny().eval()
    x, y = images(2, seed=1), images(2, seed=2)
    with torch.no_grad():
        ref_feat, ref_logit = desc(x)["feat"], matcher(x, y)["logit"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feat, logit = desc(x)["feat"], matcher(x, y)["logit"]
    assert feat.dtype == logit.dtype == torch.float32  # heads run in fp32 on purpose
    assert_close(feat, ref_feat, atol=3e-2, rtol=0)
    assert (F.cosine_similarity(feat, ref_feat) > 0.995).all()
    assert_close(logit, ref_logit, atol=5e-2, rtol=5e-2)


def test_descriptor_pair_forward_equals_two_calls_with_separate_batchnorm():
    """One backbone call on [q; r] + per-half head == two separate calls (features, tokens, BN running stats)."""
    import copy

    from copynce_fast.models import descriptor_vit_tiny

    torch.manual_seed(0)
    a = descriptor_vit_tiny(dim=16, img_size=32).train()
    b = copy.deepcopy(a)
    q, r = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32) + 1.0  # different statistics per half
    out_q, out_r = a(q, r)
    exp_q, exp_r = b(q), b(r)
    for got, exp in ((out_q, exp_q), (out_r, exp_r)):
        torch.testing.assert_close(got["feat"], exp["feat"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["tokens"], exp["tokens"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.bn.running_mean, b.bn.running_mean)
    torch.testing.assert_close(a.bn.running_var, b.bn.running_var)
    joint = copy.deepcopy(b)(torch.cat([q, r]))["feat"]  # one BN over both halves would differ
    assert not torch.allclose(joint[:4], exp_q["feat"], atol=1e-3)
