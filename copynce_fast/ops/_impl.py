"""THE dispatch rule: which implementation of an op runs. Nothing else decides."""
from __future__ import annotations

import importlib.util
import logging
import os

import torch

from copynce_fast.kernels._common import interpreted  # the one reader of TRITON_INTERPRET (torch + os only)

_log = logging.getLogger("copynce_fast")
IMPLS = ("torch", "triton", "cpp")  # "cpp": the CPU kernels of copynce_fast._C (patch_overlap)


def _probe_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


_TRITON_AVAILABLE = _probe_triton()  # a plain bool: Dynamo traces through it without cache warnings


def triton_available() -> bool:
    return _TRITON_AVAILABLE


def resolve_impl(impl: str | None, *tensors: torch.Tensor, cpp: bool | None = None) -> str:
    """Resolve ``impl`` (None/"auto"/"torch"/"triton"/"cpp") to "torch", "triton" or "cpp".

    ``None`` reads the debugging override ``COPYNCE_IMPL`` (default "auto"). "auto" picks Triton when it is
    installed and the tensors are on CUDA; on CPU tensors it picks the op's C++ kernel when ``cpp`` is True (the op
    has one in ``copynce_fast._cpp``, ``_C`` is built and the inputs are in its range), else Triton's interpreter
    when ``TRITON_INTERPRET=1`` is set (CPU tests), else torch. ``cpp=None``: the op has no C++ kernel; ``False``:
    it has one (or its Python twin) that "auto" should not pick now. Asking for "triton" without Triton installed,
    or for "cpp" with CUDA tensors or an op without a C++ kernel, is an error; "auto" falls back silently.
    """
    impl = impl or os.environ.get("COPYNCE_IMPL", "auto")
    on_cuda = any(t.is_cuda for t in tensors if isinstance(t, torch.Tensor))
    if impl == "auto":
        if cpp and not on_cuda:
            return "cpp"
        usable = triton_available() and (on_cuda or interpreted())
        return "triton" if usable else "torch"
    if impl not in IMPLS:
        raise ValueError(f"impl: must be None, 'auto', 'torch', 'triton' or 'cpp', got {impl!r}")
    if impl == "triton" and not triton_available():
        raise ImportError("impl='triton' requested but triton is not installed: pip install 'copynce-fast[triton]'")
    if impl == "cpp" and (cpp is None or on_cuda):
        raise ValueError("impl: 'cpp' is a CPU kernel of patch_overlap only; use 'auto', 'torch' or 'triton' here")
    return impl
