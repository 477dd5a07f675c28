"""`trainer=async_vla`: every env, inference and training run at once; the driver is not on the data path.

Wiring (once): rollout workers start their inference servers, the actor starts its trainer loop, every env worker
starts one episode loop per env, each given the others' handles. From then on:
- each env steps on its own lane and sends its observation to a rollout worker, which batches requests from all env
  workers (`max_batch` rows or `max_wait_ms`) and answers each env worker directly (sampling/);
- finished episodes go from the env worker straight to the actor, which trains batches under the staleness rule
  and sends each new version straight to the rollout workers (learning/);
- the staleness gate's admission half (a small Ray actor) grants env workers episode-start credits per version.
The driver keeps control only: it waits for each update's metrics (at most `CONTROL_S`), then reads the workers'
counters once, logs, evaluates on its own workers
in the background, stops producers at the budget and reconciles the ledger. The workers are the same as in
`trainer=sync`; only this scheduling differs.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray

from verl_async_vla.controller.base import Controller
from verl_async_vla.controller.recovery import WorkerRecovery
from verl_async_vla.learning.budget import episodes_for_budget
from verl_async_vla.learning.ledger import reconcile, reconcile_by_source
from verl_async_vla.learning.staleness import GateServer
from verl_async_vla.learning.trainer_loop import TrainPlane
from verl_async_vla.sampling.env_stream import episode_rank
from verl_async_vla.sampling.stream_peers import StreamPlane

# The driver's longest wait between two looks at the workers: it wakes at every update (budget, logging, the episode
# cap) and otherwise every CONTROL_S (a dead worker, a stop request). Every look is one Ray call to each worker; at
# 0.1 s (the period before 2026-12-08) those calls cost LIBERO ~1 core-ms per trained env step (10 looks/s against
# ~40 env steps/s), in the env workers' and the rollout worker's main threads and Ray's io threads of every process.
CONTROL_S = 1.0


class AsyncVLAController(Controller):
    name = "async_vla"
    eval_blocks_training = False

    def setup(self) -> None:
        super().setup()
        t = self.cfg.trainer
        envs = (self.cfg.env.num_workers + self.cfg.env.imagined_workers) * self.cfg.env.num_envs_per_worker
        self.gate = GateServer.remote(
            t.max_staleness, t.stale_policy, self.cfg.algo.train_batch_episodes, envs, self.policy_version
        )
        ray.get(self.gate.advance.remote(self.policy_version))  # its process is up before the clock starts

    def fit(self) -> None:
        t, w = self.cfg.trainer, self.workers
        envs, rollouts, actor = w.env.handles, w.rollout.handles, w.actor.handles[0]
        authkey = os.urandom(16)  # the request channel's secret (sampling/request_channel.py)
        addresses = ray.get([r.start_serving.remote(t.max_batch, t.max_wait_ms, authkey) for r in rollouts])
        train = TrainPlane(rollouts, envs, self.gate, t.max_staleness, t.stale_policy, t.weight_sync,
                           int(t.weight_bucket_mb * 2**20), t.publish_lag)  # fmt: skip
        ray.get(actor.start_stream.remote(train))
        stream = StreamPlane(addresses, authkey, actor, self.gate, self.horizon)
        ray.get([e.start_stream.remote(stream) for e in envs])
        # env and rollout processes that die are restarted by Ray and rejoin (controller/recovery.py)
        self.recovery = WorkerRecovery(w, self.gate, stream, (t.max_batch, t.max_wait_ms, authkey), t.worker_restarts,
                                       self.fit_start, on_rejoin=self.write_process_table,
                                       real_env_workers=self.cfg.env.num_workers)  # fmt: skip
        iteration_t0 = time.monotonic()
        # a resumed run counts on from its checkpoint: the env workers count only this run's steps
        done, executed = self.counters.env_steps, self.counters.env_steps_executed
        imagined_done = self.counters.imagined_env_steps
        trained, episodes, cap = self.counters.env_steps_trained, self.counters.episodes_trained, None
        imagined_eps = self.counters.imagined_episodes_trained
        e = self.cfg.env
        real_share = e.num_workers / (e.num_workers + e.imagined_workers)
        while self.budget_left():
            # no episode starts beyond what the budget still trains (learning/budget.py): none is thrown away
            new_eps = self.counters.episodes_trained - episodes
            wanted = episodes_for_budget(t.total_env_steps - trained, self.counters.env_steps_trained - trained,
                                         new_eps, self.cfg.algo.train_batch_episodes, e.max_episode_steps,
                                         new_eps - (self.counters.imagined_episodes_trained - imagined_eps),
                                         real_share)  # fmt: skip
            if wanted != cap:
                cap = wanted
                self.gate.set_episode_cap.remote(cap)
            status = ray.get(actor.stream_status.remote(CONTROL_S))  # returns at the next update
            counts = self.recovery.poll()
            self.counters.imagined_env_steps = imagined_done + counts["imagined_finished_env_steps"]
            self.counters.env_steps = done + counts["finished_env_steps"]
            self.counters.env_steps_executed = executed + counts["executed_env_steps"]
            for metrics in status["metrics"]:
                self.policy_version = int(metrics["actor/policy_version"])
                self.end_iteration(metrics, iteration_t0)
                iteration_t0 = time.monotonic()
            self._log_evaluations()
        # Stop producers first (open episodes are abandoned, finished ones flushed to the actor), then the actor
        # (it finishes the update in progress), then inference.
        self.producers = ray.get([e.stop_stream.remote() for e in envs])
        for rank, p in enumerate(self.producers):  # the live processes' final counts
            self.recovery.env_reports[(rank, self.recovery.incarnation[rank])].counters = {
                k: p[k] for k in ("finished_env_steps", "executed_env_steps")
            }
        # counted before the last updates are logged: their checkpoint must not hold fewer finished steps than
        # trained ones (a resumed run counts on from it)
        counts = self.recovery.counters()
        self.counters.imagined_env_steps = imagined_done + counts["imagined_finished_env_steps"]
        self.counters.env_steps = done + counts["finished_env_steps"]
        self.counters.env_steps_executed = executed + counts["executed_env_steps"]
        self.consumer = ray.get(actor.stop_stream.remote())
        self.serving = ray.get([r.stop_serving.remote() for r in rollouts]) + self.recovery.serving_lost
        for metrics in self.consumer.pop("metrics"):
            self.policy_version = int(metrics["actor/policy_version"])
            self.end_iteration(metrics, iteration_t0)
        self._log_evaluations(wait=True)
        self.gate_stats = ray.get(self.gate.stats.remote())

    def release_workers(self) -> None:
        gate = getattr(self, "gate", None)
        if gate is not None:  # also after a failed run
            ray.kill(gate)
            self.gate = None
        super().release_workers()

    # ---- evaluation beside training -----------------------------------------------------------------------
    def periodic_eval(self) -> dict[str, Any]:
        self.evaluator.start(self.counters.env_steps)  # its result is logged by _log_evaluations when ready
        return {}

    def _log_evaluations(self, wait: bool = False) -> None:
        for rec in self.evaluator.finished(wait):
            self.run_log.log({"iteration": self.counters.iteration, "policy_version": self.policy_version, **rec,
                              "eval/seconds_total": self.evaluator.seconds})  # fmt: skip

    # ---- accounting ---------------------------------------------------------------------------------------
    def ledger(self) -> dict[str, int]:
        # the producers' own lists (dead processes: what they reported, settled by controller/recovery.py)
        produced, discarded = self.recovery.settle(self.producers)
        c = self.consumer
        out = reconcile(produced, c["received"], c["trained"], c["dropped"], c["queued"], discarded=discarded)
        # a world model's episodes come from the env ranks after the real ones (the rank is in the episode id)
        ids = set(produced) | set(c["received"]) | set(discarded)
        imagined = {i for i in ids if episode_rank(i) >= self.cfg.env.num_workers}
        out.update(reconcile_by_source(imagined, produced, c["received"], c["trained"], c["dropped"], c["queued"],
                                       discarded))  # fmt: skip
        out["episodes_abandoned_open"] = sum(p["abandoned_open"] for p in self.producers)
        lost = self.recovery.report()
        out["episodes_confirmed_by_consumer_only"] = lost["episodes_confirmed_by_consumer_only"]
        out["start_credits_lost_with_workers"] = self.gate_stats["credits_lost_with_workers"]
        return out

    def fault_report(self) -> dict[str, Any]:
        return {**super().fault_report(self.recovery.dead_fault_records()), "workers": self.recovery.report()}

    def scheduler_stats(self) -> dict[str, float]:
        rows = sum(s["rows"] for s in self.serving)
        batches = max(sum(s["batches"] for s in self.serving), 1)
        n = max(sum(p["latency"]["decisions"] for p in self.producers), 1)
        round_trip = {f"decision_{k[:-2]}_ms": 1000.0 * sum(p["latency"][k] for p in self.producers) / n
                      for k in self.producers[0]["latency"] if k.endswith("_s")}  # fmt: skip
        starts = [p["start_waits"] for p in self.producers]
        episodes = max(sum(w["episodes"] for w in starts), 1)
        return {
            **round_trip,
            # before a reset: waiting for a start credit (the gate paused producers, or a refill of the spare)
            "episode_start_wait_ms": 1000.0 * sum(w["wait_s"] for w in starts) / episodes,
            "episode_starts_credit_in_hand": sum(w["in_hand"] for w in starts) / episodes,
            "infer_batch_mean": rows / batches,
            "infer_queue_wait_ms": 1000.0 * sum(s["queue_wait_s"] for s in self.serving) / batches,
            "requests": rows,
            "gate_paused_waits": self.gate_stats["paused_waits"],
        }
