"""Typed run configuration: frozen dataclasses, presets as Python functions, typed CLI overrides.

    cfg = get_preset("descriptor_vits_224")
    cfg = apply_overrides(cfg, ["--loss.copynce_weight=0", "--optim.epochs=5"])
    save_json(cfg, "run/config.json")

Every field is validated when its section is built (presets, overrides, ``from_dict``, ``dataclasses.replace``):
types are normalised (ints in float fields become floats, lists become tuples) and each number is checked against
its range in ``FIELD_RULES``; errors are ``ValueError("--section.field: must be <range>, got <value>")``.

Derived values (the scaled learning rate, steps per epoch) are computed by named functions at start-up and
logged; the config itself is never mutated.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from copynce_fast.utils.jsonio import write_json

__all__ = ["ModelConfig", "DataConfig", "LossConfig", "OptimConfig", "RunConfig", "Config", "PRESETS",
           "FIELD_RULES", "ARCH_DEPTH", "get_preset", "apply_overrides", "to_dict", "from_dict", "save_json",
           "load_json", "scaled_lr", "parse_overrides"]

ARCH_DEPTH = {"vit_tiny": 4, "vit_small": 12, "vit_base": 12}  # transformer blocks per backbone


class _Validated:
    """Base of the config sections: ``__post_init__`` validates every field (see ``_validate_section``)."""

    def __post_init__(self):
        _validate_section(self)


@dataclass(frozen=True)
class ModelConfig(_Validated):
    kind: Literal["descriptor", "matcher"] = "descriptor"  # global descriptor or pairwise matcher
    arch: Literal["vit_tiny", "vit_small", "vit_base"] = "vit_small"  # backbone size
    img_size: int = 224  # input side (divisible by the patch size 16)
    dim: int = 512  # descriptor dimension
    pool: Literal["cls", "gem"] = "cls"  # descriptor pooling
    attn_impl: Literal["sdpa", "xformers", "math"] = "sdpa"  # attention backend
    ln_eps: float = 1e-6  # LayerNorm eps (the reference uses 1e-4)
    encoder_depth: int = 8  # matcher: shared encoder blocks (the rest are fusion blocks)
    freeze_patch_embed: bool = True  # the descriptor recipe freezes the patch embedding
    pretrained: str = ""  # local DINO or CopyNCE checkpoint ("" = random init)


@dataclass(frozen=True)
class DataConfig(_Validated):
    source: str = "builtin"  # folder / file list / DISC21 root, or "builtin" (bundled + synthetic images)
    synthetic_images: int = 0  # extra procedural originals added to the builtin set
    preset: Literal["descriptor", "matcher"] = "descriptor"  # augmentation preset (REFERENCE.md §2)
    backend: Literal["auto", "dali", "torch"] = "auto"  # auto = DALI on GPU when installed, else torch
    batch_size: int = 96  # items per rank, >= 2 (the head's BatchNorm); the hard-negative collate doubles it to pairs
    num_workers: int = 8  # loader workers / DALI threads per rank
    positive_rate: float = 1.0  # matcher: fraction of positive pairs
    hard_negatives: bool = True  # pair each anchor with a k-NN neighbour in the batch (descriptor)
    knn_path: str = ""  # k-NN table of the training set (.npy [N, k] int, from `copynce-fast knn`); "" = none
    knn_k: int = 7  # neighbours ranked 1..k are candidate hard negatives
    track_occluders: bool = True  # mark text/emoji/strokes/erasing pixels invalid (False = reference behaviour)
    copynce_on_negatives: bool = False  # count negative pairs in the CopyNCE mean (True = reference behaviour)
    pairs_csv: str = ""  # supervised fine-tuning: CSV query_path,reference_path of known copies (no augmentation)
    sibling_rate: float = 0.0  # share of batch slots holding sibling pairs: 2 disjoint parts of one image (0 = off)


@dataclass(frozen=True)
class LossConfig(_Validated):
    infonce_weight: float = 1.0  # descriptor: InfoNCE over the batch
    infonce_log_scale: float = 3.2  # initial learnable log-scale (exp(3.2) ≈ 24.5)
    koleo_weight: float = 5.0  # descriptor: KoLeo spreading regulariser
    copynce_weight: float = 5.0  # CopyNCE (0 disables it)
    copynce_scale: float = 16.0  # s = 1/τ
    copynce_gamma: float = 3.0  # overlap sharpening γ
    copynce_lamb: float = 0.5  # λ: weight of the query->reference direction
    bce_weight: float = 1.0  # matcher: copy / not-copy BCE
    asl_weight: float = 0.0  # descriptor: asymmetric-similarity (ASL) term, norm ratio + asymmetric InfoNCE; 0 = off
    asl_gamma: float = 1.0  # ASL score penalty per unit log norm ratio (query norm above the reference's)
    gather: bool = True  # gather descriptors across ranks for InfoNCE / KoLeo
    impl: Literal["auto", "torch", "triton"] = "auto"  # kernel implementation


@dataclass(frozen=True)
class OptimConfig(_Validated):
    base_lr: float = 6e-4  # lr = base_lr * sqrt(lr_scaling_batch * world / 1024)
    lr_scaling_batch: int = 0  # batch of the scaling rule; 0 = data.batch_size (follows the batch); > 0 pins it
    min_lr: float = 2e-6  # cosine floor
    weight_decay: float = 0.04  # AdamW decay (none on norms, biases, pos/cls tokens, log-scale)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    epochs: int = 30  # training epochs
    warmup_epochs: float = 1.0  # linear warm-up from 1% of lr
    clip_grad: float = 3.0  # global gradient-norm clip (0 = off)
    steps_per_epoch: int = 0  # 0 = len(dataset) // (batch_size * world)
    total_steps: int = 0  # the run's length in steps, across epochs (0 = epochs x steps_per_epoch; else epochs unused)


@dataclass(frozen=True)
class RunConfig(_Validated):
    out_dir: str = "runs/default"  # checkpoints, logs, config.json, plots
    seed: int = 0  # base seed (rank-offset)
    device: str = "auto"  # auto | cpu | cuda
    amp: Literal["bf16", "none"] = "bf16"  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = True  # torch.compile the model on CUDA
    log_every: int = 20  # steps between logged (synchronising) loss reads
    ckpt_every: int = 500  # steps between checkpoints (also at every epoch end)
    max_steps: int = 0  # stop after this many steps without changing the schedule (0 = run all epochs)
    resume: bool = True  # resume from out_dir/checkpoint.pt when present
    eval_after: bool = True  # evaluate on held-out copies after training
    progress: bool = True  # tqdm progress bar


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if not isinstance(getattr(self, f.name), _hints(Config)[f.name]):
                raise ValueError(f"config.{f.name}: expected a {_hints(Config)[f.name].__name__}, "
                                 f"got {type(getattr(self, f.name)).__name__}")


# --- validation: one rule per number, checked when a section is built ----------------------------------------------

@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: ``[low, high]`` with open ends where said, finite, optionally a multiple."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    multiple_of: int | None = None

    def __contains__(self, v) -> bool:
        if not math.isfinite(v):
            return False
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        if self.high is not None and (v >= self.high if self.high_open else v > self.high):
            return False
        return self.multiple_of is None or v % self.multiple_of == 0

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {self.high:g}"
        else:
            text = "finite"
        return f"a multiple of {self.multiple_of} and {text}" if self.multiple_of else text


_POSITIVE, _AT_LEAST_1, _NON_NEGATIVE, _UNIT = Range(0, low_open=True), Range(1), Range(0), Range(0, 1)

# section -> field -> Range (a tuple field: the range of each element). Every int / float / tuple field has one
# (tests/test_config_validation.py checks it); str, bool and Literal fields are checked by type.
FIELD_RULES: dict[str, dict[str, Range]] = {
    "model": {"img_size": Range(16, multiple_of=16), "dim": _AT_LEAST_1, "ln_eps": _POSITIVE,
              "encoder_depth": _AT_LEAST_1},
    "data": {"synthetic_images": _NON_NEGATIVE, "batch_size": Range(2), "num_workers": _NON_NEGATIVE,
             "positive_rate": _UNIT, "knn_k": _AT_LEAST_1, "sibling_rate": _UNIT},
    "loss": {"infonce_weight": _NON_NEGATIVE, "infonce_log_scale": Range(), "koleo_weight": _NON_NEGATIVE,
             "copynce_weight": _NON_NEGATIVE, "copynce_scale": _POSITIVE, "copynce_gamma": _POSITIVE,
             "copynce_lamb": _UNIT, "bce_weight": _NON_NEGATIVE, "asl_weight": _NON_NEGATIVE,
             "asl_gamma": _NON_NEGATIVE},
    "optim": {"base_lr": _POSITIVE, "lr_scaling_batch": _NON_NEGATIVE, "min_lr": _NON_NEGATIVE,
              "weight_decay": _NON_NEGATIVE, "betas": Range(0, 1, high_open=True), "epochs": _AT_LEAST_1,
              "warmup_epochs": _NON_NEGATIVE, "clip_grad": _NON_NEGATIVE, "steps_per_epoch": _NON_NEGATIVE,
              "total_steps": _NON_NEGATIVE},
    "run": {"seed": _NON_NEGATIVE, "log_every": _AT_LEAST_1, "ckpt_every": _AT_LEAST_1, "max_steps": _NON_NEGATIVE},
}
_NON_EMPTY = {("data", "source"), ("run", "out_dir")}
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _section_name(obj) -> str:
    return {ModelConfig: "model", DataConfig: "data", LossConfig: "loss", OptimConfig: "optim",
            RunConfig: "run"}[type(obj)]


def _checked(value, tp, flag: str):
    """``value`` as type ``tp`` (ints accepted as floats, any sequence as a tuple), or ValueError naming ``flag``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{flag}: must be one of {', '.join(map(str, typing.get_args(tp)))}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != len(args):
            raise ValueError(f"{flag}: expected {len(args)} values, got {value!r}")
        return tuple(_checked(v, t, flag) for v, t in zip(value, args))
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{flag}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{flag}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{flag}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{flag}: expected a string, got {value!r}")
        return value
    return value


def _validate_section(obj) -> None:
    """Check and normalise every field of a config section in place (it is frozen: ``object.__setattr__``)."""
    section = _section_name(obj)
    hints = _hints(type(obj))
    rules = FIELD_RULES[section]
    for f in dataclasses.fields(obj):
        flag = f"--{section}.{f.name}"
        value = _checked(getattr(obj, f.name), hints[f.name], flag)
        object.__setattr__(obj, f.name, value)
        rule = rules.get(f.name)
        if rule is not None:
            if isinstance(value, tuple):
                if not all(v in rule for v in value):
                    raise ValueError(f"{flag}: each must be {rule}, got {value!r}")
            elif value not in rule:
                raise ValueError(f"{flag}: must be {rule}, got {value!r}")
        if (section, f.name) in _NON_EMPTY and not value:
            raise ValueError(f"{flag}: must not be empty")
    if section == "run" and not _DEVICE.fullmatch(obj.device):
        raise ValueError(f"--run.device: must be auto, cpu, cuda or cuda:N, got {obj.device!r}")
    if section == "model" and obj.kind == "matcher" and not obj.encoder_depth < ARCH_DEPTH[obj.arch]:
        raise ValueError(f"--model.encoder_depth: must be in [1, {ARCH_DEPTH[obj.arch] - 1}] for a {obj.arch} "
                         f"matcher (the remaining blocks are fusion blocks), got {obj.encoder_depth}")


# --- presets (REFERENCE.md §3.6, §4.5, §6) ------------------------------------------------------------------------

def descriptor_vits_224() -> Config:
    """The official descriptor recipe: ViT-S/16 at 224, InfoNCE + CopyNCE(5, γ3) + KoLeo(5), 30 epochs."""
    # the learning rate scales with data.batch_size, the items per rank (96: 5.2e-4 on 8 GPUs, as the reference,
    # which scales by items, not by the 192 pairs of its hard-negative batches)
    return Config(model=ModelConfig(ln_eps=1e-4), run=RunConfig(out_dir="runs/descriptor_vits_224"))


def descriptor_vitb_224() -> Config:
    c = descriptor_vits_224()
    return replace(c, model=replace(c.model, arch="vit_base"), run=replace(c.run, out_dir="runs/descriptor_vitb_224"))


def descriptor_baseline() -> Config:
    """InfoNCE + KoLeo only: the ablation without CopyNCE."""
    c = descriptor_vits_224()
    return replace(c, loss=replace(c.loss, copynce_weight=0.0), run=replace(c.run, out_dir="runs/descriptor_baseline"))


def descriptor_finetune() -> Config:
    """Fine-tuning on known copies: add --data.pairs_csv (REFERENCE.md §6.1); InfoNCE + KoLeo, lr 1e-4."""
    c = descriptor_vits_224()
    return replace(c, loss=replace(c.loss, copynce_weight=0.0), optim=replace(c.optim, base_lr=1e-4),
                   run=replace(c.run, out_dir="runs/descriptor_finetune"))


def matcher_vits_224() -> Config:
    """The official matcher: enc-8 + fusion-4, BCE + CopyNCE(3, γ1), 30% positives, batch 32."""
    return Config(
        model=ModelConfig(kind="matcher", ln_eps=1e-4, freeze_patch_embed=False),
        data=DataConfig(preset="matcher", batch_size=32, positive_rate=0.3, hard_negatives=True, knn_k=127),
        loss=LossConfig(infonce_weight=0.0, koleo_weight=0.0, copynce_weight=3.0, copynce_gamma=1.0),
        optim=OptimConfig(base_lr=1e-3),
        run=RunConfig(out_dir="runs/matcher_vits_224"))


def matcher_vits_336() -> Config:
    c = matcher_vits_224()
    return replace(c, model=replace(c.model, img_size=336), run=replace(c.run, out_dir="runs/matcher_vits_336"))


def matcher_finetune() -> Config:
    """Matcher fine-tuning: BCE only, lr 2e-4, 20 epochs; add --data.pairs_csv for known copies."""
    c = matcher_vits_224()
    return replace(c, loss=replace(c.loss, copynce_weight=0.0), optim=replace(c.optim, base_lr=2e-4, epochs=20),
                   run=replace(c.run, out_dir="runs/matcher_finetune"))


def demo() -> Config:
    """A tiny descriptor on the bundled images that trains on a 2-core CPU in a few minutes."""
    return Config(
        model=ModelConfig(arch="vit_tiny", img_size=64, dim=64, freeze_patch_embed=False),
        data=DataConfig(synthetic_images=51, batch_size=16, num_workers=0, hard_negatives=False),
        loss=LossConfig(copynce_weight=1.0),
        # lr 2e-3 at its batch of 16 (0.016 * sqrt(16 / 1024)), scaled like every preset when the batch changes
        optim=OptimConfig(base_lr=0.016, epochs=24, warmup_epochs=1.0, weight_decay=0.02),
        run=RunConfig(out_dir="runs/demo", log_every=10, ckpt_every=50, compile=False))


PRESETS = {f.__name__: f for f in (descriptor_vits_224, descriptor_vitb_224, descriptor_baseline, descriptor_finetune,
                                   matcher_vits_224, matcher_vits_336, matcher_finetune, demo)}


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


# --- overrides and serialisation ---------------------------------------------------------------------------------

def _coerce(value: str, tp, key: str, current=None):
    """Parse the text of an override as type ``tp`` (ranges are checked when the section is built)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"--{key}: must be one of {', '.join(map(str, typing.get_args(tp)))}, got {value!r}")
        return value
    if origin is tuple:
        parts = [p.strip() for p in value.strip("()[] ").split(",")]
        args = typing.get_args(tp)
        if len(parts) != len(args):
            example = ",".join(f"{v:g}" for v in current) if current is not None else ",".join(["x"] * len(args))
            raise ValueError(f"--{key}: expected {len(args)} values (e.g. {example}), got {value!r}")
        return tuple(_coerce(p, t, key) for p, t in zip(parts, args))
    if tp is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{key}: expected a boolean, got {value!r}")
    try:
        return tp(value)
    except (TypeError, ValueError):
        raise ValueError(f"--{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}") from None


def _hints(cls) -> dict:
    """Field name -> type of a dataclass (fields only)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_overrides(overrides: list[str]) -> dict[str, dict[str, str]]:
    """``["--optim.epochs=5", "run.seed=1"]`` -> ``{"optim": {"epochs": "5"}, "run": {"seed": "1"}}`` (names
    checked, values still text)."""
    out: dict[str, dict[str, str]] = {}
    sections = _hints(Config)
    for item in overrides:
        key, sep, value = item.lstrip("-").partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"override: expected --section.field=value, got {item!r}")
        if section not in sections:
            raise ValueError(f"--{key}: unknown section {section!r}; sections are {', '.join(sections)}")
        hints = _hints(sections[section])
        if name not in hints:
            raise ValueError(f"--{key}: unknown field; {section} has {', '.join(hints)}")
        out.setdefault(section, {})[name] = value
    return out


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``--section.field=value`` (or ``section.field=value``) overrides with type checks; each section is
    rebuilt (and so validated) once, with all its overrides."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for section, values in parse_overrides(overrides).items():
        hints = _hints(type(sections[section]))
        typed = {name: _coerce(v, hints[name], f"{section}.{name}", getattr(sections[section], name))
                 for name, v in values.items()}
        sections[section] = replace(sections[section], **typed)
    return Config(**sections)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> Config:
    """Inverse of ``to_dict``; unknown keys are an error naming them."""
    kwargs = {}
    for f in dataclasses.fields(Config):
        cls = _hints(Config)[f.name]
        sub = dict(d.get(f.name, {}))
        unknown = set(sub) - set(_hints(cls))
        if unknown:
            raise ValueError(f"config.{f.name}: unknown keys {sorted(unknown)}")
        kwargs[f.name] = cls(**sub)  # validated (and lists turned into tuples) by the section
    return Config(**kwargs)


def save_json(cfg: Config, path) -> None:
    """Write ``cfg`` as JSON, sections in declaration order (the package's one JSON writer, utils/jsonio)."""
    write_json(path, to_dict(cfg), sort_keys=False)


def load_json(path) -> Config:
    with open(path) as f:
        return from_dict(json.load(f))


def scaled_lr(cfg: Config, world_size: int) -> float:
    """The learning rate after the square-root batch scaling rule (REFERENCE.md §6); logged at start-up."""
    batch = cfg.optim.lr_scaling_batch or cfg.data.batch_size
    return cfg.optim.base_lr * math.sqrt(batch * world_size / 1024)
