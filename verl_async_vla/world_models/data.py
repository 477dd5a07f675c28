"""Offline episodes for a world model: recorded from the real simulator, on training layouts only.

Behaviours, mixed per episode so that the model sees the actions RL will try, not only the expert's:
- `expert`: the scripted expert with Gaussian action noise of a per-episode scale (0 to 1: from demonstrations to
  nearly random motion);
- `policy`: a policy checkpoint (the SFT start), sampling its own actions, as the RL run will at its start.

Layouts come from the shard's own training streams (never a seed >= HELD_OUT_SEED_BASE), so a world model never
sees, and its resets never start from, a layout that evaluation uses.

Storage (`.npz`): every episode's frames contiguous (T + 1 frames for T decisions) with the end-effector's distance
to the named cube at each (the shaping potential, read from the simulator: what the world model's reward learns),
the decisions' chunks, rewards and successes, and per episode its instruction and behaviour.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verl_async_vla.envs import EnvShard

log = logging.getLogger(__name__)

# chunk actor: (images (n,H,W,3) uint8, states (n,S), instructions) -> chunks (n, K, A)
ChunkActor = Callable[[np.ndarray, np.ndarray, list[str]], np.ndarray]
EXPERT_NOISE = (0.0, 0.3, 0.6, 1.0)  # per-episode action-noise scales of the `expert` behaviour


@dataclass
class WorldModelData:
    frames: np.ndarray  # (F, H, W, 3) uint8
    states: np.ndarray  # (F, S) float32
    goal_distance: np.ndarray  # (F,) float32: the shaping potential at each frame
    actions: np.ndarray  # (D, K, A) float32
    reward: np.ndarray  # (D,) float32
    success: np.ndarray  # (D,) bool
    env_steps: np.ndarray  # (D,) int64
    ep_start: np.ndarray  # (E,) first frame of each episode
    ep_len: np.ndarray  # (E,) decisions of each episode
    instruction: np.ndarray  # (E,) str
    behaviour: np.ndarray  # (E,) str

    @property
    def episodes(self) -> int:
        return len(self.ep_len)

    def transitions(self, episodes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (frame index, decision index, episode) of every decision of `episodes` (default all); the frame after
        decision d is frame index + 1."""
        eps = np.arange(self.episodes) if episodes is None else np.asarray(episodes)
        frames, decisions, owner = [], [], []
        for e in eps.tolist():
            t = np.arange(self.ep_len[e])
            frames.append(self.ep_start[e] + t)
            decisions.append(self.ep_start[e] - e + t)  # one frame more than decisions per earlier episode
            owner.append(np.full(len(t), e))
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
        return cat(frames), cat(decisions), cat(owner)

    def split(self, held_out_every: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Episodes for training and for measuring prediction error (every `held_out_every`-th): both from training
        layouts; the held-out ones are episodes the model was not fitted on."""
        idx = np.arange(self.episodes)
        held = idx % held_out_every == held_out_every - 1
        return idx[~held], idx[held]

    def save(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> WorldModelData:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"world-model dataset {path} does not exist; build it with "
                "`python -m verl_async_vla.world_models.pretrain --out <dir>` (it records the episodes first)."
            )
        with np.load(path, allow_pickle=False) as z:
            missing = [f.name for f in dataclasses.fields(cls) if f.name not in z]
            if missing:
                raise ValueError(f"{path} is not a world-model dataset (missing {missing}); rebuild it.")
            return cls(**{f.name: z[f.name] for f in dataclasses.fields(cls)})


def record_episodes(shard: EnvShard, episodes: int, chunk: int, rng: np.random.Generator,
                    policy: ChunkActor | None = None, policy_share: float = 0.0) -> WorldModelData:  # fmt: skip
    """`episodes` real episodes from `shard`'s training layouts (its own streams: `reset` without seeds), a
    `policy_share` of them by `policy`, the rest by the noisy scripted expert. Episodes run in waves of the shard's
    envs; each env's episode is recorded on its own (envs finish at different times)."""
    if not (hasattr(shard, "expert_actions") and hasattr(shard, "goal_distance")):
        raise ValueError(f"{type(shard).__name__} has no scripted expert or goal distance: the world-model dataset "
                         "needs both.")  # fmt: skip
    if policy_share > 0 and policy is None:
        raise ValueError("policy_share > 0 needs a policy (a checkpoint to roll out)")
    n = shard.num_envs
    out: dict[str, list] = {
        k: [] for k in ("frames", "states", "goal_distance", "actions", "reward", "success", "env_steps")
    }
    ep_len, instr, behaviour = [], [], []
    while len(ep_len) < episodes:
        ids = np.arange(min(n, episodes - len(ep_len)))
        by_policy = rng.random(len(ids)) < policy_share
        noise = rng.choice(EXPERT_NOISE, size=len(ids))
        obs = shard.reset(ids)
        dist = shard.goal_distance(ids)
        rec = [{"frames": [obs.image[k]], "states": [obs.state[k]], "goal_distance": [dist[k]], "actions": [],
                "reward": [], "success": [], "env_steps": []} for k in range(len(ids))]  # fmt: skip
        texts = list(obs.instruction)
        live = ids.copy()
        while len(live):
            act = shard.expert_actions(live, chunk)
            act = np.clip(act + noise[live, None, None] * rng.standard_normal(act.shape), -1, 1).astype(
                np.float32
            )
            if by_policy[live].any():
                sel = by_policy[live]
                act[sel] = policy(obs.image[sel], obs.state[sel], [t for t, s in zip(obs.instruction, sel,
                                                                                      strict=True) if s])  # fmt: skip
            res = shard.step(live, act)
            dist = shard.goal_distance(live)
            for k, i in enumerate(live.tolist()):
                r = rec[i]
                r["actions"].append(act[k])
                r["reward"].append(res.reward[k])
                r["success"].append(res.success[k])
                r["env_steps"].append(res.env_steps[k])
                r["frames"].append(res.obs.image[k])
                r["states"].append(res.obs.state[k])
                r["goal_distance"].append(dist[k])
            keep = ~(res.terminated | res.truncated)
            live = live[keep]
            obs = res.obs
            obs.image, obs.state = obs.image[keep], obs.state[keep]
            obs.instruction = [t for t, k in zip(obs.instruction, keep, strict=True) if k]
        for k, r in enumerate(rec):
            for key in out:
                out[key].append(np.asarray(r[key]))
            ep_len.append(len(r["actions"]))
            instr.append(texts[k])
            behaviour.append("policy" if by_policy[k] else f"expert_noise{noise[k]:.1f}")
    lens = np.asarray(ep_len, np.int64)
    data = WorldModelData(
        frames=np.concatenate(out["frames"]).astype(np.uint8),
        states=np.concatenate(out["states"]).astype(np.float32),
        goal_distance=np.concatenate(out["goal_distance"]).astype(np.float32),
        actions=np.concatenate(out["actions"]).astype(np.float32),
        reward=np.concatenate(out["reward"]).astype(np.float32),
        success=np.concatenate(out["success"]).astype(bool),
        env_steps=np.concatenate(out["env_steps"]).astype(np.int64),
        ep_start=np.concatenate([[0], np.cumsum(lens + 1)[:-1]]).astype(np.int64),
        ep_len=lens,
        instruction=np.asarray(instr, dtype=str),
        behaviour=np.asarray(behaviour, dtype=str),
    )
    log.info("recorded %d episodes, %d decisions (%.0f %% successful)", data.episodes, len(data.actions),
             100 * np.mean([data.success[data.ep_start[e] - e + data.ep_len[e] - 1] for e in range(data.episodes)]))  # fmt: skip
    return data
