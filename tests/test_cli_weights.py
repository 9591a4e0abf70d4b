"""Model loading for the CLI: our checkpoints, official CopyNCE layouts, DINO, auto-detection, wrong kinds."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from copynce_fast.cli import main
from copynce_fast.config import Config, ModelConfig, to_dict
from copynce_fast.search.features import load_features
from copynce_fast.inference.images import load_image, normalize
from copynce_fast.models.loading import build_model, load_model
from copynce_fast.models.loading import checkpoint_format as detect_format
from copynce_fast.models import vit_tiny

S = 32
RUN = ["--workers", "0", "--no-progress"]


@pytest.fixture()
def images(make_images):
    return make_images([(40, 30 + 10 * i) for i in range(3)])


def _pixels(folder):
    return normalize(torch.stack([load_image(folder / f"i{i}.png", S) for i in range(3)]))


def _randomize_bn(model):
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the head is really exercised
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    return model


def _ours(tmp_path, kind="descriptor", prefix=""):
    mc = ModelConfig(kind=kind, arch="vit_tiny", img_size=S, dim=16, ln_eps=1e-4, encoder_depth=2)
    torch.manual_seed(5)
    model = build_model(mc).eval()
    if kind == "descriptor":
        _randomize_bn(model)
    path = tmp_path / f"{kind}.pt"
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({"model": state, "config": to_dict(replace(Config(), model=mc)), "step": 7}, path)
    return model, path


@pytest.mark.parametrize("prefix", ["", "_orig_mod.", "module."])
def test_our_checkpoint_round_trip(tmp_path, images, prefix):
    model, path = _ours(tmp_path, prefix=prefix)
    out = tmp_path / "f.npz"
    assert main(["extract", str(images), "--out", str(out), "--weights", str(path), *RUN]) == 0
    feats = load_features(out)
    assert feats.meta["model"].startswith("ours:descriptor:vit_tiny:S32:")
    with torch.no_grad():
        expected = model(_pixels(images))["feat"].numpy()
    np.testing.assert_allclose(feats.features, expected, atol=1e-5)


def test_matcher_checkpoint_is_refused_by_extract(tmp_path, images, capsys):
    _, path = _ours(tmp_path, kind="matcher")
    assert main(["extract", str(images), "--out", str(tmp_path / "f"), "--weights", str(path), *RUN]) == 1
    assert "holds a matcher, a descriptor is needed" in capsys.readouterr().err


def _to_official(model):
    """Our descriptor / matcher state dict in the official CopyNCE key layout."""
    out = {}
    for k, v in model.state_dict().items():
        for ours, theirs in (("backbone.", "encoder."), ("fc.weight", "heads.linear_head.fc1.weight"),
                             ("bn.", "heads.linear_head.bn."), ("cls_head.norm.", "heads.cls_head.norm."),
                             ("cls_head.fc.", "heads.cls_head.classifier."),
                             ("fusion_head.norm.", "heads.fusion_head.norm.")):
            if k.startswith(ours):
                k = theirs + k[len(ours):]
                break
        out[k] = v
    return out


def test_official_copynce_descriptor_is_detected_and_loaded(tmp_path, images):
    torch.manual_seed(1)
    model = _randomize_bn(build_model(ModelConfig(arch="vit_tiny", img_size=S, dim=24, ln_eps=1e-4)).eval())
    state = {**_to_official(model), "infonce_log_scale": torch.tensor(3.2)}
    path = tmp_path / "descriptor_vits_224.pth.tar"
    torch.save({"model": state, "epoch": 30}, path)
    assert detect_format(torch.load(path, weights_only=True)) == "copynce"
    out = tmp_path / "f.npz"
    assert main(["extract", str(images), "--out", str(out), "--weights", str(path), *RUN]) == 0
    feats = load_features(out)
    assert feats.dim == 24 and feats.meta["model"].startswith("copynce:descriptor:vit_tiny:S32:")
    with torch.no_grad():
        np.testing.assert_allclose(feats.features, model(_pixels(images))["feat"].numpy(), atol=1e-5)


def test_official_copynce_matcher_gives_the_same_probability(tmp_path, images):
    torch.manual_seed(2)
    model = build_model(ModelConfig(kind="matcher", arch="vit_tiny", img_size=S, ln_eps=1e-4,
                                    encoder_depth=2)).eval()
    path = tmp_path / "matcher.pth.tar"
    torch.save({"model": _to_official(model)}, path)
    loaded = load_model(None, path)
    assert loaded.kind == "matcher" and loaded.format == "copynce" and loaded.img_size == S
    x = _pixels(images)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x[:1], x[1:2])["logit"], model(x[:1], x[1:2])["logit"])


def test_dino_descriptor_is_the_normalised_final_norm_cls(tmp_path, images):
    torch.manual_seed(3)
    vit = vit_tiny(S, ln_eps=1e-6).eval()  # DINO layout: timm names, final norm included
    path = tmp_path / "dino.pth"
    torch.save(vit.state_dict(), path)
    out = tmp_path / "f.npz"
    assert main(["extract", str(images), "--out", str(out), "--weights", str(path), *RUN]) == 0
    feats = load_features(out)
    assert feats.dim == 96
    with torch.no_grad():
        expected = F.normalize(vit(_pixels(images))["cls"], dim=1).numpy()
    np.testing.assert_allclose(feats.features, expected, atol=1e-5)


def test_unreadable_checkpoint_is_named(tmp_path, images, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["extract", str(images), "--out", str(tmp_path / "f"), "--weights", str(bad), *RUN]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot load" in err
    assert main(["extract", str(images), "--out", str(tmp_path / "f"), "--weights", str(bad), "--random-init",
                 *RUN]) == 1
    assert "mutually exclusive" in capsys.readouterr().err


def test_build_model_rejects_an_encoder_without_fusion():
    with pytest.raises(ValueError, match="model.encoder_depth"):
        build_model(ModelConfig(kind="matcher", arch="vit_tiny", encoder_depth=8))
