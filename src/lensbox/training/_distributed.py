"""Data-parallel training over ``torch.distributed`` (gloo on CPU, NCCL when asked).

Each rank takes a slice of every global batch and gradients are summed with one
all-reduce per step, so the trajectory does not depend on the number of processes.
"""

import os

import torch
from torch import Tensor


class Dist:
    """The process group a run uses (or a single process: ``on`` is False, rank 0 of 1)."""

    def __init__(self, distributed: "bool | None") -> None:
        import torch.distributed as dist

        self.dist = dist
        want = int(os.environ.get("WORLD_SIZE", "1")) > 1 if distributed is None else bool(distributed)
        self.created = False
        if want and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and os.environ.get("LENSBOX_DIST_BACKEND") == "nccl" else "gloo"
            dist.init_process_group(backend=os.environ.get("LENSBOX_DIST_BACKEND", backend))
            self.created = True
        self.on = want and dist.is_initialized()
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def all_sum(self, t: Tensor) -> Tensor:
        if self.on:
            self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.on:
            self.dist.barrier()

    def close(self) -> None:
        if self.created:
            self.dist.destroy_process_group()
