"""Conversions between the env / policy types and verl's `DataProto`, the one currency between roles."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from verl import DataProto

from verl_async_vla.envs.base import ShardObs, ShardStep
from verl_async_vla.models.policy import PolicyObs

# On CPU placement verl warns in every process that no accelerator was found: that is the intended set-up here.
logging.getLogger("verl.plugin.platform.platform_manager").setLevel(logging.ERROR)

# A global env key names one env across shards: shard rank * ENV_KEY_STRIDE + local env id.
ENV_KEY_STRIDE = 1 << 20


def obs_to_proto(obs: ShardObs, shard_rank: int) -> DataProto:
    return DataProto.from_dict(
        tensors={"image": torch.from_numpy(obs.image), "state": torch.from_numpy(obs.state)},
        non_tensors={
            "instruction": np.array(obs.instruction, dtype=object),
            "env_key": obs.env_ids.astype(np.int64) + shard_rank * ENV_KEY_STRIDE,
        },
    )


def step_to_proto(res: ShardStep, shard_rank: int) -> DataProto:
    out = obs_to_proto(res.obs, shard_rank)
    out.batch["reward"] = torch.from_numpy(res.reward)
    out.batch["done"] = torch.from_numpy(res.terminated | res.truncated)
    out.batch["success"] = torch.from_numpy(res.success)
    out.batch["env_steps"] = torch.from_numpy(res.env_steps)
    discarded = np.zeros(len(res.reward), bool) if res.discarded is None else res.discarded
    out.batch["discarded"] = torch.from_numpy(discarded)
    return out


def proto_to_policy_obs(data: DataProto) -> PolicyObs:
    return PolicyObs(data.batch["image"], data.batch["state"], list(data.non_tensor_batch["instruction"]))


def split_env_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (shard rank, local env id)."""
    keys = np.asarray(keys, dtype=np.int64)
    return keys // ENV_KEY_STRIDE, keys % ENV_KEY_STRIDE


def set_thread_budget(threads: int) -> None:
    """2 cores are shared by every Ray actor: each worker gets an explicit intra-op thread count."""
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


# ---- weights on the wire --------------------------------------------------------------------------------------
# Ray stores numpy arrays out of band: one copy into the shared-memory object store, and readers on the same node
# map it without copying. torch tensors are pickled through torch's own serializer instead (measured: 4.6 s to
# publish 300 MB to one rollout worker, against a fraction of a second as numpy). So weights travel as numpy; dtypes
# numpy lacks (bfloat16) travel as same-width integers and are viewed back on arrival.
_WIRE_VIEWS = {torch.bfloat16: torch.int16}


def weights_to_wire(weights: dict[str, torch.Tensor]) -> dict[str, tuple[np.ndarray, str]]:
    out = {}
    for name, t in weights.items():
        t = t.detach().cpu().contiguous()
        view = _WIRE_VIEWS.get(t.dtype)
        out[name] = ((t.view(view) if view else t).numpy(), str(t.dtype).removeprefix("torch."))
    return out


def weights_from_wire(wire: dict[str, tuple[np.ndarray, str]]) -> dict[str, torch.Tensor]:
    """Tensors that share the received buffers (read-only); `load_state_dict` copies them into the model."""
    out = {}
    with warnings.catch_warnings():  # read-only shared memory: fine, the tensors are only read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for name, (array, dtype) in wire.items():
            t, target = torch.from_numpy(array), getattr(torch, dtype)
            out[name] = t.view(target) if target in _WIRE_VIEWS else t
    return out
