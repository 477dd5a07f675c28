"""ActorWorker: the Ray facade of the learner (learning/learner.py), which owns the trainable policy, its optimizer
and the PPO update. The worker wires it to the run: the lockstep intake (`ingest`, the sync trainer sends a whole
batch; each micro-batch is scored under the current weights on arrival), the stream intake (`push`, the async
trainer's TrainerLoop in learning/trainer_loop.py), data-parallel followers, weight publication and the train state.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import ray
import torch
from verl import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, Execute, register

from verl_async_vla.config.schema import AlgoConfig, ModelConfig
from verl_async_vla.learning.data_parallel import ACTOR_STRATEGIES
from verl_async_vla.learning.episode_queue import EpisodeQueue, add_proximal_columns
from verl_async_vla.learning.learner import Learner
from verl_async_vla.learning.trainer_loop import RayTrainPeers, TrainerLoop, TrainPlane
from verl_async_vla.learning.weight_plane import WeightGroup, digest, free_address
from verl_async_vla.learning.weight_plane import publish as publish_weights
from verl_async_vla.models.checkpoint import write_checkpoint
from verl_async_vla.plumbing.process import pin_to_cores, process_info, set_thread_budget
from verl_async_vla.plumbing.wire import weights_to_wire
from verl_async_vla.telemetry.timeline import Span, SpanRecorder


class ActorWorker(Worker):
    def __init__(self, model_cfg: dict, algo_cfg: dict, init_checkpoint: str, seed: int, torch_threads: int = 1,
                 cores: list[int] | None = None, actor_strategy: str = "all_reduce"):  # fmt: skip
        super().__init__()
        set_thread_budget(torch_threads)
        # trainer.cpu_layout=actor_apart: this rank's own core (`cores` lists one per rank); threads started later
        # (the trainer loop's, the publisher's) inherit it
        pin_to_cores(None if cores is None else [cores[self.rank]])
        self.algo = AlgoConfig(**algo_cfg)
        gpu = model_cfg.get("device", "cpu").startswith("cuda")
        # learning/data_parallel.py: all_reduce | fsdp2
        dp = ACTOR_STRATEGIES[actor_strategy](self.rank, self.world_size, "nccl" if gpu else "gloo")
        self.learner = Learner(ModelConfig(**model_cfg), self.algo, init_checkpoint, seed, dp)
        self.peers: list = []  # the other ranks' handles (rank 0 streams; they follow its updates)
        self.buffer: list[DataProto] = []
        self.received_episode_ids: list[int] = []  # lockstep path (the stream path counts in its TrainerLoop)
        self.spans = SpanRecorder("actor", f"actor/{self.rank}")
        # publishing a version runs beside the next update in the async trainer: a stage of its own
        self.weight_spans = SpanRecorder("weights", f"weights/{self.rank}")
        self.loop: TrainerLoop | None = None
        self.weight_group: WeightGroup | None = (
            None  # the collective weight plane, trainer.weight_sync=collective
        )

    # ---- async data plane: episodes straight from env workers, weights straight to rollout workers ------------
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def start_stream(self, plane: TrainPlane) -> None:
        self.loop = TrainerLoop(self.learner, RayTrainPeers(plane, self.weight_group), self.algo.train_batch_episodes,
                                plane.max_staleness, plane.stale_policy, plane.weight_sync,
                                update=self.update_all_ranks, spans=self.spans,
                                weight_spans=self.weight_spans, publish_lag=plane.publish_lag)  # fmt: skip

    @register(dispatch_mode=Dispatch.ONE_TO_ALL, blocking=False)
    def push(self, episodes: DataProto) -> None:
        if self.loop is None:
            raise RuntimeError("ActorWorker.push before start_stream")
        self.loop.push(episodes)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def stream_status(self, wait_s: float = 0.0) -> dict:
        """Metrics of the updates since the last call; waits up to `wait_s` for the next one if there are none."""
        if self.loop is None:
            return {"policy_version": self.learner.version, "metrics": []}
        return self.loop.status(wait_s)

    # ---- the weight plane (learning/weight_plane.py) ----------------------------------------------------------
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def weight_group_address(self) -> tuple[str, int]:
        """Where the weight plane's group meets: this node, a free port (the actor is rank 0 and hosts the store)."""
        return free_address()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def join_weight_group(self, addr: str, port: int, world: int, backend: str) -> None:
        self.weight_group = WeightGroup(addr, port, world, 0, backend)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def weights_digest(self) -> tuple[int, float]:
        """(version, digest of the whole weights); fsdp2: rank 0 only (it alone holds them whole)."""
        with self.learner.lock:  # version and weights of the same update
            return self.learner.version, digest(self.learner.weights())

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def publish_to(self, rollouts: list, transport: str, bucket_mb: float = 256.0, version: int | None = None
                   ) -> dict:  # fmt: skip
        """Publish the current weights to `rollouts` once, by `transport` (the trainer loop does the same per
        version; benchmarks/weight_sync.py times it, labelling each publication a new `version` so that every
        one is loaded); the driver's `WorkerSet.publish` for both trainers. -> the version, seconds to publish, and
        each worker's serving stall."""
        with self.learner.lock:  # weights and version of the same update
            weights, held = self.learner.weights(), self.learner.version
        t0 = time.perf_counter()
        version = held if version is None else version
        answers = publish_weights(weights, version, rollouts, transport, self.weight_group,
                                  int(bucket_mb * 2**20))  # fmt: skip
        return {"version": version, "publish_s": time.perf_counter() - t0, "stall_s": [s for _, s in answers],
                "bytes": sum(t.numel() * t.element_size() for t in weights.values())}  # fmt: skip

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def process_info(self) -> dict:
        return process_info("actor", self.rank)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def received_from(self, prefix: int) -> dict[int, int]:
        """Episodes received from one env-worker incarnation (`episode_id >> 24 == prefix`): id -> decisions.
        Asked when that worker's process died, to settle its part of the ledger (controller/recovery.py)."""
        assert self.loop is not None, "received_from before start_stream"
        return self.loop.received_from(prefix)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def stop_stream(self) -> dict:
        loop, self.loop = self.loop, None
        return loop.stop() if loop is not None else {}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def get_weights(self, newest: bool = False) -> tuple[dict, int]:
        """(weights on the wire, version): a consistent snapshot (the last published, or with `newest` the newest
        update's, which differ only under `trainer.publish_lag`) while the trainer thread updates the weights."""
        snapshot = None if self.loop is None else self.loop.newest() if newest else self.loop.published
        if snapshot is not None:
            return snapshot
        with self.learner.lock:
            return weights_to_wire(self.learner.weights()), self.learner.version

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def ingest(self, batch: DataProto) -> dict[str, float]:
        """Score a micro-batch under the current (proximal) weights and buffer it (rows the current weights
        produced need no scoring); update when a batch is full."""
        t0 = time.time()
        self.received_episode_ids.extend(batch.non_tensor_batch["episode_id"].tolist())
        # the same scoring as the async queue's: rows the current weights produced take the rollout's own figures
        queue = EpisodeQueue()
        queue.add(add_proximal_columns(batch))
        queue.score(np.arange(len(batch)), self.learner.version, self.learner.proximal_scorer())
        self.buffer.append(batch)
        buffered = sum(len(b) for b in self.buffer)
        if buffered < self.algo.train_batch_episodes:
            self.spans.record(t0, batch=len(batch), version=self.learner.version)
            return {"updated": 0.0, "actor/policy_version": self.learner.version, "actor/buffered": buffered}
        full, self.buffer = DataProto.concat(self.buffer), []
        metrics = self.learner.update(full)
        self.spans.record(t0, batch=len(batch), version=self.learner.version)
        return {"updated": 1.0, **metrics}

    # ---- data-parallel ranks (learning/data_parallel.py) ----------------------------------------------------
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_peers(self, peers: list) -> None:
        """Rank 0 of N: the handles of ranks 1..N-1, which follow each of its streamed updates and join its
        collectives outside updates (fsdp2: gathering the optimizer state for a run checkpoint)."""
        self.peers = list(peers)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def follow_update(self, batch: DataProto) -> None:
        """Ranks 1..N-1 in the async trainer: the same update as rank 0, on the same batch, in step with it."""
        self.learner.update(batch)

    def update_all_ranks(self, batch: DataProto) -> dict[str, float]:
        """One update by every rank (rank 0 calls it from its trainer loop); -> rank 0's metrics."""
        followers = [p.follow_update.remote(batch) for p in self.peers]
        metrics = self.learner.update(batch)
        ray.get(followers)
        return metrics

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def drain_spans(self) -> list[Span]:
        return self.spans.drain() + self.weight_spans.drain()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def calibrate(self, batch: DataProto, updates: int) -> dict:
        """The learner alone (learning/learner.py: calibrate), at one intra-op thread and at this worker's own count
        (`trainer.actor_threads`): async's actor trains beside the producers on one, a lockstep update may take every
        core, and the bound must hold for either (each update is tagged with its `threads`). Only for a calibration
        worker set."""
        own = torch.get_num_threads()
        runs = []
        for threads in sorted({1, own}):
            torch.set_num_threads(threads)
            run = self.learner.calibrate(batch, updates)
            runs.append(run | {"per_update": [u | {"threads": threads} for u in run["per_update"]]})
        torch.set_num_threads(own)
        merged = {k: sum(r[k] for r in runs) for k in ("updates", "env_steps", "wall_s", "cpu_s")}
        return runs[-1] | merged | {"per_update": [u for r in runs for u in r["per_update"]]}

    @register(dispatch_mode=Dispatch.ALL_TO_ALL, execute_mode=Execute.RANK_ZERO)
    def ledger_report(self) -> dict[str, list[int]]:
        """The consumer side of the ledger for the lockstep path (received, trained, still buffered), as rank 0,
        which every lockstep batch reaches whole, counts it."""
        queued = [i for b in self.buffer for i in b.non_tensor_batch["episode_id"].tolist()]
        return {"received": list(self.received_episode_ids), "trained": list(self.learner.trained_episode_ids),
                "dropped": [], "queued": queued}  # fmt: skip

    @register(dispatch_mode=Dispatch.ALL_TO_ALL, execute_mode=Execute.RANK_ZERO)
    def save_state(self, directory: str) -> dict[str, int]:
        """The whole training state into `directory` (learning/train_state.py), consistent: between updates.
        Rank 0 writes it (Execute.RANK_ZERO); under fsdp2 the other ranks join the gathering of the optimizer's
        shards. Rank 0 holds the learner's lock throughout, so no streamed update (whose followers are sent under
        it) can interleave its collectives with this one's."""
        sharded = self.learner.dp.sharded
        if sharded and len(self.peers) != self.world_size - 1:
            raise RuntimeError(
                f"fsdp2 save_state on rank 0 knows {len(self.peers)} of {self.world_size - 1} other "
                "ranks, who must join the gather: call set_peers first (controller/workers.py does)"
            )
        with self.learner.lock:
            joined = [p.join_save_state.remote() for p in self.peers] if sharded else []
            out = self.learner.save_state(Path(directory), self.received_episode_ids)
            ray.get(joined)
            return out

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def join_save_state(self) -> None:
        """Ranks 1..N-1 under fsdp2: their part of rank 0's `save_state` (the optimizer state gather)."""
        self.learner.save_state(None, [])

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_state(self, directory: str, keep_ledger: bool = True) -> int:
        """Continue from `save_state`'s output; -> the policy version. `keep_ledger=False` (async): the episode
        ids of the earlier segment are not carried over (its ledger was reconciled when it was checkpointed)."""
        received = self.learner.load_state(Path(directory), keep_ledger)
        if received is not None:
            self.received_episode_ids = received
        return self.learner.version

    @register(dispatch_mode=Dispatch.ALL_TO_ALL, execute_mode=Execute.RANK_ZERO)
    def save(self, path: str, **meta) -> str:
        """The policy checkpoint; rank 0 alone writes it (Execute.RANK_ZERO: every rank holds the same weights, or
        under fsdp2 rank 0 alone holds them gathered)."""
        with self.learner.lock:
            meta = {"policy_version": self.learner.version, **meta}
            model_cfg = dataclasses.asdict(self.learner.model_cfg)
            return str(write_checkpoint(path, self.learner.weights(), model_cfg, meta))
