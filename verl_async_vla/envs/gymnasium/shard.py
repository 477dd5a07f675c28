"""Gymnasium env shard: bring your own MuJoCo (or any rgb_array-rendering) task.

The image is the env's own render (resized to `env.image_size`), the state its flattened observation, the
instruction a fixed string from config (gymnasium tasks have none). Policy actions in [-1, 1] are mapped onto the
env's Box bounds. Success is the env's `info["is_success"]` (or `info["success"]`) when it reports one.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from verl_async_vla.config.schema import EnvConfig
from verl_async_vla.envs.base import EnvShard, EnvSpec, ShardObs, ShardStep


def resize_nearest(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3) by nearest-neighbour sampling (no image library needed)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    rows = (np.arange(size) * h // size).clip(0, h - 1)
    cols = (np.arange(size) * w // size).clip(0, w - 1)
    return image[rows][:, cols]


class GymnasiumShard(EnvShard):
    def __init__(self, cfg: EnvConfig, seed: int, rank: int = 0):
        if importlib.util.find_spec("gymnasium") is None:
            raise ValueError("env=gymnasium needs gymnasium: pip install 'verl-async-vla[gymnasium]'.")
        os.environ.setdefault("MUJOCO_GL", "egl")
        import gymnasium as gym
        from gymnasium import spaces

        gc, size = cfg.gymnasium, cfg.image_size
        try:
            make = lambda **kw: gym.make(gc.env_id, render_mode="rgb_array", **gc.make_kwargs, **kw)  # noqa: E731
            try:  # MuJoCo envs render straight at the wanted size
                self.envs = [make(width=size, height=size) for _ in range(cfg.num_envs_per_worker)]
            except TypeError:
                self.envs = [make() for _ in range(cfg.num_envs_per_worker)]
        except gym.error.Error as err:
            raise ValueError(f"env.gymnasium.env_id={gc.env_id!r} cannot be made: {err}") from None
        except ImportError as err:  # e.g. MuJoCo envs without gymnasium's `mujoco` extra
            raise ValueError(
                f"env.gymnasium.env_id={gc.env_id!r} needs a package that is missing ({err}); "
                "pip install 'verl-async-vla[gymnasium]' installs gymnasium[mujoco]."
            ) from None
        space, obs_space = self.envs[0].action_space, self.envs[0].observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(
                f"env.gymnasium.env_id={gc.env_id!r} has action space {space}; the VLA heads emit continuous "
                "vectors, so pick an env with a 1-D Box action space."
            )
        self.flatten = lambda o: spaces.flatten(obs_space, o).astype(np.float32)  # noqa: E731
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.bounded = bool(np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high)))
        self.cfg, self.num_envs, self.seed, self.rank = cfg, cfg.num_envs_per_worker, seed, rank
        self.spec = EnvSpec((size, size, 3), spaces.flatdim(obs_space), space.shape[0], cfg.max_episode_steps)
        self.t = np.zeros(self.num_envs, dtype=np.int64)
        self.episodes = np.zeros(self.num_envs, dtype=np.int64)

    def _observe(self, ids: np.ndarray, raw: list) -> ShardObs:
        if not len(raw):
            return ShardObs.empty(self.spec)
        image = np.stack(
            [resize_nearest(np.asarray(self.envs[i].render()), self.cfg.image_size) for i in ids]
        )
        state = np.stack([self.flatten(o) for o in raw])
        return ShardObs(np.asarray(ids, dtype=np.int64), image.astype(np.uint8), state,
                        [self.cfg.gymnasium.instruction] * len(ids))  # fmt: skip

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        raw = []
        for k, i in enumerate(np.asarray(env_ids).tolist()):
            # Seeds are unique per (run seed, shard, env, episode) so layouts never repeat across envs.
            episode = [self.seed, self.rank, i, int(self.episodes[i])]
            s = (
                int(seeds[k])
                if seeds is not None
                else int(np.random.SeedSequence(episode).generate_state(1)[0])
            )
            obs, _ = self.envs[i].reset(seed=s % 2**31)
            self.t[i] = 0
            self.episodes[i] += 1
            raw.append(obs)
        return self._observe(np.asarray(env_ids), raw)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        self.check_actions(env_ids, actions)
        n = len(env_ids)
        reward = np.zeros(n, dtype=np.float32)
        terminated, truncated, success = (np.zeros(n, dtype=bool) for _ in range(3))
        steps, raw = np.zeros(n, dtype=np.int64), []
        for k, i in enumerate(np.asarray(env_ids).tolist()):
            obs = None
            for a in np.clip(actions[k], -1.0, 1.0).astype(np.float64):
                env_action = self.low + (a + 1.0) * 0.5 * (self.high - self.low) if self.bounded else a
                obs, r, term, trunc, info = self.envs[i].step(env_action)
                reward[k] += float(r)
                steps[k] += 1
                self.t[i] += 1
                success[k] |= bool(info.get("is_success", info.get("success", False)))
                terminated[k] = bool(term) or success[k]
                truncated[k] = (bool(trunc) or self.t[i] >= self.cfg.max_episode_steps) and not terminated[k]
                if terminated[k] or truncated[k]:
                    break
            raw.append(obs)
        return ShardStep(
            self._observe(np.asarray(env_ids), raw), reward, terminated, truncated, success, steps
        )

    def get_rng_state(self) -> list[int]:
        """Layouts come from seeds derived from (run seed, shard, env, episode number): the episode numbers."""
        return [int(n) for n in self.episodes]

    def set_rng_state(self, state: list[int]) -> None:
        self.episodes[:] = state

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []
