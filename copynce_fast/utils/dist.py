"""Distributed helpers: torchrun environment, rank info, and gathers that keep the local gradient."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "gather_with_local_grad", "all_reduce_mean", "is_main"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Initialise the process group when launched by torchrun (nccl on CUDA, gloo on CPU)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def gather_with_local_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` [n, ...] from every rank as ``[local; other ranks in rank order]``.

    Gradients flow through the local slice only (the gathered copies are constants), which is correct on any
    number of nodes: each rank's loss differentiates its own rows. (The reference's multi-node rank indexing
    bug is not reproduced.)
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    rank = dist.get_rank()
    return torch.cat([x] + [p for r, p in enumerate(parts) if r != rank])


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (for logging; one collective)."""
    if not dist.is_initialized():
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / dist.get_world_size()
