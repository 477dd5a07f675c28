"""Action heads behind one interface: sample a chunk with its log-prob (and the trace that log-prob depends on),
or score a given chunk.

A decision's log-prob is the sum over the K x A action dimensions of the chunk (the chunk is one action of the
MDP whose step is an inference call), as in OpenVLA-OFT / pi0 RL fine-tuning. The Gaussian and token heads score an
action from the action alone (`trace_dim = 0`, their trace is None); the flow head (flow_head.py) needs the
denoising chain that produced it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models.flow_head import FlowChunkHead, MLPVelocityField, flow_head


class GaussianChunkHead(nn.Module):
    """OFT-style continuous chunk: mean from features, state-independent log-std (PPO, Schulman et al. 2017)."""

    trace_dim = 0

    def __init__(self, hidden: int, chunk: int, action_dim: int, init_log_std: float):
        super().__init__()
        self.chunk, self.action_dim = chunk, action_dim
        self.mean = nn.Linear(hidden, chunk * action_dim)
        self.log_std = nn.Parameter(torch.full((chunk * action_dim,), float(init_log_std)))

    def _dist(self, h: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mean(h), self.log_std.clamp(-5.0, 1.0).exp())

    def sample(self, h: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, None]:
        d = self._dist(h)
        flat = d.mean if deterministic else d.sample()
        return flat.view(-1, self.chunk, self.action_dim), d.log_prob(flat).sum(-1), None

    def evaluate(
        self, h: torch.Tensor, actions: torch.Tensor, trace: None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self._dist(h)
        flat = actions.reshape(actions.shape[0], -1)
        return d.log_prob(flat).sum(-1), d.entropy().sum(-1)

    def bc_loss(self, h: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return ((self.mean(h) - actions.reshape(actions.shape[0], -1)) ** 2).mean()


class DiscreteTokenHead(nn.Module):
    """OpenVLA-style action tokens: each of the K x A dims is one of `n_bins` uniform bins over [-1, 1]
    (Kim et al. 2024, OpenVLA, sec. 3.2); the env receives the bin centres."""

    trace_dim = 0

    def __init__(self, hidden: int, chunk: int, action_dim: int, n_bins: int):
        super().__init__()
        self.chunk, self.action_dim, self.n_bins = chunk, action_dim, n_bins
        self.logits = nn.Linear(hidden, chunk * action_dim * n_bins)
        self.register_buffer("centres", torch.linspace(-1.0, 1.0, n_bins), persistent=False)

    def _dist(self, h: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.logits(h).view(h.shape[0], -1, self.n_bins))

    def to_bins(self, actions: torch.Tensor) -> torch.Tensor:
        flat = actions.reshape(actions.shape[0], -1).clamp(-1.0, 1.0)
        return torch.round((flat + 1.0) * 0.5 * (self.n_bins - 1)).long()

    def sample(self, h: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, None]:
        d = self._dist(h)
        bins = d.probs.argmax(-1) if deterministic else d.sample()
        return self.centres[bins].view(-1, self.chunk, self.action_dim), d.log_prob(bins).sum(-1), None

    def evaluate(
        self, h: torch.Tensor, actions: torch.Tensor, trace: None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self._dist(h)
        return d.log_prob(self.to_bins(actions)).sum(-1), d.entropy().sum(-1)

    def bc_loss(self, h: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logits = self.logits(h).view(-1, self.n_bins)
        return nn.functional.cross_entropy(logits, self.to_bins(actions).view(-1)) / math.log(self.n_bins)


ActionHead = GaussianChunkHead | DiscreteTokenHead | FlowChunkHead

# model.action_head -> builder(cfg, hidden): the head over `hidden` features (the flow head's expert is an MLP on
# them; hf_vla's pi0 expert is built by the model itself, models/pi0_expert.py)
ACTION_HEADS = {
    "gaussian": lambda cfg, hidden: GaussianChunkHead(hidden, cfg.chunk, cfg.action_dim, cfg.init_log_std),
    "discrete": lambda cfg, hidden: DiscreteTokenHead(hidden, cfg.chunk, cfg.action_dim, cfg.n_bins),
    "flow": lambda cfg, hidden: flow_head(
        cfg, MLPVelocityField(hidden, cfg.chunk * cfg.action_dim, cfg.flow_expert_width)
    ),
}


def build_head(cfg: ModelConfig, hidden: int) -> ActionHead:
    """`model.action_head`, one of ACTION_HEADS, over `hidden` features."""
    if cfg.action_head not in ACTION_HEADS:
        raise ValueError(
            f"model.action_head={cfg.action_head!r} is unknown; use one of {sorted(ACTION_HEADS)}."
        )
    return ACTION_HEADS[cfg.action_head](cfg, hidden)
