"""Policy checkpoints are data, never code: tensors in a safetensors file, the model config and metadata as JSON in
its header. Loading reads only those; a torch pickle (which can run arbitrary code when loaded) is refused, and
`python -m verl_async_vla.models.checkpoint old.pt new.safetensors` converts one from an earlier version of this
plugin, reading it with `weights_only=True` (tensors and plain values only)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models.policy import VLAPolicy

FORMAT = "verl_async_vla/policy-v2"
SUFFIX = ".safetensors"


def save_checkpoint(path: str | os.PathLike, policy: VLAPolicy, model_cfg: ModelConfig, **meta: Any) -> Path:
    return write_checkpoint(path, policy.get_weights(), dataclasses.asdict(model_cfg), meta)


def write_checkpoint(path: str | os.PathLike, weights: dict[str, torch.Tensor], model_cfg: dict[str, Any],
                     meta: dict[str, Any]) -> Path:  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "model_cfg": json.dumps(model_cfg), "meta": json.dumps(meta, default=str)}
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp), metadata=header)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint behind
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """-> {"format", "model_cfg", "weights", "meta"}; refuses anything but this plugin's safetensors format."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {path} does not exist. Pass model.checkpoint=<existing {SUFFIX} file>, or leave it null "
            "to build the SFT start checkpoint automatically."
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"{path} is not a safetensors file ({err}). Checkpoints are loaded as data only; a torch pickle (.pt, "
            "which can run code when loaded) is refused. To convert a .pt checkpoint written by an earlier version "
            f"of this plugin: python -m verl_async_vla.models.checkpoint {path} {path.with_suffix(SUFFIX)}"
        ) from err
    if header.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a safetensors file but not a verl-async-vla policy checkpoint (header format "
            f"{header.get('format')!r}, expected {FORMAT!r})."
        )
    try:
        model_cfg, meta = json.loads(header["model_cfg"]), json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path}: the checkpoint header is damaged ({err!r}); use another checkpoint."
        ) from err
    return {"format": FORMAT, "model_cfg": model_cfg, "weights": weights, "meta": meta}


def convert_legacy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """A policy-v1 torch checkpoint -> this format, read with `weights_only=True` (no code can run)."""
    try:
        old = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{src} cannot be read as tensors and plain values only ({err}); not converted."
        ) from err
    if not isinstance(old, dict) or old.get("format") != "verl_async_vla/policy-v1":
        raise ValueError(f"{src} is not a verl-async-vla policy-v1 checkpoint.")
    return write_checkpoint(dst, old["weights"], old["model_cfg"], old.get("meta", {}))


# what shapes a flow head's weights (its K, method and noise settings do not: one checkpoint serves them all)
FLOW_SHAPE_KEYS = ("flow_expert", "flow_expert_width", "flow_value_on")


def check_compatible(ckpt_cfg: dict[str, Any], model_cfg: ModelConfig) -> None:
    """Shapes that must agree between a checkpoint and the configured model; names the key to change."""
    keys = ("name", "action_head", "action_dim", "state_dim", "chunk", "image_size", "channels", "hidden")
    for key in keys + (FLOW_SHAPE_KEYS if model_cfg.action_head == "flow" else ()):
        if ckpt_cfg.get(key) != getattr(model_cfg, key):
            raise ValueError(
                f"Checkpoint was built with model.{key}={ckpt_cfg.get(key)!r} but the config says "
                f"{getattr(model_cfg, key)!r}; set model.{key}={ckpt_cfg.get(key)!r} or use another checkpoint."
            )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Convert a policy-v1 .pt checkpoint to the safetensors format.")
    ap.add_argument("src")
    ap.add_argument("dst")
    args = ap.parse_args(argv)
    print("wrote", convert_legacy(args.src, args.dst))


if __name__ == "__main__":
    main()
