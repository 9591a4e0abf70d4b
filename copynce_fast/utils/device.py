"""Device selection (one rule for the trainer and the CLI) and inference autocast."""
from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "autocast"]


def resolve_device(device: str | torch.device = "auto", arg: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an unknown name or CUDA without CUDA is a ValueError naming ``arg``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{arg}: not a device: {device!r} (auto, cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{arg}: must be auto, cpu or cuda[:N], got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{arg}: {device!r} requested but CUDA is not available on this machine")
    return dev


def autocast(device: torch.device, amp: str = "bf16"):
    """bf16 autocast on CUDA when ``amp == "bf16"``; a no-op elsewhere (CPU inference stays fp32)."""
    if device.type == "cuda" and amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
