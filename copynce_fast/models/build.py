"""Build a model from a ``ModelConfig`` and load local pretrained weights (DINO, official CopyNCE, or ours)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from copynce_fast.config import ModelConfig
from copynce_fast.models.checkpoints import load_copynce_checkpoint, load_dino_checkpoint, unwrap_state_dict
from copynce_fast.models.descriptor import descriptor_vit_base, descriptor_vit_small, descriptor_vit_tiny
from copynce_fast.models.matcher import matcher_vit_base, matcher_vit_small, matcher_vit_tiny

__all__ = ["build_model", "load_pretrained", "checkpoint_format", "strip_wrappers"]

_DESCRIPTORS = {"vit_tiny": descriptor_vit_tiny, "vit_small": descriptor_vit_small, "vit_base": descriptor_vit_base}
_MATCHERS = {"vit_tiny": matcher_vit_tiny, "vit_small": matcher_vit_small, "vit_base": matcher_vit_base}


def build_model(cfg: ModelConfig) -> nn.Module:
    """A ``CopyDescriptor`` or ``CopyMatcher`` as the config says (random init; see ``load_pretrained``)."""
    if cfg.kind == "descriptor":
        return _DESCRIPTORS[cfg.arch](dim=cfg.dim, img_size=cfg.img_size, attn_impl=cfg.attn_impl, pool=cfg.pool,
                                      ln_eps=cfg.ln_eps, freeze_patch_embed=cfg.freeze_patch_embed)
    if cfg.kind == "matcher":
        depth = {"vit_tiny": 4}.get(cfg.arch, 12)
        if not 0 < cfg.encoder_depth < depth:
            raise ValueError(f"model.encoder_depth: must be in [1, {depth - 1}] for {cfg.arch}, got {cfg.encoder_depth}")
        return _MATCHERS[cfg.arch](img_size=cfg.img_size, encoder_depth=cfg.encoder_depth,
                                   fusion_depth=depth - cfg.encoder_depth, attn_impl=cfg.attn_impl,
                                   ln_eps=cfg.ln_eps, freeze_patch_embed=cfg.freeze_patch_embed)
    raise ValueError(f"model.kind: must be 'descriptor' or 'matcher', got {cfg.kind!r}")


def checkpoint_format(obj) -> str:
    """"ours" (a training checkpoint of this package: {"model", "config"}), "copynce" (official: has heads.*)
    or "dino", from a loaded checkpoint object."""
    if isinstance(obj, dict) and "model" in obj and isinstance(obj.get("config"), dict):
        return "ours"
    state, _ = unwrap_state_dict(obj)
    return "copynce" if any(k.startswith("heads.") for k in state) else "dino"


def strip_wrappers(state: dict) -> dict:
    """Our own state dicts: drop the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes only."""
    out = {}
    for k, v in state.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def load_pretrained(model: nn.Module, path) -> str:
    """Load local weights into ``model``, detecting the layout; returns the format name. weights_only loads."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"model.pretrained: no file at {path}")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    fmt = checkpoint_format(raw)
    if fmt == "ours":
        model.load_state_dict(strip_wrappers(raw["model"]), strict=True)
    elif fmt == "copynce":
        load_copynce_checkpoint(model, raw)
    else:
        load_dino_checkpoint(model, raw)
    return fmt
