"""A data-parallel actor (`trainer.actor_workers=N`): N ActorWorker ranks train one policy together.

Every rank receives the whole training batch and holds the same weights, optimizer state and update RNG, so every
rank derives the same advantages and the same minibatch plan on its own (no leader hands out work). Each minibatch's
rows are split across the ranks; a rank computes its share of the loss, weighted by its share of the minibatch
(tokens for `token-mean`, rows for the `seq-*` modes), so the gradients summed over ranks (all-reduce, gloo on CPU,
NCCL on GPU) are the gradient of the whole minibatch's loss, as one rank would have computed it (up to float
summation order). Clipping and the optimizer step then run identically everywhere.

The group is verl's worker-group address (MASTER_ADDR / MASTER_PORT, set by `RayWorkerGroup` for each role). The
weight plane (learning/weight_plane.py) has a process group of its own; rank 0 publishes.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


class DataParallel:
    def __init__(self, rank: int, world: int, backend: str = "gloo"):
        self.rank, self.world = rank, world
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend, init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                                    rank=rank, world_size=world)  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def my_rows(self, rows: np.ndarray) -> np.ndarray:
        """This rank's share of a minibatch's rows (contiguous, sizes differ by at most one)."""
        return np.array_split(rows, self.world)[self.rank] if self.enabled else rows

    def loss_weight(self, mode: str, mask: torch.Tensor, mine: np.ndarray, rows: np.ndarray) -> float:
        """The fraction of the minibatch's loss this rank's rows carry (`mask` (B, T) of the whole batch)."""
        if not self.enabled:
            return 1.0
        if mode == "token-mean":
            return float(mask[torch.from_numpy(mine)].sum() / mask[torch.from_numpy(rows)].sum())
        return len(mine) / len(rows)

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """All-reduce (sum) every gradient: each rank then holds the whole minibatch's gradient."""
        if not self.enabled:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
