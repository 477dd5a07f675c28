"""Held-out evaluation on its own env and rollout workers, with a weight snapshot.

It measures the actor's newest weights snapshot (the one the rollout workers load next; under the ablation's
`trainer.publish_lag` the rollout workers hold older ones, but evaluation measures what training made) on fixed held-out
layouts, greedily, so evaluations are comparable across a run and across trainers. `evaluate` blocks (sync trains
in lockstep anyway); `start` runs it on a background thread so the async pipeline never stops, and `finished`
hands back the results once they are ready.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from verl_async_vla.controller.workers import WorkerSet
from verl_async_vla.envs.base import HELD_OUT_SEED_BASE
from verl_async_vla.sampling.lockstep import play_episodes


class Evaluator:
    def __init__(self, workers: WorkerSet, episodes: int):
        self.workers, self.episodes = workers, episodes
        self.seconds = 0.0  # wall time spent evaluating
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.results: list[dict[str, Any]] = []
        self.results_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.workers.eval_env is not None

    def evaluate(self) -> tuple[float, int] | None:
        """-> (greedy success, policy version measured); None when `trainer.eval_episodes=0`."""
        if not self.enabled:
            return None
        w = self.workers
        with self.lock:
            t0 = time.monotonic()
            version = w.publish(
                to=w.eval_rollout.handles, newest=True
            )  # the snapshot this evaluation measures
            n, success = w.eval_envs, []
            for wave in range(max(1, math.ceil(self.episodes / n))):
                seeds = HELD_OUT_SEED_BASE + np.arange(wave * n, (wave + 1) * n)
                episodes, _, _ = play_episodes(
                    w.eval_env, w.eval_rollout, True, seeds
                )  # faulted ones left out
                success += [e.success for e in episodes]
            self.seconds += time.monotonic() - t0
        return (float(np.mean(success)) if success else float("nan")), version

    def start(self, env_steps: int) -> None:
        """Evaluate in the background (one evaluation at a time: a due one is skipped while another runs)."""
        if not self.enabled or (self.thread is not None and self.thread.is_alive()):
            return

        def run() -> None:
            success, version = self.evaluate()
            with self.results_lock:
                self.results.append(
                    {"env_steps": env_steps, "eval/success": success, "eval/policy_version": version}
                )

        self.thread = threading.Thread(target=run, name="evaluation", daemon=True)
        self.thread.start()

    def finished(self, wait: bool = False) -> list[dict[str, Any]]:
        if wait and self.thread is not None:
            self.thread.join()
        with self.results_lock:
            out, self.results = self.results, []
        return out
