"""``copynce-fast train``: train a descriptor or matcher from a preset with typed overrides."""
from __future__ import annotations

from copynce_fast.cli._common import add_common_args, add_subparser, info, read_run_config

EPILOG = """examples:
  copynce-fast train --preset demo                        # tiny descriptor on the bundled images (CPU, minutes)
  copynce-fast train --preset descriptor_vits_224 --data.source /data/DISC21/training_images \\
      --model.pretrained dino_deitsmall16_pretrain.pth --loss.copynce_weight 5
  torchrun --nproc-per-node 8 -m copynce_fast.cli train --preset matcher_vits_224 --data.source disc21:/data/DISC21

overrides: --<section>.<field>=<value> for any field of copynce_fast/config.py (model, data, loss, optim, run);
a run resumes from <run.out_dir>/checkpoint.pt when it exists (--run.resume=false to start over)."""


def add_parser(subparsers) -> None:
    from copynce_fast.config import PRESETS
    p = add_subparser(subparsers, "train", "train a descriptor or matcher (presets + typed overrides)")
    p.epilog = EPILOG
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="starting configuration (default: demo)")
    p.add_argument("--config", default=None,
                   help="a config.json of an earlier run (or its run folder) instead of a preset")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    add_common_args(p)
    p.set_defaults(_accepts_overrides=True)


def _pairs(tokens: list[str]) -> list[str]:
    """Accept both ``--a.b=v`` and ``--a.b v``."""
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if "=" not in tok and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            tok, i = f"{tok}={tokens[i + 1]}", i + 1
        out.append(tok)
        i += 1
    return out


def run(args) -> int:
    import json

    from copynce_fast.config import apply_overrides, get_preset, parse_overrides, to_dict
    from copynce_fast.train import train
    from copynce_fast.train.run_config import adapt_to_run

    cfg = read_run_config("--config", args.config) if args.config else get_preset(args.preset)
    overrides = _pairs(list(args.overrides))
    cfg = apply_overrides(cfg, overrides)
    pinned = {f"{section}.{name}" for section, names in parse_overrides(overrides).items() for name in names}
    cfg, notes = adapt_to_run(cfg, pinned)  # e.g. the fine-tuning recipe used from scratch
    for note in notes:
        info(f"copynce-fast train: {note}")
    if not args.progress:
        from dataclasses import replace
        cfg = replace(cfg, run=replace(cfg.run, progress=False))
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    result = train(cfg)
    listing = f" (listed in {result.out_dir / 'skipped.txt'})" if result.skipped else ""
    print(f"done: {result.steps} steps; {len(result.skipped)} images skipped{listing}; checkpoint "
          f"{result.checkpoint}; logs {result.out_dir / 'log.jsonl'}")
    return 0
