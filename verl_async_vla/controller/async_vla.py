"""`trainer=async_vla`: env shards, inference and training all run at once, with no global barrier.

One event loop on the driver reacts to whichever Ray future finishes first:
- a shard finished stepping -> its finished episodes enter the trajectory queue, ended envs were already reset in
  the same call, and every env with a fresh observation queues an inference request;
- the dynamic batcher forms a batch (max_batch rows, or whatever waited max_wait_ms) for an idle rollout worker;
- an inference answer -> each shard gets its actions as soon as it is free (a busy shard collects them);
- the actor is idle and the queue holds a micro-batch -> the staleness gate filters it and the actor ingests it;
  when that completes a training batch, the new weights go to the rollout workers without blocking anyone.
The workers are the same as in `trainer=sync`; only this scheduling differs.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError
from verl import DataProto

from verl_async_vla.controller.base import Controller
from verl_async_vla.controller.batcher import DynamicBatcher
from verl_async_vla.controller.staleness import StalenessGate
from verl_async_vla.controller.trajectory import Episode, EpisodeAssembler, episodes_to_proto
from verl_async_vla.workers.codec import split_env_key


class AsyncVLAController(Controller):
    name = "async_vla"
    streaming = False  # True inside fit(): weights are then published without blocking

    def fit(self) -> None:
        t, algo = self.cfg.trainer, self.cfg.algo
        self.batcher = DynamicBatcher(t.max_batch, t.max_wait_ms / 1000.0)
        self.gate = StalenessGate(t.max_staleness, t.stale_policy, algo.train_batch_episodes)
        self.assembler = EpisodeAssembler()
        self.futures: dict[ray.ObjectRef, tuple[str, int, Any]] = {}
        self.idle_rollouts = deque(range(len(self.rollout_wg.workers)))
        self.shard_busy = [True] * len(self.env_wg.workers)
        self.waiting: dict[int, list[tuple[DataProto, DataProto]]] = defaultdict(
            list
        )  # shard -> (obs, answer)
        self.queue: deque[Episode] = deque()  # the trajectory queue: finished, not yet given to the actor
        self.actor_busy = False
        self.iteration_t0 = time.monotonic()
        self.episodes_since_update: list[Episode] = []
        self.stats = defaultdict(float)
        self.streaming = True
        for rank, worker in enumerate(self.env_wg.handles):
            self.futures[worker.reset.remote()] = ("reset", rank, None)

        producing = True
        loop_t0, waited = time.monotonic(), 0.0
        while True:
            if producing and self.env_steps >= t.total_env_steps:
                producing = False  # drain: finish what is in flight, start nothing new
            if producing:
                self._dispatch_inference()
                self._feed_actor()
            timeout = None
            if producing and self.idle_rollouts and self.gate.may_produce(self.untrained()):
                timeout = self.batcher.wait_left(time.monotonic())  # wake up when the next batch is due
            if not self.futures:
                if timeout is None:
                    break
                time.sleep(timeout)
                waited += timeout
                continue
            w0 = time.monotonic()
            done, _ = ray.wait(list(self.futures), num_returns=1, timeout=timeout)
            waited += time.monotonic() - w0
            for ref in done:
                self._handle(ref, producing)
        # Scheduler overhead: driver time not spent waiting on workers (includes the blocking get of results,
        # assembling episodes, batching, dispatch), per inference request row.
        self.stats["driver_busy_s"] = time.monotonic() - loop_t0 - waited
        self.stats["abandoned_open_episodes"] = len(self.assembler.open)  # never finished: not produced
        self.streaming = False

    # ---- reactions --------------------------------------------------------------------------------------
    def _handle(self, ref: ray.ObjectRef, producing: bool) -> None:
        kind, idx, ctx = self.futures.pop(ref)
        try:
            result = ray.get(ref)
        except RayActorError as err:
            raise RuntimeError(
                f"{kind} call on worker {idx} failed because the worker died: {err}. Its envs' open episodes "
                "are lost (not counted as produced); restart the run or lower env.num_envs_per_worker if it ran "
                "out of memory."
            ) from err
        now = time.monotonic()
        if kind == "reset":
            self._new_episodes(idx, result, now)
            self.shard_busy[idx] = False
        elif kind == "step":
            self._stepped(idx, ctx, *result, now)
            self.shard_busy[idx] = False
        elif kind == "infer":
            self.idle_rollouts.append(idx)
            self._answered(ctx, result)
        elif kind == "actor":
            self.actor_busy = False
            self._trained(ctx, result)
        if producing and kind in ("reset", "step", "infer"):
            for shard in range(len(self.env_wg.workers)):
                self._dispatch_shard(shard)

    def _new_episodes(self, shard: int, obs: DataProto, now: float) -> None:
        self.assembler.begin(obs.non_tensor_batch["env_key"], list(obs.non_tensor_batch["instruction"]))
        self.batcher.put(shard, obs, now)

    def _stepped(
        self, shard: int, ctx: tuple[DataProto, DataProto], outcome: DataProto, fresh: DataProto, now: float
    ) -> None:
        obs, answer = ctx
        finished = self.assembler.record(obs, answer, outcome)
        self.env_steps_executed += int(outcome.batch["env_steps"].sum())
        if finished:
            self.produced(finished)
            self.queue.extend(finished)
        alive = np.flatnonzero(~outcome.batch["done"].numpy())
        self.batcher.put(
            shard, outcome.select_idxs(alive).select(["image", "state"], ["instruction", "env_key"]), now
        )
        if len(fresh):
            self._new_episodes(shard, fresh, now)

    def _answered(self, request: DataProto, answer: DataProto) -> None:
        shards, _ = split_env_key(answer.non_tensor_batch["env_key"])
        for shard in np.unique(shards):
            rows = np.flatnonzero(shards == shard)
            self.waiting[int(shard)].append((request.select_idxs(rows), answer.select_idxs(rows)))

    def _trained(self, episodes: list[Episode], result: dict[str, float]) -> None:
        self.episodes_since_update += episodes
        self.after_ingest(result, episodes)
        assert self.policy_version == int(result["actor/policy_version"]), (
            "driver and actor disagree on version"
        )
        if result["updated"]:
            done, self.episodes_since_update = self.episodes_since_update, []
            metrics = {k: v for k, v in result.items() if k != "updated"}
            metrics.update({f"pipeline/{k}": v for k, v in self.pipeline_stats().items()})
            self.end_iteration(done, metrics, self.iteration_t0)
            self.iteration_t0 = time.monotonic()

    # ---- dispatch ---------------------------------------------------------------------------------------
    def _dispatch_shard(self, shard: int) -> None:
        if self.shard_busy[shard] or not self.waiting[shard]:
            return
        pairs, self.waiting[shard] = self.waiting[shard], []
        obs = DataProto.concat([p[0] for p in pairs])
        answer = DataProto.concat([p[1] for p in pairs])
        request = DataProto.from_dict(
            tensors={"actions": answer.batch["actions"]},
            non_tensors={"env_key": answer.non_tensor_batch["env_key"]},
        )
        self.futures[self.env_wg.handles[shard].step_and_reset.remote(request)] = (
            "step",
            shard,
            (obs, answer),
        )
        self.shard_busy[shard] = True

    def untrained(self) -> int:
        return len(self.queue) + len(self.pending_in_actor)

    def _dispatch_inference(self) -> None:
        untrained = self.untrained()
        while self.idle_rollouts and self.gate.may_produce(untrained):
            batch = self.batcher.pop_batch(time.monotonic())
            if batch is None:
                return
            self.stats["infer_batches"] += 1
            self.stats["infer_rows"] += len(batch)
            self.stats["queue_wait_s"] += batch.meta_info.pop("queue_wait_s")
            idx = self.idle_rollouts.popleft()
            self.futures[self.rollout_wg.handles[idx].generate.remote(batch)] = ("infer", idx, batch)
        if not self.gate.may_produce(untrained):
            self.stats["paused_checks"] += 1

    def _feed_actor(self) -> None:
        algo, t = self.cfg.algo, self.cfg.trainer
        if self.actor_busy or not self.queue:
            return
        room = algo.train_batch_episodes - len(self.pending_in_actor)
        if len(self.queue) < min(t.micro_batch_episodes, room):
            return
        take = [self.queue.popleft() for _ in range(min(len(self.queue), max(room, 1)))]
        fresh, stale = self.gate.split(take, self.policy_version)
        if stale:
            self.ledger.record_dropped(e.episode_id for e in stale)
        if not fresh:
            return
        ref = self.actor_wg.handles[0].ingest.remote(episodes_to_proto(fresh, self.horizon))
        self.futures[ref] = ("actor", 0, fresh)
        self.actor_busy = True

    def publish_weights(self) -> int:
        """Non-blocking: rollout workers apply the new version between batches (Ray runs an actor's calls in
        order), so no env ever waits on a broadcast."""
        if not self.streaming:  # set-up and evaluation: the blocking publication
            return super().publish_weights()
        ref = self.actor_wg.handles[0].get_weights.remote()
        for worker in self.rollout_wg.handles:
            worker.set_weights_packed.remote(ref)
        self.policy_version += 1
        return self.policy_version

    def pipeline_stats(self) -> dict[str, float]:
        b = max(self.stats["infer_batches"], 1.0)
        return {
            "infer_batch_mean": self.stats["infer_rows"] / b,
            "infer_queue_wait_ms": 1000.0 * self.stats["queue_wait_s"] / b,
            "trajectory_queue": float(len(self.queue)),
        }

    def scheduler_stats(self) -> dict[str, float]:
        rows = max(self.stats["infer_rows"], 1.0)
        return {
            **self.pipeline_stats(),
            "requests": self.stats["infer_rows"],
            "driver_busy_s": self.stats["driver_busy_s"],
            "driver_us_per_request": 1e6 * self.stats["driver_busy_s"] / rows,
        }
