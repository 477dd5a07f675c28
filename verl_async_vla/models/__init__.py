"""VLA policies: the interface, the tiny VLA, a Hugging Face VLM adapter, action heads, SFT start and checkpoints."""

from __future__ import annotations

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models.policy import ActOutput, EvalOutput, PolicyObs, VLAPolicy

MODEL_NAMES = ["tiny_vla", "cost_model", "hf_vla"]


def build_policy(cfg: ModelConfig) -> VLAPolicy:
    if cfg.name == "tiny_vla":
        from verl_async_vla.models.tiny_vla import TinyVLA

        return TinyVLA(cfg)
    if cfg.name == "cost_model":  # emulated-cluster mode: real maths, emulated accelerator time
        from verl_async_vla.models.cost_model import CostModelPolicy

        return CostModelPolicy(cfg)
    if cfg.name == "hf_vla":  # a pretrained Hugging Face VLM backbone (transformers imported here only)
        from verl_async_vla.models.hf_vla import HFVLAPolicy

        return HFVLAPolicy(cfg)
    raise ValueError(f"Unknown model.name={cfg.name!r}; available: {MODEL_NAMES} (pick with `model=<name>`).")


__all__ = ["MODEL_NAMES", "ActOutput", "EvalOutput", "PolicyObs", "VLAPolicy", "build_policy"]
