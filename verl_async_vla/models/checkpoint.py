"""Policy checkpoints: weights + the model config that built them + metadata, in one torch file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models.policy import VLAPolicy

FORMAT = "verl_async_vla/policy-v1"


def save_checkpoint(path: str | os.PathLike, policy: VLAPolicy, model_cfg: ModelConfig, **meta: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    cfg = dataclasses.asdict(model_cfg)
    torch.save({"format": FORMAT, "model_cfg": cfg, "weights": policy.get_weights(), "meta": meta}, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint behind
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {path} does not exist. Pass model.checkpoint=<existing .pt file>, or leave it null "
            "to build the SFT start checkpoint automatically."
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a verl-async-vla policy checkpoint (expected format {FORMAT!r}).")
    return ckpt


def check_compatible(ckpt_cfg: dict[str, Any], model_cfg: ModelConfig) -> None:
    """Shapes that must agree between a checkpoint and the configured model; names the key to change."""
    for key in (
        "name",
        "action_head",
        "action_dim",
        "state_dim",
        "chunk",
        "image_size",
        "channels",
        "hidden",
    ):
        if ckpt_cfg.get(key) != getattr(model_cfg, key):
            raise ValueError(
                f"Checkpoint was built with model.{key}={ckpt_cfg.get(key)!r} but the config says "
                f"{getattr(model_cfg, key)!r}; set model.{key}={ckpt_cfg.get(key)!r} or use another checkpoint."
            )
