"""The weight plane: each new policy version goes from the actor to every rollout worker
(`trainer.weight_sync`). What travels is the policy's `get_weights()`: the trainable tensors (with a frozen
backbone, only heads and adapters).

- `object_store` (default; works wherever Ray does): the actor puts one copy into Ray's object store, every rollout
  worker reads it (same node: shared memory, no copy; other nodes: Ray's object transfer) and loads it between two
  inference batches. The driver never holds the weights: it passes references on.
- `collective`: the actor (rank 0) and the rollout workers form a torch.distributed process group of their own
  (gloo on CPU, NCCL on GPU; a group built from its own TCP store, independent of any data-parallel group). The
  actor broadcasts the tensors in buckets of `trainer.weight_bucket_mb`; each rollout worker receives them into
  staging buffers on a thread of its own while it keeps serving, and swaps them in between two batches: the only
  time it stops serving is one copy. If a member of the group is lost (a rollout worker restarted), the actor
  falls back to the object store for the rest of the run.

verl's fully_async trainer and RLinf sync weights by NCCL broadcast in the same way (bucketed, trainable only).
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass, field
from datetime import timedelta

import ray
import torch

from verl_async_vla.config.schema import WEIGHT_TRANSPORTS  # noqa: F401 - the registry of transports
from verl_async_vla.plumbing.process import answers_from_live
from verl_async_vla.plumbing.wire import weights_to_wire


@dataclass
class BucketLayout:
    """How a weights dict is cut into flat buckets (one dtype per bucket), the same on every member."""

    buckets: list[list[str]] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, torch.dtype] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(math.prod(s) * self.dtypes[n].itemsize for n, s in self.shapes.items())


def plan_buckets(weights: dict[str, torch.Tensor], bucket_bytes: int) -> BucketLayout:
    """Group tensors of one dtype, in name order, into buckets of at most `bucket_bytes` (a larger tensor is a
    bucket of its own)."""
    layout = BucketLayout(shapes={n: tuple(t.shape) for n, t in weights.items()},
                          dtypes={n: t.dtype for n, t in weights.items()})  # fmt: skip
    for dtype in sorted({t.dtype for t in weights.values()}, key=str):
        current, size = [], 0
        for name in sorted(n for n, t in weights.items() if t.dtype == dtype):
            nbytes = weights[name].numel() * dtype.itemsize
            if current and size + nbytes > bucket_bytes:
                layout.buckets.append(current)
                current, size = [], 0
            current.append(name)
            size += nbytes
        if current:
            layout.buckets.append(current)
    return layout


def digest(weights: dict[str, torch.Tensor]) -> float:
    """A fingerprint of a weights dict (checks that a rollout worker holds what the actor published); summed in
    chunks, so a multi-GB tensor is never widened to float64 whole."""
    total = 0.0
    for i, (_, t) in enumerate(sorted(weights.items())):
        flat = t.reshape(-1)
        for start in range(0, flat.numel(), 1 << 22):
            total += flat[start : start + (1 << 22)].double().sum().item() * (i + 1)
    return total


def free_address() -> tuple[str, int]:
    """This node's address and a free TCP port for the group's store (the actor hosts it)."""
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return ray.util.get_node_ip_address(), port


class WeightGroup:
    """One member of the weight plane's process group: rank 0 is the actor, ranks 1..R the rollout workers."""

    def __init__(
        self, addr: str, port: int, world: int, rank: int, backend: str = "gloo", timeout_s: float = 120
    ):
        import torch.distributed as dist

        timeout = timedelta(seconds=timeout_s)
        store = dist.TCPStore(addr, port, world, rank == 0, timeout=timeout)
        if backend == "gloo":
            self.pg = dist.ProcessGroupGloo(store, rank, world, timeout)
        elif backend == "nccl":  # GPU clusters; never run on this project's CPU machines
            self.pg = dist.ProcessGroupNCCL(store, rank, world)
        else:
            raise ValueError(f"weight plane backend {backend!r}; use gloo (CPU) or nccl (GPU)")
        self.rank, self.world, self.backend = rank, world, backend

    def send(self, weights: dict[str, torch.Tensor], layout: BucketLayout) -> None:
        """Actor side: broadcast every bucket (one flat copy per bucket)."""
        for names in layout.buckets:
            parts = [weights[n].reshape(-1) for n in names]
            flat = parts[0].contiguous() if len(parts) == 1 else torch.cat(parts)
            self.pg.broadcast(flat, 0).wait()

    def receive(self, layout: BucketLayout) -> dict[str, torch.Tensor]:
        """Rollout side: the weights, into fresh staging buffers (the serving model is not touched)."""
        out: dict[str, torch.Tensor] = {}
        for names in layout.buckets:
            sizes = [math.prod(layout.shapes[n]) for n in names]
            flat = torch.empty(sum(sizes), dtype=layout.dtypes[names[0]])
            self.pg.broadcast(flat, 0).wait()
            for name, part in zip(names, flat.split(sizes), strict=True):
                out[name] = part.view(layout.shapes[name])
        return out


def publish(weights: dict[str, torch.Tensor], version: int, rollouts: list, transport: str,
            group: WeightGroup | None, bucket_bytes: int) -> list:  # fmt: skip
    """Send one version to every rollout worker by `transport`; -> their answers (each its version and how long it
    stopped serving). A rollout worker that is down is skipped (it gets the weights when it rejoins)."""
    if transport == "collective":
        if group is None:
            raise RuntimeError("weight_sync=collective before the weight group was formed")
        layout = plan_buckets(weights, bucket_bytes)
        refs = [r.receive_weights.remote(version, layout) for r in rollouts]
        group.send(weights, layout)
        return answers_from_live(refs)
    ref = ray.put((weights_to_wire(weights), version))
    return answers_from_live(r.set_weights_timed.remote(ref) for r in rollouts)
