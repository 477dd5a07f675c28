"""Env-shard wrappers: latency injection (the timing of real simulators) and fault injection (for tests).

Real VLA simulators are slow and long-tailed: a LIBERO step renders two cameras (~0.1-0.25 s on CPU) and a reset
takes seconds. `LatencyShard` adds that time to a fast shard, seeded, so throughput benchmarks exercise the
scheduler under realistic stage times without the cost of the real simulator. Env workers hold one-env shards on
their own lanes (sampling/env_lanes.py), so each env's latency is its own: a lockstep call over several envs lasts
as long as its slowest env, an async env waits only for itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verl_async_vla.envs.base import EnvShard, ShardObs, ShardStep


@dataclass(frozen=True)
class LatencyProfile:
    step_median_s: float  # median time of one control step
    step_sigma: float  # lognormal sigma (0 = constant)
    reset_s: float  # time of one reset
    straggler_env: int | None = None  # this env (global index) resets in `straggler_reset_s` instead
    straggler_reset_s: float = 0.0


# The reference profiles are fixed so that figures stay comparable across versions (docs/benchmarks.md).
PROFILES: dict[str, LatencyProfile] = {
    "uniform": LatencyProfile(step_median_s=0.010, step_sigma=0.0, reset_s=0.0),
    "longtail": LatencyProfile(step_median_s=0.010, step_sigma=1.0, reset_s=0.5),
    # One env whose every reset takes 1 s (a scene that loads slowly): its siblings must not wait for it.
    "reset_straggler": LatencyProfile(
        step_median_s=0.005, step_sigma=0.0, reset_s=0.0, straggler_env=0, straggler_reset_s=1.0
    ),  # fmt: skip
}


class LatencyShard(EnvShard):
    def __init__(self, inner: EnvShard, profile: LatencyProfile, seed: int = 0, rank: int = 0):
        self.inner, self.profile = inner, profile
        # `rank` is the shard's first global env index (one-env shards: the env's own index)
        self.reset_s = profile.straggler_reset_s if profile.straggler_env == rank else profile.reset_s
        self.num_envs, self.spec = inner.num_envs, inner.spec
        self.rng = np.random.default_rng([seed, 0x1A7])
        self.injected_s = 0.0

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.injected_s += seconds
            time.sleep(seconds)

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        obs = self.inner.reset(env_ids, seeds)
        self._sleep(self.reset_s if len(env_ids) else 0.0)
        return obs

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        res = self.inner.step(env_ids, actions)
        p = self.profile
        per_env = [
            float(np.sum(p.step_median_s * np.exp(p.step_sigma * self.rng.standard_normal(int(n)))))
            for n in res.env_steps
        ]
        self._sleep(max(per_env, default=0.0))
        return res

    def close(self) -> None:
        self.inner.close()


class CrashingShard(EnvShard):
    """FAULT INJECTION ONLY: a shard that raises after `crash_after` step calls, to test dead-worker handling."""

    def __init__(self, inner: EnvShard, crash_after: int):
        self.inner, self.crash_after, self.calls = inner, crash_after, 0
        self.num_envs, self.spec = inner.num_envs, inner.spec

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        return self.inner.reset(env_ids, seeds)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        self.calls += 1
        if self.calls > self.crash_after:
            raise RuntimeError(f"injected env crash after {self.crash_after} step calls")
        return self.inner.step(env_ids, actions)
