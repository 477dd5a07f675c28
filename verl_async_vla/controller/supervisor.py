"""A run that loses a worker it cannot rejoin resumes from its latest run checkpoint (`trainer.run_restarts`).

In-place rejoining (controller/recovery.py) covers env and rollout processes under `trainer=async_vla`. The actor
holds the training state, and the lockstep trainer's barrier has no way around a lost shard, so there the whole
run restarts: its workers are released, new ones are spawned, and the run continues from its last whole-run
checkpoint (`trainer.resume=auto`, controller/checkpointing.py) in the same run directory, its metrics and curves
continuing. What ran after that checkpoint is done again (counted in the summary's `restarts`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ray.exceptions import RayActorError

from verl_async_vla.config.schema import RunConfig
from verl_async_vla.controller import build_controller
from verl_async_vla.controller.recovery import WorkerLost

log = logging.getLogger(__name__)


def lost_worker(err: BaseException) -> bool:
    """A dead worker process, however it surfaced: directly, or as the cause of a worker's own error."""
    while err is not None:
        if isinstance(err, RayActorError | WorkerLost):
            return True
        err = err.__cause__ or err.__context__
    return False


def train_with_restarts(cfg: RunConfig, stop_on_signals: bool = False) -> dict[str, Any]:
    restarts: list[dict[str, Any]] = []
    while True:
        controller = build_controller(cfg)
        controller.stop_on_signals = stop_on_signals
        try:
            summary = controller.train()
            summary["restarts"] = restarts
            return summary
        except Exception as err:
            if (
                not lost_worker(err)
                or len(restarts) >= cfg.trainer.run_restarts
                or controller.stop_requested.is_set()
            ):
                raise
            checkpoint = controller.checkpointer.latest() if hasattr(controller, "checkpointer") else None
            if checkpoint is None:
                raise RuntimeError(
                    f"a worker process was lost ({err!r}) before the first run checkpoint; nothing to resume from "
                    "(lower trainer.checkpoint_every to checkpoint sooner)."
                ) from err
            restarts.append({"after_iteration": controller.counters.iteration, "error": repr(err)[:300],
                             "resumed_from": str(checkpoint)})  # fmt: skip
            log.error("a worker process was lost (%r); restarting the run from %s (restart %d of "
                      "trainer.run_restarts=%d)", err, checkpoint, len(restarts), cfg.trainer.run_restarts)  # fmt: skip
            cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, resume="auto"))
        finally:
            controller.release_workers()  # Ray itself stays up for the next attempt (main.py stops it)
