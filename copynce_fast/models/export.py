"""Export a trained descriptor for inference outside this package: TorchScript and ONNX.

Both exports take a copy of the descriptor in eval mode (BatchNorm uses its running statistics) and expose one
function ``images [B, 3, H, W] float32 -> feat [B, dim] float32`` (unit L2 norm); the batch size is dynamic, the
image size is fixed at ``img_size`` (the pos-embed interpolation for that size is folded into the graph).

The ONNX copy switches attention to the ``"math"`` backend: it lowers to MatMul + Softmax in every opset, while
``scaled_dot_product_attention`` needs a recent exporter/opset. The numbers are the same (tested).
"""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from copynce_fast.models.attention import set_attn_impl
from copynce_fast.models.descriptor import CopyDescriptor


class _FeatOnly(nn.Module):
    """``images -> feat``: exporters want tensors out, not the descriptor's dict."""

    def __init__(self, descriptor: CopyDescriptor):
        super().__init__()
        self.descriptor = descriptor

    def forward(self, images: Tensor) -> Tensor:
        return self.descriptor(images)["feat"]


def _prepare(descriptor: CopyDescriptor, img_size: int | tuple[int, int], attn_impl: str | None,
             batch: int = 2) -> tuple[nn.Module, Tensor]:
    if not isinstance(descriptor, CopyDescriptor):
        raise ValueError(f"descriptor must be a CopyDescriptor, got {type(descriptor).__name__}")
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    if h % 16 or w % 16:
        raise ValueError(f"img_size must be divisible by 16, got {(h, w)}")
    model = copy.deepcopy(descriptor).float().cpu().eval()  # exports are fp32 CPU graphs
    if attn_impl is not None:
        set_attn_impl(model, attn_impl)
    example = torch.randn(batch, 3, h, w)
    return _FeatOnly(model).eval(), example


def export_torchscript(descriptor: CopyDescriptor, path: str | os.PathLike,
                       img_size: int | tuple[int, int] = 224) -> Path:
    """Trace the descriptor to TorchScript and save it at ``path``.

    Load with ``torch.jit.load(path)``; call with ``images [B, 3, H, W]`` (B free, H×W = ``img_size``).

    Returns:
        the written path.
    """
    wrapper, example = _prepare(descriptor, img_size, attn_impl=None)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns that image-size checks become constants: intended, the size is fixed per export
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, example)
    path = Path(path)
    traced.save(str(path))
    return path


def export_onnx(descriptor: CopyDescriptor, path: str | os.PathLike, img_size: int | tuple[int, int] = 224,
                opset: int = 17) -> Path:
    """Export the descriptor to ONNX (input ``images``, output ``feat``, dynamic batch axis).

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no extra package; attention runs as
    explicit MatMul/Softmax in the exported copy.

    Returns:
        the written path.
    """
    wrapper, example = _prepare(descriptor, img_size, attn_impl="math")
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # fixed image size, as above
        torch.onnx.export(
            wrapper, (example,), str(path),
            input_names=["images"], output_names=["feat"],
            dynamic_axes={"images": {0: "batch"}, "feat": {0: "batch"}},
            opset_version=opset, dynamo=False,
        )
    return path
