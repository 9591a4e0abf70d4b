"""The training loop: explicit, nanoGPT-style. ``train(cfg)`` reads as its parts: setup, resume, epochs, finish.

bf16 autocast on CUDA (no GradScaler), ``torch.compile`` of the model on CUDA, AdamW with warm-up + cosine,
global-norm clipping, DDP under torchrun, one labelled host sync per logging interval, atomic checkpoints that
resume to the same next-step loss, JSONL + TensorBoard logs, a tqdm bar, and a loss-curve PNG at the end.
"""
from __future__ import annotations

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
from copynce_fast.train.run_config import config_differences
from copynce_fast.train.schedule import lr_at
from copynce_fast.utils.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from copynce_fast.utils.device import resolve_device
from copynce_fast.utils.dist import DistInfo, all_reduce_mean, init_distributed
from copynce_fast.utils.skipped import write_skipped

__all__ = ["train", "train_step", "TrainResult", "NonFiniteLossError", "resolve_device", "param_groups"]

log = logging.getLogger("copynce_fast.train")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf: training stops with the step and the last finite values."""


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    history: list[dict] = field(default_factory=list)  # one row per logging interval
    checkpoint: Path | None = None
    metrics: object | None = None  # eval.metrics.Metrics of the held-out evaluation (descriptor runs)
    skipped: dict[str, str] = field(default_factory=dict)  # unusable image -> reason (all ranks), in skipped.txt


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


@dataclass
class _Run:
    """What ``train`` builds before the first step, shared by its parts."""

    cfg: Config
    device: torch.device
    dist: DistInfo
    data: TrainData
    model: nn.Module  # the bare model (SyncBN-converted under DDP on CUDA): what checkpoints hold
    objective: nn.Module
    opt: torch.optim.Optimizer
    lr: float  # peak learning rate, scaled to the global batch
    steps_per_epoch: int
    total_steps: int  # the schedule's length
    stop_at: int  # run.max_steps stops early without changing the schedule, exactly like a killed run
    warmup: int

    @property
    def main(self) -> bool:
        return self.dist.rank == 0

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.run.out_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"


def _setup(cfg: Config) -> _Run:
    """Device and ranks, data, model (pretrained weights), objective, optimiser and the schedule's lengths."""
    device = resolve_device(cfg.run.device, "run.device")
    dist_info: DistInfo = init_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    torch.manual_seed(cfg.run.seed + dist_info.rank)

    data = build_train_data(cfg, device, dist_info)
    model = build_model(cfg.model).to(device)
    if cfg.model.pretrained:
        fmt = load_pretrained(model, cfg.model.pretrained)
        log.info("loaded %s weights from %s", fmt, cfg.model.pretrained)
    if cfg.model.kind == "matcher" and cfg.loss.copynce_weight == 0:
        # the fusion head only feeds CopyNCE: without it, it would get no gradient and DDP would fail
        # (REFERENCE.md §4.5, the matcher baseline)
        model.fusion_head.requires_grad_(False)
    objective_cls = DescriptorObjective if cfg.model.kind == "descriptor" else MatcherObjective
    objective = objective_cls(cfg.loss, model.patch_size).to(device)

    lr = scaled_lr(cfg, dist_info.world_size)
    opt = torch.optim.AdamW(param_groups(model, objective, cfg.optim.weight_decay), lr=lr, betas=cfg.optim.betas,
                            fused=device.type == "cuda")
    batches = len(data.sampler)
    if batches == 0:
        raise ValueError(f"data.batch_size: a batch of {cfg.data.batch_size} images on each of "
                         f"{dist_info.world_size} rank(s) needs at least {cfg.data.batch_size} images per rank; the "
                         f"source has {data.num_items} (lower --data.batch_size)")
    steps_per_epoch = cfg.optim.steps_per_epoch or batches
    if steps_per_epoch > batches:
        raise ValueError(f"optim.steps_per_epoch: must be in [1, {batches}] (batches in one pass over the data), "
                         f"got {steps_per_epoch}; to train longer, give --optim.total_steps")
    data.stream.steps_per_epoch = steps_per_epoch
    # optim.total_steps sizes the run in steps, across as many (small) epochs as it takes
    total_steps = cfg.optim.total_steps or steps_per_epoch * cfg.optim.epochs
    stop_at = min(total_steps, cfg.run.max_steps) if cfg.run.max_steps else total_steps
    warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    return _Run(cfg, device, dist_info, data, model, objective, opt, lr, steps_per_epoch, total_steps, stop_at,
                warmup)


def _resume(run: _Run) -> int:
    """Restore model, objective, optimiser and RNG state from the run's checkpoint; the step to continue at."""
    path = run.checkpoint_path
    if not (run.cfg.run.resume and path.is_file()):
        return 0
    try:
        state = load_checkpoint(path, what="run.resume")
    except ValueError as e:  # refused or corrupt: say how to start over instead
        raise ValueError(f"{e}; --run.resume=false starts over (overwriting it)") from None
    changed = config_differences(state["config"], run.cfg)  # like with like; run-control fields (max_steps) may change
    if changed:
        log.warning("resuming %s with a config that differs from the checkpoint's: %s", path, "; ".join(changed))
    run.model.load_state_dict(state["model"])
    run.objective.load_state_dict(state["objective"])
    run.opt.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    log.info("resumed from %s at step %d", path, int(state["step"]))
    return int(state["step"])


def _save(run: _Run, step: int) -> Path | None:
    """Atomic checkpoint of everything a bit-exact resume needs (rank 0 only)."""
    if not run.main:
        return None
    return save_checkpoint(run.checkpoint_path, {
        "model": run.model.state_dict(), "objective": run.objective.state_dict(), "optimizer": run.opt.state_dict(),
        "step": step, "rng": rng_state(), "config": to_dict(run.cfg)})


def _parallel(run: _Run) -> nn.Module:
    """The module the steps run: SyncBN + DDP under torchrun, compiled on CUDA (``run.model`` stays bare)."""
    cfg, device = run.cfg, run.device
    if run.dist.enabled and device.type == "cuda":
        # the head's BatchNorm takes statistics over the global batch, as the reference's SyncBN (the new modules
        # share the Parameter objects, so the optimiser is unaffected)
        run.model = nn.SyncBatchNorm.convert_sync_batchnorm(run.model)
    train_model = run.model
    if run.dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    if cfg.run.compile and device.type == "cuda":
        train_model = torch.compile(train_model)
    return train_model


class _Interval:
    """Loss sums over one logging interval, kept on the device: no host sync until :meth:`row`."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count, self.images, self.t0 = 0, 0, time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor], images: int) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.detach().float()
        self.count += 1
        self.images += images

    def means(self) -> dict[str, float]:
        # Host sync: once per logging interval, to read the averaged losses.
        return {k: all_reduce_mean(v / self.count).item() for k, v in self.sums.items()}

    def images_per_s(self) -> float:
        return self.images / max(time.perf_counter() - self.t0, 1e-9)


def _run_epochs(run: _Run, train_model: nn.Module, step: int, logger: RunLogger) -> int:
    """Steps from ``step`` to ``run.stop_at``: log rows, checkpoints, stop on a non-finite loss.

    The torch loader streams the batches of consecutive epochs in one pass (small epochs cost no pipeline
    restart); DALI is iterated one epoch at a time. Checkpoints come every ``run.ckpt_every`` steps, and at an
    epoch end only when epochs are at least that long (many small epochs do not set the cadence).
    """
    cfg, objective, opt = run.cfg, run.objective, run.opt
    amp = cfg.run.amp == "bf16" and run.device.type == "cuda"
    params = [p for g in opt.param_groups for p in g["params"]]
    replicated = list(objective.parameters()) if run.dist.enabled else []
    spe = run.steps_per_epoch
    epoch_checkpoints = spe >= cfg.run.ckpt_every
    run.model.train()
    interval = _Interval()
    while step < run.stop_at:
        segment_end = run.stop_at if run.data.streams else min((step // spe + 1) * spe, run.stop_at)
        for batch in run.data.batches(step):
            epoch = step // spe
            cur_lr = lr_at(step, run.total_steps, run.warmup, run.lr, cfg.optim.min_lr)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            terms = train_step(train_model, objective, opt, params, batch, cfg.model.kind, run.device, amp,
                               cfg.optim.clip_grad, replicated)
            step += 1
            interval.add(terms, 2 * batch["query"].shape[0] * run.dist.world_size)
            logger.advance()
            if step % cfg.run.log_every == 0 or step == run.stop_at:
                row = interval.means()
                row.update(step=step, epoch=epoch, lr=cur_lr, images_per_s=interval.images_per_s())
                if hasattr(objective, "log_scale"):
                    row["log_scale"] = objective.log_scale.item()
                row["skipped_images"] = _skips(run.data).skipped  # unusable files met so far (this rank)
                if not all(math.isfinite(row[k]) for k in terms):
                    path = run.checkpoint_path
                    note = f"last checkpoint: {path}" if path.is_file() else "no checkpoint was written"
                    raise NonFiniteLossError(f"non-finite loss at step {step} ({row}); stopping. {note}")
                logger.log(row)
                interval = _Interval()
            if step < run.stop_at and (step % cfg.run.ckpt_every == 0 or (epoch_checkpoints and step % spe == 0)):
                _save(run, step)
            if step >= segment_end:
                break
        if step < segment_end:
            raise RuntimeError(f"the loader ran out of batches at step {step}, before step {segment_end}")
    return step


def _finish(run: _Run, step: int, logger: RunLogger) -> TrainResult:
    """Last checkpoint, the replica check under DDP, and the held-out evaluation of small descriptor runs."""
    cfg = run.cfg
    path = _save(run, step)
    if run.dist.enabled:
        _check_replicas(run.model, run.objective)
        logger.info("replicas in sync across ranks")
    skipped = _all_skipped(run)
    if skipped and run.main:
        listing = write_skipped(run.out_dir / "skipped.txt", skipped.items())
        logger.info(f"{len(skipped)} images skipped as unusable, each listed with its reason in {listing}")
    logger.close()
    result = TrainResult(run.out_dir, step, logger.history, path, skipped=skipped)
    if cfg.run.eval_after and run.main and cfg.model.kind == "descriptor" and not cfg.data.pairs_csv:
        metrics = heldout_eval(run.model, cfg, run.device)
        result.metrics = metrics
        write_json_report(run.out_dir / "eval.json", metrics)
        logger.info(f"held-out copies: uAP {metrics.uap:.4f} | RP90 {_fmt(metrics.recall_at_p90)} | "
                    f"recall@1 {metrics.recall_at_k[1]:.4f} ({metrics.n_gt_queries} held-out copies + as many distractors)")
    return result


def train(cfg: Config) -> TrainResult:
    """Train a descriptor or matcher as ``cfg`` says; resumes from ``run.out_dir/checkpoint.pt`` if present."""
    run = _setup(cfg)
    step = _resume(run)
    if run.main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        save_json(cfg, run.out_dir / "config.json")
    logger = RunLogger(run.out_dir, enabled=run.main, total_steps=run.stop_at, start_step=step,
                       progress=cfg.run.progress)
    length = (f"{run.total_steps} steps (optim.total_steps) = {run.total_steps / run.steps_per_epoch:.3g} epochs "
              f"of {run.steps_per_epoch}" if cfg.optim.total_steps else
              f"{run.steps_per_epoch} steps/epoch x {cfg.optim.epochs} epochs = {run.total_steps} steps")
    logger.info(f"{cfg.model.kind} {cfg.model.arch}@{cfg.model.img_size} | {run.data.num_items} images | {length} | "
                f"lr {run.lr:.3g} = {cfg.optim.base_lr:g} * sqrt({cfg.optim.lr_scaling_batch or cfg.data.batch_size} * "
                f"{run.dist.world_size} / 1024) | warm-up {run.warmup} steps | device {run.device} | "
                f"world {run.dist.world_size}")
    train_model = _parallel(run)
    step = _run_epochs(run, train_model, step, logger)
    return _finish(run, step, logger)


def _skips(data: TrainData):
    """The SkipCounter of the run's loader: the torch loader's own (fed by its workers), or the source's (DALI)."""
    return data.loader.skips if data.loader is not None else data.source.skips


def _all_skipped(run: _Run) -> dict[str, str]:
    """Unusable images met by any rank: name -> reason (one collective under DDP)."""
    files = dict(_skips(run.data).files)
    if run.dist.enabled:
        parts: list[dict] = [{} for _ in range(run.dist.world_size)]
        torch.distributed.all_gather_object(parts, files)
        files = {k: v for part in parts for k, v in part.items()}
    return files


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
