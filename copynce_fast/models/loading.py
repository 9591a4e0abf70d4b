"""Models from local files: the one place that builds a model and loads weights into it, for training and inference.

Checkpoint formats (``fmt``), told apart by :func:`checkpoint_format` (the one dispatcher, ``"auto"``):

* ``"ours"``: what our trainer writes, ``{"model": state_dict, "config": to_dict(cfg), ...}`` with
  ``cfg`` a :class:`copynce_fast.config.Config`. The model is rebuilt by :func:`build_model` from
  ``cfg.model`` (kind, arch, img_size, dim, pool, ln_eps, encoder_depth) and loaded strictly; ``module.``
  (DDP) and ``_orig_mod.`` (torch.compile) prefixes are stripped.
* ``"copynce"``: the official ``descriptor_vits_224.pth.tar`` / ``matcher_vits_224.pth.tar``
  (key layout in :mod:`copynce_fast.models.layouts`). Descriptor or matcher, width (arch), descriptor
  size, encoder depth and training resolution are read from the tensors.
* ``"dino"``: a public DINO ViT (:mod:`copynce_fast.models.layouts`). As a *descriptor* it is the DINO kNN
  feature: the L2-normalised CLS after the final norm, through an identity head (no random projection);
  LayerNorm eps 1e-6 as DINO was trained. As a *matcher* the heads are random (smoke only).
* ``"auto"``: ours if the file has ``"model"`` and ``"config"``, copynce if it has ``heads.*`` keys, else dino.

Two ways in: :func:`load_model` builds the model a checkpoint describes (inference; ``random_init=True``
builds seeded random weights for tests and smoke runs), :func:`load_pretrained` loads a checkpoint into a
model the caller built from its config (training initialisation). Both load through :func:`load_weights`.

The :class:`LoadedModel` of :func:`load_model` carries a ``name`` that identifies the weights (format, kind,
arch, input size and a SHA-256 prefix of the file, or the seed): feature files record it, and resuming an
extraction with other weights is refused.

Errors are ``ValueError`` naming the parameter (``weights``, ``fmt``, ``img_size``, ...) and the file.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from copynce_fast.config import ARCH_DEPTH, ModelConfig, from_dict
from copynce_fast.models.descriptor import (
    CopyDescriptor,
    descriptor_vit_base,
    descriptor_vit_small,
    descriptor_vit_tiny,
)
from copynce_fast.models.layouts import load_copynce_checkpoint, load_dino_checkpoint, unwrap_state_dict
from copynce_fast.models.matcher import CopyMatcher, matcher_vit_base, matcher_vit_small, matcher_vit_tiny
from copynce_fast.models.vit import PATCH_SIZE
from copynce_fast.utils.safe_load import load_tensors

__all__ = ["FORMATS", "ARCH_DEPTH", "ARCH_WIDTH", "LoadedModel", "build_model", "checkpoint_format",
           "strip_wrappers", "load_weights", "load_pretrained", "load_model", "random_model", "file_digest"]

ARCH_WIDTH = {"vit_tiny": 96, "vit_small": 384, "vit_base": 768}
_DESCRIPTORS = {"vit_tiny": descriptor_vit_tiny, "vit_small": descriptor_vit_small, "vit_base": descriptor_vit_base}
_MATCHERS = {"vit_tiny": matcher_vit_tiny, "vit_small": matcher_vit_small, "vit_base": matcher_vit_base}
FORMATS = ("auto", "ours", "copynce", "dino")


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, on its device).

    Attributes:
        model: :class:`CopyDescriptor` or :class:`CopyMatcher`.
        kind: "descriptor" or "matcher".
        img_size: the side S images are resized to before the model.
        name: identifies the weights (recorded in feature files).
        format: "ours", "copynce", "dino" or "random".
        notes: human-readable remarks about the load (e.g. freshly initialised heads).
    """

    model: nn.Module
    kind: str
    img_size: int
    name: str
    format: str
    notes: list[str] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def build_model(cfg: ModelConfig) -> nn.Module:
    """A ``CopyDescriptor`` or ``CopyMatcher`` as the config says (random init; see ``load_weights``)."""
    if cfg.kind == "descriptor":
        return _DESCRIPTORS[cfg.arch](dim=cfg.dim, img_size=cfg.img_size, attn_impl=cfg.attn_impl, pool=cfg.pool,
                                      ln_eps=cfg.ln_eps, freeze_patch_embed=cfg.freeze_patch_embed)
    if cfg.kind == "matcher":
        depth = ARCH_DEPTH[cfg.arch]
        if not 0 < cfg.encoder_depth < depth:
            raise ValueError(f"model.encoder_depth: must be in [1, {depth - 1}] for {cfg.arch}, got {cfg.encoder_depth}")
        return _MATCHERS[cfg.arch](img_size=cfg.img_size, encoder_depth=cfg.encoder_depth,
                                   fusion_depth=depth - cfg.encoder_depth, attn_impl=cfg.attn_impl,
                                   ln_eps=cfg.ln_eps, freeze_patch_embed=cfg.freeze_patch_embed)
    raise ValueError(f"model.kind: must be 'descriptor' or 'matcher', got {cfg.kind!r}")


# ------------------------------------------------------------------ the dispatcher: format -> weights


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


def load_weights(model: nn.Module, obj, fmt: str = "auto", where: str = "checkpoint") -> str:
    """Load the weights of a loaded checkpoint object into ``model``; returns the format used.

    Args:
        model: the target, built to fit the checkpoint.
        obj: what ``torch.load(..., weights_only=True)`` returned.
        fmt: "ours", "copynce", "dino" or "auto" (:func:`checkpoint_format`).
        where: names the checkpoint in error messages.

    Raises:
        ValueError: the checkpoint does not fit the model (keys or shapes named).
    """
    fmt = checkpoint_format(obj) if fmt == "auto" else fmt
    if fmt == "ours":
        state = obj.get("model") if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{where}: 'model' is a {type(state).__name__}, expected a state dict")
        missing, unexpected = model.load_state_dict(strip_wrappers(state), strict=False)
        if missing or unexpected:
            raise ValueError(f"{where}: state dict does not fit the {type(model).__name__}: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    elif fmt == "copynce":
        load_copynce_checkpoint(model, obj)
    elif fmt == "dino":
        load_dino_checkpoint(model, obj)
    else:
        raise ValueError(f"fmt: must be one of {FORMATS}, got {fmt!r}")
    return fmt


def _read(path: Path, param: str):
    """``torch.load(weights_only=True)`` with errors naming ``param`` and the file (a pickle with objects is
    refused in our words, never with torch's advice to turn the protection off)."""
    return load_tensors(path, param)


def load_pretrained(model: nn.Module, path) -> str:
    """Load local weights (any format) into ``model``, a model built from the training config; returns the
    format name. Used for ``model.pretrained``."""
    return load_weights(model, _read(Path(path), "model.pretrained"), "auto", f"model.pretrained {path}")


# ------------------------------------------------------------------ inference: the model a checkpoint holds


def file_digest(path: Path, n_hex: int = 12) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:n_hex]


def _arch_of_width(width: int, where: str) -> str:
    for arch, w in ARCH_WIDTH.items():
        if w == width:
            return arch
    raise ValueError(f"{where}: embedding width {width} matches no known arch {ARCH_WIDTH}")


def _grid_side(pos_embed: torch.Tensor) -> int:
    n = pos_embed.shape[1] - 1
    side = int(round(n ** 0.5))
    return side if side * side == n else 14


def _check_kind(kind: str | None, got: str, where: str) -> None:
    if kind is not None and kind != got:
        raise ValueError(f"{where}: this checkpoint holds a {got}, a {kind} is needed here")


# Each builder returns the (not yet loaded) model a checkpoint needs: (model, kind, arch, trained size, notes).

def _model_for_ours(obj, kind, encoder_depth, attn_impl, where):
    if not (isinstance(obj, dict) and isinstance(obj.get("config"), dict) and "model" in obj):
        raise ValueError(f"{where}: fmt 'ours' needs a dict with 'model' and 'config'")
    mc = replace(from_dict(obj["config"]).model, attn_impl=attn_impl)
    _check_kind(kind, mc.kind, where)
    return build_model(mc), mc.kind, mc.arch, mc.img_size, []


def _model_for_copynce(obj, kind, encoder_depth, attn_impl, where):
    state, _ = unwrap_state_dict(obj)
    got = "matcher" if any(k.startswith("heads.cls_head.") for k in state) else "descriptor"
    _check_kind(kind, got, where)
    if "encoder.pos_embed" not in state:
        raise ValueError(f"{where}: no encoder.pos_embed, not a CopyNCE checkpoint")
    arch = _arch_of_width(state["encoder.pos_embed"].shape[-1], where)
    trained = PATCH_SIZE * _grid_side(state["encoder.pos_embed"])
    n_enc = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"^encoder\.blocks\.(\d+)\.", k)))
    if got == "descriptor":
        mc = ModelConfig(kind="descriptor", arch=arch, img_size=trained, attn_impl=attn_impl, ln_eps=1e-4,
                         dim=state["heads.linear_head.fc1.weight"].shape[0])
        n_blocks = n_enc
    else:
        n_fus = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"^fusion\.blocks\.(\d+)\.", k)))
        mc = ModelConfig(kind="matcher", arch=arch, img_size=trained, attn_impl=attn_impl, ln_eps=1e-4,
                         encoder_depth=n_enc, freeze_patch_embed=False)
        n_blocks = n_enc + n_fus
    if n_blocks != ARCH_DEPTH[arch]:
        raise ValueError(f"{where}: {n_blocks} blocks, {arch} has {ARCH_DEPTH[arch]}")
    return build_model(mc), got, arch, trained, []


def _model_for_dino(obj, kind, encoder_depth, attn_impl, where):
    state, _ = unwrap_state_dict(obj)
    if "pos_embed" not in state:
        raise ValueError(f"{where}: no pos_embed, not a DINO ViT checkpoint")
    width = state["pos_embed"].shape[-1]
    arch = _arch_of_width(width, where)
    trained = PATCH_SIZE * _grid_side(state["pos_embed"])
    kind = kind or "descriptor"
    if kind == "descriptor":
        # the DINO kNN feature: final-norm CLS, identity head (BatchNorm at init is identity in eval mode);
        # the DINO load leaves the head alone, so it can be set before
        model = _DESCRIPTORS[arch](dim=width, img_size=trained, attn_impl=attn_impl, ln_eps=1e-6,
                                   use_final_norm=True)
        with torch.no_grad():
            model.fc.weight.copy_(torch.eye(width))
        return model, kind, arch, trained, ["DINO descriptor = L2-normalised final-norm CLS token (identity head)"]
    depth = ARCH_DEPTH[arch]
    model = build_model(ModelConfig(kind="matcher", arch=arch, img_size=trained, encoder_depth=encoder_depth or 8,
                                    attn_impl=attn_impl, ln_eps=1e-6, freeze_patch_embed=False))
    if sum(1 for k in state if re.match(r"^blocks\.\d+\.norm1\.weight$", k)) != depth:
        raise ValueError(f"{where}: block count differs from {arch}'s {depth}")
    return model, kind, arch, trained, ["matcher heads and fusion CLS are random (DINO has none): scores are meaningless"]


_MODEL_FOR = {"ours": _model_for_ours, "copynce": _model_for_copynce, "dino": _model_for_dino}


def _random_model(kind, arch, img_size, dim, encoder_depth, seed, attn_impl) -> LoadedModel:
    if arch not in ARCH_DEPTH:
        raise ValueError(f"arch must be one of {tuple(ARCH_DEPTH)}, got {arch!r}")
    enc = encoder_depth or (2 if arch == "vit_tiny" else 8)
    mc = ModelConfig(kind=kind or "descriptor", arch=arch, img_size=img_size or 224, dim=dim, attn_impl=attn_impl,
                     ln_eps=1e-4, encoder_depth=enc, freeze_patch_embed=False)
    return random_model(mc, seed)


def random_model(cfg: ModelConfig, seed: int = 0) -> LoadedModel:
    """Seeded random weights of the model ``cfg`` describes (e.g. a training run's ``config.model``), on the CPU
    in eval mode; for smoke tests. The caller's RNG is left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg)
    # the name identifies the weights in feature files; pool / eps only when they are not the defaults here
    extra = (f":{cfg.pool}" if cfg.pool != "cls" else "") + (f":eps{cfg.ln_eps:g}" if cfg.ln_eps != 1e-4 else "")
    name = f"random:{cfg.kind}:{cfg.arch}:S{cfg.img_size}:d{cfg.dim}{extra}:seed{seed}"
    return LoadedModel(model.eval(), cfg.kind, cfg.img_size, name, "random", ["random weights: for smoke tests only"])


def load_model(kind: str | None, weights: str | Path | None = None, *, fmt: str = "auto", arch: str = "vit_small",
               img_size: int | None = None, dim: int = 512, encoder_depth: int | None = None,
               random_init: bool = False, seed: int = 0, attn_impl: str = "sdpa",
               device: str | torch.device = "cpu") -> LoadedModel:
    """Load (or randomly build) a model for inference. See the module docstring for the formats.

    Args:
        kind: "descriptor", "matcher", or None to take whatever the checkpoint holds (random: descriptor).
        weights: local checkpoint path (ignored with ``random_init``).
        fmt: "auto" | "ours" | "copynce" | "dino".
        arch, dim, encoder_depth: the architecture for ``random_init`` (and ``encoder_depth`` for a DINO
            matcher); checkpoints carry their own.
        img_size: input side S; default the checkpoint's training size (random: 224). Another size works
            (the pos-embed is interpolated at run time).
        seed: seed of the random weights.
        attn_impl: attention backend.
        device: where the model goes.

    Returns:
        :class:`LoadedModel` in eval mode.

    Raises:
        ValueError: bad arguments, a missing/unreadable file, or a checkpoint that does not fit (named).
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if kind not in (None, "descriptor", "matcher"):
        raise ValueError(f"kind must be 'descriptor', 'matcher' or None, got {kind!r}")
    if img_size is not None and (img_size < PATCH_SIZE or img_size % PATCH_SIZE):
        raise ValueError(f"img_size must be a positive multiple of {PATCH_SIZE}, got {img_size}")
    if random_init:
        loaded = _random_model(kind, arch, img_size, dim, encoder_depth, seed, attn_impl)
    else:
        if weights is None:
            raise ValueError("weights is required unless random_init is given")
        path = Path(weights)
        obj = _read(path, "weights")
        where = f"weights {path}"
        fmt = checkpoint_format(obj) if fmt == "auto" else fmt
        model, kind, arch, trained, notes = _MODEL_FOR[fmt](obj, kind, encoder_depth, attn_impl, where)
        load_weights(model, obj, fmt, where)
        size = img_size or trained
        loaded = LoadedModel(model, kind, size, f"{fmt}:{kind}:{arch}:S{size}:{file_digest(path)}", fmt, notes)
    loaded.model.to(torch.device(device)).eval()
    if not isinstance(loaded.model, (CopyDescriptor, CopyMatcher)):  # build_model guarantees it; keep it true
        raise TypeError(f"unexpected model type {type(loaded.model).__name__}")
    return loaded
