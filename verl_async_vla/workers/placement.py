"""Resource pools and worker groups. verl's `ResourcePoolManager` hard-codes `use_gpu=True`, so pools are built
here (CPU by default, GPUs when present); see patches/0001 for the upstream proposal.

Two placements (`trainer.placement`):
- disaggregated: every role has its own pool and processes (AcceRL / RL-VLA^3 style; stages never contend);
- colocated: rollout and actor share one pool and one process per rank, fused by verl's own
  `create_colocated_worker_cls` (the hybrid-engine layout of verl and RLinf's colocated mode): one device holds both
  models and time-shares between inference and training. Env workers keep their own processes in both.

Controllers call workers directly through `group.handles` (not the raw Ray handles), because a fused worker
exposes a role's methods under a `<role>_` prefix.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import ray
from verl.single_controller.ray import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup
from verl.single_controller.ray.base import create_colocated_worker_cls

# Every worker process inherits these: one BLAS/OMP thread each, since all roles share 2 cores; DataProto pickled
# as numpy (verl's own option): Ray then ships its tensors out of band instead of through torch.save. Two glibc malloc
# arenas per process: a worker's buffers are allocated on Ray's receiving threads and freed on its trainer or server
# thread, and every extra arena keeps freed pages of its own. Alone this did not stop the actor's memory from climbing
# in the soak (+9 % between minutes 5 and 11); returning freed pages (plumbing/process.py: return_free_memory) stopped the climb.
# Mesa's software rasteriser (llvmpipe, what EGL renders with on a machine without a GPU) rasterises inline on the
# rendering thread with LP_NUM_THREADS=0 instead of handing every frame to its own pool of one thread per core: 32
# embedded envs on their lanes measured 0.208 against 0.228 CPU-ms per env step, one lane 0.159 against 0.184.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MUJOCO_GL": "egl",
              "VERL_DATAPROTO_SERIALIZATION_METHOD": "numpy", "MALLOC_ARENA_MAX": "2",
              "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", "0")}  # fmt: skip


# Workers are threaded Ray actors: in the async data plane an env worker answers the driver's polls while its envs
# step, a rollout worker takes new weights while it serves, and the actor receives episodes while it trains.
MAX_CONCURRENCY = 16


def init_ray(address: str | None, logical_cpus: int) -> None:
    """Start (or join) Ray. Logical CPUs may exceed physical cores: workers are mostly idle-waiting on each other,
    and each one pins its own thread count, so oversubscription is intended."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("VERL_DATAPROTO_SERIALIZATION_METHOD", "numpy")  # the driver sends DataProtos too
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=True, runtime_env={"env_vars": WORKER_ENV}
    )
    if address is None:
        kwargs["num_cpus"] = logical_cpus
        # Ray starts its workers at nice 15 by default, so the actor would sit at 15 and the producers clamp at 19:
        # CFS weights 36 to 15, and the actor got ~0.75 of a core it shared with a producer (trainer.env_nice).
        # At 0 the actor keeps the driver's priority (weights 1024 to 15). A cluster joined by address keeps its own.
        os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address=address, **kwargs)


def _pool(world_size: int, name: str, use_gpu: bool) -> tuple[str, RayResourcePool]:
    """A pool with a unique name prefix: Ray placement-group names must be unique for the life of the cluster,
    and several runs may share one."""
    prefix = f"{name}_{uuid.uuid4().hex[:6]}_"
    return prefix, RayResourcePool(
        process_on_nodes=[world_size], use_gpu=use_gpu, max_colocate_count=1, name_prefix=prefix
    )


def spawn_group(
    worker_cls: type,
    world_size: int,
    name: str,
    use_gpu: bool = False,
    options: dict | None = None,
    **init_kwargs: Any,
) -> RayWorkerGroup:
    """One role's `RayWorkerGroup` on its own pool (disaggregated placement). `options`: more Ray actor options,
    e.g. `max_restarts` (a restarted process keeps its rank: verl passes it in the actor's environment)."""
    prefix, pool = _pool(world_size, name, use_gpu)
    cls = RayClassWithInitArgs(ray.remote(worker_cls), **init_kwargs)
    cls.update_options({"max_concurrency": MAX_CONCURRENCY, **(options or {})})
    group = RayWorkerGroup(pool, cls, name_prefix=prefix)
    group.resource_pool_ref = pool  # kept for release()
    group.handles = list(group.workers)
    return group


class RoleHandle:
    """A fused (colocated) Ray actor seen as one role: `handle.generate` -> the actor's `rollout_generate`."""

    def __init__(self, actor: Any, role: str):
        self._actor, self._role = actor, role

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):  # pickling looks up dunders before _actor exists
            raise AttributeError(method)
        return getattr(self._actor, f"{self._role}_{method}")


def spawn_colocated(
    roles: dict[str, tuple[type, dict[str, Any]]], world_size: int, name: str, use_gpu: bool = False
) -> dict[str, RayWorkerGroup]:
    """Several roles fused into one process per rank on one pool; returns a worker group per role."""
    prefix, pool = _pool(world_size, name, use_gpu)
    fused = create_colocated_worker_cls(
        {role: RayClassWithInitArgs(ray.remote(cls), **kwargs) for role, (cls, kwargs) in roles.items()}
    )
    fused.update_options({"max_concurrency": MAX_CONCURRENCY})
    groups = RayWorkerGroup(pool, fused, name_prefix=prefix).spawn(prefix_set=set(roles))
    for role, group in groups.items():
        group.resource_pool_ref = pool
        group.handles = [RoleHandle(w, role) for w in group.workers]
    return groups


def release(group: RayWorkerGroup) -> None:
    """Kill a group's workers and free its placement groups (a run that shares a Ray cluster must clean up)."""
    from ray.util.placement_group import remove_placement_group

    for worker in group.workers:
        ray.kill(worker, no_restart=True)
    pool = getattr(group, "resource_pool_ref", None)
    for pg in (pool.pgs if pool is not None else None) or []:
        remove_placement_group(pg)
    if pool is not None:
        pool.pgs = None  # colocated roles share the pool: free it once
