"""A data-parallel actor (`trainer.actor_workers=N`): N ActorWorker ranks train one policy together, by one of two
strategies (`trainer.actor_strategy`).

Both: every rank receives the whole training batch and keeps the same update RNG, so every rank derives the same
advantages and the same minibatch plan on its own (no leader hands out work). Each minibatch's rows are split
across the ranks; a rank computes its share of the loss, weighted by its share of the minibatch (tokens for
`token-mean`, rows for the `seq-*` modes), so the gradients *summed* over ranks are the gradient of the whole
minibatch's loss, as one rank would have computed it (up to float summation order). Clipping and the optimizer step
then run identically everywhere.

- `all_reduce` (DataParallel): every rank holds the whole policy and optimizer; gradients are all-reduced (summed).
  Any rank can score rows on its own, so the async trainer's rank 0 scores pi_prox while it waits for episodes.
- `fsdp2` (FullyShardedDataParallel): torch's `fully_shard` (FSDP2, Zhao et al. 2023, "PyTorch FSDP"): each rank
  keeps 1/N of every parameter, gradient and optimizer moment; a forward all-gathers a unit's parameters, a backward
  reduce-scatters its gradients (divide factor 1: summed, as above). Every forward is therefore a collective: every
  rank scores (its share of the rows, results summed) and updates together, and the full weights are gathered once
  per version, onto rank 0, for publishing and checkpoints.

The group is verl's worker-group address (MASTER_ADDR / MASTER_PORT, set by `RayWorkerGroup` for each role); gloo on
CPU, NCCL on GPU. The weight plane (learning/weight_plane.py) has a process group of its own; rank 0 publishes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

OptimizerState = (
    dict  # torch's optimizer.state_dict() layout: {"state": {param index: {...}}, "param_groups": [...]}
)


class DataParallel:
    """`trainer.actor_strategy=all_reduce` (and one rank of either strategy)."""

    sharded = False

    def __init__(self, rank: int, world: int, backend: str = "gloo"):
        self.rank, self.world, self.backend = rank, world, backend
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend, init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                                    rank=rank, world_size=world)  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def wrap(self, policy: nn.Module) -> nn.Module:
        return policy

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

    def sum_gradients(self, params: list[nn.Parameter]) -> None:
        """All-reduce (sum) every gradient: each rank then holds the whole minibatch's gradient."""
        if not self.enabled:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def grad_norm(self, params: list[nn.Parameter], max_norm: float) -> float:
        """Clip the gradients to `max_norm` (their norm over the whole model); -> that norm before clipping."""
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def share_rows(self, column: torch.Tensor, rows: torch.Tensor) -> None:
        """`column[rows]` summed over the ranks, in place: each rank filled its share of the rows, zeros elsewhere
        (the first-epoch pi_prox, learning/learner.py), and every rank ends with all of them."""
        if not self.enabled or not len(rows):
            return
        part = column[rows].contiguous()
        dist.all_reduce(part)
        column[rows] = part

    def score(self, score: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], rows: torch.Tensor
              ) -> tuple[torch.Tensor, ...]:  # fmt: skip
        """`score(rows)` for every row: here each rank scores all of them on its own."""
        return score(rows)

    def full_weights(self, policy: nn.Module) -> dict[str, torch.Tensor]:
        return policy.get_weights()

    def load_weights(self, policy: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        policy.load_weights(weights)

    def optimizer_state(self, policy: nn.Module, optimizer: torch.optim.Optimizer) -> OptimizerState:
        return optimizer.state_dict()

    def load_optimizer_state(
        self, policy: nn.Module, optimizer: torch.optim.Optimizer, sd: OptimizerState
    ) -> None:
        optimizer.load_state_dict(sd)

    def param_share(self, policy: nn.Module) -> float:
        """The fraction of the policy's parameter elements this rank holds."""
        return 1.0


class FullyShardedDataParallel(DataParallel):
    """`trainer.actor_strategy=fsdp2` with N > 1 ranks (module docstring)."""

    def __init__(self, rank: int, world: int, backend: str = "gloo"):
        super().__init__(rank, world, backend)
        self.sharded = world > 1

    def wrap(self, policy: nn.Module) -> nn.Module:
        if not self.sharded:
            return policy
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method

        mesh = init_device_mesh("cuda" if self.backend == "nccl" else "cpu", (self.world,))
        # inner units first (their parameters are gathered only while their own forward runs), the root last: it
        # holds the rest (e.g. an action head called through its own methods, not `forward`)
        for unit in policy.fsdp_units():
            fully_shard(unit, mesh=mesh)
        # the root reshards after its forward too (FSDP2 keeps the root's parameters gathered by default, for the
        # backward): after a no-grad scoring pass they stayed gathered, and the next update's action-head gradients
        # never reached their shards (None on rank 1: tests/learning/test_data_parallel.py, Adam + clipping)
        fully_shard(policy, mesh=mesh, reshard_after_forward=True)
        # the policies return views (e.g. a squeezed value); the learner never changes an output in place, the case
        # the warning is about, and it would otherwise print at every forward
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        for method in ("act", "evaluate", "bc_loss"):  # the policy is called through these, never `forward`
            register_fsdp_forward_method(policy, method)
        for m in policy.modules():
            if isinstance(m, FSDPModule):
                m.set_gradient_divide_factor(
                    1.0
                )  # summed, not averaged: the loss weights already split the mean
                m.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has neither AVG nor PREMUL_SUM)
        return policy

    def sum_gradients(self, params: list[nn.Parameter]) -> None:
        """Nothing to do: the backward reduce-scattered (summed) every gradient into its shards."""

    def grad_norm(self, params: list[nn.Parameter], max_norm: float) -> float:
        """The norm over every rank's gradient shards (each element lives on exactly one rank: FSDP2 shards every
        gradient along dim 0), then `clip_grad_norm_`'s scaling on the local shards. Summed over the local shards and all-reduced,
        rather than by `clip_grad_norm_` on DTensors, so the collective is explicit and runs on every rank."""
        if not self.sharded:
            return super().grad_norm(params, max_norm)
        local = [
            p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad for p in params if p.grad is not None
        ]
        squares = sum((g.double().pow(2).sum() for g in local), torch.zeros((), dtype=torch.float64))
        dist.all_reduce(squares, op=dist.ReduceOp.SUM)
        norm = float(squares.sqrt())
        coef = min(1.0, max_norm / (norm + 1e-6))  # as torch.nn.utils.clip_grad_norm_
        if coef < 1.0:
            for g in local:
                g.mul_(coef)
        return norm

    def score(self, score: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], rows: torch.Tensor
              ) -> tuple[torch.Tensor, ...]:  # fmt: skip
        """Each rank scores its share of `rows` (one row at least: a forward is a collective every rank joins),
        then the results are summed so every rank holds all of them."""
        if not self.sharded:
            return score(rows)
        positions = np.array_split(np.arange(len(rows)), self.world)[self.rank]
        out = score(rows[torch.from_numpy(positions)] if len(positions) else rows[:1])
        full = [torch.zeros((len(rows), *o.shape[1:]), dtype=o.dtype) for o in out]
        for f, o in zip(full, out, strict=True):
            if len(positions):
                f[torch.from_numpy(positions)] = o
            dist.all_reduce(f, op=dist.ReduceOp.SUM)
        return tuple(full)

    def full_weights(self, policy: nn.Module) -> dict[str, torch.Tensor]:
        """What `policy.get_weights()` returns, gathered onto rank 0 (a collective: every rank calls it); {} on the
        other ranks."""
        if not self.sharded:
            return policy.get_weights()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        keep = policy.shipped_names()
        return {k: v for k, v in state.items() if k in keep}

    def load_weights(self, policy: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        """Every rank passes the whole weights and keeps its shard of each."""
        if not self.sharded:
            return policy.load_weights(weights)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(policy, weights, options=StateDictOptions(full_state_dict=True, strict=False))

    def optimizer_state(self, policy: nn.Module, optimizer: torch.optim.Optimizer) -> OptimizerState:
        """The whole optimizer state gathered onto rank 0 (a collective), in torch's own layout (moments keyed by
        parameter index), so a train state saved by one strategy resumes under the other; {} on other ranks."""
        if not self.sharded:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        sd = get_optimizer_state_dict(policy, optimizer,
                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))  # fmt: skip
        if not sd:
            return {}
        index = {name: i for i, (name, _) in enumerate(policy.named_parameters())}
        groups = [{**g, "params": [index[n] for n in g["params"]]} for g in sd["param_groups"]]
        return {"state": {index[n]: s for n, s in sd["state"].items()}, "param_groups": groups}

    def load_optimizer_state(
        self, policy: nn.Module, optimizer: torch.optim.Optimizer, sd: OptimizerState
    ) -> None:
        if not self.sharded:
            return optimizer.load_state_dict(sd)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        names = [name for name, _ in policy.named_parameters()]
        groups = [{**g, "params": [names[i] for i in g["params"]]} for g in sd["param_groups"]]
        by_name = {"state": {names[int(i)]: s for i, s in sd["state"].items()}, "param_groups": groups}
        set_optimizer_state_dict(policy, optimizer, by_name, options=StateDictOptions(full_state_dict=True))

    def param_share(self, policy: nn.Module) -> float:
        local = sum(
            p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in policy.parameters()
        )
        return local / max(1, sum(p.numel() for p in policy.parameters()))


ACTOR_STRATEGIES: dict[str, type[DataParallel]] = {
    "all_reduce": DataParallel,
    "fsdp2": FullyShardedDataParallel,
}
