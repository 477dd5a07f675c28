"""Conversions between the env / policy types and verl's `DataProto`, the one currency between roles, and the plain
numpy rows of the async serving path (sampling/inference_server.py)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from verl import DataProto

from verl_async_vla.envs.base import ShardObs, ShardStep
from verl_async_vla.models.policy import PolicyObs
from verl_async_vla.plumbing.wire import ENV_KEY_STRIDE

# On CPU placement verl warns in every process that no accelerator was found: that is the intended set-up here.
logging.getLogger("verl.plugin.platform.platform_manager").setLevel(logging.ERROR)


def obs_to_proto(obs: ShardObs, shard_rank: int, imagined: bool = False) -> DataProto:
    """`imagined`: the rows come from world-model envs (env.world_model)."""
    return DataProto.from_dict(
        tensors={"image": torch.from_numpy(obs.image), "state": torch.from_numpy(obs.state)},
        non_tensors={
            "instruction": np.array(obs.instruction, dtype=object),
            "env_key": obs.env_ids.astype(np.int64) + shard_rank * ENV_KEY_STRIDE,
            "imagined": np.full(len(obs.env_ids), imagined, dtype=bool),
        },
    )


def step_to_proto(res: ShardStep, shard_rank: int, imagined: bool = False) -> DataProto:
    out = obs_to_proto(res.obs, shard_rank, imagined)
    out.batch["reward"] = torch.from_numpy(res.reward)
    out.batch["done"] = torch.from_numpy(res.terminated | res.truncated)
    out.batch["success"] = torch.from_numpy(res.success)
    out.batch["env_steps"] = torch.from_numpy(res.env_steps)
    discarded = np.zeros(len(res.reward), bool) if res.discarded is None else res.discarded
    out.batch["discarded"] = torch.from_numpy(discarded)
    return out


def proto_to_policy_obs(data: DataProto) -> PolicyObs:
    return PolicyObs(data.batch["image"], data.batch["state"], list(data.non_tensor_batch["instruction"]))


def rows_to_policy_obs(rows: dict[str, np.ndarray]) -> PolicyObs:
    """Numpy observation rows as the request channel carries them (image, state, instruction) -> the policy's input."""
    return PolicyObs(
        torch.from_numpy(rows["image"]), torch.from_numpy(rows["state"]), list(rows["instruction"])
    )
