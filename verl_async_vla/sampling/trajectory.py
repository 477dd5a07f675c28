"""Where steps become trajectories: per-env step records are assembled into finished episodes, and episodes into
one padded `DataProto` of rows (B, T) -- verl's (batch, response_length) layout with a decision mask."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from verl import DataProto

_episode_ids = itertools.count()


def next_episode_id() -> int:
    """The id the next episode assembled in this process gets (a run checkpoint stores it)."""
    global _episode_ids
    nxt = next(_episode_ids)
    _episode_ids = itertools.count(nxt)
    return nxt


def restart_episode_ids(start: int) -> None:
    """A resumed run goes on numbering where its checkpoint stopped, so ids never repeat within a run."""
    global _episode_ids
    _episode_ids = itertools.count(start)


@dataclass
class Episode:
    episode_id: int
    env_key: int
    instruction: str
    image: list[np.ndarray] = field(default_factory=list)  # per decision: (H, W, 3)
    state: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)  # (K, A)
    log_prob: list[float] = field(default_factory=list)  # behaviour log-prob
    value: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    version: list[int] = field(default_factory=list)  # policy version that chose each chunk
    # per decision, what the log-prob depends on besides the action (a flow head's denoising chain and step);
    # empty for heads that score an action from itself
    trace: list[np.ndarray] = field(default_factory=list)
    env_steps: int = 0
    success: bool = False
    imagined: bool = False  # played in a world model (env.world_model), not the real simulator

    def __len__(self) -> int:
        return len(self.reward)


class EpisodeAssembler:
    """Collects (observation, rollout answer, env outcome) per env and hands back episodes as they finish."""

    def __init__(self) -> None:
        self.open: dict[int, Episode] = {}
        self.discarded: list[tuple[int, int]] = []  # (episode id, decisions) lost to an env fault

    def begin(
        self, env_keys: np.ndarray, instructions: list[str], imagined: np.ndarray | None = None
    ) -> None:
        flags = np.zeros(len(env_keys), bool) if imagined is None else np.asarray(imagined, dtype=bool)
        for key, text, flag in zip(env_keys.tolist(), instructions, flags.tolist(), strict=True):
            self.open[key] = Episode(next(_episode_ids), key, text, imagined=flag)

    def record(self, obs: DataProto, rollout: DataProto, outcome: DataProto) -> list[Episode]:
        """Rows of the three protos are aligned on `env_key`; returns the episodes that ended at this step."""
        done = []
        keys = outcome.non_tensor_batch["env_key"]
        if not np.array_equal(keys, obs.non_tensor_batch["env_key"]):
            raise RuntimeError("env outcome rows are not aligned with the observations they answer")
        discarded = outcome.batch["discarded"] if "discarded" in outcome.batch.keys() else None
        for row, key in enumerate(keys.tolist()):
            if discarded is not None and bool(discarded[row]):  # the env faulted: the episode is lost
                ep = self.open.pop(key)
                self.discarded.append((ep.episode_id, len(ep)))
                continue
            ep = self.open[key]
            ep.image.append(obs.batch["image"][row].numpy())
            ep.state.append(obs.batch["state"][row].numpy())
            ep.actions.append(rollout.batch["actions"][row].numpy())
            ep.log_prob.append(float(rollout.batch["old_log_prob"][row]))
            ep.value.append(float(rollout.batch["values"][row]))
            ep.version.append(int(rollout.batch["policy_version"][row]))
            if "action_trace" in rollout.batch.keys():
                ep.trace.append(rollout.batch["action_trace"][row].numpy())
            ep.reward.append(float(outcome.batch["reward"][row]))
            ep.env_steps += int(outcome.batch["env_steps"][row])
            if bool(outcome.batch["done"][row]):
                ep.success = bool(outcome.batch["success"][row])
                done.append(self.open.pop(key))
        return done


def episodes_to_proto(episodes: list[Episode], horizon: int) -> DataProto:
    """Pad episodes to `horizon` decisions; padded positions have mask 0 and repeat the last observation."""
    if not episodes:
        raise ValueError("episodes_to_proto needs at least one episode")
    if max(len(e) for e in episodes) > horizon:
        raise ValueError(f"an episode has more than horizon={horizon} decisions")

    def pad(seq: list, dtype) -> np.ndarray:
        arr = np.asarray(seq, dtype=dtype)
        reps = horizon - len(arr)
        return np.concatenate([arr, np.repeat(arr[-1:], reps, axis=0)]) if reps else arr

    lengths = np.array([len(e) for e in episodes])
    mask = (np.arange(horizon)[None, :] < lengths[:, None]).astype(np.float32)
    tensors = {
        "image": np.stack([pad(e.image, np.uint8) for e in episodes]),
        "state": np.stack([pad(e.state, np.float32) for e in episodes]),
        "actions": np.stack([pad(e.actions, np.float32) for e in episodes]),
        "old_log_prob": np.stack([pad(e.log_prob, np.float32) for e in episodes]) * mask,
        "values": np.stack([pad(e.value, np.float32) for e in episodes]) * mask,
        "rewards": np.stack([pad(e.reward, np.float32) for e in episodes]) * mask,
        "policy_version": np.stack([pad(e.version, np.int64) for e in episodes]),
        "mask": mask,
    }
    traced = [bool(e.trace) for e in episodes]
    if any(traced):
        if not all(traced) or any(len(e.trace) != len(e) for e in episodes):
            raise ValueError("some episodes carry an action trace for every decision and some do not: they come "
                             "from different action heads and cannot be trained in one batch")  # fmt: skip
        tensors["action_trace"] = np.stack([pad(e.trace, np.float32) for e in episodes])
    return DataProto.from_dict(
        tensors={k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()},
        non_tensors={
            "instruction": np.array([e.instruction for e in episodes], dtype=object),
            "episode_id": np.array([e.episode_id for e in episodes], dtype=np.int64),
            # the env that played it: the group an outcome estimator (algos/advantages.py) compares it within
            "env_key": np.array([e.env_key for e in episodes], dtype=np.int64),
            "success": np.array([e.success for e in episodes], dtype=bool),
            "env_steps": np.array([e.env_steps for e in episodes], dtype=np.int64),
            "imagined": np.array([e.imagined for e in episodes], dtype=bool),
        },
    )


def episode_metrics(batch: DataProto) -> dict[str, float]:
    """Training-episode figures of a batch from the real simulator; a world model's episodes apart
    (`train/imagined_*`), since an imagined success is only what the model declares."""
    success, steps = batch.non_tensor_batch["success"], batch.non_tensor_batch["env_steps"]
    imagined = batch.non_tensor_batch.get("imagined", np.zeros(len(steps), bool)).astype(bool)
    returns = batch.batch["rewards"].sum(1).numpy()
    out = {}
    for prefix, rows in (("train/", ~imagined), ("train/imagined_", imagined)):
        if rows.any():
            out.update({f"{prefix}success": float(np.mean(success[rows])),
                        f"{prefix}episode_len": float(np.mean(steps[rows])),
                        f"{prefix}return": float(np.mean(returns[rows]))})  # fmt: skip
    return out
