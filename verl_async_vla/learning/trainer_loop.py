"""The async data plane on the actor side: episodes stream in, batches are formed by the staleness rule, updates
run, and each new version goes straight to the rollout workers.

Env workers call `ActorWorker.push(episodes)` as episodes finish. A trainer thread:
1. merges arrivals into the queue and scores unscored episodes under the current weights (pi_prox) while it waits,
   so scoring overlaps with the envs;
2. once B episodes are queued (B = `algo.train_batch_episodes`), applies the actor half of the staleness gate
   (learning/staleness.py): it asks the env workers for the oldest version among their open episodes and, in
   `pause` mode, waits while one of them could only be trained now; in `drop` mode it drops what is too old;
3. trains the must-train episodes plus the oldest others up to B (re-scoring any scored under older weights);
4. publishes version u + 1 to every rollout worker through one object-store reference, waits for their
   acknowledgements (a rollout worker swaps between batches, so this costs at most one inference batch), and
   then tells the gate, which grants producers the next batch of start credits.
The consumer side of the ledger (received, trained, dropped, still queued) is counted here.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
import torch
from verl import DataProto

from verl_async_vla.learning.staleness import StalenessGate
from verl_async_vla.workers.codec import weights_to_wire

if TYPE_CHECKING:
    from verl_async_vla.workers.actor_worker import ActorWorker


@dataclass
class TrainPlane:
    rollouts: list[Any]
    env_workers: list[Any]
    gate: Any  # GateServer handle
    max_staleness: int
    stale_policy: str


class TrainerLoop:
    def __init__(self, actor: ActorWorker, plane: TrainPlane):
        self.actor, self.plane = actor, plane
        self.batch_size = actor.algo.train_batch_episodes
        self.rule = StalenessGate(plane.max_staleness, plane.stale_policy, self.batch_size)
        self.cond = threading.Condition()
        self.arrived: list[DataProto] = []
        self.queue: DataProto | None = None
        self.received: list[int] = []
        self.dropped: list[int] = []
        self.metrics: list[dict[str, float]] = []
        self.stats: dict[str, float] = defaultdict(float)
        self.stopping = False
        self.published: tuple[dict, int] | None = None  # (weights on the wire, version)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="actor-trainer", daemon=True)
        self.thread.start()

    def push(self, episodes: DataProto) -> None:
        episodes.batch["prox_log_prob"] = torch.zeros_like(episodes.batch["old_log_prob"])
        episodes.batch["prox_values"] = torch.zeros_like(episodes.batch["values"])
        episodes.batch["prox_version"] = torch.full((len(episodes),), -1, dtype=torch.long)
        with self.cond:
            self.arrived.append(episodes)
            self.received.extend(episodes.non_tensor_batch["episode_id"].tolist())
            self.cond.notify_all()

    # ---- the trainer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self.cond:
                    if self.stopping:
                        return
                    if not self.arrived and self._queued() < self.batch_size:
                        self.cond.wait(0.05)
                self._merge_arrivals()
                self._score_stale_rows()
                if self._queued() < self.batch_size or self.stopping:
                    continue
                t_wait = time.monotonic()
                if not self._stragglers_done():
                    self.stats["straggler_wait_s"] += time.monotonic() - t_wait
                    with self.cond:
                        self.cond.wait(0.02)
                    continue
                # every episode the env workers did not report is now in `arrived` (they report an episode until
                # its push has been received): merge them before choosing, or a must-train one could be missed
                self._merge_arrivals()
                self._score_stale_rows()
                self._train_one_batch()
        except BaseException as err:
            self.error = err
            raise

    def _merge_arrivals(self) -> None:
        with self.cond:
            parts, self.arrived = self.arrived, []
        if parts:
            self.queue = DataProto.concat(([self.queue] if self.queue is not None else []) + parts)

    def _queued(self) -> int:
        return 0 if self.queue is None else len(self.queue)

    def _oldest_versions(self) -> np.ndarray:
        b = self.queue.batch
        versions = b["policy_version"].masked_fill(b["mask"] == 0, np.iinfo(np.int64).max)
        return versions.min(dim=1).values.numpy()

    def _stragglers_done(self) -> bool:
        """`pause`: no open episode may be one that could only be trained in this update."""
        if self.rule.policy != "pause":
            return True
        open_versions = [v for v in ray.get([e.oldest_open_version.remote() for e in self.plane.env_workers])
                         if v is not None]  # fmt: skip
        return not any(self.rule.must_train(v, self.actor.policy_version) for v in open_versions)

    def _score_stale_rows(self) -> None:
        """pi_prox for rows not yet scored under the current weights (the work off-policy correction needs)."""
        if self.queue is None:
            return
        b = self.queue.batch
        rows = torch.nonzero(b["prox_version"] != self.actor.policy_version).flatten()
        if len(rows) == 0:
            return
        t0 = time.time()
        with torch.no_grad():
            log_prob, _, values = self.actor._evaluate(self.queue, rows)
        b["prox_log_prob"][rows] = log_prob
        b["prox_values"][rows] = values
        b["prox_version"][rows] = self.actor.policy_version
        self.actor.spans.record(t0, batch=len(rows), version=self.actor.policy_version, kind="score")

    def _train_one_batch(self) -> None:
        u = self.actor.policy_version
        oldest = self._oldest_versions()
        ids = self.queue.non_tensor_batch["episode_id"]
        too_old = np.array([self.rule.too_old(int(v), u) for v in oldest]) if self.rule.policy == "drop" else (
            np.zeros(len(oldest), dtype=bool))  # fmt: skip
        if too_old.any():
            self.dropped.extend(ids[too_old].tolist())
            self.plane.gate.release.remote(int(too_old.sum()))
        order = [i for i in np.argsort(oldest, kind="stable") if not too_old[i]]
        must = [i for i in order if self.rule.must_train(int(oldest[i]), u)]
        rest = [i for i in order if not self.rule.must_train(int(oldest[i]), u)]
        take = must + rest[: max(0, self.batch_size - len(must))]
        left = sorted(set(range(len(self.queue))) - set(take) - set(np.flatnonzero(too_old).tolist()))
        if not take:
            self.queue = self.queue.select_idxs(np.array(left, dtype=np.int64)) if left else None
            return
        batch = self.queue.select_idxs(np.array(sorted(take), dtype=np.int64))
        self.queue = self.queue.select_idxs(np.array(left, dtype=np.int64)) if left else None
        t0 = time.time()
        metrics = self.actor._update(batch)
        self.actor.spans.record(t0, batch=len(batch), version=self.actor.policy_version, kind="update")
        t_pub = time.monotonic()
        self.publish()
        metrics["actor/publish_s"] = time.monotonic() - t_pub
        metrics["actor/must_train"] = float(len(must))
        metrics["actor/straggler_wait_s"] = self.stats.pop("straggler_wait_s", 0.0)
        metrics["actor/queued"] = float(self._queued())
        metrics["train/success"] = float(np.mean(batch.non_tensor_batch["success"]))
        metrics["train/episode_len"] = float(np.mean(batch.non_tensor_batch["env_steps"]))
        metrics["train/return"] = float(batch.batch["rewards"].sum(1).mean())
        metrics["actor/trained_env_steps"] = float(np.sum(batch.non_tensor_batch["env_steps"]))
        with self.cond:
            self.metrics.append(metrics)

    def publish(self) -> None:
        """Weights straight to the rollout workers (one put, every worker reads it); wait for their acks so
        that every episode started afterwards is on the new version; then open the gate for the next batch."""
        version = self.actor.policy_version
        self.published = (weights_to_wire(self.actor.policy.get_weights()), version)
        ref = ray.put(self.published)
        ray.get([r.set_weights_packed.remote(ref) for r in self.plane.rollouts])
        ray.get(self.plane.gate.advance.remote(version))

    # ---- control ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        if self.error is not None:
            raise RuntimeError(f"actor trainer loop failed: {self.error!r}") from self.error
        with self.cond:
            metrics, self.metrics = self.metrics, []
        return {"policy_version": self.actor.policy_version, "metrics": metrics}

    def stop(self) -> dict[str, Any]:
        """Finish the update in progress (if any), then report the consumer side of the ledger."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"actor trainer loop failed: {self.error!r}") from self.error
        queued = [] if self.queue is None else self.queue.non_tensor_batch["episode_id"].tolist()
        queued += [i for p in self.arrived for i in p.non_tensor_batch["episode_id"].tolist()]
        return {"received": list(self.received), "trained": list(self.actor.trained_episode_ids),
                "dropped": list(self.dropped), "queued": queued, "metrics": self.status()["metrics"]}  # fmt: skip
