"""Inference models from local files: our checkpoints, official CopyNCE checkpoints, DINO weights, or random.

Checkpoint formats (``fmt``):

* ``"ours"``: what our trainer writes, ``{"model": state_dict, "config": to_dict(cfg), ...}`` with
  ``cfg`` a :class:`copynce_fast.config.Config`. The model is rebuilt by
  :func:`copynce_fast.models.build.build_model` (the trainer's builder) from ``cfg.model`` (kind, arch, img_size, dim, pool, ln_eps, encoder_depth) and loaded strictly; ``module.``
  (DDP) and ``_orig_mod.`` (torch.compile) prefixes are stripped.
* ``"copynce"``: the official ``descriptor_vits_224.pth.tar`` / ``matcher_vits_224.pth.tar``
  (:func:`copynce_fast.models.load_copynce_checkpoint`). Descriptor or matcher, width (arch), descriptor
  size, encoder depth and training resolution are read from the tensors.
* ``"dino"``: a public DINO ViT (:func:`copynce_fast.models.load_dino_checkpoint`). As a *descriptor* it is
  the DINO kNN feature: the L2-normalised CLS after the final norm, through an identity head (no random
  projection); LayerNorm eps 1e-6 as DINO was trained. As a *matcher* the heads are random (smoke only).
* ``"auto"``: ours if the file has ``"model"`` and ``"config"``, copynce if it has ``heads.*`` keys, else dino.

``random_init=True`` builds the model from the flags with seeded random weights (tests, smoke runs).

The returned :class:`LoadedModel` carries a ``name`` that identifies the weights (format, kind, arch, input
size and a SHA-256 prefix of the file, or the seed): feature files record it, and resuming an extraction
with other weights is refused.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from copynce_fast.config import ModelConfig, from_dict
from copynce_fast.models import (
    CopyDescriptor,
    CopyMatcher,
    descriptor_vit_base,
    descriptor_vit_small,
    descriptor_vit_tiny,
    load_copynce_checkpoint,
    load_dino_checkpoint,
)
from copynce_fast.models.build import build_model, checkpoint_format, strip_wrappers
from copynce_fast.models.checkpoints import unwrap_state_dict

ARCH_DEPTH = {"vit_tiny": 4, "vit_small": 12, "vit_base": 12}
ARCH_WIDTH = {"vit_tiny": 96, "vit_small": 384, "vit_base": 768}
_DESCRIPTORS = {"vit_tiny": descriptor_vit_tiny, "vit_small": descriptor_vit_small, "vit_base": descriptor_vit_base}
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


def autocast(device: torch.device, amp: str = "bf16"):
    """bf16 autocast on CUDA when ``amp == "bf16"``; a no-op elsewhere (CPU inference stays fp32)."""
    if device.type == "cuda" and amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def _check_kind(kind: str | None, got: str, path) -> None:
    if kind is not None and kind != got:
        raise ValueError(f"--weights {path}: this checkpoint holds a {got}, a {kind} is needed here")


def _load_ours(obj: dict, kind, img_size, attn_impl, path) -> LoadedModel:
    cfg = from_dict(obj["config"])
    mc = replace(cfg.model, attn_impl=attn_impl)
    _check_kind(kind, mc.kind, path)
    model = build_model(mc)
    state = obj["model"]
    if not isinstance(state, dict):
        raise ValueError(f"--weights {path}: 'model' is a {type(state).__name__}, expected a state dict")
    missing, unexpected = model.load_state_dict(strip_wrappers(state), strict=False)
    if missing or unexpected:
        raise ValueError(f"--weights {path}: state dict does not fit the config's {mc.kind} ({mc.arch}): "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    size = img_size or mc.img_size
    return LoadedModel(model, mc.kind, size, f"ours:{mc.kind}:{mc.arch}:S{size}:{file_digest(path)}", "ours")


def _load_copynce(obj, kind, img_size, attn_impl, path) -> LoadedModel:
    state, _ = unwrap_state_dict(obj)
    got = "matcher" if any(k.startswith("heads.cls_head.") for k in state) else "descriptor"
    _check_kind(kind, got, path)
    if "encoder.pos_embed" not in state:
        raise ValueError(f"--weights {path}: no encoder.pos_embed, not a CopyNCE checkpoint")
    arch = _arch_of_width(state["encoder.pos_embed"].shape[-1], f"--weights {path}")
    trained = 16 * _grid_side(state["encoder.pos_embed"])
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
        raise ValueError(f"--weights {path}: {n_blocks} blocks, {arch} has {ARCH_DEPTH[arch]}")
    model = build_model(mc)
    load_copynce_checkpoint(model, state)
    size = img_size or trained
    return LoadedModel(model, got, size, f"copynce:{got}:{arch}:S{size}:{file_digest(path)}", "copynce")


def _load_dino(obj, kind, img_size, encoder_depth, attn_impl, path) -> LoadedModel:
    state, _ = unwrap_state_dict(obj)
    if "pos_embed" not in state:
        raise ValueError(f"--weights {path}: no pos_embed, not a DINO ViT checkpoint")
    width = state["pos_embed"].shape[-1]
    arch = _arch_of_width(width, f"--weights {path}")
    trained = 16 * _grid_side(state["pos_embed"])
    kind = kind or "descriptor"
    notes = []
    if kind == "descriptor":
        # the DINO kNN feature: final-norm CLS, identity head (BatchNorm at init is identity in eval mode)
        model = _DESCRIPTORS[arch](dim=width, img_size=trained, attn_impl=attn_impl, ln_eps=1e-6,
                                   use_final_norm=True)
        load_dino_checkpoint(model, state)
        with torch.no_grad():
            model.fc.weight.copy_(torch.eye(width))
        notes.append("DINO descriptor = L2-normalised final-norm CLS token (identity head)")
    else:
        depth = ARCH_DEPTH[arch]
        enc = encoder_depth or 8
        model = build_model(ModelConfig(kind="matcher", arch=arch, img_size=trained, encoder_depth=enc,
                                        attn_impl=attn_impl, ln_eps=1e-6, freeze_patch_embed=False))
        if sum(1 for k in state if re.match(r"^blocks\.\d+\.norm1\.weight$", k)) != depth:
            raise ValueError(f"--weights {path}: block count differs from {arch}'s {depth}")
        load_dino_checkpoint(model, state)
        notes.append("matcher heads and fusion CLS are random (DINO has none): scores are meaningless")
    size = img_size or trained
    return LoadedModel(model, kind, size, f"dino:{kind}:{arch}:S{size}:{file_digest(path)}", "dino", notes)


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
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    if kind not in (None, "descriptor", "matcher"):
        raise ValueError(f"kind must be 'descriptor', 'matcher' or None, got {kind!r}")
    if img_size is not None and (img_size < 16 or img_size % 16):
        raise ValueError(f"--img-size must be a positive multiple of 16, got {img_size}")
    device = torch.device(device)
    if random_init:
        if arch not in ARCH_DEPTH:
            raise ValueError(f"--arch must be one of {tuple(ARCH_DEPTH)}, got {arch!r}")
        k = kind or "descriptor"
        enc = encoder_depth or (2 if arch == "vit_tiny" else 8)
        size = img_size or 224
        mc = ModelConfig(kind=k, arch=arch, img_size=size, dim=dim, attn_impl=attn_impl, ln_eps=1e-4,
                         encoder_depth=enc, freeze_patch_embed=False)
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
            torch.manual_seed(seed)
            model = build_model(mc)
        loaded = LoadedModel(model, k, size, f"random:{k}:{arch}:S{size}:d{dim}:seed{seed}", "random",
                             ["random weights: for smoke tests only"])
    else:
        if weights is None:
            raise ValueError("--weights is required unless --random-init is given")
        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"--weights: no such file: {path}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # corrupt file, pickle with code, not a torch file: name the file
            raise ValueError(f"--weights {path}: cannot load ({type(e).__name__}: {e})") from None
        fmt = checkpoint_format(obj) if fmt == "auto" else fmt
        if fmt == "ours":
            if not (isinstance(obj, dict) and isinstance(obj.get("config"), dict) and "model" in obj):
                raise ValueError(f"--weights {path}: --format ours needs a dict with 'model' and 'config'")
            loaded = _load_ours(obj, kind, img_size, attn_impl, path)
        elif fmt == "copynce":
            loaded = _load_copynce(obj, kind, img_size, attn_impl, path)
        else:
            loaded = _load_dino(obj, kind, img_size, encoder_depth, attn_impl, path)
    loaded.model.to(device).eval()
    if not isinstance(loaded.model, (CopyDescriptor, CopyMatcher)):  # build_model guarantees it; keep it true
        raise TypeError(f"unexpected model type {type(loaded.model).__name__}")
    return loaded
