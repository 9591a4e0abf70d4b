"""THE dispatch rule: which implementation of an op runs. Nothing else decides."""
from __future__ import annotations

import importlib.util
import logging
import os

import torch

from copynce_fast.kernels._common import interpreted  # the one reader of TRITON_INTERPRET (torch + os only)

_log = logging.getLogger("copynce_fast")
IMPLS = ("torch", "triton")


def _probe_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


_TRITON_AVAILABLE = _probe_triton()  # a plain bool: Dynamo traces through it without cache warnings


def triton_available() -> bool:
    return _TRITON_AVAILABLE


def resolve_impl(impl: str | None, *tensors: torch.Tensor) -> str:
    """Resolve ``impl`` (None/"auto"/"torch"/"triton") to "torch" or "triton".

    ``None`` reads the debugging override ``COPYNCE_IMPL`` (default "auto"). "auto" picks Triton when it is
    installed and the tensors are on CUDA (or ``TRITON_INTERPRET=1`` is set, for CPU tests), else torch.
    Asking for "triton" without Triton installed is an error; "auto" falls back silently.
    """
    impl = impl or os.environ.get("COPYNCE_IMPL", "auto")
    if impl == "auto":
        on_cuda = any(t.is_cuda for t in tensors if isinstance(t, torch.Tensor))
        usable = triton_available() and (on_cuda or interpreted())
        return "triton" if usable else "torch"
    if impl not in IMPLS:
        raise ValueError(f"impl: must be None, 'auto', 'torch' or 'triton', got {impl!r}")
    if impl == "triton" and not triton_available():
        raise ImportError("impl='triton' requested but triton is not installed: pip install 'copynce-fast[triton]'")
    return impl
