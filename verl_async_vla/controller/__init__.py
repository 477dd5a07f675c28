"""Controllers: scheduling only (who calls whom, when). `trainer=<name>` picks one from CONTROLLERS."""

from __future__ import annotations

from verl_async_vla.config.schema import RunConfig
from verl_async_vla.controller.async_vla import AsyncVLAController
from verl_async_vla.controller.base import Controller
from verl_async_vla.controller.sync import SyncController

CONTROLLERS: dict[str, type[Controller]] = {"sync": SyncController, "async_vla": AsyncVLAController}


def build_controller(cfg: RunConfig) -> Controller:
    if cfg.trainer.name not in CONTROLLERS:
        raise ValueError(
            f"trainer.name={cfg.trainer.name!r} is unknown; choose trainer= one of {sorted(CONTROLLERS)}."
        )
    return CONTROLLERS[cfg.trainer.name](cfg)


__all__ = ["CONTROLLERS", "Controller", "build_controller"]
