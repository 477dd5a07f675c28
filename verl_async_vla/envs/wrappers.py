"""Env-shard wrappers: latency injection (the timing of real simulators) and fault injection (tests and the soak
run only).

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

    def get_rng_state(self) -> dict | None:
        inner = self.inner.get_rng_state()
        return None if inner is None else {"inner": inner, "latency": self.rng.bit_generator.state}

    def set_rng_state(self, state: dict) -> None:
        self.inner.set_rng_state(state["inner"])
        self.rng.bit_generator.state = state["latency"]

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


FAULT_KINDS = ("none", "raise", "hang", "nan_obs", "die")
# Faults injected per (process, global env index): a rebuilt env is a new shard, and `times` counts across rebuilds.
_INJECTED: dict[int, int] = {}


class FaultInjectionShard(EnvShard):
    """FAULT INJECTION ONLY: the env misbehaves on its `after_steps`-th control call (reset or step): `raise`s,
    `hang`s for `hang_s`, returns a NaN observation (`nan_obs`), or kills its whole worker process (`die`, as a
    segfault or an OOM kill would). It does so `times` times in this process (-1: every time)."""

    def __init__(self, inner: EnvShard, kind: str, env: int, after_steps: int, times: int, hang_s: float):
        if kind not in FAULT_KINDS or kind == "none":
            raise ValueError(f"fault injection kind {kind!r}; use one of {list(FAULT_KINDS[1:])}")
        self.inner, self.kind, self.env, self.after, self.times, self.hang_s = (
            inner,
            kind,
            env,
            after_steps,
            times,
            hang_s,
        )
        self.num_envs, self.spec = inner.num_envs, inner.spec
        self.calls = 0

    def _due(self) -> bool:
        self.calls += 1
        done = _INJECTED.get(self.env, 0)
        if self.calls < self.after or (self.times >= 0 and done >= self.times):
            return False
        _INJECTED[self.env] = done + 1
        return True

    def _misbehave(self, obs: ShardObs) -> ShardObs:
        if self.kind == "raise":
            raise RuntimeError(f"injected fault: env {self.env} raised")
        if self.kind == "hang":
            time.sleep(self.hang_s)
        elif self.kind == "die":
            import os

            os._exit(17)
        elif self.kind == "nan_obs":
            obs.state[:] = np.nan
        return obs

    def get_rng_state(self) -> object | None:
        return self.inner.get_rng_state()

    def set_rng_state(self, state: object) -> None:
        self.inner.set_rng_state(state)

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        obs = self.inner.reset(env_ids, seeds)
        return self._misbehave(obs) if self._due() else obs

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        res = self.inner.step(env_ids, actions)
        if self._due():
            res.obs = self._misbehave(res.obs)
        return res

    def close(self) -> None:
        self.inner.close()
