"""The actor's whole training state as data: weights, optimizer moments, policy version, RNG states and the actor's
own ledger (received / trained episode ids). Tensors go to a safetensors file, everything else to JSON beside it;
nothing is pickled (models/checkpoint.py explains why)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def optimizer_to_data(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's `state_dict()` -> (tensors keyed "o.<param index>.<name>", JSON-able rest: param groups and
    non-tensor state)."""
    tensors, plain = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"o.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def optimizer_from_data(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """`optimizer_to_data`'s output -> the optimizer `state_dict()` it came from."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("o."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["plain_state"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def torch_rng_to_list() -> list[int]:
    return torch.get_rng_state().tolist()


def torch_rng_from_list(state: list[int]) -> None:
    torch.set_rng_state(torch.tensor(state, dtype=torch.uint8))


def numpy_rng_to_data(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state


def numpy_rng_from_data(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def write_state(directory: Path, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    save_file(tensors, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(meta))


def read_state(directory: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return load_file(str(directory / f"{name}.safetensors")), json.loads(
        (directory / f"{name}.json").read_text()
    )
