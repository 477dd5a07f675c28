"""The async data plane on the actor side: episodes stream in, batches are formed by the staleness rule, updates
run, and each new version goes straight to the rollout workers.

Env workers call `ActorWorker.push(episodes)` as episodes finish; the actor worker hands them to `push` here. This
module holds no Ray handle of its own: it trains through the learner (learning/learner.py) and reaches the other
processes through `TrainPeers` (Ray handles in a run, plain objects in tests). A trainer thread:
1. adds arrivals to its queue (learning/episode_queue.py) and, while it waits, scores the episodes the next update
   will take (pi_prox under the current weights; under `algo.proximal=scoring_pass` only, first_epoch leaves it to
   the update), so scoring overlaps with the envs and no row is scored under a version it will not be trained at;
2. once B episodes are queued (B = `algo.train_batch_episodes`), applies the actor half of the staleness gate
   (learning/staleness.py): it asks the env workers for the oldest version among their open episodes and, in
   `pause` mode, waits while one of them could only be trained now; in `drop` mode it drops what is too old;
3. trains the must-train episodes plus the oldest others up to B (re-scoring any scored under older weights);
4. hands version u + 1 to a publisher thread and goes on with the next batch: the publisher puts it into the
   object store once, every rollout worker loads it (between inference batches, so a swap costs at most one
   batch), and after their acknowledgements it tells the gate, which grants producers the next batch of start
   credits. If the trainer finishes another update before a publication ends, only the newest version is
   published next (a rollout worker may skip a version; the staleness rule counts versions of decisions, so it
   still holds: episodes started meanwhile carry the older version and become must-train sooner).
The consumer side of the ledger (received, trained, dropped, still queued) is counted here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import ray
import torch
from ray.actor import ActorHandle
from verl import DataProto

from verl_async_vla.learning.episode_queue import EpisodeQueue, add_proximal_columns
from verl_async_vla.learning.learner import Learner
from verl_async_vla.learning.staleness import StalenessGate
from verl_async_vla.learning.weight_plane import WeightGroup
from verl_async_vla.learning.weight_plane import publish as publish_weights
from verl_async_vla.plumbing.process import answers_from_live
from verl_async_vla.plumbing.wire import weights_to_wire
from verl_async_vla.sampling.trajectory import episode_metrics
from verl_async_vla.telemetry.timeline import SpanRecorder

log = logging.getLogger(__name__)

# While `pause` waits for a straggler, the trainer re-asks the env workers for their open episodes' versions at once
# when an episode arrives (that is how a straggler ends), else after a quiet spell that doubles from STRAGGLER_POLL_S
# up to STRAGGLER_POLL_MAX_S (a faulted episode ends without arriving). Every ask is a Ray call to each env worker;
# asked every 20 ms, a 22 s straggler wait on LIBERO (episodes of ~60 s, 4 env workers) made ~3,500 of them, on the
# cores the envs need (found 2026-12-08).
STRAGGLER_POLL_S = 0.02
STRAGGLER_POLL_MAX_S = 0.5


@dataclass
class TrainPlane:
    rollouts: list[ActorHandle]  # RolloutWorker
    env_workers: list[ActorHandle]  # EnvWorker
    gate: ActorHandle  # GateServer (learning/staleness.py)
    max_staleness: int
    stale_policy: str
    weight_sync: str = "object_store"  # learning/weight_plane.py
    bucket_bytes: int = 256 * 2**20
    # ABLATION ONLY (trainer.publish_lag): rollout workers held this many versions behind
    publish_lag: int = 0


class TrainPeers(Protocol):
    """What the trainer loop asks of the other processes (Ray handles in a run: `RayTrainPeers`; plain objects in
    tests)."""

    def open_versions(self) -> list[int]:
        """The policy version of every live env worker's oldest open episode (workers with none left out)."""

    def release(self, episodes: int) -> None:
        """Episodes dropped as too old: the gate may grant their start credits again."""

    def publish(
        self, weights: dict[str, torch.Tensor], version: int, transport: str
    ) -> list[tuple[int, float]]:
        """Send a version to every live rollout worker by `transport`; -> each one's (version, serving stall)."""

    def advance(self, version: int) -> None:
        """Every rollout worker serves `version`: the gate grants the next batch of start credits."""


class RayTrainPeers:
    """`TrainPeers` over a run's Ray handles (TrainPlane) and the collective weight group, if formed."""

    def __init__(self, plane: TrainPlane, weight_group: WeightGroup | None):
        self.plane, self.weight_group = plane, weight_group

    def open_versions(self) -> list[int]:
        answers = answers_from_live(e.oldest_open_version.remote() for e in self.plane.env_workers)
        return [v for v in answers if v is not None]

    def release(self, episodes: int) -> None:
        self.plane.gate.release.remote(episodes)

    def publish(
        self, weights: dict[str, torch.Tensor], version: int, transport: str
    ) -> list[tuple[int, float]]:
        group = self.weight_group if transport == "collective" else None
        return publish_weights(
            weights, version, self.plane.rollouts, transport, group, self.plane.bucket_bytes
        )

    def advance(self, version: int) -> None:
        ray.get(self.plane.gate.advance.remote(version))


class TrainerLoop:
    def __init__(self, learner: Learner, peers: TrainPeers, batch_size: int, max_staleness: int, stale_policy: str,
                 transport: str = "object_store", update: Callable[[DataProto], dict[str, float]] | None = None,
                 spans: SpanRecorder | None = None, weight_spans: SpanRecorder | None = None,
                 publish_lag: int = 0):  # fmt: skip
        """`update`: one update by every data-parallel rank (default: the learner's own, one rank). `publish_lag`
        (ablation only): version u is published once version u + lag exists, so the rollout workers act with weights
        `lag` versions old and every sample arrives at least that stale (the off-policy ablation's forced lag)."""
        self.learner, self.peers, self.transport = learner, peers, transport
        self.update = update or learner.update
        self.spans = spans or SpanRecorder("actor", "actor/0")
        self.weight_spans = weight_spans or SpanRecorder("weights", "weights/0")
        self.batch_size = batch_size
        self.rule = StalenessGate(max_staleness, stale_policy, batch_size)
        self.cond = threading.Condition()
        self.arrived: list[DataProto] = []
        self.queue = EpisodeQueue()
        self.received: list[int] = []
        self.received_decisions: dict[int, int] = {}  # episode id -> decisions, as the actor received them
        self.dropped: list[int] = []
        self.metrics: list[dict[str, float]] = []
        self.stats: dict[str, float] = defaultdict(float)
        self.stopping = False
        self.trainer_done = False  # the trainer thread has ended: the publisher may stop once nothing is left
        self.published: tuple[dict, int] | None = None  # (weights on the wire, version) the rollouts acked
        self.to_publish: tuple[dict[str, torch.Tensor], int] | None = (
            None  # newest snapshot not yet published
        )
        self.publish_lag = publish_lag
        # the newest version every rollout worker serves (the driver published the start weights before the loop)
        self.serving = learner.version
        self.held: deque[tuple[dict[str, torch.Tensor], int]] = deque()  # snapshots the lag still holds back
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="actor-trainer", daemon=True)
        self.publisher = threading.Thread(target=self._publish_loop, name="actor-publisher", daemon=True)
        self.thread.start()
        self.publisher.start()

    def push(self, episodes: DataProto) -> None:
        add_proximal_columns(episodes)
        with self.cond:
            self.arrived.append(episodes)
            ids = episodes.non_tensor_batch["episode_id"].tolist()
            self.received.extend(ids)
            self.received_decisions.update(
                zip(ids, episodes.batch["mask"].sum(1).long().tolist(), strict=True)
            )
            self.cond.notify_all()

    # ---- the trainer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        quiet = 0  # straggler checks in a row with no arrival in between (backs the next check off)
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
                    with self.cond:  # an arrival (`push` notifies) ends the wait at once
                        if not self.arrived:
                            self.cond.wait(min(STRAGGLER_POLL_MAX_S, STRAGGLER_POLL_S * 2**quiet))
                        quiet = 0 if self.arrived else min(quiet + 1, 5)  # 20 ms x 2**5 > the 0.5 s cap
                    self.stats["straggler_wait_s"] += time.monotonic() - t_wait
                    self.stats["straggler_checks"] += 1
                    continue
                quiet = 0
                # every episode the env workers did not report is now in `arrived` (they report an episode until
                # its push has been received): merge them before choosing, or a must-train one could be missed
                self._merge_arrivals()
                self._train_one_batch()
        except BaseException as err:
            self.error = err
            raise

    def _merge_arrivals(self) -> None:
        with self.cond:
            parts, self.arrived = self.arrived, []
        for part in parts:
            self.queue.add(part)

    def _queued(self) -> int:
        return len(self.queue)

    def _stragglers_done(self) -> bool:
        """`pause`: no open episode may be one that could only be trained in this update. Asked only once the
        rollout workers serve the newest version due (u - publish_lag): until then an env can still start an episode
        on the version before, after this check, and that episode could only be trained one version too late
        (tests/learning/test_trainer_loop.py caught it: a decision trained 2 versions after it was chosen at S = 1)."""
        if self.rule.policy != "pause":
            return True
        with self.cond:
            if self.serving < self.learner.version - self.publish_lag:
                return False
        return not any(self.rule.must_train(v, self.learner.version) for v in self.peers.open_versions())

    def _plan(self) -> tuple[np.ndarray, np.ndarray, int]:
        """-> (rows the next update takes, rows too old to train (`drop` only), how many of the taken must be
        trained now). Must-train episodes first, then the oldest others up to B."""
        u = self.learner.version
        oldest = self.queue.oldest_versions()
        too_old = np.array([self.rule.too_old(int(v), u) for v in oldest], dtype=bool)
        if self.rule.policy != "drop":
            too_old[:] = False
        order = [i for i in np.argsort(oldest, kind="stable") if not too_old[i]]
        must = [i for i in order if self.rule.must_train(int(oldest[i]), u)]
        rest = [i for i in order if not self.rule.must_train(int(oldest[i]), u)]
        take = must + rest[: max(0, self.batch_size - len(must))]
        return np.array(sorted(take), dtype=np.int64), np.flatnonzero(too_old), len(must)

    def _score_stale_rows(self) -> None:
        """pi_prox (the work off-policy correction needs) for the rows the next update would take, if not yet
        scored under the current weights."""
        # fsdp2: every rank scores inside the update; first_epoch: the update's first epoch is the scoring
        if not self._queued() or not self.learner.scores_alone or not self.learner.scoring_pass:
            return
        t0 = time.time()
        scored = self.queue.score(self._plan()[0], self.learner.version, self.learner.score)
        if scored:
            self.spans.record(t0, batch=scored, version=self.learner.version, kind="score")

    def _train_one_batch(self) -> None:
        take, too_old, must = self._plan()
        if len(too_old):
            dropped = self.queue.take(too_old)
            self.dropped.extend(dropped.non_tensor_batch["episode_id"].tolist())
            self.peers.release(len(too_old))
            take, _, must = self._plan()  # positions moved
        if len(take) == 0:
            return
        self._score_stale_rows()  # what was not scored while waiting (late arrivals, must-train rows beyond B)
        batch = self.queue.take(take)
        t0 = time.time()
        with self.learner.lock:  # a run checkpoint sees the state before or after this update, never inside
            metrics = self.update(batch)
            version = self.learner.version
            self.spans.record(t0, batch=len(batch), version=version, kind="update")
            t_snap = time.time()
            weights = self.learner.weights()  # a copy: the next update changes the weights meanwhile
        with self.cond:
            self.held.append((weights, version))
            if len(self.held) > self.publish_lag:
                self.to_publish = self.held.popleft()
            self.cond.notify_all()
        self.spans.record(t_snap, batch=1, version=version, kind="snapshot")
        metrics["actor/snapshot_s"] = time.time() - t_snap
        metrics["actor/must_train"] = float(must)
        metrics["actor/straggler_wait_s"] = self.stats.pop("straggler_wait_s", 0.0)
        # the open-version asks made meanwhile (a Ray call to every env worker each)
        metrics["actor/straggler_checks"] = self.stats.pop("straggler_checks", 0.0)
        # publications finished since the last update: the longest time a rollout worker stopped serving
        metrics["actor/rollout_stall_s"] = self.stats.pop("rollout_stall_s", 0.0)
        metrics["actor/weight_plane_fallbacks"] = self.stats.get("weight_plane_fallbacks", 0.0)
        # what this version weighs on the wire (the trainable part: heads, adapters)
        metrics["actor/published_mb"] = sum(t.numel() * t.element_size() for t in weights.values()) / 2**20
        metrics["actor/queued"] = float(self._queued())
        metrics.update(episode_metrics(batch))
        with self.cond:
            self.metrics.append(metrics)
            self.cond.notify_all()  # a driver waiting in `status`

    def _publish_loop(self) -> None:
        try:
            while True:
                with self.cond:
                    while self.to_publish is None and not self.trainer_done:
                        self.cond.wait(0.1)
                    if self.to_publish is None:  # the trainer has ended and its last version is out
                        return
                    (weights, version), self.to_publish = self.to_publish, None
                self.publish(weights, version)
        except BaseException as err:
            self.error = err
            raise

    def publish(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """Weights straight to the rollout workers by the weight plane (learning/weight_plane.py); wait for their
        acks so that every episode started afterwards is on the new version; then open the gate for the next
        batch. A rollout worker being restarted is skipped: it gets the newest weights when it rejoins."""
        t0 = time.time()
        try:
            answers = self.peers.publish(weights, version, self.transport)
        except Exception as err:  # noqa: BLE001 - a member of the group was lost: the object store always works
            if self.transport != "collective":
                raise
            log.warning(
                "collective weight plane failed (%r); publishing by the object store from now on", err
            )
            self.transport = "object_store"
            self.stats["weight_plane_fallbacks"] += 1
            answers = self.peers.publish(weights, version, self.transport)
        self.stats["rollout_stall_s"] += max((s for _, s in answers), default=0.0)
        self.published = (weights_to_wire(weights), version)  # what the driver hands a rejoining worker
        self.peers.advance(version)
        with self.cond:
            self.serving = max(self.serving, version)
            self.cond.notify_all()
        self.weight_spans.record(t0, batch=1, version=version, kind="publish")

    def newest(self) -> tuple[dict, int] | None:
        """(weights on the wire, version) of the newest update: what evaluation measures. The published snapshot,
        unless a publication lag holds newer ones back from the rollout workers."""
        with self.cond:
            held = self.held[-1] if self.held else None
        return self.published if held is None else (weights_to_wire(held[0]), held[1])

    # ---- control ----------------------------------------------------------------------------------------
    def status(self, wait_s: float = 0.0) -> dict[str, Any]:
        """The metrics of every update since the last call; with none yet, wait up to `wait_s` for one (the driver
        wakes at each update instead of polling)."""
        deadline = time.monotonic() + wait_s
        with self.cond:
            while not self.metrics and self.error is None and not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            metrics, self.metrics = self.metrics, []
        if self.error is not None:
            raise RuntimeError(f"actor trainer loop failed: {self.error!r}") from self.error
        return {"policy_version": self.learner.version, "metrics": metrics}

    def received_from(self, prefix: int) -> dict[int, int]:
        """Episodes received from one env-worker incarnation (`episode_id >> 24 == prefix`): id -> decisions."""
        with self.cond:
            return {i: n for i, n in self.received_decisions.items() if i >> 24 == prefix}

    def stop(self) -> dict[str, Any]:
        """Finish the update in progress (if any), then report the consumer side of the ledger."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join()
        with self.cond:  # the update in progress when stopping was asked has made its snapshot by now
            self.trainer_done = True
            self.cond.notify_all()
        self.publisher.join()  # the last snapshot is published before the ledger is read
        if self.error is not None:
            raise RuntimeError(f"actor trainer loop failed: {self.error!r}") from self.error
        queued = self.queue.all_ids()
        queued += [i for p in self.arrived for i in p.non_tensor_batch["episode_id"].tolist()]
        return {"received": list(self.received), "received_decisions": dict(self.received_decisions),
                "trained": list(self.learner.trained_episode_ids),
                "dropped": list(self.dropped), "queued": queued, "metrics": self.status()["metrics"]}  # fmt: skip
