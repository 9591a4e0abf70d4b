"""Multi-head self-attention with a backend chosen once, at construction.

Backends (``attn_impl``):

* ``"sdpa"`` (default): ``F.scaled_dot_product_attention``; flash / memory-efficient kernels on CUDA, so the
  ``[B, H, N, N]`` score matrix is never stored (REFERENCE §11.1: ~8.6 GB of saved scores per descriptor step).
* ``"math"``: explicit ``softmax(Q Kᵀ · scale) V``, exactly what the reference CopyNCE code runs. It is the
  oracle in tests and the path used for ONNX export (every opset has MatMul + Softmax).
* ``"xformers"``: ``xformers.ops.memory_efficient_attention``, imported lazily. If xformers is missing or fails
  to load, the module falls back to ``"sdpa"`` with a single warning per process (never a crash: xformers wheels
  are tied to one torch build and break often). xformers has no CPU kernels, so CPU inputs also take ``"sdpa"``.

All backends use the standard scale ``head_dim ** -0.5`` (1/8 for ViT-S and ViT-B), as the reference does.
"""
from __future__ import annotations

import functools
import warnings
from typing import Literal, get_args

import torch.nn.functional as F
from torch import Tensor, nn

AttnImpl = Literal["sdpa", "xformers", "math"]
ATTN_IMPLS: tuple[str, ...] = get_args(AttnImpl)


def attention_math(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Reference attention: softmax(q kᵀ · d^-1/2) v, materialising the scores.

    Args:
        q, k, v: ``[B, H, N, D]``, any float dtype (under autocast the matmuls run in bf16, softmax in fp32).

    Returns:
        ``[B, H, N, D]`` in the dtype of ``v`` (or the autocast dtype).
    """
    scale = q.shape[-1] ** -0.5
    attn = (q @ k.transpose(-2, -1)) * scale
    # softmax in fp32 then back: bf16 exp/sum loses ~3 digits on 197-885 keys
    attn = attn.float().softmax(dim=-1).to(v.dtype)
    return attn @ v


@functools.lru_cache(maxsize=1)
def _xformers_attention():
    """``xformers.ops.memory_efficient_attention`` or None; warns once per process when unusable.

    Cached so that building many blocks (or many models) emits one warning, not one per layer. Tests may call
    ``_xformers_attention.cache_clear()`` to observe the warning again.
    """
    try:
        import xformers.ops as xops  # lazy: optional dependency, heavy import

        return xops.memory_efficient_attention
    except Exception as e:  # ImportError, but also broken binaries (OSError, RuntimeError on a torch mismatch)
        warnings.warn(
            f"attn_impl='xformers' requested but xformers could not be loaded ({type(e).__name__}: {e}); "
            "falling back to attn_impl='sdpa'.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def resolve_attn_impl(attn_impl: str) -> str:
    """Validate ``attn_impl`` and return the backend that will actually run.

    ``"xformers"`` becomes ``"sdpa"`` (with a one-time warning) when xformers cannot be imported.

    Raises:
        ValueError: ``attn_impl`` is not one of ``"sdpa"``, ``"xformers"``, ``"math"``.
    """
    if attn_impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
    if attn_impl == "xformers" and _xformers_attention() is None:
        return "sdpa"
    return attn_impl


class Attention(nn.Module):
    """Multi-head self-attention, timm/DINO parameter layout (``qkv``, ``proj``).

    Args:
        dim: channels C.
        num_heads: heads H; ``dim`` must be divisible by it.
        qkv_bias: bias on the fused qkv projection (True for DINO / CopyNCE).
        attn_impl: ``"sdpa" | "xformers" | "math"``, resolved once here (see module docstring).
        device, dtype: factory kwargs for the parameters.

    Shapes: ``x [B, N, C] -> [B, N, C]``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_impl: AttnImpl = "sdpa",
                 device=None, dtype=None):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        # a plain str attribute: torch.compile guards on it and specialises the branch away
        self.attn_impl = resolve_attn_impl(attn_impl)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, device=device, dtype=dtype)
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        if self.attn_impl == "xformers" and x.is_cuda:
            # xformers wants [B, N, H, D]: unbind on the "3" axis gives exactly that, no permute copy
            q, k, v = qkv.unbind(2)
            out = _xformers_attention()(q, k, v)
            return self.proj(out.reshape(B, N, C))
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, D]
        if self.attn_impl == "math":
            out = attention_math(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, attn_impl={self.attn_impl!r}"


def set_attn_impl(model: nn.Module, attn_impl: AttnImpl) -> nn.Module:
    """Switch every :class:`Attention` inside ``model`` to ``attn_impl`` (in place); returns ``model``.

    Meant for a copy made for export (``"math"`` for ONNX) or for tests, not for flipping backends mid-training:
    a compiled model would recompile.
    """
    impl = resolve_attn_impl(attn_impl)
    for m in model.modules():
        if isinstance(m, Attention):
            m.attn_impl = impl
    return model
