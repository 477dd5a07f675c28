"""EnvWorker: one rank holds one env shard (N envs). No scheduling here: callers decide who steps when."""

from __future__ import annotations

import time

import numpy as np
import torch
from verl import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, register

from verl_async_vla.config.schema import EnvConfig, from_dict
from verl_async_vla.envs import EnvSpec, make_env_shard
from verl_async_vla.telemetry.timeline import Span, SpanRecorder
from verl_async_vla.workers.codec import obs_to_proto, set_thread_budget, split_env_key, step_to_proto


class EnvWorker(Worker):
    def __init__(self, env_cfg: dict, seed: int, torch_threads: int = 1):
        super().__init__()
        set_thread_budget(torch_threads)
        self.cfg: EnvConfig = from_dict(EnvConfig, env_cfg)
        self.shard = make_env_shard(self.cfg, seed=seed * 7919 + self.rank, rank=self.rank)
        self.spans = SpanRecorder("env", f"env/{self.rank}")

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def spec(self) -> EnvSpec:
        return self.shard.spec

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def reset(self, env_ids: np.ndarray | None = None, seeds: np.ndarray | None = None) -> DataProto:
        """Reset `env_ids` of this shard (all when None); `seeds` pin layouts (held-out evaluation)."""
        t0 = time.time()
        ids = np.arange(self.shard.num_envs) if env_ids is None else np.asarray(env_ids)
        out = obs_to_proto(self.shard.reset(ids, seeds), self.rank)
        self.spans.record(t0, batch=len(ids))
        return out

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def step(self, data: DataProto) -> DataProto:
        """Execute action chunks for the rows whose `env_key` belongs to this shard and that are `active`."""
        t0 = time.time()
        ranks, local = split_env_key(data.non_tensor_batch["env_key"])
        active = data.batch["active"].numpy().astype(bool) & (ranks == self.rank)
        res = self.shard.step(local[active], data.batch["actions"][active].numpy())
        self.spans.record(t0, batch=int(active.sum()))
        return step_to_proto(res, self.rank)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def step_and_reset(self, data: DataProto) -> tuple[DataProto, DataProto]:
        """Async path, called on one shard's handle: step the given envs, reset at once those whose episode ended
        (no waiting for the others) and return (outcomes, first observations of the new episodes)."""
        t0 = time.time()
        _, local = split_env_key(data.non_tensor_batch["env_key"])
        res = self.shard.step(local, data.batch["actions"].numpy())
        finished = res.obs.env_ids[res.terminated | res.truncated]
        out = step_to_proto(res, self.rank), obs_to_proto(self.shard.reset(finished), self.rank)
        self.spans.record(t0, batch=len(local))
        return out

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def drain_spans(self) -> list[Span]:
        return self.spans.drain()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def close(self) -> None:
        self.shard.close()


def actions_for_all_envs(
    env_keys: np.ndarray, active: np.ndarray, actions: torch.Tensor, rows: np.ndarray
) -> DataProto:
    """A step request covering every env (so DP dispatch splits it shard by shard); only `active` rows execute."""
    full = torch.zeros((len(env_keys),) + tuple(actions.shape[1:]), dtype=actions.dtype)
    full[torch.from_numpy(rows)] = actions
    return DataProto.from_dict(
        tensors={"actions": full, "active": torch.from_numpy(active)},
        non_tensors={"env_key": env_keys},
    )
