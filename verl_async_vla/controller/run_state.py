"""The run's counters: what the driver knows about progress, the one object a run checkpoint saves and restores
(controller/checkpointing.py). Both trainers keep the same counters; they differ only in who reports them (the sync
loop counts its own waves, the async driver polls the producers and the actor)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class RunCounters:
    iteration: int = 0  # updates logged
    env_steps: int = 0  # in finished (produced) episodes: the x-axis of learning curves
    env_steps_executed: int = 0  # every control step run, open episodes included
    # env steps that entered an update: the budget (`trainer.total_env_steps`) and the throughput headline
    env_steps_trained: int = 0
    episodes_trained: int = 0
    # world-model envs (env.world_model): counted apart, never in the figures above (all real)
    imagined_env_steps: int = 0  # in finished imagined episodes
    imagined_env_steps_trained: int = 0
    imagined_episodes_trained: int = 0

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> RunCounters:
        """Also reads checkpoints written before `env_steps_trained` / `episodes_trained` existed: their finished
        env steps are the closest figure they have."""
        return cls(
            iteration=int(state["iteration"]),
            env_steps=int(state["env_steps"]),
            env_steps_executed=int(state["env_steps_executed"]),
            env_steps_trained=int(state.get("env_steps_trained", state["env_steps"])),
            episodes_trained=int(state.get("episodes_trained", 0)),
            imagined_env_steps=int(state.get("imagined_env_steps", 0)),
            imagined_env_steps_trained=int(state.get("imagined_env_steps_trained", 0)),
            imagined_episodes_trained=int(state.get("imagined_episodes_trained", 0)),
        )
