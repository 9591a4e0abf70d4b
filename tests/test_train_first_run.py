"""A first training run works out of the box: the fine-tuning recipe adapts to random init and says so, the
learning rate follows the batch, the k-NN message says what to do, a run can be sized in steps across many small
epochs (one loader pass, checkpoints at their own cadence), and a batch larger than the data is named."""
import json
import logging
import math
from dataclasses import replace

import pytest
import torch

from copynce_fast.cli import main
from copynce_fast.config import (
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    apply_overrides,
    get_preset,
    scaled_lr,
)
from copynce_fast.train import train


@pytest.fixture()
def folder(make_images):
    return make_images([(48, 64)] * 6, name="photos", ext="jpg", prefix="p")


def _printed_config(capsys, argv):
    assert main(["train", *argv, "--print-config"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), [line for line in captured.err.splitlines() if line.strip()]


def test_the_descriptor_recipe_from_scratch_adapts_and_says_so_in_one_line(folder, capsys):
    cfg, err = _printed_config(capsys, ["--preset", "descriptor_vits_224", "--data.source", str(folder)])
    assert cfg["model"]["freeze_patch_embed"] is False and cfg["data"]["hard_negatives"] is False
    assert len(err) == 1 and err[0].startswith("copynce-fast train: from scratch (no --model.pretrained):"), err
    assert "--model.freeze_patch_embed=true" in err[0] and "--data.hard_negatives=true" in err[0]

    # with weights to fine-tune the recipe stays as it is
    cfg, err = _printed_config(capsys, ["--preset", "descriptor_vits_224", "--data.source", str(folder),
                                        "--model.pretrained", "dino.pth"])
    assert cfg["model"]["freeze_patch_embed"] is True and cfg["data"]["hard_negatives"] is True and err == []

    # a value the user pins is kept
    cfg, err = _printed_config(capsys, ["--preset", "descriptor_vits_224", "--data.source", str(folder),
                                        "--model.freeze_patch_embed=true"])
    assert cfg["model"]["freeze_patch_embed"] is True and cfg["data"]["hard_negatives"] is False
    assert "freeze_patch_embed" not in err[0]


def test_the_demo_preset_runs_on_a_folder_without_dropping_its_synthetic_images_by_hand(folder, tmp_path, capsys):
    cfg, _ = _printed_config(capsys, ["--preset", "demo", "--data.source", str(folder)])
    assert cfg["data"]["synthetic_images"] == 0
    cfg, _ = _printed_config(capsys, ["--preset", "demo"])
    assert cfg["data"]["synthetic_images"] == get_preset("demo").data.synthetic_images  # builtin: kept
    assert main(["train", "--preset", "demo", "--data.source", str(folder), "--data.batch_size=2",
                 "--model.img_size=32", "--run.max_steps=1", "--run.eval_after=false", "--no-progress",
                 "--run.out_dir", str(tmp_path / "run")]) == 0


def test_learning_rate_follows_the_batch_unless_pinned():
    cfg = get_preset("descriptor_vits_224")
    half = apply_overrides(cfg, ["--data.batch_size=48"])
    assert math.isclose(scaled_lr(half, 1) / scaled_lr(cfg, 1), math.sqrt(0.5))
    assert math.isclose(scaled_lr(cfg, 8), 5.196e-4, rel_tol=1e-4)  # the reference: 96 items on 8 GPUs
    pinned = apply_overrides(cfg, ["--data.batch_size=48", "--optim.lr_scaling_batch=96"])
    assert scaled_lr(pinned, 1) == scaled_lr(cfg, 1)
    demo = get_preset("demo")
    assert scaled_lr(demo, 1) == 2e-3  # the demo's learning rate at its batch of 16, as before
    assert math.isclose(scaled_lr(apply_overrides(demo, ["--data.batch_size=64"]), 1), 4e-3)


def test_missing_knn_table_message_says_how_to_build_it_or_turn_it_off(folder, caplog):
    from copynce_fast.train.data import build_train_data
    from copynce_fast.utils.dist import DistInfo

    cfg = apply_overrides(get_preset("descriptor_vits_224"), [f"--data.source={folder}", "--data.batch_size=2",
                                                              "--data.num_workers=0"])
    caplog.set_level(logging.WARNING, logger="copynce_fast.train")
    build_train_data(cfg, torch.device("cpu"), DistInfo())
    text = caplog.text
    assert "--data.hard_negatives=false" in text and "copynce-fast knn" in text and "--data.knn_path" in text


def test_a_batch_larger_than_the_data_is_named(folder, tmp_path, capsys):
    assert main(["train", "--preset", "demo", "--data.source", str(folder), "--data.batch_size=8",
                 "--run.out_dir", str(tmp_path / "run"), "--no-progress"]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == ("copynce-fast train: error: --data.batch_size: a batch of 8 images on each of 1 rank(s) needs "
                    "at least 8 images per rank; the source has 6 (lower --data.batch_size)"), line


# --- a run sized in steps ---------------------------------------------------------------------------------------

def _tiny(out_dir, **optim) -> Config:
    return Config(
        model=ModelConfig(arch="vit_tiny", img_size=32, dim=16, freeze_patch_embed=False),
        data=DataConfig(synthetic_images=3, batch_size=8, num_workers=0, hard_negatives=False),
        loss=LossConfig(copynce_weight=1.0, impl="torch"),
        optim=OptimConfig(base_lr=1e-3, lr_scaling_batch=1024, epochs=1, warmup_epochs=0.0, **optim),
        run=RunConfig(out_dir=str(out_dir), log_every=1, ckpt_every=100, compile=False, eval_after=False,
                      progress=False))


def test_total_steps_spans_epochs_in_one_loader_pass_with_checkpoints_at_their_own_cadence(tmp_path, monkeypatch):
    import copynce_fast.train.loop as loop
    from copynce_fast.data.torch_loader import PairLoader

    saves, passes = [], []
    real_save, real_iter = loop.save_checkpoint, PairLoader.__iter__
    monkeypatch.setattr(loop, "save_checkpoint", lambda path, payload: saves.append(payload["step"]) or
                        real_save(path, payload))
    monkeypatch.setattr(PairLoader, "__iter__", lambda self: passes.append(1) or real_iter(self))
    res = train(_tiny(tmp_path / "full", total_steps=5))  # 16 images / 8 = 2 steps per epoch
    assert res.steps == 5 and [r["epoch"] for r in res.history] == [0, 0, 1, 1, 2]
    assert res.history[-1]["lr"] == pytest.approx(2e-6)  # the cosine reaches min_lr on the last step
    assert saves == [5]  # epochs shorter than run.ckpt_every write no checkpoint of their own
    assert len(passes) == 1  # one loader pass across the epochs: no restart at each epoch end


def test_a_run_sized_in_steps_resumes_exactly(tmp_path):
    full = train(_tiny(tmp_path / "full", total_steps=5))
    cfg = _tiny(tmp_path / "split", total_steps=5)
    train(replace(cfg, run=replace(cfg.run, max_steps=3)))  # stopped mid-epoch 1
    resumed = train(cfg)
    assert [r["step"] for r in resumed.history] == [4, 5]
    for a, b in zip(full.history[3:], resumed.history):
        torch.testing.assert_close(torch.tensor(b["total"]), torch.tensor(a["total"]), rtol=1e-5, atol=1e-6)
