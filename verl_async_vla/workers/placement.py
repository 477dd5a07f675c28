"""Resource pools and worker groups. verl's `ResourcePoolManager` hard-codes `use_gpu=True`, so pools are built
here (CPU by default, GPUs when present); see patches/0001 for the upstream proposal."""

from __future__ import annotations

import os
import uuid
from typing import Any

import ray
from verl.single_controller.ray import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup

# Every worker process inherits these: one BLAS/OMP thread each, since all roles share 2 cores.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MUJOCO_GL": "egl"}


def init_ray(address: str | None, logical_cpus: int) -> None:
    """Start (or join) Ray. Logical CPUs may exceed physical cores: workers are mostly idle-waiting on each other,
    and each one pins its own thread count, so oversubscription is intended."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=True, runtime_env={"env_vars": WORKER_ENV}
    )
    if address is None:
        kwargs["num_cpus"] = logical_cpus
    ray.init(address=address, **kwargs)


def spawn_group(
    worker_cls: type, world_size: int, name: str, use_gpu: bool = False, **init_kwargs: Any
) -> RayWorkerGroup:
    """One role's `RayWorkerGroup` on its own pool (disaggregated placement). Names get a unique suffix: Ray
    placement-group names must be unique for the life of the cluster, and several runs may share one."""
    prefix = f"{name}_{uuid.uuid4().hex[:6]}_"
    pool = RayResourcePool(
        process_on_nodes=[world_size], use_gpu=use_gpu, max_colocate_count=1, name_prefix=prefix
    )
    group = RayWorkerGroup(
        pool, RayClassWithInitArgs(ray.remote(worker_cls), **init_kwargs), name_prefix=prefix
    )
    group.resource_pool_ref = pool  # kept for release()
    return group


def release(group: RayWorkerGroup) -> None:
    """Kill a group's workers and free its placement groups (a run that shares a Ray cluster must clean up)."""
    from ray.util.placement_group import remove_placement_group

    for worker in group.workers:
        ray.kill(worker, no_restart=True)
    for pg in getattr(group, "resource_pool_ref", None).pgs or []:
        remove_placement_group(pg)
