"""The VLA policy interface every model implements (tiny_vla.py, hf_vla.py: a Hugging Face VLM, cost_model.py).

Two calls carry RL: `act` (rollout: sample an action chunk, its behaviour log-prob and the value) and `evaluate`
(actor: score given chunks under the current weights). For the same weights and actions they agree exactly, which
is what makes the importance ratio pi/mu equal 1 on-policy (tested). A head whose log-prob is not a function of the
action alone (the flow head: it depends on the denoising chain) returns that data as `trace`; it travels with the
sample to the actor, and `evaluate` scores the same transition from it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PolicyObs:
    image: torch.Tensor  # (B, H, W, 3) uint8
    state: torch.Tensor  # (B, state_dim) float32
    instruction: list[str]

    def __len__(self) -> int:
        return self.image.shape[0]


@dataclass
class ActOutput:
    actions: torch.Tensor  # (B, chunk, action_dim) float32, in the env's [-1, 1] action box
    log_prob: torch.Tensor  # (B,) behaviour log-prob of the whole chunk
    value: torch.Tensor  # (B,)
    # (B, trace_dim): what the log-prob depends on besides the action; None where trace_dim is 0
    trace: torch.Tensor | None = None


@dataclass
class EvalOutput:
    log_prob: torch.Tensor  # (B,)
    entropy: torch.Tensor  # (B,)
    value: torch.Tensor  # (B,)


class VLAPolicy(nn.Module, ABC):
    chunk: int
    action_dim: int
    trace_dim: int = 0  # floats per decision in ActOutput.trace (0: the head scores an action from itself)

    @abstractmethod
    def act(self, obs: PolicyObs, deterministic: bool = False) -> ActOutput: ...

    @abstractmethod
    def evaluate(
        self, obs: PolicyObs, actions: torch.Tensor, trace: torch.Tensor | None = None
    ) -> EvalOutput: ...

    @abstractmethod
    def bc_loss(self, obs: PolicyObs, actions: torch.Tensor) -> torch.Tensor:
        """Behaviour-cloning loss on expert chunks (the SFT stage)."""

    def shipped_names(self) -> set[str]:
        """The state entries `get_weights` returns (what travels to rollout workers and into checkpoints)."""
        return set(self.state_dict())

    def get_weights(self) -> dict[str, torch.Tensor]:
        keep = self.shipped_names()
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items() if k in keep}

    def fsdp_units(self) -> list[nn.Module]:
        """Sub-modules that `trainer.actor_strategy=fsdp2` shards as units of their own: each is called through its
        `forward`, so its parameters are gathered only while it runs. Parameters outside them stay with the root
        unit (gathered for a whole `act` / `evaluate`). Every unit must hold parameters of one dtype."""
        return []

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(weights)
