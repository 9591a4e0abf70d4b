"""extract / compare / export take a training run folder or its config.json: --weights RUN is its checkpoint,
--random-init --config RUN builds random weights of the run's architecture (no --arch/--img-size/--dim to repeat)."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from copynce_fast.cli import main
from copynce_fast.config import Config, ModelConfig, save_json, to_dict
from copynce_fast.inference.images import load_image, normalize
from copynce_fast.models.loading import build_model
from copynce_fast.search.features import load_features

RUN = ["--workers", "0", "--no-progress"]
MC = ModelConfig(arch="vit_tiny", img_size=32, dim=16, pool="gem", ln_eps=1e-5, freeze_patch_embed=False)


@pytest.fixture()
def images(make_images):
    return make_images([(40, 36)] * 3)


@pytest.fixture()
def run(tmp_path):
    """A training run folder as `train` leaves it: config.json and checkpoint.pt."""
    folder = tmp_path / "run"
    cfg = replace(Config(), model=MC)
    save_json(cfg, folder / "config.json")
    torch.manual_seed(3)
    model = build_model(MC)
    torch.save({"model": model.state_dict(), "config": to_dict(cfg), "step": 1}, folder / "checkpoint.pt")
    return folder


def _features(tmp_path, images, name, *model_flags):
    out = tmp_path / f"{name}.npz"
    assert main(["extract", str(images), "--out", str(out), *model_flags, *RUN]) == 0
    return load_features(out)


def _expected(model, images):
    x = normalize(torch.stack([load_image(images / f"i{i}.png", MC.img_size) for i in range(3)]))
    with torch.no_grad():
        return model.eval()(x)["feat"].numpy()


def test_weights_can_be_a_run_folder_or_its_config_json(tmp_path, images, run):
    direct = _features(tmp_path, images, "direct", "--weights", str(run / "checkpoint.pt"))
    for name, given in (("folder", run), ("json", run / "config.json")):
        feats = _features(tmp_path, images, name, "--weights", str(given))
        assert feats.meta["model"] == direct.meta["model"]
        np.testing.assert_array_equal(feats.features, direct.features)


def test_random_init_takes_the_architecture_of_a_run(tmp_path, images, run):
    for name, given in (("folder", run), ("json", run / "config.json")):
        feats = _features(tmp_path, images, name, "--random-init", "--config", str(given), "--seed", "4")
        assert feats.meta["model"].startswith("random:descriptor:vit_tiny:S32:d16:")
        torch.manual_seed(4)
        reference = build_model(MC)  # what the run's config builds, with the same seed
        np.testing.assert_allclose(feats.features, _expected(reference, images), atol=1e-5)
    out = tmp_path / "m.pt"
    assert main(["export", "--to", "torchscript", "--out", str(out), "--random-init", "--config", str(run)]) == 0
    assert torch.jit.load(str(out))(torch.zeros(1, 3, 32, 32)).shape == (1, 16)
    assert main(["compare", str(images / "i0.png"), str(images / "i1.png"), "--out", str(tmp_path / "c.png"),
                 "--random-init", "--config", str(run / "config.json")]) == 0


def test_run_folder_mistakes_are_one_line_naming_the_flag(tmp_path, images, run, capsys):
    base = ["extract", str(images), "--out", str(tmp_path / "f"), *RUN]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([*base, "--random-init", "--config", str(run), "--arch", "vit_small"],
         f"--arch: the architecture comes from --config {run}; drop --arch"),
        ([*base, "--config", str(run)], "--config gives the architecture of --random-init; for the run's trained "
                                         "weights give --weights"),
        ([*base, "--weights", str(empty)], f"--weights {empty}: a folder without checkpoint.pt"),
        ([*base, "--random-init", "--config", str(empty)], f"--config {empty}: a folder without config.json"),
    ]
    for argv, text in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err
