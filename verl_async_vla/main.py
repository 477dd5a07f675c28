"""Hydra entry point: `python -m verl_async_vla.main trainer=sync|async_vla env=... model=...`
(console script: `verl-async-vla`). Builds the worker groups and hands control to the chosen controller."""

from __future__ import annotations

import json
import logging
import sys

import hydra
import ray
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from ray.exceptions import RayError

from verl_async_vla.config import CONFIG_DIR
from verl_async_vla.validate import validate


def run(cfg: DictConfig) -> dict:
    from verl_async_vla.controller.supervisor import train_with_restarts

    run_cfg = validate(cfg)
    try:  # SIGTERM / Ctrl-C: graceful stop (Controller.request_stop); a lost worker: resume (controller/supervisor.py)
        return train_with_restarts(run_cfg, stop_on_signals=True)
    finally:
        if ray.is_initialized() and run_cfg.trainer.ray_address is None:  # this run started Ray
            ray.shutdown()


@hydra.main(config_path=CONFIG_DIR, config_name="vla_trainer", version_base=None)
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if HydraConfig.initialized():
        # `${now:}` in run_dir resolves again each time it is read, so a run that starts in the next second would
        # write to a second directory: take the one hydra made (and logs main.log into) once, at start
        cfg.run_dir = HydraConfig.get().runtime.output_dir
    try:
        validate(cfg)
    except (
        ValueError,
        FileNotFoundError,
    ) as err:  # configuration problems: one clear line, no traceback wall
        print(f"verl-async-vla: error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        summary = run(cfg)
    except (
        ValueError,
        FileNotFoundError,
    ) as err:  # found at set-up (assets, checkpoint shapes): name the fix
        if isinstance(err, RayError):  # raised inside a worker during the run: not a configuration problem
            raise
        print(f"verl-async-vla: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({k: v for k, v in summary.items() if k != "ledger"}, indent=2))
    print("ledger:", json.dumps(summary["ledger"]))
    if summary["ledger"].get("episodes_unaccounted", 0):
        sys.exit(1)  # something was lost


def cli() -> None:
    main()


if __name__ == "__main__":
    main()
