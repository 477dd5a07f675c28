"""A cost-model policy for the emulated-cluster mode: real (tiny) torch maths, emulated compute time.

It implements the full `VLAPolicy` interface (sampling, log-probs, entropy, values, gradients), so rollout and
actor workers run their real code paths; what it emulates is *how long* an accelerator takes. `model.emulated_gpus`
= G data-parallel replicas behind one worker: a batch of B rows costs
    inference:  fixed + per_sample * ceil(B / G)
    training:   per_sample * ceil(B / G)            (forward + backward; scoring without grad costs 1/3 of it)
The profiles and where their constants come from are documented next to them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models.heads import GaussianChunkHead
from verl_async_vla.models.policy import ActOutput, EvalOutput, PolicyObs, VLAPolicy


@dataclass(frozen=True)
class CostProfile:
    infer_fixed_s: float  # per inference call (launch, transfer)
    infer_per_sample_s: float
    train_per_sample_s: float  # forward + backward of one decision


COST_PROFILES: dict[str, CostProfile] = {
    # The tiny VLA on one CPU thread as measured on this 2-core machine (foundation issue): ~5,900 samples/s
    # inference, ~2,800 samples/s training; ~2 ms per call of Ray + DataProto overhead.
    "tiny_vla_cpu": CostProfile(
        infer_fixed_s=0.002, infer_per_sample_s=1 / 5900, train_per_sample_s=1 / 2800
    ),
    # A ~7B VLA with parallel decoding on one datacenter GPU, order of magnitude only (OpenVLA-OFT reports
    # ~0.07 s per chunk at batch 1; batching amortises most of it): 60 ms per call + 2 ms per row, ~40 samples/s
    # training per GPU with full fine-tuning. Use it to see the shape of the scaling, not to predict a cluster.
    "vla7b_gpu": CostProfile(infer_fixed_s=0.060, infer_per_sample_s=0.002, train_per_sample_s=0.025),
}


class CostModelPolicy(VLAPolicy):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.cost_profile not in COST_PROFILES:
            raise ValueError(
                f"model.cost_profile={cfg.cost_profile!r} is unknown; use one of {sorted(COST_PROFILES)}."
            )
        if cfg.emulated_gpus < 1:
            raise ValueError("model.emulated_gpus must be >= 1.")
        self.cfg, self.cost = cfg, COST_PROFILES[cfg.cost_profile]
        self.chunk, self.action_dim = cfg.chunk, cfg.action_dim
        self.trunk = nn.Sequential(nn.Linear(cfg.state_dim, 16), nn.Tanh())
        self.head = GaussianChunkHead(16, cfg.chunk, cfg.action_dim, cfg.init_log_std)
        self.critic = nn.Linear(cfg.state_dim, 1)
        if cfg.cost_weights_mb > 0:  # bytes that travel with every version the way trainable weights would
            self.register_buffer(
                "weight_payload", torch.zeros(int(cfg.cost_weights_mb * 2**20), dtype=torch.uint8)
            )

    def _spend(self, seconds: float) -> None:
        time.sleep(seconds)

    def _per_replica(self, rows: int) -> int:
        return math.ceil(rows / self.cfg.emulated_gpus)

    def act(self, obs: PolicyObs, deterministic: bool = False) -> ActOutput:
        self._spend(self.cost.infer_fixed_s + self.cost.infer_per_sample_s * self._per_replica(len(obs)))
        s = obs.state.float()
        actions, log_prob, _ = self.head.sample(self.trunk(s), deterministic)
        return ActOutput(actions, log_prob, self.critic(s).squeeze(-1))  # envs clip to [-1, 1]

    def evaluate(
        self, obs: PolicyObs, actions: torch.Tensor, trace: torch.Tensor | None = None
    ) -> EvalOutput:
        share = 1.0 if torch.is_grad_enabled() else 1.0 / 3.0
        self._spend(share * self.cost.train_per_sample_s * self._per_replica(len(obs)))
        s = obs.state.float()
        log_prob, entropy = self.head.evaluate(self.trunk(s), actions)
        return EvalOutput(log_prob, entropy, self.critic(s).squeeze(-1))

    def bc_loss(self, obs: PolicyObs, actions: torch.Tensor) -> torch.Tensor:
        return self.head.bc_loss(self.trunk(obs.state.float()), actions)
