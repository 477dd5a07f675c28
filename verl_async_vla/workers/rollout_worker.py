"""RolloutWorker: policy inference. Answers a batch of observations with action chunks, the behaviour log-prob and
value, tagged with the policy version that produced them; takes new weights by version between batches."""

from __future__ import annotations

import time

import torch
from verl import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, register

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import build_policy
from verl_async_vla.telemetry.timeline import Span, SpanRecorder
from verl_async_vla.workers.codec import proto_to_policy_obs, set_thread_budget


class RolloutWorker(Worker):
    def __init__(self, model_cfg: dict, seed: int, torch_threads: int = 1):
        super().__init__()
        set_thread_budget(torch_threads)
        torch.manual_seed(seed * 104729 + self.rank)
        self.policy = build_policy(ModelConfig(**model_cfg)).eval()
        self.policy_version = -1  # no weights yet
        self.spans = SpanRecorder("rollout", f"rollout/{self.rank}")

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_weights(self, weights: dict[str, torch.Tensor], version: int) -> int:
        if version > self.policy_version:
            self.policy.load_weights(weights)
            self.policy_version = version
        return self.policy_version

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def drain_spans(self) -> list[Span]:
        return self.spans.drain()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_weights_packed(self, weights_and_version: tuple[dict[str, torch.Tensor], int]) -> int:
        """Takes `ActorWorker.get_weights`' result as is, so the driver can pass its ObjectRef unresolved."""
        return self.set_weights(*weights_and_version)

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def generate(self, data: DataProto) -> DataProto:
        if self.policy_version < 0:
            raise RuntimeError("RolloutWorker.generate called before set_weights: publish version 0 first")
        t0 = time.time()
        deterministic = bool(data.meta_info.get("deterministic", False))
        with torch.no_grad():
            out = self.policy.act(proto_to_policy_obs(data), deterministic=deterministic)
        n = out.actions.shape[0]
        self.spans.record(t0, batch=n, version=self.policy_version)
        return DataProto.from_dict(
            tensors={
                "actions": out.actions,
                "old_log_prob": out.log_prob,
                "values": out.value,
                "policy_version": torch.full((n,), self.policy_version, dtype=torch.long),
            },
            non_tensors={"env_key": data.non_tensor_batch["env_key"]},
        )
