"""One thread per env, each owning a one-env shard: no env ever waits for another env of its worker.

Why threads in one process (and not one process per env): MuJoCo's Python bindings release the GIL inside
`mj_step` and rendering (measured here: two embedded envs stepped in two threads finish in 58 % of the sequential
time on 2 cores), so threads give both independence and parallelism at the memory cost of one process per worker.
Simulators whose Python code holds the GIL (robosuite / LIBERO) still get independence (a slow reset or step in one
lane holds only that lane; the others interleave) but no parallelism beyond the GIL; for those, more env workers
(processes) with fewer envs each are the way to use more cores.

Every call on env i runs on lane i's own thread, construction included: an EGL/OSMesa render context is current
on the thread that made it, so an env must never move between threads.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from verl_async_vla.config.schema import EnvConfig
from verl_async_vla.envs import EnvShard, ShardObs, ShardStep, make_env_shard
from verl_async_vla.telemetry.timeline import SpanRecorder

T = TypeVar("T")


class EnvLanes:
    def __init__(self, cfg: EnvConfig, seed: int, rank: int):
        self.num_envs = cfg.num_envs_per_worker
        one = dataclasses.replace(cfg, num_envs_per_worker=1)
        self._pools = [
            ThreadPoolExecutor(1, thread_name_prefix=f"env{rank}.{i}") for i in range(self.num_envs)
        ]
        # The shard "rank" is the global env index, so backends that spread tasks over shards (LIBERO) spread
        # them over envs exactly as before; seeds are distinct per env.
        futures = [
            self._pools[i].submit(make_env_shard, one, seed * 1024 + i, rank * self.num_envs + i)
            for i in range(self.num_envs)
        ]
        self.shards: list[EnvShard] = [f.result() for f in futures]
        self.spec = self.shards[0].spec
        # One span row per env: the ideal bound is computed per env, not per worker (telemetry/timeline.py).
        self.spans = [SpanRecorder("env", f"env/{rank}.{i:03d}") for i in range(self.num_envs)]

    def reset_env(self, env: int, seed: int | None = None) -> ShardObs:
        """On env's own thread (the caller is that lane): start a new episode."""
        t0 = time.time()
        obs = self.shards[env].reset(np.zeros(1, np.int64), None if seed is None else np.array([seed]))
        self.spans[env].record(t0, batch=1, kind="reset")
        return obs

    def step_env(self, env: int, chunk: np.ndarray) -> ShardStep:
        """On env's own thread: execute one action chunk (K, A)."""
        t0 = time.time()
        res = self.shards[env].step(np.zeros(1, np.int64), chunk[None])
        self.spans[env].record(t0, batch=1, kind="step")
        return res

    def submit(self, env: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run fn(*args) on env's own thread."""
        return self._pools[env].submit(fn, *args)

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        """Reset several envs in parallel (each on its lane); rows in the order of env_ids."""
        futures = [
            self.submit(int(i), self.reset_env, int(i), None if seeds is None else int(seeds[k]))
            for k, i in enumerate(env_ids)
        ]
        return concat_obs([f.result() for f in futures], np.asarray(env_ids, dtype=np.int64), self.spec)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        """Step several envs in parallel; a call lasts as long as its slowest env (the lockstep barrier)."""
        futures = [self.submit(int(i), self.step_env, int(i), actions[k]) for k, i in enumerate(env_ids)]
        return concat_steps([f.result() for f in futures], np.asarray(env_ids, dtype=np.int64), self.spec)

    def drain_spans(self) -> list:
        return [s for rec in self.spans for s in rec.drain()]

    def close(self) -> None:
        for i in range(self.num_envs):
            self.submit(i, self.shards[i].close).result()
        for pool in self._pools:
            pool.shutdown(wait=False)


def concat_obs(parts: list[ShardObs], env_ids: np.ndarray, spec) -> ShardObs:
    if not parts:
        return ShardObs.empty(spec)
    return ShardObs(env_ids, np.concatenate([p.image for p in parts]), np.concatenate([p.state for p in parts]),
                    [t for p in parts for t in p.instruction])  # fmt: skip


def concat_steps(parts: list[ShardStep], env_ids: np.ndarray, spec) -> ShardStep:
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0)

    return ShardStep(concat_obs([p.obs for p in parts], env_ids, spec), cat("reward").astype(np.float32),
                     cat("terminated").astype(bool), cat("truncated").astype(bool), cat("success").astype(bool),
                     cat("env_steps").astype(np.int64))  # fmt: skip
