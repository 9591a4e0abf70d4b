"""The training loop: explicit, nanoGPT-style. One function, ``train(cfg)``.

bf16 autocast on CUDA (no GradScaler), ``torch.compile`` of the model on CUDA, AdamW with warm-up + cosine,
global-norm clipping, DDP under torchrun, one labelled host sync per logging interval, atomic checkpoints that
resume to the same next-step loss, JSONL + TensorBoard logs, a tqdm bar, and a loss-curve PNG at the end.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from copynce_fast.config import Config, save_json, scaled_lr, to_dict
from copynce_fast.models.loading import build_model, load_pretrained
from copynce_fast.train.data import TrainData, build_train_data
from copynce_fast.utils.jsonio import write_json_report
from copynce_fast.train.heldout import heldout_eval
from copynce_fast.train.logging import RunLogger
from copynce_fast.train.objective import DescriptorObjective, MatcherObjective
from copynce_fast.train.schedule import lr_at
from copynce_fast.utils.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from copynce_fast.utils.device import resolve_device
from copynce_fast.utils.dist import DistInfo, all_reduce_mean, init_distributed

__all__ = ["train", "train_step", "TrainResult", "NonFiniteLossError", "resolve_device", "param_groups"]

log = logging.getLogger("copynce_fast.train")
PATCH = 16


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf: training stops with the step and the last finite values."""


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    history: list[dict] = field(default_factory=list)  # one row per logging interval
    checkpoint: Path | None = None
    metrics: object | None = None  # eval.metrics.Metrics of the held-out evaluation (descriptor runs)


def param_groups(model: nn.Module, objective: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on norms / biases / pos & cls tokens / the InfoNCE log-scale (REFERENCE.md §6)."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(p)
    no_decay += [p for p in objective.parameters() if p.requires_grad]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _forward(model, objective, batch, kind: str, device, amp: bool) -> dict[str, torch.Tensor]:
    q = batch["query"].to(device, non_blocking=True)
    r = batch["reference"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        if kind == "descriptor":
            # one backbone call on both batches; the head's BatchNorm still takes separate q / r statistics
            out_q, out_r = model(q, r)
            return objective(out_q, out_r, batch)
        return objective(model(q, r), batch)


def train_step(model, objective, opt, params, batch, kind: str, device, amp: bool, clip_grad: float,
               replicated: list[torch.Tensor] = ()) -> dict[str, torch.Tensor]:
    """One optimiser step (forward, backward, clip, AdamW); returns the loss terms (not synchronised).

    ``replicated``: parameters outside the DDP module (the InfoNCE log-scale) whose gradients are averaged
    over ranks here, so every rank keeps the same value.
    """
    terms = _forward(model, objective, batch, kind, device, amp)
    opt.zero_grad(set_to_none=True)
    terms["total"].backward()
    for p in replicated:
        if p.grad is not None:
            p.grad.copy_(all_reduce_mean(p.grad))
    if clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    opt.step()
    return terms


def train(cfg: Config) -> TrainResult:
    """Train a descriptor or matcher as ``cfg`` says; resumes from ``run.out_dir/checkpoint.pt`` if present."""
    device = resolve_device(cfg.run.device, "run.device")
    dist_info: DistInfo = init_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    main = dist_info.rank == 0
    out_dir = Path(cfg.run.out_dir)
    torch.manual_seed(cfg.run.seed + dist_info.rank)

    data: TrainData = build_train_data(cfg, device, dist_info)
    model = build_model(cfg.model).to(device)
    if cfg.model.pretrained:
        fmt = load_pretrained(model, cfg.model.pretrained)
        log.info("loaded %s weights from %s", fmt, cfg.model.pretrained)
    if cfg.model.kind == "matcher" and cfg.loss.copynce_weight == 0:
        # the fusion head only feeds CopyNCE: without it, it would get no gradient and DDP would fail
        # (REFERENCE.md §4.5, the matcher baseline)
        model.fusion_head.requires_grad_(False)
    objective_cls = DescriptorObjective if cfg.model.kind == "descriptor" else MatcherObjective
    objective = objective_cls(cfg.loss, PATCH).to(device)

    lr = scaled_lr(cfg, dist_info.world_size)
    opt = torch.optim.AdamW(param_groups(model, objective, cfg.optim.weight_decay), lr=lr, betas=cfg.optim.betas,
                            fused=device.type == "cuda")
    sampler = data.sampler
    steps_per_epoch = cfg.optim.steps_per_epoch or len(sampler)
    if not 0 < steps_per_epoch <= len(sampler):
        raise ValueError(f"optim.steps_per_epoch: must be in [1, {len(sampler)}] (batches per epoch), "
                         f"got {steps_per_epoch}")
    total_steps = steps_per_epoch * cfg.optim.epochs  # the schedule's length
    # run.max_steps stops early without changing the schedule, exactly like a killed run
    stop_at = min(total_steps, cfg.run.max_steps) if cfg.run.max_steps else total_steps
    warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))

    step = 0
    ckpt_path = out_dir / "checkpoint.pt"
    if cfg.run.resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        if state["config"] != json.loads(json.dumps(to_dict(cfg))):
            log.warning("resuming %s with a different config than the checkpoint's", ckpt_path)
        model.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        set_rng_state(state["rng"])
        log.info("resumed from %s at step %d", ckpt_path, step)

    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_json(cfg, out_dir / "config.json")
    logger = RunLogger(out_dir, enabled=main, total_steps=stop_at, start_step=step, progress=cfg.run.progress)
    logger.info(f"{cfg.model.kind} {cfg.model.arch}@{cfg.model.img_size} | {data.num_items} images | "
                f"{steps_per_epoch} steps/epoch x {cfg.optim.epochs} epochs = {total_steps} steps | "
                f"lr {lr:.3g} = {cfg.optim.base_lr:g} * sqrt({cfg.optim.lr_scaling_batch or cfg.data.batch_size} * "
                f"{dist_info.world_size} / 1024) | warm-up {warmup} steps | device {device} | "
                f"world {dist_info.world_size}")

    if dist_info.enabled and device.type == "cuda":
        # the head's BatchNorm takes statistics over the global batch, as the reference's SyncBN (the new modules
        # share the Parameter objects, so the optimiser is unaffected)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_model = model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    if cfg.run.compile and device.type == "cuda":
        train_model = torch.compile(train_model)
    amp = cfg.run.amp == "bf16" and device.type == "cuda"
    params = [p for g in opt.param_groups for p in g["params"]]
    replicated = list(objective.parameters()) if dist_info.enabled else []

    def checkpoint() -> Path | None:
        if not main:
            return None
        return save_checkpoint(ckpt_path, {"model": model.state_dict(), "objective": objective.state_dict(),
                                           "optimizer": opt.state_dict(), "step": step, "rng": rng_state(),
                                           "config": to_dict(cfg)})

    model.train()
    sums: dict[str, torch.Tensor] = {}
    count, t_last, images_since = 0, time.perf_counter(), 0
    while step < stop_at:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch, in_epoch)
        epoch_end = min((epoch + 1) * steps_per_epoch, stop_at)
        for batch in data.batches():
            cur_lr = lr_at(step, total_steps, warmup, lr, cfg.optim.min_lr)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            terms = train_step(train_model, objective, opt, params, batch, cfg.model.kind, device, amp,
                               cfg.optim.clip_grad, replicated)
            step += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float()
            count += 1
            images_since += 2 * batch["query"].shape[0] * dist_info.world_size
            logger.advance()
            if step % cfg.run.log_every == 0 or step == stop_at:
                # Host sync: once per logging interval, to read the averaged losses.
                row = {k: all_reduce_mean(v / count).item() for k, v in sums.items()}
                dt = time.perf_counter() - t_last
                row.update(step=step, epoch=epoch, lr=cur_lr, images_per_s=images_since / max(dt, 1e-9))
                if hasattr(objective, "log_scale"):
                    row["log_scale"] = objective.log_scale.item()
                if not all(math.isfinite(row[k]) for k in terms):
                    note = f"last checkpoint: {ckpt_path}" if ckpt_path.is_file() else "no checkpoint was written"
                    raise NonFiniteLossError(f"non-finite loss at step {step} ({row}); stopping. {note}")
                logger.log(row)
                sums, count, t_last, images_since = {}, 0, time.perf_counter(), 0
            if step % cfg.run.ckpt_every == 0 and step < stop_at:
                checkpoint()
            if step >= epoch_end:
                break
        if step < epoch_end:
            raise RuntimeError(f"the loader ran out of batches at step {step}, before the epoch ended at {epoch_end}")
        if step % steps_per_epoch == 0 and step < stop_at:
            checkpoint()  # end of an epoch
    path = checkpoint()
    if dist_info.enabled:
        _check_replicas(model, objective)
        logger.info("replicas in sync across ranks")
    logger.close()
    result = TrainResult(out_dir, step, logger.history, path)
    if cfg.run.eval_after and main and cfg.model.kind == "descriptor" and not cfg.data.pairs_csv:
        metrics = heldout_eval(model, cfg, device)
        result.metrics = metrics
        write_json_report(out_dir / "eval.json", metrics)
        logger.info(f"held-out copies: uAP {metrics.uap:.4f} | RP90 {_fmt(metrics.recall_at_p90)} | "
                    f"recall@1 {metrics.recall_at_k[1]:.4f} ({metrics.n_gt_queries} held-out copies + as many distractors)")
    return result


def _check_replicas(*modules: nn.Module) -> None:
    """After DDP training every rank must hold the same parameters; a cheap checksum proves it (one collective)."""
    total = sum(p.detach().double().sum() for m in modules for p in m.parameters())
    parts = [torch.zeros_like(total) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, total)
    values = [float(v) for v in parts]  # host sync: once, at the end of training
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise RuntimeError(f"ranks hold different parameters after training (checksums {values})")


def _fmt(v) -> str:
    return "n/a (precision never reaches 0.9)" if v is None else f"{v:.4f}"
