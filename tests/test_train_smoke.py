"""The training loop end to end on CPU: runs, resumes to the same next-step loss, stops on NaN, DDP on gloo."""
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from copynce_fast.config import Config, DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, save_json
from copynce_fast.train import NonFiniteLossError, train


def tiny(out_dir, **run) -> Config:
    return Config(
        model=ModelConfig(arch="vit_tiny", img_size=32, dim=16, freeze_patch_embed=False),
        data=DataConfig(synthetic_images=3, batch_size=4, num_workers=0, hard_negatives=True),
        loss=LossConfig(copynce_weight=1.0, impl="torch"),
        optim=OptimConfig(base_lr=1e-3, lr_scaling_batch=1024, epochs=2, warmup_epochs=0.5),
        run=RunConfig(out_dir=str(out_dir), log_every=1, ckpt_every=100, compile=False, eval_after=False,
                      progress=False, **run))


def test_descriptor_run_logs_finite_losses_and_writes_artifacts(tmp_path):
    res = train(tiny(tmp_path, max_steps=3))
    assert res.steps == 3 and len(res.history) == 3
    for row in res.history:
        assert all(torch.isfinite(torch.tensor(row[k])) for k in ("infonce", "koleo", "copynce", "total"))
    for name in ("checkpoint.pt", "config.json", "log.jsonl", "loss_curves.png"):
        assert (tmp_path / name).is_file(), name


def test_killed_and_resumed_run_matches_the_uninterrupted_run(tmp_path):
    full = train(tiny(tmp_path / "full", max_steps=6))
    train(tiny(tmp_path / "split", max_steps=3))  # "killed" after step 3 (checkpoint written on exit)
    resumed = train(tiny(tmp_path / "split", max_steps=6))
    assert [r["step"] for r in resumed.history] == [4, 5, 6]
    for a, b in zip(full.history[3:], resumed.history):
        assert a["step"] == b["step"]
        torch.testing.assert_close(torch.tensor(b["total"]), torch.tensor(a["total"]), rtol=1e-5, atol=1e-6)


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    cfg = tiny(tmp_path, max_steps=3)
    cfg = replace(cfg, loss=replace(cfg.loss, infonce_log_scale=1e4))  # exp overflows -> inf logits
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 1"):
        train(cfg)


def test_matcher_run(tmp_path):
    cfg = tiny(tmp_path, max_steps=2)
    cfg = replace(cfg, model=replace(cfg.model, kind="matcher", encoder_depth=2),
                  data=replace(cfg.data, preset="matcher", positive_rate=0.5),
                  loss=replace(cfg.loss, infonce_weight=0.0, koleo_weight=0.0, copynce_gamma=1.0))
    res = train(cfg)
    assert res.steps == 2 and all(k in res.history[-1] for k in ("bce", "copynce", "total"))


@pytest.mark.parametrize("kind", ["descriptor", "matcher_without_copynce"])
def test_ddp_two_cpu_processes_on_gloo(tmp_path, kind):
    """2 ranks on gloo: runs, logs once, and ends with identical replicas (the trainer checks and says so)."""
    cfg = tiny(tmp_path / "ddp", max_steps=2)
    if kind != "descriptor":  # the matcher baseline: its fusion head gets no gradient (REFERENCE.md §4.5)
        cfg = replace(cfg, model=replace(cfg.model, kind="matcher", encoder_depth=2),
                      data=replace(cfg.data, preset="matcher", positive_rate=0.5),
                      loss=replace(cfg.loss, infonce_weight=0.0, koleo_weight=0.0, copynce_weight=0.0))
    save_json(cfg, tmp_path / "cfg.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port on this machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "copynce_fast.cli", "train", "--config", str(tmp_path / "cfg.json"),
           "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in open(tmp_path / "ddp" / "log.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    assert "world 2" in out.stdout + out.stderr and "replicas in sync" in out.stdout + out.stderr


def test_resumed_log_has_each_step_once(tmp_path):
    train(tiny(tmp_path, max_steps=3))
    (tmp_path / "checkpoint.pt").unlink()
    train(tiny(tmp_path, max_steps=2))  # a fresh run in the same folder starts a fresh log
    train(tiny(tmp_path, max_steps=3))  # resumes at 2
    steps = [json.loads(line)["step"] for line in open(tmp_path / "log.jsonl")]
    assert steps == [1, 2, 3]


def test_our_checkpoint_loads_as_pretrained_weights(tmp_path):
    from copynce_fast.models.loading import build_model, load_pretrained

    cfg = tiny(tmp_path, max_steps=1)
    train(cfg)
    model = build_model(cfg.model)
    assert load_pretrained(model, tmp_path / "checkpoint.pt") == "ours"
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_triton_kernels_train_like_the_torch_reference(tmp_path):
    """Two steps with the Triton kernels (CPU interpreter in CI) follow the torch reference's losses."""
    runs = {}
    for impl in ("torch", "triton"):
        cfg = tiny(tmp_path / impl, max_steps=2)
        runs[impl] = train(replace(cfg, loss=replace(cfg.loss, impl=impl))).history
    for a, b in zip(runs["torch"], runs["triton"]):
        for k in ("copynce", "total"):
            torch.testing.assert_close(torch.tensor(b[k]), torch.tensor(a[k]), rtol=1e-4, atol=1e-5)


def test_dali_cpu_backend_trains_and_resumes(tmp_path):
    pytest.importorskip("nvidia.dali")
    cfg = tiny(tmp_path / "full", max_steps=4)
    cfg = replace(cfg, data=replace(cfg.data, backend="dali", num_workers=1))
    full = train(cfg)
    assert full.steps == 4 and all(torch.isfinite(torch.tensor(r["total"])) for r in full.history)
    split = replace(cfg, run=replace(cfg.run, out_dir=str(tmp_path / "split"), max_steps=3))
    train(split)  # stops mid-epoch (4 batches per epoch)
    resumed = train(replace(split, run=replace(split.run, max_steps=4)))
    torch.testing.assert_close(torch.tensor(resumed.history[-1]["total"]), torch.tensor(full.history[-1]["total"]),
                               rtol=1e-5, atol=1e-6)


def test_supervised_pairs_fine_tuning(tmp_path):
    """data.pairs_csv: known copies, resized without augmentation; a bad file is skipped, training goes on."""
    import numpy as np
    from PIL import Image

    from copynce_fast.data.plan_sampler import PairKey
    from copynce_fast.data.supervised import SupervisedPairDataset, read_pairs_csv

    rng = np.random.default_rng(0)
    lines = ["query_path,reference_path"]
    for i in range(9):
        Image.fromarray((rng.random((40 + i, 50, 3)) * 255).astype(np.uint8)).save(tmp_path / f"r{i}.png")
        Image.fromarray((rng.random((30, 60 + i, 3)) * 255).astype(np.uint8)).save(tmp_path / f"q{i}.png")
        lines.append(f"q{i}.png,r{i}.png")
    (tmp_path / "q8.png").write_bytes(b"not an image")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    ds = SupervisedPairDataset(read_pairs_csv(tmp_path / "pairs.csv"), 32)
    item = ds[PairKey(3)]
    expected = np.asarray(Image.open(tmp_path / "q3.png").convert("RGB").resize((32, 32), Image.BICUBIC))
    assert torch.equal(item["query"], torch.from_numpy(expected.copy()).permute(2, 0, 1))
    assert item["is_copy"] and not item["copynce"]
    assert ds[PairKey(8)]["source_index"] == 0 and "q8.png" in str(ds.source.skips.files)  # replaced, counted

    cfg = tiny(tmp_path / "run", max_steps=2)
    cfg = replace(cfg, data=replace(cfg.data, pairs_csv=str(tmp_path / "pairs.csv")),
                  loss=replace(cfg.loss, copynce_weight=0.0))
    res = train(cfg)
    assert res.steps == 2 and "copynce" not in res.history[-1]
    with pytest.raises(ValueError, match="copynce_weight"):
        train(replace(cfg, loss=replace(cfg.loss, copynce_weight=1.0)))
