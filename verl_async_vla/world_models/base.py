"""The world-model interface: what a learned simulator must do to stand in for a real env shard.

A world model predicts, for a batch of contexts (the current frame, proprio state and instruction) and one action
chunk each, the next frame and state, the reward summed over the chunk and whether the task is done. Everything
else (episodes, resets from stored real contexts, time limits, the `EnvShard` API the workers call) is the shard's
job (world_models/shard.py), so plugging in a heavier model (a video diffusion model on a GPU) means implementing
this one class: see docs/world_models.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass
class WorldState:
    """A batch of contexts, row i one imagined env: what the policy sees, as numpy (the shard's currency)."""

    image: np.ndarray  # (n, H, W, 3) uint8
    state: np.ndarray  # (n, state_dim) float32
    instruction: list[str]


@dataclass
class WorldPrediction:
    """What one action chunk leads to, per row."""

    image: np.ndarray  # (n, H, W, 3) uint8: the frame after the chunk
    state: np.ndarray  # (n, state_dim) float32
    reward: np.ndarray  # (n,) float32, summed over the chunk's control steps
    success: np.ndarray  # (n,) bool: the task is done (a success the world model declares)


class WorldModel(ABC):
    """A learned, action-conditioned simulator of one task family."""

    image_shape: tuple[int, int, int]
    state_dim: int
    action_dim: int
    chunk: int

    @abstractmethod
    def predict(self, context: WorldState, actions: np.ndarray) -> WorldPrediction:
        """The outcome of the action chunks `actions` (n, chunk, action_dim) from `context` (n rows)."""

    def check(self, context: WorldState, actions: np.ndarray) -> None:
        """Fail with a message that names the mismatch, not deep inside the network."""
        n = len(context.instruction)
        if context.image.shape[1:] != self.image_shape or context.state.shape[1:] != (self.state_dim,):
            raise ValueError(
                f"{type(self).__name__}: contexts of image {context.image.shape[1:]} / state "
                f"{context.state.shape[1:]}, expected {self.image_shape} / ({self.state_dim},): the world model was "
                "pre-trained on another env config (rebuild it: python -m verl_async_vla.world_models.pretrain)."
            )
        if actions.shape != (n, self.chunk, self.action_dim):
            raise ValueError(
                f"{type(self).__name__}: actions of shape {tuple(actions.shape)}, expected (n={n}, chunk="
                f"{self.chunk}, action_dim={self.action_dim}); set model.chunk / model.action_dim to the world "
                "model's."
            )
