"""``copynce-fast export``: TorchScript or ONNX of a descriptor checkpoint."""
from __future__ import annotations

from pathlib import Path

from copynce_fast.cli._common import (
    CliError,
    add_common_args,
    add_model_args,
    add_subparser,
    info,
    int_in,
    load_model_from_args,
)

DESCRIPTION = """\
Export a descriptor as a standalone inference graph: images [B, 3, S, S] float32 (normalised with the
ImageNet mean/std) -> feat [B, dim] float32 (unit L2 norm). Batch size is dynamic, the image size fixed.

  torchscript  torch.jit.load(path)(images)
  onnx         input 'images', output 'feat' (attention exported as MatMul/Softmax)

example:
  copynce-fast export --weights descriptor_vits_224.pth.tar --to onnx --out descriptor.onnx
"""


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "export", "export a descriptor to TorchScript or ONNX", DESCRIPTION)
    p.add_argument("--to", dest="target", required=True, choices=("torchscript", "onnx"), help="export format")
    p.add_argument("--out", type=Path, required=True, help="output file (.pt for TorchScript, .onnx)")
    # torch's TorchScript-based ONNX exporter goes up to opset 20; GELU's Erf needs 9
    p.add_argument("--opset", type=int_in(9, 20), default=17, help="ONNX opset, 9-20 (default 17)")
    add_model_args(p)
    add_common_args(p)


def run(args) -> int:
    from copynce_fast.models import export_onnx, export_torchscript

    args.device = "cpu"  # exports are CPU fp32 graphs
    loaded = load_model_from_args(args, "descriptor")
    if args.out.parent and not args.out.parent.exists():
        raise CliError(f"--out: folder {args.out.parent} does not exist")
    if args.target == "torchscript":
        path = export_torchscript(loaded.model, args.out, img_size=loaded.img_size)
    else:
        try:
            import onnx  # noqa: F401  (torch.onnx.export needs it)
        except ImportError:
            raise CliError("--to onnx needs the onnx package (pip install 'copynce-fast[export]')") from None
        path = export_onnx(loaded.model, args.out, img_size=loaded.img_size, opset=args.opset)
    info(f"exported {loaded.name} ({args.target}, {loaded.img_size}×{loaded.img_size}) -> {path}")
    return 0
