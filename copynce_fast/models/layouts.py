"""Key layouts of foreign checkpoints: DINO and official CopyNCE weights into our ViT / descriptor / matcher.

The tables of this module say how other code bases name their keys; :mod:`copynce_fast.models.loading` is
the one entry point that detects a checkpoint's format and builds / loads a model with them.

Files are read with ``torch.load(path, map_location="cpu", weights_only=True)``; nothing is downloaded.
Loading is strict, unlike the reference (which loads with ``strict=False`` and silently trains from random init
when a path is wrong): every source key must map to a model key or be on an explicit ignore list, every model
key the layout provides must be present, and shapes must match (except ``pos_embed``, resized bicubically to
the model's patch grid). Any violation is a ``ValueError`` naming the keys.

Key layouts (source → our module names). Our modules use the timm/DINO names, so most rules are renames of a
prefix. The tables below are the single place to fix a layout.

DINO (``dino_deitsmall16_pretrain.pth``, ``dino_vitbase16_pretrain.pth``; also full training checkpoints, whose
``teacher`` / ``student`` dicts carry ``backbone.`` / ``head.`` prefixes): a flat timm state dict
``cls_token, pos_embed, patch_embed.proj.*, blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*,
norm.*``. Placement:
    VisionTransformer: identity (``norm.*`` ignored when the model has no final norm).
    CopyDescriptor:    ``backbone.`` + key (all blocks; ``norm.*`` ignored unless ``use_final_norm``).
    CopyMatcher:       embeddings and ``blocks.{i<E}`` → ``encoder.*``; ``blocks.{i>=E}`` → ``fusion.blocks.{i-E}``;
                       ``norm.*`` → ``fusion.norm.*`` (the reference's weight surgery, REFERENCE §5.3).
                       Fresh: ``fusion.cls_token`` and the heads.

Official CopyNCE (``descriptor_vits_224.pth.tar``, ``matcher_vits_224.pth.tar``): ``{"model": state_dict,
"epoch": int}`` as saved by the reference ``Checkpointer`` from the un-wrapped model. Layout learned from the
public reference source (eddielyc/CopyNCE: ``core/models/{copy_detector,fusion,heads,vision_transformer}.py``,
``core/utils/serialization.py``, ``core/loss/infonce_loss.py``, ``core/configs/*_default_config.yaml``); it has
not been checked against the released files themselves:
    descriptor: ``encoder.*`` (ViT, no final norm), ``heads.linear_head.fc1.weight`` [dim, C],
                ``heads.linear_head.bn.{weight,bias,running_mean,running_var,num_batches_tracked}``,
                ``infonce_log_scale`` (scalar, registered on the model by the InfoNCE loss; returned in extras).
    matcher:    ``encoder.*`` (8 blocks, no norm), ``fusion.{cls_token,blocks.N.*,norm.*}``,
                ``heads.cls_head.norm.*``, ``heads.cls_head.classifier.{weight [1,C], bias [1]}``,
                ``heads.fusion_head.norm.*`` (both heads have depth 0 and no CLS of their own).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from copynce_fast.models.descriptor import CopyDescriptor
from copynce_fast.models.matcher import CopyMatcher
from copynce_fast.models.vit import VisionTransformer, interpolate_pos_embed
from copynce_fast.utils.safe_load import load_tensors

# A rule: (regex on the source key, target). The target is a ``re`` template for the new key, None to drop the
# key on purpose (it is reported in LoadResult.ignored), or "extra:<name>" to return the tensor in extras.
Rule = tuple[str, str | None]

DINO_RULES: list[Rule] = [
    (r"^(cls_token|pos_embed)$", r"\1"),
    (r"^patch_embed\.proj\.(weight|bias)$", r"patch_embed.proj.\1"),
    (r"^blocks\.(\d+)\.(norm1|norm2)\.(weight|bias)$", r"blocks.\1.\2.\3"),
    (r"^blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$", r"blocks.\1.attn.\2.\3"),
    (r"^blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$", r"blocks.\1.mlp.\2.\3"),
    (r"^norm\.(weight|bias)$", r"norm.\1"),
    (r"^mask_token$", None),  # present in some DINO/iBOT exports; masked-image modelling only
    (r"^head\..+$", None),  # DINO projection head of full training checkpoints
]

COPYNCE_DESCRIPTOR_RULES: list[Rule] = [
    (r"^encoder\.(.+)$", r"backbone.\1"),
    (r"^heads\.linear_head\.fc1\.weight$", "fc.weight"),
    (r"^heads\.linear_head\.bn\.(weight|bias|running_mean|running_var|num_batches_tracked)$", r"bn.\1"),
    (r"^infonce_log_scale$", "extra:infonce_log_scale"),
    (r"^fusion\.norm\.(weight|bias)$", None),  # DINO norm left over by the enc-12 weight surgery; never used
]

COPYNCE_MATCHER_RULES: list[Rule] = [
    (r"^encoder\.(.+)$", r"encoder.\1"),
    (r"^fusion\.(cls_token|blocks\..+|norm\.weight|norm\.bias)$", r"fusion.\1"),
    (r"^heads\.cls_head\.norm\.(weight|bias)$", r"cls_head.norm.\1"),
    (r"^heads\.cls_head\.classifier\.(weight|bias)$", r"cls_head.fc.\1"),
    (r"^heads\.fusion_head\.norm\.(weight|bias)$", r"fusion_head.norm.\1"),
]

_WRAPPER_KEYS = ("model", "state_dict", "teacher", "student")  # first found wins; DINO: teacher before student
_STRIP_PREFIXES = ("module.", "backbone.", "_orig_mod.")  # DDP, DINO MultiCropWrapper, torch.compile


@dataclass
class LoadResult:
    """What a load did. ``loaded``/``fresh`` are model keys; ``ignored`` are source keys dropped on purpose."""

    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)  # model keys this layout does not provide (left at init)
    ignored: list[str] = field(default_factory=list)
    interpolated: list[str] = field(default_factory=list)  # pos_embed keys resized to the model's grid
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. "epoch", "infonce_log_scale"


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Find the flat state dict in a checkpoint object and strip ``module.``/``backbone.``/``_orig_mod.``.

    Returns ``(state_dict, meta)``; ``meta`` holds the non-tensor scalars next to the wrapped dict (``epoch``).

    Raises:
        ValueError: no flat ``{str: Tensor}`` dict at the top level or under "model" / "state_dict" /
            "teacher" / "student".
    """
    meta: dict[str, Any] = {}
    if not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise ValueError(f"checkpoint is a {type(obj).__name__}, expected a dict")
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and _is_state_dict(obj[k])), None)
        if inner is None:
            raise ValueError(f"no state dict in checkpoint: top-level keys {sorted(map(str, obj))[:20]}, "
                             f"expected a flat tensor dict or one under {_WRAPPER_KEYS}")
        meta = {k: v for k, v in obj.items() if isinstance(v, (int, float, str))}
        obj = inner
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        stripped = True
        while stripped:
            stripped = False
            for p in _STRIP_PREFIXES:
                if key.startswith(p):
                    key, stripped = key[len(p):], True
        state[key] = value
    return state, meta


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``torch.load(path, map_location="cpu", weights_only=True)`` then :func:`unwrap_state_dict`."""
    if not os.path.isfile(path):
        raise ValueError(f"path: no such checkpoint file {os.fspath(path)!r}")
    return unwrap_state_dict(load_tensors(path, "path"))  # a pickle with objects is refused in our words


def _source(path_or_state) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if isinstance(path_or_state, Mapping):
        return unwrap_state_dict(path_or_state)
    return read_checkpoint(path_or_state)


def _apply_rules(state: dict[str, Tensor], rules: list[Rule], result: LoadResult,
                 layout: str) -> dict[str, tuple[str, Tensor]]:
    """Rename source keys by the first matching rule: ``{new_key: (source_key, tensor)}``."""
    mapped: dict[str, tuple[str, Tensor]] = {}
    unknown = []
    compiled = [(re.compile(p), t) for p, t in rules]
    for key, value in state.items():
        for pattern, target in compiled:
            m = pattern.match(key)
            if m is None:
                continue
            if target is None:
                result.ignored.append(key)
            elif target.startswith("extra:"):
                result.extras[target[len("extra:"):]] = value
            else:
                mapped[m.expand(target)] = (key, value)
            break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unexpected key(s) for the {layout} layout: {unknown}")
    return mapped


def _assign(model: nn.Module, mapped: dict[str, tuple[str, Tensor]], required_prefixes: tuple[str, ...],
            result: LoadResult, layout: str) -> LoadResult:
    """Check names and shapes, resize pos_embed, then copy into ``model``."""
    target = model.state_dict()
    unexpected = [f"{src} -> {dst}" for dst, (src, _) in mapped.items() if dst not in target]
    if unexpected:
        raise ValueError(f"unexpected key(s) for this model ({layout} layout): {unexpected}")
    missing = [k for k in target if k.startswith(required_prefixes) and k not in mapped]
    if missing:
        raise ValueError(f"missing key(s) in the {layout} checkpoint: {missing}")
    new_state: dict[str, Tensor] = {}
    bad_shapes = []
    for dst, (src, value) in mapped.items():
        want = target[dst].shape
        if dst.endswith("pos_embed") and value.shape != want and value.dim() == 3 and value.shape[2] == want[2]:
            owner = model.get_submodule(dst[: -len("pos_embed")].rstrip("."))
            value = interpolate_pos_embed(value, owner.grid_size)
            result.interpolated.append(dst)
        if value.shape != want:
            bad_shapes.append(f"{src}: checkpoint {tuple(value.shape)} vs model {dst} {tuple(want)}")
            continue
        new_state[dst] = value
    if bad_shapes:
        raise ValueError(f"shape mismatch for key(s): {bad_shapes}")
    model.load_state_dict(new_state, strict=False)  # names and shapes already checked; strict=False for `fresh`
    result.loaded = sorted(new_state)
    result.fresh = sorted(k for k in target if k not in new_state)
    return result


def _place_dino(model: nn.Module, vit_keys: dict[str, tuple[str, Tensor]],
                result: LoadResult) -> tuple[dict[str, tuple[str, Tensor]], tuple[str, ...]]:
    """Move DINO (= our ViT) names to where ``model`` keeps them; returns the map and the required prefixes."""
    def drop_norm(has_norm: bool) -> None:
        if not has_norm:
            for k in [k for k in vit_keys if k.startswith("norm.")]:
                result.ignored.append(vit_keys.pop(k)[0])

    if isinstance(model, VisionTransformer):
        drop_norm(model.norm is not None)
        return vit_keys, ("",)
    if isinstance(model, CopyDescriptor):
        drop_norm(model.backbone.norm is not None)
        return {f"backbone.{k}": v for k, v in vit_keys.items()}, ("backbone.",)
    if isinstance(model, CopyMatcher):
        n_enc = len(model.encoder.blocks)
        placed = {}
        for k, v in vit_keys.items():
            m = re.match(r"^blocks\.(\d+)\.(.+)$", k)
            if m is None:
                placed[f"fusion.{k}" if k.startswith("norm.") else f"encoder.{k}"] = v
            elif int(m.group(1)) < n_enc:
                placed[f"encoder.{k}"] = v
            else:
                placed[f"fusion.blocks.{int(m.group(1)) - n_enc}.{m.group(2)}"] = v
        return placed, ("encoder.", "fusion.blocks.", "fusion.norm.")
    raise ValueError(f"model must be a VisionTransformer, CopyDescriptor or CopyMatcher, got {type(model).__name__}")


def load_dino_checkpoint(model: nn.Module, path_or_state: str | os.PathLike | Mapping) -> LoadResult:
    """Load public DINO ViT weights into a :class:`VisionTransformer`, :class:`CopyDescriptor` or :class:`CopyMatcher`.

    Args:
        model: target; its depth must equal the checkpoint's (matcher: encoder + fusion blocks).
        path_or_state: a local file or an already loaded checkpoint object.

    Returns:
        :class:`LoadResult` (``fresh`` lists what DINO does not provide: heads, fusion CLS).

    Raises:
        ValueError: unknown / missing / mis-shaped keys (named), or an unsupported model type.
    """
    state, meta = _source(path_or_state)
    result = LoadResult(extras=dict(meta))
    vit_keys = _apply_rules(state, DINO_RULES, result, "DINO")
    placed, required = _place_dino(model, vit_keys, result)
    return _assign(model, placed, required, result, "DINO")


def load_copynce_checkpoint(model: nn.Module, path_or_state: str | os.PathLike | Mapping) -> LoadResult:
    """Load an official CopyNCE checkpoint (``descriptor_vits_224.pth.tar`` / ``matcher_vits_224.pth.tar``).

    Every model key must be provided (no fresh parameters). ``infonce_log_scale`` and ``epoch`` come back in
    ``LoadResult.extras``. The reference models use LayerNorm eps 1e-4: build with the default builders.
    For the reference's weight-surgery files (``dino_vits16_enc-*.pth``) load the original DINO file with
    :func:`load_dino_checkpoint` instead.

    Raises:
        ValueError: unknown / missing / mis-shaped keys (named), or an unsupported model type.
    """
    state, meta = _source(path_or_state)
    result = LoadResult(extras=dict(meta))
    if isinstance(model, CopyDescriptor):
        rules, layout = COPYNCE_DESCRIPTOR_RULES, "CopyNCE descriptor"
    elif isinstance(model, CopyMatcher):
        rules, layout = COPYNCE_MATCHER_RULES, "CopyNCE matcher"
    else:
        raise ValueError(f"model must be a CopyDescriptor or CopyMatcher, got {type(model).__name__}")
    mapped = _apply_rules(state, rules, result, layout)
    return _assign(model, mapped, ("",), result, layout)
