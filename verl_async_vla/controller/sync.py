"""`trainer=sync`: the lockstep loop today's VLA RL frameworks run, kept as the fair baseline.

all envs play an episode (batched inference each step), repeated until a training batch is full -> advantages +
update -> broadcast weights -> next wave. `trainer.pipeline_stages=k` splits the envs into k lockstep groups that
overlap env stepping with inference: the strongest synchronous baseline, still with a barrier at every update.
"""

from __future__ import annotations

import time

from verl_async_vla.controller.base import Controller


class SyncController(Controller):
    name = "sync"

    def fit(self) -> None:
        while self.env_steps < self.cfg.trainer.total_env_steps:
            t0 = time.monotonic()
            episodes: list = []
            while len(episodes) < self.cfg.algo.train_batch_episodes:
                episodes += self.run_episodes(stages=self.cfg.trainer.pipeline_stages)
            self.produced(episodes)
            self.end_iteration(episodes, self.ingest(episodes), t0)
