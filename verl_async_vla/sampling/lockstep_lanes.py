"""The lockstep view of an env worker's lanes (sync training, evaluation): reset or step several envs at once, each
on its own lane (sampling/env_lanes.py), and return when the slowest is done: the lockstep barrier. A faulted env's
episode is discarded and the env recovered through the lanes' own fault path. The async stream does not use this
view: each of its envs drives its own lane (sampling/env_stream.py)."""

from __future__ import annotations

import numpy as np

from verl_async_vla.envs import EnvSpec, ShardObs, ShardStep
from verl_async_vla.sampling.env_lanes import EnvLanes


class LockstepLanes:
    def __init__(self, lanes: EnvLanes):
        self.lanes = lanes

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        """Reset several envs in parallel; rows in the order of env_ids. Quarantined envs are left out; an env whose
        reset faults is recovered and reset again."""
        lanes = self.lanes
        rows = [(k, int(i)) for k, i in enumerate(env_ids) if not lanes.health[int(i)].quarantined]
        got: dict[int, ShardObs] = {}
        while rows:
            calls = [(k, i, lanes.submit_guarded(i, lanes.reset_env, i, None if seeds is None else int(seeds[k])))
                     for k, i in rows]  # fmt: skip
            retry = []
            for k, i, call in calls:
                obs = lanes.settle(i, lanes.wait_guarded(i, call))
                if obs is not None:
                    got[i] = obs
                elif not lanes.health[i].quarantined:
                    retry.append((k, i))
            rows = retry
        ids = [int(i) for i in env_ids if int(i) in got]
        return concat_obs([got[i] for i in ids], np.asarray(ids, dtype=np.int64), lanes.spec)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        """Step several envs in parallel; a call lasts as long as its slowest env. A faulted env's row comes back
        `discarded` (its episode is lost; it is rebuilt and plays again in the next wave)."""
        lanes = self.lanes
        calls = [
            lanes.submit_guarded(int(i), lanes.step_env, int(i), actions[k]) for k, i in enumerate(env_ids)
        ]
        parts, discarded = [], []
        for k, i in enumerate(env_ids):
            res = lanes.settle(int(i), lanes.wait_guarded(int(i), calls[k]))
            discarded.append(res is None)
            parts.append(res if res is not None else discarded_step(lanes.spec))
        out = concat_steps(parts, np.asarray(env_ids, dtype=np.int64), lanes.spec)
        out.discarded = np.array(discarded, dtype=bool)
        return out


def discarded_step(spec: EnvSpec) -> ShardStep:
    """The row of an env whose episode was discarded: done, no reward, a blank observation nobody reads."""
    obs = ShardObs(np.zeros(1, np.int64), np.zeros((1, *spec.image_shape), np.uint8),
                   np.zeros((1, spec.state_dim), np.float32), ["(discarded)"])  # fmt: skip
    return ShardStep(obs, np.zeros(1, np.float32), np.zeros(1, bool), np.ones(1, bool), np.zeros(1, bool),
                     np.zeros(1, np.int64))  # fmt: skip


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
