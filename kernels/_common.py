"""Shared launcher helpers for the Triton kernels: block sizes, limits, warps, device checks.

Nothing here is a kernel. Block limits are explicit errors (never silent truncation): a kernel that keeps a
whole row of patches in registers cannot serve a longer row.
"""
from __future__ import annotations

import os

import torch

# Longest patch row a fused CopyNCE program holds in registers (an [BLOCK_M, 1024] fp32 tile at BLOCK_M=16).
MAX_FUSED_L = 1024
# Widest token a CopyNCE launch accepts (the channel loop is tiled, the limit keeps register use predictable).
MAX_FUSED_C = 1024
# Most destination bins one overlap program histograms (Ld + 1 <= this).
MAX_OVERLAP_BINS = 4096
# Register budget: fp32 elements per thread of one [BLOCK_M, BLOCK_N] tile (sm_90 ptxas: ~no spills at 32).
TILE_ELEMS_PER_THREAD = 32
# Shared memory for the loads a software-pipelined loop keeps in flight (H100: 228 KB per SM).
PIPELINE_SMEM = 160 * 1024


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def interpreted() -> bool:
    """True when Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``): no libdevice, no bf16 math."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_device(name: str, t: torch.Tensor) -> None:
    """Triton needs CUDA tensors, or CPU tensors under the interpreter."""
    if not (t.is_cuda or (interpreted() and t.device.type == "cpu")):
        raise ValueError(f"{name}: Triton kernels need a CUDA tensor (or TRITON_INTERPRET=1 on CPU), "
                         f"got device {t.device}")


def check_same_device(**tensors: torch.Tensor) -> None:
    """Every tensor on the first one's device; the error names the odd one out."""
    items = [(k, v) for k, v in tensors.items() if v is not None]
    first_name, first = items[0]
    check_device(first_name, first)
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name}: expected device {first.device} (like {first_name}), got {t.device}")
