"""The official data path, model and losses, driven by a thin harness (``official_harness`` full mode only).

What the harness builds instead of the official launcher (``core/run/train/train.py`` + ``CopyMetaArch``):
- the config: the official default yaml (descriptor or matching) with ``data_src: folder`` on the given images,
  no hard-negative mining (it needs a DINO kNN file of the training set) and ``gather: false`` for InfoNCE /
  KoLeo (one process: gathering over one rank is the identity);
- one process on one device: no torchrun, no DDP / SyncBatchNorm (BatchNorm stays plain), no sharded sampler
  (a seeded shuffle), no checkpointing, logging or evaluation hooks;
- the step itself calls the official pieces in the order ``CopyMetaArch`` does: ``model(data)``, the official
  criterion, sum, ``scheduler.step_update``, ``zero_grad``, ``backward``, global-norm clip, ``optimizer.step``,
  with the official timm AdamW and cosine schedule (fp32, no autocast, as shipped).
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

import official_harness as H


def official_cfg(off: H.Official, arch: str, size: int, root: str | Path | None = None, **model):
    """The official default config of ``arch`` ("descriptor" or "matching") at ``size`` px, adapted as above.

    ``model`` overrides ``cfg.model`` fields (e.g. ``embed_dim=96, encoder_depth=4, num_heads=3``).
    """
    from omegaconf import OmegaConf
    factory = off.module("core.configs").__default_config_factory__
    cfg = OmegaConf.create(OmegaConf.to_container(factory[arch], resolve=True))
    cfg.input.img_size = size
    cfg.input.dataset = [dict(
        data_src="folder", root=str(root or "."), positive_rate=1.0, sampling_rate=1.0, return_mapping=True,
        return_mask=False, positive_ref_aug_p=0.0, negative_ref_aug_p=0.0, force_hard_negative_mining=False,
        hard_negative_mining=dict(enable=False))]
    for loss in list(cfg.loss.auxiliary_loss or []) + list(cfg.loss.classification_loss or []):
        if "gather" in loss:
            loss.gather = False
    cfg.train.pretrain = ""
    for k, v in model.items():
        cfg.model[k] = v
    return cfg


class RecordingTransform:
    """Wraps the official copy transform and keeps what it did last: (native (W, H), its config list)."""

    def __init__(self, transform):
        self.transform = transform
        self.last = None

    def __call__(self, img, *args, **kwargs):
        out = self.transform(img, *args, **kwargs)
        self.last = (img.size, out[1])
        return out


def official_dataset(off: H.Official, cfg):
    """The official ``CopyDataset`` built by its own ``build_dataset`` (its query transform recorded)."""
    joint = off.module("core.data.build").build_dataset(cfg)
    ds = joint.datasets[0]
    ds.copy_transform = RecordingTransform(ds.copy_transform)
    return ds


def official_pairs(ds, n: int, seed: int = 0) -> tuple[dict, list[list], list[tuple[int, int]]]:
    """``n`` samples from the official ``fetch_sample`` (its augmentation and dense maps), collated as its
    DataLoader does, plus each query's config list and native (H, W) for building our views of the same edits."""
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)
    samples, configs, hws = [], [], []
    for i in range(n):
        samples.append(ds.fetch_sample(i % len(ds.paths)))
        (w, h), cfgs = ds.copy_transform.last
        configs.append(cfgs)
        hws.append((h, w))
    return torch.utils.data.default_collate(samples), configs, hws


def official_descriptor(off: H.Official, cfg, seed: int = 0):
    """The official descriptor model (encoder + linear head) and its criterion (InfoNCE, CopyNCE, KoLeo)."""
    torch.manual_seed(seed)
    model = off.module("core.models.build").build_copy_descriptor(cfg)
    criterion = off.module("core.loss.build").build_loss(cfg, model)  # registers the InfoNCE log-scale on the model
    return model, criterion


class OfficialTrainer:
    """Official model + criterion + timm AdamW + cosine schedule, stepped like ``CopyMetaArch`` (see module doc)."""

    def __init__(self, off: H.Official, cfg, model, criterion, total_steps: int, warmup_steps: int, lr: float,
                 device="cpu"):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import CosineLRScheduler
        self.cfg, self.model, self.criterion, self.device = cfg, model.to(device), criterion, torch.device(device)
        self.opt = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=cfg.optim.weight_decay,
                                       betas=tuple(cfg.optim.betas))
        self.sched = CosineLRScheduler(self.opt, t_initial=total_steps, lr_min=cfg.optim.min_lr, cycle_mul=1,
                                       cycle_decay=1.0, cycle_limit=1, t_in_epochs=False, warmup_t=warmup_steps,
                                       warmup_lr_init=0.01 * lr, warmup_prefix=True)
        self.steps = 0

    def step(self, data: dict) -> dict[str, float]:
        data = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in data.items()}
        self.model.train()
        with H.cpu_cuda(threads=None):
            losses = self.criterion(self.model(data), data)
        loss = sum(losses.values())
        self.sched.step_update(self.steps)
        self.steps += 1
        self.opt.zero_grad()
        loss.backward()
        if self.cfg.optim.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.cfg.optim.clip_grad)
        self.opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}


class OfficialFeatures(torch.nn.Module):
    """The official descriptor in eval mode as ``images [B, 3, S, S] -> {"feat": [B, D]}`` (our evaluator's API)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.model({"images": x})["feat"]}
