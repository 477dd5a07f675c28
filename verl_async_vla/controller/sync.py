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
from verl_async_vla.learning.ledger import LedgerError, TrajectoryLedger, reconcile, reconcile_by_source
from verl_async_vla.sampling.lockstep import play_episodes
from verl_async_vla.sampling.trajectory import (
    episode_metrics,
    episodes_to_proto,
    next_episode_id,
    restart_episode_ids,
)


class SyncController(Controller):
    name = "sync"
    exact_resume = True

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.produced = TrajectoryLedger()
        self.discarded: list[tuple[int, int]] = []  # (id, decisions) of episodes lost to env faults
        self.imagined: set[int] = set()  # ids of episodes played in a world model (env.world_model)

    def driver_state(self) -> dict:
        return {"produced": [[k, v] for k, v in self.produced.produced.items()], "discarded": self.discarded,
                "next_episode_id": next_episode_id(), "imagined": sorted(self.imagined)}  # fmt: skip

    def restore_driver_state(self, state: dict) -> None:
        self.produced.produced = {int(k): int(v) for k, v in state["produced"]}
        self.discarded = [tuple(x) for x in state["discarded"]]
        self.imagined = {int(i) for i in state.get("imagined", [])}
        restart_episode_ids(int(state["next_episode_id"]))

    def fit(self) -> None:
        w = self.workers
        while self.budget_left():
            t0 = time.monotonic()
            episodes: list = []
            while len(episodes) < self.cfg.algo.train_batch_episodes and not self.stop_requested.is_set():
                wave, executed, lost = play_episodes(
                    w.env, w.rollout, stages=self.cfg.trainer.pipeline_stages
                )
                episodes += wave
                self.counters.env_steps_executed += executed
                self.discarded += lost
            if not episodes:  # stopped before a wave finished
                break
            self.produced.record_produced((e.episode_id, len(e)) for e in episodes)
            self.imagined.update(e.episode_id for e in episodes if e.imagined)
            self.counters.env_steps += sum(e.env_steps for e in episodes if not e.imagined)
            self.counters.imagined_env_steps += sum(e.env_steps for e in episodes if e.imagined)
            batch = episodes_to_proto(episodes, self.horizon)
            result = w.actor.ingest(batch)[0]
            if result["updated"]:
                self.policy_version = w.publish()
            metrics = {k: v for k, v in result.items() if k != "updated"}
            self.end_iteration({**episode_metrics(batch), **metrics}, t0)

    def ledger(self) -> dict[str, int]:
        counts = ray.get([h.episode_counts.remote() for h in self.workers.env.handles])
        ended, lost = sum(c["ended"] for c in counts), sum(c["discarded"] for c in counts)
        produced = self.produced.produced
        if ended != len(produced) or lost != len(self.discarded):  # the env workers' own counts
            raise LedgerError(f"env workers ended {ended} episodes and lost {lost} to faults; the driver assembled "
                              f"{len(produced)} and saw {len(self.discarded)} discarded")  # fmt: skip
        actor = self.workers.actor.ledger_report()
        out = reconcile(produced, actor["received"], actor["trained"], actor["dropped"], actor["queued"],
                        discarded=dict(self.discarded))  # fmt: skip
        out.update(reconcile_by_source(self.imagined, produced, actor["received"], actor["trained"],
                                       actor["dropped"], actor["queued"], dict(self.discarded)))  # fmt: skip
        return out
