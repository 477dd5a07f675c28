"""World models by name, and their checkpoints (safetensors: weights plus a JSON header, never a pickle)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verl_async_vla.world_models.base import WorldModel

FORMAT = "verl_async_vla.world_model/1"


def _embedded(**hparams: Any) -> WorldModel:
    from verl_async_vla.world_models.embedded import EmbeddedWorldModel

    return EmbeddedWorldModel(**hparams)


# name -> constructor from the checkpoint's hyper-parameters. A heavier model registers here (docs/world_models.md).
WORLD_MODELS: dict[str, Callable[..., WorldModel]] = {"embedded": _embedded}


def save_world_model(
    path: str | Path, model: Any, meta: dict[str, Any] | None = None, name: str = "embedded"
) -> Path:
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "name": name, "config": json.dumps(model.config()), "version": str(model.version),
              "meta": json.dumps(meta or {})}  # fmt: skip
    save_file(weights, str(path), metadata=header)
    return path


def load_world_model(path: str | Path) -> WorldModel:
    """-> the model (eval mode) saved at `path`; a clear error for a missing or foreign file."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"world model {path} does not exist: pre-train one with `python -m verl_async_vla.world_models.pretrain "
            f"--out {path.parent}`, then pass env.world_model.checkpoint={path}."
        )
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a verl-async-vla world model (format {header.get('format')!r}).")
    if header["name"] not in WORLD_MODELS:
        raise ValueError(
            f"{path}: world model {header['name']!r} is not registered; known: {sorted(WORLD_MODELS)}"
        )
    model = WORLD_MODELS[header["name"]](**json.loads(header["config"]))
    model.load_state_dict(weights)
    model.version = int(header.get("version", 0))
    return model.eval()
