"""`trainer=sync`: the lockstep loop today's VLA RL frameworks run, kept as the fair baseline.

all envs play an episode (batched inference each step) -> full batch -> advantages + update -> broadcast weights.
"""

from __future__ import annotations

import time

from verl_async_vla.controller.base import Controller


class SyncController(Controller):
    name = "sync"

    def fit(self) -> None:
        while self.env_steps < self.cfg.trainer.total_env_steps:
            t0 = time.monotonic()
            episodes = self.run_episodes()
            self.produced(episodes)
            metrics = self.train_on(episodes)
            self.end_iteration(episodes, metrics, t0)
