"""A world model behind the `EnvShard` API: imagined envs that the workers, trainers and ledger use unchanged.

Reset draws a *real* context (the first frame, state and instruction of a stored real episode, recorded on training
layouts only: world_models/data.py) from the env's own generator; step asks the world model for the chunk's
outcome. Success is what the world model declares; a time limit ends an episode as in the real env. A held-out
seed (>= HELD_OUT_SEED_BASE: evaluation) is refused: success is only ever measured in the real simulator.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from verl_async_vla.config.schema import EnvConfig
from verl_async_vla.envs.base import HELD_OUT_SEED_BASE, EnvShard, EnvSpec, PerEnvRngs, ShardObs, ShardStep
from verl_async_vla.world_models.base import WorldModel, WorldState
from verl_async_vla.world_models.data import WorldModelData
from verl_async_vla.world_models.registry import load_world_model


class WorldModelShard(PerEnvRngs, EnvShard):
    imagined = True  # env workers tag this shard's episodes source=imagined

    def __init__(self, model: WorldModel, contexts: WorldModelData, num_envs: int, max_episode_steps: int,
                 seed: int, rank: int = 0):  # fmt: skip
        if num_envs < 1:
            raise ValueError(f"env.world_model.envs_per_worker must be >= 1, got {num_envs}")
        if contexts.frames.shape[1:] != model.image_shape:
            raise ValueError(
                f"the world model predicts {model.image_shape} frames but its contexts are "
                f"{contexts.frames.shape[1:]}: rebuild both with the same env.image_size."
            )
        self.model, self.num_envs = model, num_envs
        self.spec = EnvSpec(model.image_shape, model.state_dim, model.action_dim, max_episode_steps)
        starts = contexts.ep_start
        self.ctx_image, self.ctx_state = contexts.frames[starts], contexts.states[starts]
        self.ctx_instruction = contexts.instruction.tolist()
        # a stream apart from the real shards' (seeded by (seed, env)): imagined envs replay stored starts
        self.rngs = [np.random.default_rng([seed, 7_000_003, rank, i]) for i in range(num_envs)]
        self.image = np.zeros((num_envs, *model.image_shape), np.uint8)
        self.state = np.zeros((num_envs, model.state_dim), np.float32)
        self.instruction = [""] * num_envs
        self.steps = np.zeros(num_envs, np.int64)
        self.done = np.ones(num_envs, bool)

    @property
    def version(self) -> int:
        return int(getattr(self.model, "version", 0))

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        env_ids = np.asarray(env_ids, dtype=np.int64)
        if seeds is not None and (np.asarray(seeds) >= HELD_OUT_SEED_BASE).any():
            raise ValueError(
                "a world-model env was asked for a held-out (evaluation) layout: evaluation runs in the real "
                "simulator only."
            )
        for k, i in enumerate(env_ids.tolist()):
            rng = self.rngs[i] if seeds is None else np.random.default_rng(int(seeds[k]))
            c = int(rng.integers(len(self.ctx_instruction)))
            self.image[i], self.state[i], self.instruction[i] = (
                self.ctx_image[c],
                self.ctx_state[c],
                self.ctx_instruction[c],
            )
            self.steps[i], self.done[i] = 0, False
        return self._observe(env_ids)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        env_ids = np.asarray(env_ids, dtype=np.int64)
        self.check_actions(env_ids, actions)
        if self.done[env_ids].any():
            raise RuntimeError(f"imagined env(s) {env_ids[self.done[env_ids]].tolist()} stepped after their episode "
                               "ended; reset them first")  # fmt: skip
        pred = self.model.predict(
            WorldState(self.image[env_ids], self.state[env_ids], [self.instruction[i] for i in env_ids]),
            actions,
        )
        left = self.spec.max_episode_steps - self.steps[env_ids]
        env_steps = np.minimum(actions.shape[1], left)
        self.steps[env_ids] += env_steps
        terminated = pred.success.astype(bool)
        truncated = ~terminated & (self.steps[env_ids] >= self.spec.max_episode_steps)
        self.image[env_ids], self.state[env_ids] = pred.image, pred.state
        self.done[env_ids] = terminated | truncated
        return ShardStep(self._observe(env_ids), pred.reward.astype(np.float32), terminated, truncated,
                         terminated.copy(), env_steps.astype(np.int64))  # fmt: skip

    def _observe(self, env_ids: np.ndarray) -> ShardObs:
        return ShardObs(env_ids, self.image[env_ids].copy(), self.state[env_ids].copy(),
                        [self.instruction[i] for i in env_ids])  # fmt: skip


_LOADED: dict[str, tuple[WorldModel, WorldModelData]] = {}  # checkpoint -> (model, contexts), one per process
_LOAD_LOCK = threading.Lock()


def make_imagined_shard(cfg: EnvConfig, seed: int, rank: int) -> WorldModelShard:
    """An imagined shard of `cfg.num_envs_per_worker` envs from `cfg.world_model` (the env lanes' one-env shards:
    every lane of a worker shares one loaded model and its contexts)."""
    path = str(Path(cfg.world_model.checkpoint or "").expanduser())
    with _LOAD_LOCK:
        if path not in _LOADED:
            contexts = Path(path).parent / "episodes.npz"
            _LOADED[path] = (load_world_model(path), WorldModelData.load(contexts))
        model, data = _LOADED[path]
    if model.image_shape != (cfg.image_size, cfg.image_size, 3):
        raise ValueError(
            f"the world model {path} predicts {model.image_shape} frames, env.image_size={cfg.image_size}: pre-train "
            "it at the run's image size."
        )
    return WorldModelShard(model, data, cfg.num_envs_per_worker, cfg.max_episode_steps, seed, rank)
