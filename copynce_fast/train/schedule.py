"""Learning-rate schedule as a pure function of the step: linear warm-up, then cosine to ``min_lr``.

The reference (timm CosineLRScheduler with ``warmup_prefix``) counts the cosine after the warm-up but stops
training one warm-up early, so it never reaches ``min_lr`` (REFERENCE.md §10.6). Here the cosine spans exactly
the steps after the warm-up and ends at ``min_lr`` on the last step.
"""
from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float,
          warmup_start_factor: float = 0.01) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of ``total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps: must be > 0, got {total_steps}")
    warmup_steps = min(max(warmup_steps, 0), total_steps)
    if step < warmup_steps:
        start = warmup_start_factor * lr
        return start + (lr - start) * step / warmup_steps
    span = max(total_steps - warmup_steps - 1, 1)
    t = min(max(step - warmup_steps, 0), span) / span
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t))
