"""``copynce-fast compare A B``: copy score of two images and a picture of the copied region."""
from __future__ import annotations

import json
from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_model_args,
    add_subparser,
    info,
    int_in,
    load_model_from_args,
    non_negative_int,
    positive_float,
)

DESCRIPTION = """\
Score whether image A (query) is a copy of image B (reference) and draw where.

  matcher checkpoint     score = copy probability sigmoid(logit)
  descriptor checkpoint  score = cosine of the two global descriptors

The PNG shows A and B side by side (each as the S×S view the model sees, resized to --panel pixels), with a
heat overlay of 1 - the normalised entropy of each patch's affinity distribution (softmax over the other
image's patches of scale × cosine of the CopyNCE tokens: low entropy = one sharp match = likely copied), and
lines joining the strongest mutually-nearest patch pairs.

example:
  copynce-fast compare query.jpg original.jpg --weights matcher_vits_224.pth.tar --out pair.png
"""


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "compare", "copy score of two images + a picture of the copied region",
                      DESCRIPTION)
    p.add_argument("query", type=Path, help="image A (the suspected copy)")
    p.add_argument("reference", type=Path, help="image B (the original)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--scale", type=positive_float, default=16.0, help="affinity softmax scale s = 1/τ (default 16)")
    p.add_argument("--panel", type=int_in(32), default=384, help="side of each image panel in pixels (default 384)")
    p.add_argument("--lines", type=non_negative_int, default=16, help="correspondence lines drawn (default 16)")
    p.add_argument("--kind", default=None, choices=("descriptor", "matcher"),
                   help="model kind for --random-init (checkpoints know their own; default descriptor)")
    p.add_argument("--json", type=Path, default=None, help="also write score, entropy maps and matches as JSON")
    add_model_args(p)
    add_common_args(p)


def run(args) -> int:
    from copynce_fast.data.decode import BadImage
    from copynce_fast.inference.detector import CopyDetector
    from copynce_fast.inference.images import decode_image
    from copynce_fast.viz.compare import render_comparison

    images = []
    for flag, path in (("query", args.query), ("reference", args.reference)):
        if not path.is_file():
            raise CliError(f"{flag}: no such file: {path}")
        try:
            images.append(decode_image(path))
        except BadImage as e:
            raise CliError(f"{flag} {path}: cannot decode ({e})") from None
    if args.kind is not None and not args.random_init:
        raise CliError("--kind only applies to --random-init (a checkpoint holds its own kind)")
    loaded = load_model_from_args(args, args.kind)
    for note in loaded.notes:
        info(f"note: {note}")
    result = CopyDetector(loaded, amp=args.amp).comparison(images[0], images[1], scale=args.scale,
                                                           top=max(args.lines, 1))
    picture = render_comparison(images[0], images[1], result, panel=args.panel, lines=args.lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, format="PNG")
    label = "copy probability" if result.kind == "matcher" else "descriptor cosine"
    print(f"{label}: {result.score:.6f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "score": result.score, "kind": result.kind, "model": loaded.name,
            "query": str(args.query), "reference": str(args.reference),
            "query_entropy": result.query_entropy.round(6).tolist(),
            "reference_entropy": result.reference_entropy.round(6).tolist(),
            "matches": [{"query_patch": i, "reference_patch": j, "cosine": c} for i, j, c in result.matches],
        }, indent=1) + "\n")
    info(f"picture -> {args.out} ({picture.width}×{picture.height})")
    return 0
