"""Environment shards: where a trajectory is born. `make_env_shard` builds one from an `EnvConfig`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from verl_async_vla.envs.base import EnvShard, EnvSpec, ShardObs, ShardStep

if TYPE_CHECKING:
    from verl_async_vla.config.schema import EnvConfig


def _embedded_reach(cfg: EnvConfig, seed: int) -> EnvShard:
    from verl_async_vla.envs.embedded import EmbeddedReachShard

    return EmbeddedReachShard(cfg.num_envs_per_worker, cfg.image_size, cfg.max_episode_steps, seed)


# Backends import lazily so that the core never imports an optional simulator.
ENV_REGISTRY: dict[str, Callable[[EnvConfig, int], EnvShard]] = {"embedded_reach": _embedded_reach}


def make_env_shard(cfg: EnvConfig, seed: int) -> EnvShard:
    if cfg.name not in ENV_REGISTRY:
        raise ValueError(
            f"Unknown env.name={cfg.name!r}. Available: {sorted(ENV_REGISTRY)}; "
            "pick one with `env=<name>` on the command line."
        )
    shard = ENV_REGISTRY[cfg.name](cfg, seed)
    if cfg.latency != "none":
        from verl_async_vla.envs.wrappers import PROFILES, LatencyShard

        shard = LatencyShard(shard, PROFILES[cfg.latency], seed)
    return shard


__all__ = ["ENV_REGISTRY", "EnvShard", "EnvSpec", "ShardObs", "ShardStep", "make_env_shard"]
