"""Shared pieces of the subcommands: the error type, the common flags, model flags, small parsers.

Nothing here imports torch at module level: ``copynce-fast --help`` must not pay for it.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


class CliError(Exception):
    """A user-facing error; ``main`` prints it as ``copynce-fast <cmd>: error: <message>``."""


def one_line(e: BaseException) -> str:
    """The exception message on one line (multi-line messages are joined)."""
    text = str(e) if str(e) else type(e).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# Library parameters whose flag is not simply ``--`` + the parameter name (argparse ``dest`` on the right).
PARAM_DESTS = {"fmt": "weights_format", "kind": "index_type", "k": "topk", "directory": "index",
               "whitening": "whiten", "whiten_train": "whiten",
               "num_workers": "workers"}


def name_the_flag(message: str, parser: argparse.ArgumentParser | None) -> str:
    """The library names its parameter first (``"nprobe: must be in [1, 8], got 9"``); the user typed a flag,
    so the message names that flag (``"--nprobe: ..."``) when ``parser`` has one for the parameter."""
    if parser is not None and parser.get_default("_accepts_overrides"):  # train: "data.knn_path ..." is a flag
        m = re.match(r"(model|data|loss|optim|run)\.[a-z][a-z0-9_]*(?=[:= ]|$)", message)
        if m is not None:
            return "--" + message
    m = re.match(r"([a-z][a-z0-9_]*)(?=[:= ]|$)", message)
    if parser is None or m is None:
        return message
    for dest in (PARAM_DESTS.get(m.group(1), m.group(1)), m.group(1)):  # `knn --k` is k itself, not --topk
        for action in parser._actions:
            if action.dest == dest and action.option_strings:
                return max(action.option_strings, key=len) + message[m.end():]  # the long form: --topk, not -k
    return message


def warn(command: str, message: str) -> None:
    print(f"copynce-fast {command}: warning: {message}", file=sys.stderr)


def report_skipped(command: str, skipped, out: Path, noun: str = "images") -> None:
    """Name every skipped ``(path, reason)``: one warning line each when there are at most ``MAX_SHOWN``, else
    all of them in a skipped.txt beside ``out`` (``utils.skipped.listing_beside``) and one warning naming it
    (``noun``: what was skipped, ``"images"`` or ``"videos"``)."""
    from copynce_fast.utils.skipped import MAX_SHOWN, clean_reason, listing_beside, write_skipped

    skipped = list(skipped)
    if len(skipped) <= MAX_SHOWN:
        for path, reason in skipped:
            warn(command, f"skipped {path}: {clean_reason(reason)}")
        return
    listing = write_skipped(listing_beside(out), skipped)
    warn(command, f"skipped {len(skipped)} unusable {noun}; each is listed with its reason in {listing}")


def skipped_count(skipped, out: Path, noun: str = "") -> str:
    """The count for a command's final line: ``"4 skipped"``, or ``"25 skipped (listed in OUT/skipped.txt)"``
    when :func:`report_skipped` wrote the list; ``noun`` goes after the number (``"4 images skipped"``)."""
    from copynce_fast.utils.skipped import MAX_SHOWN, listing_beside

    n = len(skipped)
    text = f"{n} {noun + ' ' if noun else ''}skipped"
    return f"{text} (listed in {listing_beside(out)})" if n > MAX_SHOWN else text


def info(message: str) -> None:
    print(message, file=sys.stderr)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--debug`` and ``--no-progress`` on every subcommand."""
    g = parser.add_argument_group("general")
    g.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def add_subparser(subparsers, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    return subparsers.add_parser(name, help=help, description=description or help,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model_args(parser: argparse.ArgumentParser, *, dim_default: int = 512) -> None:
    """Flags that select the model: a checkpoint with its format, or random weights for smoke tests."""
    g = parser.add_argument_group("model")
    g.add_argument("--weights", type=Path, default=None,
                   help="local checkpoint: ours ({'model', 'config'}; or a training run folder / its config.json "
                        "for the checkpoint.pt there), an official CopyNCE descriptor/matcher (.pth.tar), or a DINO "
                        "ViT (.pth)")
    g.add_argument("--format", dest="weights_format", default="auto", choices=("auto", "ours", "copynce", "dino"),
                   help="checkpoint layout (default: auto-detected from the keys)")
    g.add_argument("--random-init", action="store_true", help="random weights (seeded by --seed): smoke tests only")
    g.add_argument("--config", dest="run_config", type=Path, default=None,
                   help="a training run folder or its config.json: the architecture of --random-init (instead of "
                        "--arch / --dim / --encoder-depth; input size as trained unless --img-size)")
    g.add_argument("--arch", default=None, choices=("vit_tiny", "vit_small", "vit_base"),
                   help="backbone of --random-init (default vit_small; checkpoints carry their own)")
    g.add_argument("--img-size", type=img_size, default=None,
                   help="input side S (images are resized to S×S; default: the checkpoint's, else 224)")
    g.add_argument("--dim", type=positive_int, default=None,
                   help=f"descriptor size of --random-init (default {dim_default})")
    parser.set_defaults(_dim_default=dim_default)
    g.add_argument("--encoder-depth", type=positive_int, default=None,
                   help="matcher encoder blocks for --random-init / DINO (default 8; vit_tiny 2)")
    g.add_argument("--seed", type=non_negative_int, default=0, help="seed of --random-init")
    g.add_argument("--attn-impl", default="sdpa", choices=("sdpa", "xformers", "math"), help="attention backend")
    g.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    g.add_argument("--amp", default="bf16", choices=("bf16", "none"), help="bf16 autocast on CUDA (ignored on CPU)")


def read_run_config(flag: str, path: Path):
    """The :class:`~copynce_fast.config.Config` of a training run folder or of a config.json; errors name ``flag``
    and the file."""
    import json

    from copynce_fast.config import load_json

    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CliError(f"{flag} {path}: a folder without config.json (a training run folder holds one)")
        path = path / "config.json"
    elif not path.is_file():
        raise CliError(f"{flag}: no such file: {path}")
    try:
        return load_json(path)
    except json.JSONDecodeError as e:
        raise CliError(f"{flag} {path}: not a JSON config ({e})") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise CliError(f"{flag} {path}: {one_line(e)}") from None


def _run_checkpoint(path: Path) -> Path:
    """``--weights``: a checkpoint file, or a training run folder / its config.json -> the checkpoint.pt there."""
    from copynce_fast.inference.detector import resolve_checkpoint

    try:
        return resolve_checkpoint(path)
    except ValueError as e:
        raise CliError("--weights" + str(e).removeprefix("path")) from None


def _random_from_run(args, kind: str | None, device):
    """``--random-init --config RUN``: random weights of the run's model (its architecture, size and head)."""
    from dataclasses import replace

    from copynce_fast.models.loading import random_model

    for flag, value in (("--arch", args.arch), ("--dim", args.dim), ("--encoder-depth", args.encoder_depth)):
        if value is not None:
            raise CliError(f"{flag}: the architecture comes from --config {args.run_config}; drop {flag}")
    mc = read_run_config("--config", args.run_config).model
    if kind is not None and mc.kind != kind:
        raise CliError(f"--config {args.run_config}: the run trains a {mc.kind}, a {kind} is needed here")
    mc = replace(mc, img_size=args.img_size or mc.img_size, attn_impl=args.attn_impl, freeze_patch_embed=False)
    loaded = random_model(mc, args.seed)
    loaded.model.to(device)
    return loaded


def load_model_from_args(args, kind: str | None):
    """Build the model the model flags describe (``kind``: "descriptor", "matcher" or None = either)."""
    from copynce_fast.models.loading import load_model
    from copynce_fast.utils.device import resolve_device

    if args.weights is None and not args.random_init:
        raise CliError("--config gives the architecture of --random-init; for the run's trained weights give "
                       "--weights RUN_FOLDER" if args.run_config is not None else
                       "give --weights PATH (a local checkpoint or a training run folder) or --random-init "
                       "(smoke tests)")
    if args.weights is not None and args.random_init:
        raise CliError("--weights and --random-init are mutually exclusive")
    weights = _run_checkpoint(args.weights) if args.weights is not None else None
    device = resolve_device(args.device)
    if args.random_init and args.run_config is not None:
        return _random_from_run(args, kind, device)
    return load_model(kind, weights, fmt=args.weights_format, arch=args.arch or "vit_small", img_size=args.img_size,
                      dim=args.dim or args._dim_default, encoder_depth=args.encoder_depth,
                      random_init=args.random_init, seed=args.seed, attn_impl=args.attn_impl, device=device)


def existing_file(flag: str, path: Path | None) -> Path:
    if path is None:
        raise CliError(f"{flag} is required")
    if not Path(path).exists():
        raise CliError(f"{flag}: no such file or folder: {path}")
    return Path(path)


def parse_key_values(flag: str, items: list[str] | None, allowed: dict[str, type]) -> dict:
    """``["alpha=1", "end=5"]`` -> ``{"alpha": 1.0, "end": 5}`` with the types in ``allowed``."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise CliError(f"{flag}: expected KEY=VALUE, got {item!r}")
        if key not in allowed:
            raise CliError(f"{flag}: unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}")
        try:
            out[key] = allowed[key](value)
        except ValueError:
            raise CliError(f"{flag}: {key} expects {allowed[key].__name__}, got {value!r}") from None
    return out


def _checked_int(text: str, ok, what: str) -> int:
    """``text`` as an integer that ``ok`` accepts, else argparse's error ``expected {what}, got ...``."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
    return v


def positive_int(text: str) -> int:
    return _checked_int(text, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _checked_int(text, lambda v: v >= 0, "a non-negative integer")


def int_in(low: int, high: int | None = None):
    """An argparse type: an integer in ``[low, high]`` (``high`` None = no upper bound)."""
    what = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        return _checked_int(text, lambda v: v >= low and (high is None or v <= high), what)
    parse.__name__ = "int"  # argparse names the type in its own messages
    return parse


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def img_size(text: str) -> int:
    """An input side: a positive multiple of the patch size 16."""
    return _checked_int(text, lambda v: v >= 16 and v % 16 == 0, "a positive multiple of 16")


def read_features(flag: str, path: Path):
    """Load a feature file (.npz) or shard directory, with errors that name ``flag`` and the path."""
    from copynce_fast.search.features import load_features

    from copynce_fast.utils.safe_load import REFUSED_ARRAY, refused_pickle

    path = existing_file(flag, path)
    try:
        feats = load_features(path)
    except (ValueError, OSError, KeyError) as e:
        if refused_pickle(e):
            raise CliError(f"{flag} {path}: {REFUSED_ARRAY}") from None
        raise CliError(f"{flag} {path}: not a copynce-fast feature file ({one_line(e)})") from None
    if len(feats.ids) == 0:
        raise CliError(f"{flag} {path}: holds no descriptors")
    return feats
