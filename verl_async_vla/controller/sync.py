"""`trainer=sync`: the lockstep loop today's VLA RL frameworks run, kept as the fair baseline.

all envs play an episode (batched inference each step), repeated until a training batch is full -> advantages +
update -> broadcast weights -> next wave. `trainer.pipeline_stages=k` splits the envs into k lockstep groups that
overlap env stepping with inference: the strongest synchronous baseline, still with a barrier at every update.
Evaluation runs inside the loop (it blocks training, and its time is taken out of the throughput).
"""

from __future__ import annotations

import time

import ray

from verl_async_vla.controller.base import Controller
from verl_async_vla.learning.ledger import LedgerError, TrajectoryLedger, reconcile
from verl_async_vla.sampling.trajectory import episodes_to_proto


class SyncController(Controller):
    name = "sync"

    def fit(self) -> None:
        self.produced = TrajectoryLedger()
        while self.env_steps < self.cfg.trainer.total_env_steps:
            t0 = time.monotonic()
            episodes: list = []
            while len(episodes) < self.cfg.algo.train_batch_episodes:
                episodes += self.run_episodes(stages=self.cfg.trainer.pipeline_stages)
            self.produced.record_produced((e.episode_id, len(e)) for e in episodes)
            self.env_steps += sum(e.env_steps for e in episodes)
            result = self.actor_wg.ingest(episodes_to_proto(episodes, self.horizon))[0]
            if result["updated"]:
                self.publish_weights()
            metrics = {k: v for k, v in result.items() if k != "updated"}
            self.end_iteration({**self.episode_metrics(episodes), **metrics}, t0)

    def ledger(self) -> dict[str, int]:
        ended = sum(ray.get([w.episodes_ended_count.remote() for w in self.env_wg.handles]))
        if ended != len(self.produced.produced):  # the env workers' own count of episode ends
            raise LedgerError(f"env workers ended {ended} episodes, the driver assembled {len(self.produced.produced)}")
        actor = self.actor_wg.ledger_report()[0]
        return reconcile(self.produced.produced, actor["received"], actor["trained"], actor["dropped"], actor["queued"])
