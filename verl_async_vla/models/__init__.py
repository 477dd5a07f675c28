"""VLA policies: the interface, the tiny VLA, action heads, SFT start and checkpoints."""

from __future__ import annotations

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models.policy import ActOutput, EvalOutput, PolicyObs, VLAPolicy


def build_policy(cfg: ModelConfig) -> VLAPolicy:
    if cfg.name == "tiny_vla":
        from verl_async_vla.models.tiny_vla import TinyVLA

        return TinyVLA(cfg)
    raise ValueError(f"Unknown model.name={cfg.name!r}; available: ['tiny_vla'] (pick with `model=<name>`).")


__all__ = ["ActOutput", "EvalOutput", "PolicyObs", "VLAPolicy", "build_policy"]
