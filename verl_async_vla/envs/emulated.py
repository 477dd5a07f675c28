"""Emulated env for the emulated-cluster mode: no physics, no rendering, only episode structure.

Episodes end after a seeded random number of control steps (a quarter of the horizon up to the horizon; half of
them successes), observations are constant tiny images and random states. Its *timing* comes from the latency
wrapper (`env.latency`, envs/wrappers.py), so thousands of envs cost sleeps instead of CPU, and the real workers,
controllers and Ray transport run unchanged on top (benchmarks/emulated_cluster.py).
"""

from __future__ import annotations

import numpy as np

from verl_async_vla.envs.base import EnvShard, EnvSpec, ShardObs, ShardStep


class EmulatedShard(EnvShard):
    def __init__(self, num_envs: int, image_size: int, max_episode_steps: int, seed: int, state_dim: int = 4,
                 action_dim: int = 2, cameras: int = 1):  # fmt: skip
        self.num_envs = num_envs
        self.spec = EnvSpec((image_size, cameras * image_size, 3), state_dim, action_dim, max_episode_steps)
        self.rng = np.random.default_rng([seed, 0xE11])
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.length = np.full(num_envs, max_episode_steps, dtype=np.int64)
        self.succeeds = np.zeros(num_envs, dtype=bool)
        # random pixels, so that nothing downstream can compress them away
        self.image = self.rng.integers(0, 256, (num_envs, *self.spec.image_shape), dtype=np.uint8)

    def _observe(self, ids: np.ndarray) -> ShardObs:
        state = self.rng.standard_normal((len(ids), self.spec.state_dim)).astype(np.float32)
        return ShardObs(ids.astype(np.int64), self.image[ids], state, ["emulated task"] * len(ids))

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        ids = np.asarray(env_ids)
        horizon = self.spec.max_episode_steps
        self.t[ids] = 0
        self.length[ids] = self.rng.integers(max(1, horizon // 4), horizon + 1, len(ids))
        self.succeeds[ids] = self.rng.random(len(ids)) < 0.5
        return self._observe(ids)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        self.check_actions(env_ids, actions)
        ids = np.asarray(env_ids)
        steps = np.minimum(actions.shape[1], self.length[ids] - self.t[ids])
        self.t[ids] += steps
        ended = self.t[ids] >= self.length[ids]
        success = ended & self.succeeds[ids]
        truncated = ended & ~success
        return ShardStep(self._observe(ids), success.astype(np.float32), success, truncated, success, steps)
