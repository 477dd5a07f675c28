"""MetaWorld env shard: N long-lived MetaWorld envs in one worker process, stepped as a batch.

Each env holds one task (a suite's tasks spread round-robin over every env of every shard) for the whole run and
starts each episode from one of the task's parametric variations (MetaWorld's `train_tasks`: 50 object and goal
placements per task, drawn once from `env.metaworld.variation_seed`): training draws from the first ones, held-out
seeds (>= HELD_OUT_SEED_BASE) draw from the last `eval_variations`, so the two never mix. The policy sees a rendered
camera image, the proprio state (hand position and gripper opening) and an instruction; the object and goal
positions MetaWorld puts in its state vector go to the scripted expert only.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from typing import Any

import numpy as np

from verl_async_vla.config.schema import EnvConfig
from verl_async_vla.envs.base import EnvShard, EnvSpec, PerEnvRngs, ShardObs, ShardStep
from verl_async_vla.envs.metaworld.tasks import INSTRUCTIONS, split_variations, suite_tasks

STATE_DIM = 4  # hand xyz + gripper opening: the first 4 of MetaWorld's 39-d observation
ACTION_DIM = 4  # hand xyz delta + gripper effort, in [-1, 1]
REWARDS = ("sparse", "dense")  # env.metaworld.reward
DENSE_MAX = 10.0  # MetaWorld v3's shaped rewards lie in [0, 10] (10 at success)
FIX = "pip install 'verl-async-vla[metaworld]' (metaworld 3.1.1, which pins mujoco 3.3.0)"


def require_metaworld() -> None:
    if importlib.util.find_spec("metaworld") is None:
        raise ImportError(f"env.name=metaworld needs the 'metaworld' package: {FIX}.")


_VARIATIONS_LOCK = threading.Lock()
_RENDER_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _variations(name: str, seed: int) -> tuple[Any, ...]:
    import metaworld

    return tuple(metaworld.MT1(name, seed=seed).train_tasks)


def task_variations(name: str, seed: int) -> tuple[Any, ...]:
    """MetaWorld's 50 parametric variations of one task (MT1's `train_tasks`, the same in every process given the
    seed), cached per process: building them resets the task's env 50 times (~1 s). MT1 seeds and draws from numpy's
    *global* generator, so env lanes building their shards in threads take turns (concurrent builds drew duplicate
    placements and MetaWorld refused them)."""
    with _VARIATIONS_LOCK:
        return _variations(name, seed)


def make_renderer(env: Any, size: int, fast: bool) -> Any:
    """A MuJoCo renderer of its own per env (its own GL context, made current by each render, so a lane's thread
    can render its env: gymnasium's viewer, which MetaWorld's `render()` uses, crashed in lane threads). `fast`: no
    multisampling, shadows or reflections, ~5 ms instead of ~100 ms per 64x64 frame on this CPU's software
    rasteriser (docs/metaworld.md); the buffer is sized and multisampled when the context is made, so the model's
    visual settings are changed first."""
    import mujoco

    model = env.model
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
    model.vis.global_.offheight = max(model.vis.global_.offheight, size)
    if fast:
        model.vis.quality.offsamples = 0
        model.mat_reflectance[:] = 0.0
    renderer = mujoco.Renderer(model, size, size)
    if fast:
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return renderer


class MetaWorldShard(PerEnvRngs, EnvShard):
    def __init__(self, cfg: EnvConfig, seed: int, rank: int = 0):
        require_metaworld()
        os.environ.setdefault("MUJOCO_GL", "egl")
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
        from metaworld.policies import ENV_POLICY_MAP

        mc, size = cfg.metaworld, cfg.image_size
        tasks = suite_tasks(mc.suite)
        self.cfg, self.num_envs = cfg, cfg.num_envs_per_worker
        self.tasks = [tasks[(rank * self.num_envs + i) % len(tasks)] for i in range(self.num_envs)]
        self.spec = EnvSpec((size, size, 3), STATE_DIM, ACTION_DIM, cfg.max_episode_steps)
        self.variations = {t: task_variations(t, mc.variation_seed) for t in set(self.tasks)}
        self.splits = {t: split_variations(len(v), mc.eval_variations) for t, v in self.variations.items()}
        self.experts = {t: ENV_POLICY_MAP[t]() for t in set(self.tasks)}
        self.envs = []
        for task in self.tasks:
            env = ALL_V3_ENVIRONMENTS[task]()
            env.set_task(self.variations[task][0])
            # one chunk may run past the limit by its length; the shard truncates at max_episode_steps itself
            env.max_path_length = cfg.max_episode_steps + 64
            env.reset()
            self.envs.append(env)
        self.renderers = [make_renderer(env, size, mc.fast_render) for env in self.envs]
        self.camera = mc.camera
        if mc.reward not in REWARDS:
            raise ValueError(f"env.metaworld.reward={mc.reward!r} is unknown; use one of {list(REWARDS)}.")
        self.sparse = mc.reward == "sparse"
        self.rngs = [np.random.default_rng([seed, rank, i]) for i in range(self.num_envs)]
        self.t = np.zeros(self.num_envs, dtype=np.int64)
        self.variation = np.full(
            self.num_envs, -1, dtype=np.int64
        )  # which variation each episode started from
        self.phrasing = [INSTRUCTIONS[t][0] for t in self.tasks]
        self.full_obs: list[np.ndarray] = [
            np.zeros(39)
        ] * self.num_envs  # MetaWorld's state vector: expert only

    def _pick(self, i: int, seed: int | None) -> tuple[int, int]:
        """-> (variation, phrasing) of env i's next episode."""
        variation, rng = self.draw_start(i, seed, *self.splits[self.tasks[i]])
        return variation, int(rng.integers(3))

    def _render(self, i: int) -> np.ndarray:
        renderer = self.renderers[i]
        # one render at a time per process: MetaWorld's textured scenes rendered from several lane threads at once
        # crashed env workers (segfault in mjr_render, twice in a pilot MT10 run, ~1.5 min in), which the embedded
        # task's untextured scene never did; physics still runs in parallel
        with _RENDER_LOCK:
            renderer.update_scene(self.envs[i].data, camera=self.camera)
            return renderer.render()

    def _observe(self, ids: np.ndarray) -> ShardObs:
        if not len(ids):
            return ShardObs.empty(self.spec)
        image = np.stack([self._render(i) for i in ids.tolist()])
        state = np.stack([self.full_obs[i][:STATE_DIM] for i in ids.tolist()]).astype(np.float32)
        return ShardObs(ids.astype(np.int64), np.ascontiguousarray(image), state,
                        [self.phrasing[i] for i in ids.tolist()])  # fmt: skip

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        ids = np.asarray(env_ids, dtype=np.int64)
        for k, i in enumerate(ids.tolist()):
            variation, phrasing = self._pick(i, None if seeds is None else int(seeds[k]))
            task = self.tasks[i]
            self.envs[i].set_task(self.variations[task][variation])
            self.full_obs[i], _ = self.envs[i].reset()
            self.t[i], self.variation[i] = 0, variation
            self.phrasing[i] = INSTRUCTIONS[task][phrasing]
        return self._observe(ids)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        self.check_actions(env_ids, actions)
        ids = np.asarray(env_ids, dtype=np.int64)
        n = len(ids)
        reward = np.zeros(n, dtype=np.float32)
        success, steps = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        for k, i in enumerate(ids.tolist()):
            if self.t[i] >= self.cfg.max_episode_steps:
                raise RuntimeError(f"env {i} stepped after its episode ended; call reset([{i}]) first")
            env = self.envs[i]
            for a in np.clip(actions[k], -1.0, 1.0):
                obs, r, _, _, info = env.step(a.astype(np.float32))
                check_physics(env, self.tasks[i])
                self.full_obs[i] = obs
                # sparse: 1 at success, as the embedded task and LIBERO reward (pi_RL, RLinf); dense: MetaWorld's
                # shaped reward (0-10 per step) over 10
                reward[k] += float(info["success"]) if self.sparse else float(r) / DENSE_MAX
                steps[k] += 1
                self.t[i] += 1
                if info["success"]:  # MetaWorld's own success predicate for the task
                    success[k] = True
                    if not self.sparse:
                        # the episode ends at success, so without this a policy that hovers short of it (~0.5-0.9
                        # per step) earns more than one that succeeds early: pay the rest of the episode at the
                        # success reward, as if it went on there
                        reward[k] += float(self.cfg.max_episode_steps - self.t[i])
                    break
                if self.t[i] >= self.cfg.max_episode_steps:
                    break
        truncated = (self.t[ids] >= self.cfg.max_episode_steps) & ~success
        return ShardStep(self._observe(ids), reward, success.copy(), truncated, success, steps)

    def expert_actions(self, env_ids: np.ndarray, chunk: int) -> np.ndarray:
        """MetaWorld's scripted policy for each env's task (privileged: reads object and goal positions), planned a
        chunk ahead by stepping the env and restoring its state, so that demonstrations are open-loop chunks as the
        policy emits them."""
        out = np.zeros((len(env_ids), chunk, ACTION_DIM), np.float32)
        for k, i in enumerate(np.asarray(env_ids).tolist()):
            env, expert = self.envs[i], self.experts[self.tasks[i]]
            saved = save_state(env)
            obs = self.full_obs[i]
            for t in range(chunk):
                out[k, t] = np.clip(expert.get_action(obs), -1.0, 1.0)
                if t + 1 < chunk:
                    obs, *_ = env.step(out[k, t])
            restore_state(env, saved)
        return out

    def close(self) -> None:
        for renderer in self.renderers:
            renderer.close()
        for env in self.envs:
            env.close()
        self.envs, self.renderers = [], []


def _diverged_warnings() -> tuple[Any, ...]:
    import mujoco

    w = mujoco.mjtWarning
    return (w.mjWARN_BADQPOS, w.mjWARN_BADQVEL, w.mjWARN_BADQACC)


def check_physics(env: Any, task: str) -> None:
    """A diverging simulation (MuJoCo resets it and warns, or the state is no longer finite) loses its episode: the
    env lanes count the exception as the env's fault and discard the episode (sampling/env_faults.py)."""
    warnings = [env.data.warning[w] for w in _diverged_warnings()]
    if any(w.number for w in warnings) or not np.isfinite(env.data.qpos).all():
        for w in warnings:
            w.number = 0
        raise RuntimeError(
            f"MetaWorld {task}: the MuJoCo simulation diverged (non-finite state); episode lost"
        )


def save_state(env: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Everything a step changes: MuJoCo's full physics state and MetaWorld's own per-episode attributes."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    buf = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, buf, spec)
    attrs = {
        k: getattr(env, k) for k in ("curr_path_length", "_prev_obs", "_last_stable_obs") if hasattr(env, k)
    }
    return buf, {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in attrs.items()}


def restore_state(env: Any, saved: tuple[np.ndarray, dict[str, Any]]) -> None:
    import mujoco

    buf, attrs = saved
    mujoco.mj_setState(env.model, env.data, buf, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(env.model, env.data)
    for k, v in attrs.items():
        setattr(env, k, v)
