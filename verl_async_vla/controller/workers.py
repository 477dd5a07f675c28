"""The run's worker groups: spawned once from the config, shared by both trainers, released at the end.

Training: env workers, rollout workers and the actor (disaggregated: a pool each; colocated: rollout + actor fused
per process). Evaluation has its own env and rollout workers, so it never disturbs training envs mid-episode and
never stops the async pipeline.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ray
from verl.single_controller.ray import RayWorkerGroup

from verl_async_vla.config.schema import FaultInjectionConfig, RunConfig, WorldModelConfig
from verl_async_vla.envs import check_env_backend
from verl_async_vla.models.checkpoint import check_compatible, load_checkpoint
from verl_async_vla.models.sft import start_checkpoint
from verl_async_vla.plumbing.process import actor_thread_count, core_layout, pin_to_cores
from verl_async_vla.workers import ActorWorker, EnvWorker, RolloutWorker
from verl_async_vla.workers.placement import init_ray, release, spawn_colocated, spawn_group


@dataclasses.dataclass
class WorkerSet:
    env: RayWorkerGroup
    rollout: RayWorkerGroup
    actor: RayWorkerGroup
    eval_env: RayWorkerGroup | None
    eval_rollout: RayWorkerGroup | None
    init_checkpoint: str
    eval_envs: int  # envs of the evaluation worker (0: evaluation off)
    # trainer.weight_sync: how the training rollout workers get each version
    weight_sync: str = "object_store"
    weight_bucket_mb: float = 256.0

    def publish(self, to: list[Any] | None = None, newest: bool = False) -> int:
        """The actor's current weights -> rollout workers; -> the version they now hold.

        The training rollout workers (`to` None) get them the way the async trainer publishes every version: the
        actor sends them itself by the run's weight plane (learning/weight_plane.py: `publish`, so both trainers
        share one publisher and `trainer.weight_sync=collective` works under sync too). Other workers (`to`: the
        evaluation worker, a rejoining rollout worker), which are not members of a collective group, get the last
        published snapshot (`newest`: the newest update's, for evaluation under `trainer.publish_lag`) through one
        object-store reference the driver passes on unresolved."""
        if to is None:
            actor, rollouts = self.actor.handles[0], self.rollout.handles
            out = ray.get(actor.publish_to.remote(rollouts, self.weight_sync, self.weight_bucket_mb))
            return out["version"]
        ref = self.actor.handles[0].get_weights.remote(newest)  # (weights, version): passed on unresolved
        return ray.get([w.set_weights_packed.remote(ref) for w in to])[0]

    def form_weight_group(self, backend: str) -> None:
        """The collective weight plane (learning/weight_plane.py): the actor (rank 0, it hosts the group's store)
        and every training rollout worker join one process group (formed once, at start-up, for either trainer)."""
        actor = self.actor.handles[0]
        addr, port = ray.get(actor.weight_group_address.remote())
        world = 1 + len(self.rollout.handles)
        ray.get([actor.join_weight_group.remote(addr, port, world, backend),
                 *(r.join_weight_group.remote(addr, port, world, i + 1, backend)
                   for i, r in enumerate(self.rollout.handles))])  # fmt: skip

    def processes(self) -> list[dict]:
        """Role, rank, pid and memory of every worker process (evaluation workers as `eval_env`, `eval_rollout`)."""
        groups = {"env": self.env, "rollout": self.rollout, "actor": self.actor, "eval_env": self.eval_env,
                  "eval_rollout": self.eval_rollout}  # fmt: skip
        out = []
        for role, group in groups.items():
            for info in (
                ray.get([h.process_info.remote() for h in group.handles]) if group is not None else []
            ):
                out.append({**info, "role": role})
        return out

    def release(self) -> None:
        # Simulators close on their own lanes first: a render context freed from another thread at process exit
        # fails (EGL contexts are bound to the thread that made them current).
        envs = [w for g in (self.env, self.eval_env) if g is not None for w in g.handles]
        ray.wait([w.close.remote() for w in envs], num_returns=len(envs), timeout=30)
        for group in (self.env, self.eval_env, self.rollout, self.eval_rollout, self.actor):
            if group is not None:
                release(group)


def spawn_workers(cfg: RunConfig) -> WorkerSet:
    t = cfg.trainer
    check_env_backend(cfg.env)
    layout = core_layout(t.cpu_layout, t.actor_workers, os.cpu_count() or 1)
    actor_cores, other_cores = layout or (None, None)
    # before Ray starts, so that its own processes (and the workers they fork) inherit the others' cores
    pin_to_cores(other_cores)
    env_workers = cfg.env.num_workers + cfg.env.imagined_workers  # world-model workers after the real ones
    init_ray(t.ray_address, logical_cpus=env_workers + t.rollout_workers + t.actor_workers + 4)
    common = dict(seed=cfg.seed, torch_threads=t.torch_threads)
    producer = dict(cores=other_cores, **common)
    # a training env or rollout process that dies is restarted by Ray in place (trainer=async_vla rejoins it:
    # controller/recovery.py; trainer=sync resumes the run from its checkpoint: main.py)
    restarts = {"max_restarts": t.worker_restarts}
    env_wg = spawn_group(EnvWorker, env_workers, "env", options=restarts, env_cfg=dataclasses.asdict(cfg.env),
                         niceness=t.env_nice, **producer)  # fmt: skip
    spec = env_wg.spec()
    if spec.action_dim != cfg.model.action_dim or spec.state_dim != cfg.model.state_dim:
        release(env_wg)
        raise ValueError(
            f"env {cfg.env.name!r} has action_dim={spec.action_dim}, state_dim={spec.state_dim} but the model "
            f"has action_dim={cfg.model.action_dim}, state_dim={cfg.model.state_dim}; set "
            f"model.action_dim={spec.action_dim} model.state_dim={spec.state_dim}."
        )
    if cfg.model.checkpoint:  # fail here, in one line, rather than inside a remote worker
        check_compatible(load_checkpoint(cfg.model.checkpoint)["model_cfg"], cfg.model)
    init_ckpt = str(start_checkpoint(cfg))
    model_cfg = dataclasses.asdict(cfg.model)
    rollout_kwargs = dict(model_cfg=model_cfg, **producer)
    gpu = cfg.model.device.startswith("cuda")  # one GPU per rollout / actor process (per fused process)
    # No bigger than a training worker's envs: a LIBERO env holds ~1-2 GB.
    eval_envs = min(t.eval_episodes, cfg.env.num_envs_per_worker, 32)
    eval_env_wg = eval_rollout_wg = None
    if eval_envs > 0:
        # injected faults target training envs only (their env index means a training env)
        no_faults = dataclasses.replace(cfg.env.faults, inject=FaultInjectionConfig())
        # and evaluation is the real simulator's, never a world model's
        eval_env = dataclasses.replace(
            cfg.env,
            num_envs_per_worker=eval_envs,
            latency="none",
            faults=no_faults,
            world_model=WorldModelConfig(),
        )
        eval_env_wg = spawn_group(EnvWorker, 1, "eval_env", env_cfg=dataclasses.asdict(eval_env),
                                  niceness=t.env_nice, **producer)  # fmt: skip
        eval_rollout_wg = spawn_group(RolloutWorker, 1, "eval_rollout", use_gpu=gpu, niceness=t.rollout_nice,
                                      **rollout_kwargs)  # fmt: skip
    actor_kwargs = dict(model_cfg=model_cfg, algo_cfg=dataclasses.asdict(cfg.algo), init_checkpoint=init_ckpt,
                        actor_strategy=t.actor_strategy,
                        # the actor's own thread count (actor_apart: a rank's threads share its one core)
                        **{**common, "torch_threads": actor_thread_count(t.actor_threads, t.torch_threads,
                           t.actor_workers, len(actor_cores or []) or os.cpu_count() or 1)})  # fmt: skip
    if t.placement == "colocated":  # one process per rank holds both models (verl's colocated worker)
        roles = {"rollout": (RolloutWorker, rollout_kwargs), "actor": (ActorWorker, actor_kwargs)}
        groups = spawn_colocated(roles, t.rollout_workers, "policy", use_gpu=gpu)
        rollout_wg, actor_wg = groups["rollout"], groups["actor"]
    else:
        rollout_wg = spawn_group(RolloutWorker, t.rollout_workers, "rollout", use_gpu=gpu, options=restarts,
                                 niceness=t.rollout_nice, **rollout_kwargs)  # fmt: skip
        actor_wg = spawn_group(
            ActorWorker, t.actor_workers, "actor", use_gpu=gpu, cores=actor_cores, **actor_kwargs
        )
    if (
        t.actor_workers > 1
    ):  # data-parallel ranks follow rank 0 (its streamed updates, its train-state gathers)
        ray.get(actor_wg.handles[0].set_peers.remote(actor_wg.handles[1:]))
    workers = WorkerSet(env_wg, rollout_wg, actor_wg, eval_env_wg, eval_rollout_wg, init_ckpt, eval_envs,
                        t.weight_sync, t.weight_bucket_mb)  # fmt: skip
    if t.weight_sync == "collective":
        workers.form_weight_group("nccl" if gpu else "gloo")
    return workers
