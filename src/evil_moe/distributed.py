"""Several processes: this process's place in the torch.distributed group and the collectives the
trainer needs (gradients summed, route_a's buffer gathered, logs gathered on process 0)."""

from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist


class Dist:
    """This process's place in the process group and the collectives the trainer needs.

    Without an initialised torch.distributed group every collective is the identity.
    """

    def __init__(self, device: torch.device | None = None):
        self.enabled = torch_dist.is_available() and torch_dist.is_initialized()
        self.rank = torch_dist.get_rank() if self.enabled else 0
        self.world_size = torch_dist.get_world_size() if self.enabled else 1
        nccl = self.enabled and torch_dist.get_backend() == "nccl"
        self.device = device if nccl and device is not None else torch.device("cpu")

    def all_reduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            moved = t.to(self.device)
            torch_dist.all_reduce(moved, op=torch_dist.ReduceOp.SUM)
            t.copy_(moved)
        return t

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """(n, ...) on every rank (same shape) -> (world_size * n, ...) in rank order, on t's device."""
        if not self.enabled:
            return t
        moved = t.contiguous().to(self.device)
        parts = [torch.empty_like(moved) for _ in range(self.world_size)]
        torch_dist.all_gather(parts, moved)
        return torch.cat(parts).to(t.device)

    def gather_objects(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


def init_distributed() -> Dist:
    """Join the torchrun process group (env vars WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT)
    if WORLD_SIZE > 1: nccl on GPUs (one per LOCAL_RANK), gloo on CPU. Alone: no group."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch_dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            torch_dist.init_process_group(backend="nccl")
        else:
            torch_dist.init_process_group(backend="gloo")
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    return Dist(device)

