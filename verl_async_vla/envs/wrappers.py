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


FAULT_KINDS = ("none", "raise", "hang", "nan_obs", "die", "schedule")


class _InjectionCounter:
    """How many faults were injected, per key, surviving the restart of a worker process or of the whole run (a
    `die` would otherwise repeat forever): files in the temp dir, under `token` (validate.py derives it from
    the run dir), else the Ray actor id (kept across restarts) or, outside Ray, the process id. `claim` is atomic
    (O_EXCL), so a scheduled fault fires once however many envs race for it."""

    def __init__(self, token: str = "") -> None:
        import os
        import tempfile

        try:
            import ray

            owner = ray.get_runtime_context().get_actor_id() if ray.is_initialized() else None
        except Exception:  # noqa: BLE001 - outside a Ray worker
            owner = None
        owner = token or owner or f"pid{os.getpid()}"
        self.dir = os.path.join(tempfile.gettempdir(), "verl_async_vla_faults", owner)
        os.makedirs(self.dir, exist_ok=True)

    def count(self, key: str) -> int:
        import os

        if not os.path.isdir(self.dir):  # a new run clears it (controller set-up), after the envs were built
            return 0
        return sum(1 for name in os.listdir(self.dir) if name.startswith(f"{key}."))

    def claim(self, name: str) -> bool:
        import os

        os.makedirs(self.dir, exist_ok=True)
        try:
            os.close(os.open(os.path.join(self.dir, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False


def forget_injected(token: str = "") -> None:
    """Reset the injection counts under `token` (a new run starts counting afresh; a resumed one does not), or this
    process's (tests that build several injecting envs in one process)."""
    import shutil

    shutil.rmtree(_InjectionCounter(token).dir, ignore_errors=True)


class FaultInjectionShard(EnvShard):
    """FAULT INJECTION ONLY: the env misbehaves on its `after_steps`-th control call (reset or step): `raise`s,
    `hang`s for `hang_s`, returns a NaN observation (`nan_obs`), or kills its whole worker process (`die`, as a
    segfault or an OOM kill would). It does so `times` times for this env (-1: every time), counted across env
    rebuilds and worker-process restarts.

    `schedule` (the soak run): every env is wrapped; fault n (n = 1, 2, ...) is due `every_s` x n seconds after
    `start_unix`, has kind `kinds[(n - 1) % len(kinds)]` and strikes env `n x 7 mod envs` on its next call
    within that period."""

    def __init__(self, inner: EnvShard, kind: str, env: int, after_steps: int, times: int, hang_s: float,
                 schedule: dict | None = None, token: str = ""):  # fmt: skip
        if kind not in FAULT_KINDS or kind == "none":
            raise ValueError(f"fault injection kind {kind!r}; use one of {list(FAULT_KINDS[1:])}")
        self.inner, self.kind, self.env, self.after, self.times = inner, kind, env, after_steps, times
        self.hang_s, self.schedule = hang_s, schedule
        self.num_envs, self.spec = inner.num_envs, inner.spec
        self.calls = 0
        self.counter = _InjectionCounter(token)
        self.done_through = 0  # schedule: faults before this one are settled for this env

    def _due(self) -> str | None:
        """The kind of fault to inject on this call, if any."""
        self.calls += 1
        if self.schedule is not None:
            return self._scheduled()
        if self.calls < self.after or (
            self.times >= 0 and self.counter.count(f"env{self.env}") >= self.times
        ):
            return None
        self.counter.claim(f"env{self.env}.{self.counter.count(f'env{self.env}')}")
        return self.kind

    def _scheduled(self) -> str | None:
        """Fault n strikes only within its own period (a target env that makes no call then, being rebuilt or
        restarted, misses it): faults never pile up."""
        sch = self.schedule
        n = int((time.time() - sch["start_unix"]) // sch["every_s"])
        if n <= self.done_through:
            return None
        self.done_through = n
        if (n * 7) % sch["envs"] == self.env and self.counter.claim(f"fault{n}"):
            return sch["kinds"][(n - 1) % len(sch["kinds"])]
        return None

    def _misbehave(self, obs: ShardObs, kind: str) -> ShardObs:
        if kind == "raise":
            raise RuntimeError(f"injected fault: env {self.env} raised")
        if kind == "hang":
            time.sleep(self.hang_s)
        elif kind == "die":
            import os

            os._exit(17)
        elif kind == "nan_obs":
            obs.state[:] = np.nan
        return obs

    def get_rng_state(self) -> object | None:
        return self.inner.get_rng_state()

    def set_rng_state(self, state: object) -> None:
        self.inner.set_rng_state(state)

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        obs = self.inner.reset(env_ids, seeds)
        kind = self._due()
        return obs if kind is None else self._misbehave(obs, kind)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        res = self.inner.step(env_ids, actions)
        kind = self._due()
        if kind is not None:
            res.obs = self._misbehave(res.obs, kind)
        return res

    def close(self) -> None:
        self.inner.close()
