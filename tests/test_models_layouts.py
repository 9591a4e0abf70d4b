"""Checkpoint import: synthetic DINO and official-CopyNCE state dicts (random tensors) saved to disk and loaded.

The key lists are written out here from the documented layouts (not taken from our modules), so a renamed
module in the package fails these tests.
"""
import pytest
import torch

from copynce_fast.models import (
    descriptor_vit_tiny,
    interpolate_pos_embed,
    load_copynce_checkpoint,
    load_dino_checkpoint,
    matcher_vit_tiny,
    read_checkpoint,
    vit_tiny,
)

C = 96  # vit_tiny width
GRID = 14  # 224 / 16


def _block(prefix: str, g: torch.Generator) -> dict:
    shapes = {
        "norm1.weight": (C,), "norm1.bias": (C,),
        "attn.qkv.weight": (3 * C, C), "attn.qkv.bias": (3 * C,),
        "attn.proj.weight": (C, C), "attn.proj.bias": (C,),
        "norm2.weight": (C,), "norm2.bias": (C,),
        "mlp.fc1.weight": (4 * C, C), "mlp.fc1.bias": (4 * C,),
        "mlp.fc2.weight": (C, 4 * C), "mlp.fc2.bias": (C,),
    }
    return {f"{prefix}{k}": torch.randn(s, generator=g) for k, s in shapes.items()}


def _embeddings(prefix: str, g: torch.Generator, grid: int = GRID) -> dict:
    return {
        f"{prefix}cls_token": torch.randn(1, 1, C, generator=g),
        f"{prefix}pos_embed": torch.randn(1, 1 + grid * grid, C, generator=g),
        f"{prefix}patch_embed.proj.weight": torch.randn(C, 3, 16, 16, generator=g),
        f"{prefix}patch_embed.proj.bias": torch.randn(C, generator=g),
    }


def dino_state(depth: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = _embeddings("", g)
    for i in range(depth):
        sd.update(_block(f"blocks.{i}.", g))
    sd.update({"norm.weight": torch.randn(C, generator=g), "norm.bias": torch.randn(C, generator=g)})
    return sd


def copynce_descriptor_state(depth: int = 4, dim: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = _embeddings("encoder.", g)
    for i in range(depth):
        sd.update(_block(f"encoder.blocks.{i}.", g))
    sd["heads.linear_head.fc1.weight"] = torch.randn(dim, C, generator=g)
    for k in ("weight", "bias", "running_mean"):
        sd[f"heads.linear_head.bn.{k}"] = torch.randn(dim, generator=g)
    sd["heads.linear_head.bn.running_var"] = torch.rand(dim, generator=g) + 0.5
    sd["heads.linear_head.bn.num_batches_tracked"] = torch.tensor(1234)
    sd["infonce_log_scale"] = torch.tensor(3.2)
    return sd


def copynce_matcher_state(enc: int = 2, fus: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = _embeddings("encoder.", g)
    for i in range(enc):
        sd.update(_block(f"encoder.blocks.{i}.", g))
    sd["fusion.cls_token"] = torch.randn(1, 1, C, generator=g)
    for i in range(fus):
        sd.update(_block(f"fusion.blocks.{i}.", g))
    for k in ("fusion.norm", "heads.cls_head.norm", "heads.fusion_head.norm"):
        sd[f"{k}.weight"] = torch.randn(C, generator=g)
        sd[f"{k}.bias"] = torch.randn(C, generator=g)
    sd["heads.cls_head.classifier.weight"] = torch.randn(1, C, generator=g)
    sd["heads.cls_head.classifier.bias"] = torch.randn(1, generator=g)
    return sd


def save(obj, tmp_path, name="ckpt.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


# ---------------------------------------------------------------- DINO


@pytest.mark.parametrize("wrap", ["flat", "model_module", "teacher_backbone", "state_dict"])
def test_dino_into_vit(tmp_path, wrap):
    sd = dino_state()
    if wrap == "flat":
        obj = sd
    elif wrap == "model_module":
        obj = {"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 100}
    elif wrap == "teacher_backbone":  # DINO full checkpoint: MultiCropWrapper with backbone. and head.
        teacher = {f"backbone.{k}": v for k, v in sd.items()}
        teacher["head.last_layer.weight_g"] = torch.ones(1, 8)
        obj = {"teacher": teacher, "student": {"backbone.junk": torch.zeros(1)}}
    else:
        obj = {"state_dict": sd}
    model = vit_tiny()
    result = load_dino_checkpoint(model, save(obj, tmp_path))
    assert torch.equal(model.blocks[2].attn.qkv.weight, sd["blocks.2.attn.qkv.weight"])
    assert torch.equal(model.blocks[3].mlp.fc2.bias, sd["blocks.3.mlp.fc2.bias"])
    assert torch.equal(model.patch_embed.proj.weight, sd["patch_embed.proj.weight"])
    assert torch.equal(model.norm.weight, sd["norm.weight"])
    assert torch.equal(model.pos_embed, sd["pos_embed"])
    assert result.fresh == [] and len(result.loaded) == len(sd)
    if wrap == "teacher_backbone":
        assert result.ignored == ["head.last_layer.weight_g"]


def test_dino_into_descriptor(tmp_path):
    sd = dino_state()
    desc = descriptor_vit_tiny()  # backbone without final norm, as the reference
    result = load_dino_checkpoint(desc, save(sd, tmp_path))
    assert torch.equal(desc.backbone.blocks[1].norm2.bias, sd["blocks.1.norm2.bias"])
    assert torch.equal(desc.backbone.cls_token, sd["cls_token"])
    assert sorted(result.ignored) == ["norm.bias", "norm.weight"]
    assert "fc.weight" in result.fresh and "bn.running_mean" in result.fresh
    # with use_final_norm the DINO norm lands in the backbone
    desc_n = descriptor_vit_tiny(use_final_norm=True)
    load_dino_checkpoint(desc_n, save(sd, tmp_path))
    assert torch.equal(desc_n.backbone.norm.weight, sd["norm.weight"])


def test_dino_into_matcher_splits_blocks(tmp_path):
    sd = dino_state(depth=4)
    matcher = matcher_vit_tiny(encoder_depth=2, fusion_depth=2)
    result = load_dino_checkpoint(matcher, save(sd, tmp_path))
    assert torch.equal(matcher.encoder.blocks[1].attn.proj.weight, sd["blocks.1.attn.proj.weight"])
    assert torch.equal(matcher.fusion.blocks[0].attn.qkv.weight, sd["blocks.2.attn.qkv.weight"])
    assert torch.equal(matcher.fusion.blocks[1].mlp.fc1.weight, sd["blocks.3.mlp.fc1.weight"])
    assert torch.equal(matcher.fusion.norm.bias, sd["norm.bias"])
    assert torch.equal(matcher.encoder.pos_embed, sd["pos_embed"])
    assert set(result.fresh) == {"fusion.cls_token", "cls_head.norm.weight", "cls_head.norm.bias",
                                 "cls_head.fc.weight", "cls_head.fc.bias",
                                 "fusion_head.norm.weight", "fusion_head.norm.bias"}


@pytest.mark.parametrize("img_size,grid", [(336, (21, 21)), ((224, 320), (14, 20))])
def test_dino_pos_embed_interpolated(tmp_path, img_size, grid):
    sd = dino_state()
    model = vit_tiny(img_size=img_size)
    result = load_dino_checkpoint(model, save(sd, tmp_path))
    assert result.interpolated == ["pos_embed"]
    assert torch.equal(model.pos_embed, interpolate_pos_embed(sd["pos_embed"], grid))
    matcher = matcher_vit_tiny(img_size=img_size)
    load_dino_checkpoint(matcher, save(sd, tmp_path))
    assert matcher.encoder.pos_embed.shape == (1, 1 + grid[0] * grid[1], C)


def test_dino_errors_name_the_key(tmp_path):
    sd = dino_state()
    del sd["blocks.1.norm2.bias"]
    with pytest.raises(ValueError, match=r"missing.*blocks\.1\.norm2\.bias"):
        load_dino_checkpoint(vit_tiny(), save(sd, tmp_path))

    sd = dino_state()
    sd["blocks.0.attn.qkv.weight"] = torch.randn(3 * C, C + 1)
    with pytest.raises(ValueError, match=r"shape.*blocks\.0\.attn\.qkv\.weight"):
        load_dino_checkpoint(vit_tiny(), save(sd, tmp_path))

    sd = dino_state()
    sd["blocks.0.attn.rel_pos"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected.*blocks\.0\.attn\.rel_pos"):
        load_dino_checkpoint(vit_tiny(), save(sd, tmp_path))

    # a 6-block DINO into a 2+2 matcher: blocks 4 and 5 have nowhere to go
    with pytest.raises(ValueError, match=r"unexpected.*blocks\.4\."):
        load_dino_checkpoint(matcher_vit_tiny(), save(dino_state(depth=6), tmp_path))

    with pytest.raises(ValueError, match="path"):
        load_dino_checkpoint(vit_tiny(), tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="no state dict"):
        load_dino_checkpoint(vit_tiny(), save({"optimizer": {"lr": 1.0}}, tmp_path))


# ---------------------------------------------------------------- official CopyNCE


def test_copynce_descriptor(tmp_path):
    sd = copynce_descriptor_state(dim=64)
    desc = descriptor_vit_tiny(dim=64)
    result = load_copynce_checkpoint(desc, save({"model": sd, "epoch": 30}, tmp_path, "descriptor.pth.tar"))
    assert torch.equal(desc.fc.weight, sd["heads.linear_head.fc1.weight"])
    assert torch.equal(desc.bn.running_var, sd["heads.linear_head.bn.running_var"])
    assert int(desc.bn.num_batches_tracked) == 1234
    assert torch.equal(desc.backbone.blocks[3].attn.qkv.bias, sd["encoder.blocks.3.attn.qkv.bias"])
    assert torch.equal(desc.backbone.patch_embed.proj.bias, sd["encoder.patch_embed.proj.bias"])
    assert result.extras["epoch"] == 30
    assert float(result.extras["infonce_log_scale"]) == pytest.approx(3.2)
    assert result.fresh == []
    # the enc-12 weight surgery leaves the DINO norm as fusion.norm: tolerated, reported as ignored
    sd["fusion.norm.weight"] = torch.ones(C)
    result = load_copynce_checkpoint(desc, save({"model": sd}, tmp_path))
    assert result.ignored == ["fusion.norm.weight"]


def test_copynce_matcher(tmp_path):
    sd = copynce_matcher_state()
    matcher = matcher_vit_tiny()
    ddp = {f"module.{k}": v for k, v in sd.items()}  # a DDP-wrapped save still loads
    result = load_copynce_checkpoint(matcher, save({"model": ddp, "epoch": 3}, tmp_path))
    assert torch.equal(matcher.cls_head.fc.weight, sd["heads.cls_head.classifier.weight"])
    assert torch.equal(matcher.cls_head.fc.bias, sd["heads.cls_head.classifier.bias"])
    assert torch.equal(matcher.cls_head.norm.weight, sd["heads.cls_head.norm.weight"])
    assert torch.equal(matcher.fusion_head.norm.bias, sd["heads.fusion_head.norm.bias"])
    assert torch.equal(matcher.fusion.cls_token, sd["fusion.cls_token"])
    assert torch.equal(matcher.fusion.blocks[1].norm1.weight, sd["fusion.blocks.1.norm1.weight"])
    assert torch.equal(matcher.encoder.blocks[0].mlp.fc1.bias, sd["encoder.blocks.0.mlp.fc1.bias"])
    assert result.fresh == [] and result.extras["epoch"] == 3
    out = matcher(torch.randn(1, 3, 224, 224), torch.randn(1, 3, 224, 224))
    assert torch.isfinite(out["logit"]).all()


def test_copynce_errors(tmp_path):
    sd = copynce_matcher_state()
    del sd["heads.cls_head.classifier.bias"]
    with pytest.raises(ValueError, match=r"missing.*cls_head\.fc\.bias"):
        load_copynce_checkpoint(matcher_vit_tiny(), save({"model": sd}, tmp_path))

    sd = copynce_matcher_state()
    sd["heads.gaze_cls_head.classifier.weight"] = torch.zeros(1, C)
    with pytest.raises(ValueError, match=r"unexpected.*heads\.gaze_cls_head"):
        load_copynce_checkpoint(matcher_vit_tiny(), save({"model": sd}, tmp_path))

    sd = copynce_descriptor_state(dim=256)
    with pytest.raises(ValueError, match=r"shape.*heads\.linear_head\.fc1\.weight"):
        load_copynce_checkpoint(descriptor_vit_tiny(dim=64), save({"model": sd}, tmp_path))

    with pytest.raises(ValueError, match="CopyDescriptor or CopyMatcher"):
        load_copynce_checkpoint(vit_tiny(), save({"model": sd}, tmp_path))


def test_read_checkpoint_strips_prefixes(tmp_path):
    sd = {"module.backbone.cls_token": torch.zeros(1, 1, C)}
    state, meta = read_checkpoint(save({"model": sd, "epoch": 7}, tmp_path))
    assert list(state) == ["cls_token"] and meta == {"epoch": 7}
