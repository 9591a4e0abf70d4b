"""Patch overlap counts of packed paths on CPU cores: the C++ kernel of ``copynce_fast._C`` (csrc/overlap.cpp).

It sits under ``ops`` (whose ``patch_overlap(impl="cpp")`` dispatches here) so that the data loaders, one floor
up beside ``ops``, can attach counts to a batch in their workers. Without the extension ``_cpp`` supplies its numpy
twin, with the same results. Counts are bit-equal to ``copynce_fast.ops.patch_overlap_ref`` (the contract and its
proof: csrc/overlap.h, csrc/overlap_steps.h).
"""
from __future__ import annotations

import numpy as np
import torch

from copynce_fast import _cpp
from copynce_fast.pixtrace.batch import PackedPaths

__all__ = ["patch_overlap_cpu", "cpu_kernel_usable", "MAX_SIDE"]

# Largest canvas side of the kernel's exact range per matrix dtype (csrc/overlap.h, overlap_max_side).
MAX_SIDE = {torch.float32: 2**14, torch.float64: 2**22}


def cpu_kernel_usable(paths: PackedPaths) -> bool:
    """The C++ extension is built and ``paths`` (CPU, float32/64) are within its exact range."""
    m = paths.matrices
    if not _cpp.HAS_CPP or m.is_cuda or m.dtype not in MAX_SIDE:
        return False
    canvases = int(paths.canvases.max()) if paths.canvases.numel() else 0
    return max(*paths.src_hw, *paths.dst_hw, canvases) <= MAX_SIDE[m.dtype]


def patch_overlap_cpu(paths: PackedPaths, patch_size: int = 16, num_threads: int | None = None) -> torch.Tensor:
    """Overlap counts from geometry on the CPU: [B, Ls, Ld + 1] int32, bit-equal to the torch reference.

    Args:
        paths: CPU ``PackedPaths`` with float32 or float64 matrices (occluders included).
        patch_size: P; both images must be multiples of it.
        num_threads: threads over the batch (default ``torch.get_num_threads()``; 1 in loader workers).

    Raises:
        ValueError: sizes not divisible by ``patch_size``, other matrix dtypes, or canvases beyond ``MAX_SIDE``.
    """
    m = paths.matrices
    if m.dtype not in MAX_SIDE:
        raise ValueError(f"paths.matrices: the C++ kernel computes in float32 or float64, got {m.dtype}")

    def host(t, dtype=None):
        return None if t is None else np.ascontiguousarray(t.cpu().numpy(), dtype=dtype)

    counts = _cpp.patch_overlap(host(m), host(paths.canvases, np.int32), *map(int, paths.src_hw),
                                *map(int, paths.dst_hw), int(patch_size), host(paths.src_occluder),
                                host(paths.dst_occluder), int(num_threads or torch.get_num_threads()))
    return torch.from_numpy(counts)
