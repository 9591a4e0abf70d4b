"""Device selection (one rule for the trainer and the CLI), inference autocast, and the one PIL font helper."""
from __future__ import annotations

import contextlib

import torch
from PIL import ImageFont

__all__ = ["resolve_device", "autocast", "default_font"]


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


def default_font(px: int):
    """PIL's bundled scalable font at ``px`` pixels (offline; Pillow >= 10.1), else its fixed bitmap font."""
    try:
        return ImageFont.load_default(size=max(4, int(px)))
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()
