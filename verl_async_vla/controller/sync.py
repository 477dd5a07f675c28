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
from verl_async_vla.sampling.lockstep import play_episodes
from verl_async_vla.sampling.trajectory import episodes_to_proto


class SyncController(Controller):
    name = "sync"

    def fit(self) -> None:
        w = self.workers
        self.produced = TrajectoryLedger()
        while self.env_steps < self.cfg.trainer.total_env_steps:
            t0 = time.monotonic()
            episodes: list = []
            while len(episodes) < self.cfg.algo.train_batch_episodes:
                wave, executed = play_episodes(w.env, w.rollout, stages=self.cfg.trainer.pipeline_stages)
                episodes += wave
                self.env_steps_executed += executed
            self.produced.record_produced((e.episode_id, len(e)) for e in episodes)
            self.env_steps += sum(e.env_steps for e in episodes)
            result = w.actor.ingest(episodes_to_proto(episodes, self.horizon))[0]
            if result["updated"]:
                self.policy_version = w.publish()
            metrics = {k: v for k, v in result.items() if k != "updated"}
            self.end_iteration({**self.episode_metrics(episodes), **metrics}, t0)

    def ledger(self) -> dict[str, int]:
        ended = sum(ray.get([h.episodes_ended_count.remote() for h in self.workers.env.handles]))
        produced = self.produced.produced
        if ended != len(produced):  # the env workers' own count of episode ends
            raise LedgerError(f"env workers ended {ended} episodes, the driver assembled {len(produced)}")
        actor = self.workers.actor.ledger_report()[0]
        return reconcile(produced, actor["received"], actor["trained"], actor["dropped"], actor["queued"])
