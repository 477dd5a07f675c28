"""ActorWorker: owns the trainable policy and its optimizer. No scheduling here.

Episodes stream in through `ingest` (any number per call). On arrival each micro-batch is scored under the current
weights -- the proximal policy pi_prox and fresh values, the work that off-policy correction needs -- before the
whole batch exists. Once `algo.train_batch_episodes` are buffered, PPO epochs run over them (with the configured
correction, algos/), and `policy_version` goes up by one. The sync controller sends a whole batch in one call; the
async one streams micro-batches while envs and inference keep running.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import ray
import torch
from verl import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, register

from verl_async_vla.algos.advantages import compute_advantages
from verl_async_vla.algos.losses import actor_critic_loss
from verl_async_vla.algos.off_policy import compute_vtrace_advantage_return, correction_inputs
from verl_async_vla.config.schema import AlgoConfig, ModelConfig
from verl_async_vla.learning.data_parallel import DataParallel
from verl_async_vla.learning.episode_queue import (
    EpisodeQueue,
    add_proximal_columns,
    take_behaviour_as_proximal,
)
from verl_async_vla.learning.train_state import (
    numpy_rng_from_data,
    numpy_rng_to_data,
    optimizer_from_data,
    optimizer_to_data,
    read_state,
    torch_rng_from_list,
    torch_rng_to_list,
    write_state,
)
from verl_async_vla.learning.trainer_loop import TrainerLoop, TrainPlane
from verl_async_vla.learning.weight_plane import WeightGroup, digest, free_address
from verl_async_vla.learning.weight_plane import publish as publish_weights
from verl_async_vla.models import PolicyObs, build_policy
from verl_async_vla.models.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from verl_async_vla.plumbing.process import process_info, resident_mb, return_free_memory, set_thread_budget
from verl_async_vla.plumbing.wire import weights_to_wire
from verl_async_vla.telemetry.calibration import measure
from verl_async_vla.telemetry.timeline import Span, SpanRecorder


class ActorWorker(Worker):
    def __init__(
        self, model_cfg: dict, algo_cfg: dict, init_checkpoint: str, seed: int, torch_threads: int = 1
    ):
        super().__init__()
        set_thread_budget(torch_threads)
        torch.manual_seed(seed)
        self.model_cfg, self.algo = ModelConfig(**model_cfg), AlgoConfig(**algo_cfg)
        self.policy = build_policy(self.model_cfg)
        ckpt = load_checkpoint(init_checkpoint)
        check_compatible(ckpt["model_cfg"], self.model_cfg)
        self.policy.load_weights(ckpt["weights"])
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.algo.lr, eps=1e-5)
        self.policy_version = 0
        self.rng = np.random.default_rng(
            seed
        )  # the same on every rank: every rank plans the same minibatches
        gpu = self.model_cfg.device.startswith("cuda")
        self.dp = DataParallel(
            self.rank, self.world_size, "nccl" if gpu else "gloo"
        )  # learning/data_parallel.py
        self.peers: list = []  # the other ranks' handles (rank 0 streams; they follow its updates)
        self.buffer: list[DataProto] = []
        self.trained_episode_ids: list[int] = []
        self.received_episode_ids: list[int] = []  # lockstep path (the stream path counts in its TrainerLoop)
        self.spans = SpanRecorder("actor", f"actor/{self.rank}")
        # publishing a version runs beside the next update in the async trainer: a stage of its own
        self.weight_spans = SpanRecorder("weights", f"weights/{self.rank}")
        self.loop: TrainerLoop | None = None
        self.weight_group: WeightGroup | None = (
            None  # the collective weight plane, when trainer.weight_sync=collective
        )
        # held by every update (both trainers): a run checkpoint reads weights, optimizer and version together
        self.state_lock = threading.RLock()

    # ---- async data plane: episodes straight from env workers, weights straight to rollout workers ------------
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def start_stream(self, plane: TrainPlane) -> None:
        self.loop = TrainerLoop(self, plane)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL, blocking=False)
    def push(self, episodes: DataProto) -> None:
        if self.loop is None:
            raise RuntimeError("ActorWorker.push before start_stream")
        self.loop.push(episodes)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def stream_status(self) -> dict:
        return (
            self.loop.status()
            if self.loop is not None
            else {"policy_version": self.policy_version, "metrics": []}
        )

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
        with self.state_lock:
            return self.policy_version, digest(self.policy.get_weights())

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def publish_to(self, rollouts: list, transport: str, bucket_mb: float = 256.0, version: int | None = None
                   ) -> dict:  # fmt: skip
        """Publish the current weights to `rollouts` once, by `transport` (the trainer loop does the same per
        version; benchmarks/weight_sync.py times it, labelling each publication a new `version` so that every
        one is loaded). -> seconds to publish, and each worker's serving stall."""
        with self.state_lock:
            weights = self.policy.get_weights()
        t0 = time.perf_counter()
        version = self.policy_version if version is None else version
        answers = publish_weights(weights, version, rollouts, transport, self.weight_group,
                                  int(bucket_mb * 2**20))  # fmt: skip
        return {"publish_s": time.perf_counter() - t0, "stall_s": [s for _, s in answers],
                "bytes": sum(t.numel() * t.element_size() for t in weights.values())}  # fmt: skip

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def process_info(self) -> dict:
        return process_info("actor", self.rank)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def received_from(self, prefix: int) -> dict[int, int]:
        """Episodes received from one env-worker incarnation (`episode_id >> 24 == prefix`): id -> decisions.
        Asked when that worker's process died, to settle its part of the ledger (controller/recovery.py)."""
        assert self.loop is not None, "received_from before start_stream"
        with self.loop.cond:
            return {i: n for i, n in self.loop.received_decisions.items() if i >> 24 == prefix}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def stop_stream(self) -> dict:
        loop, self.loop = self.loop, None
        return loop.stop() if loop is not None else {}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def get_weights(self) -> tuple[dict, int]:
        """(weights on the wire, version): a consistent snapshot (the last published) while the trainer thread
        updates the weights."""
        if self.loop is not None and self.loop.published is not None:
            return self.loop.published
        return weights_to_wire(self.policy.get_weights()), self.policy_version

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def ingest(self, batch: DataProto) -> dict[str, float]:
        """Score a micro-batch under the current (proximal) weights and buffer it (rows the current weights
        produced need no scoring); update when a batch is full."""
        t0 = time.time()
        self.received_episode_ids.extend(batch.non_tensor_batch["episode_id"].tolist())
        # the same scoring as the async queue's: rows the current weights produced take the rollout's own figures
        queue = EpisodeQueue()
        queue.add(add_proximal_columns(batch))
        queue.score(np.arange(len(batch)), self.policy_version, self._evaluate)
        self.buffer.append(batch)
        buffered = sum(len(b) for b in self.buffer)
        if buffered < self.algo.train_batch_episodes:
            self.spans.record(t0, batch=len(batch), version=self.policy_version)
            return {"updated": 0.0, "actor/policy_version": self.policy_version, "actor/buffered": buffered}
        full, self.buffer = DataProto.concat(self.buffer), []
        with self.state_lock:
            metrics = self._update(full)
        self.spans.record(t0, batch=len(batch), version=self.policy_version)
        return {"updated": 1.0, **metrics}

    # ---- data-parallel ranks (learning/data_parallel.py) ----------------------------------------------------
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_peers(self, peers: list) -> None:
        """Rank 0 of N: the handles of ranks 1..N-1, which follow each of its streamed updates."""
        self.peers = list(peers)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def follow_update(self, batch: DataProto) -> None:
        """Ranks 1..N-1 in the async trainer: the same update as rank 0, on the same batch, in step with it."""
        with self.state_lock:
            self._update(batch)

    def update_all_ranks(self, batch: DataProto) -> dict[str, float]:
        """One update by every rank (rank 0 calls it, under its state lock); -> rank 0's metrics."""
        followers = [p.follow_update.remote(batch) for p in self.peers]
        metrics = self._update(batch)
        ray.get(followers)
        return metrics

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def drain_spans(self) -> list[Span]:
        return self.spans.drain() + self.weight_spans.drain()

    def _update(self, batch: DataProto) -> dict[str, float]:
        """PPO epochs over episode rows, with the configured off-policy correction; then a new version."""
        b = batch.batch
        mask = b["mask"]
        inputs = correction_inputs(self.algo, b["old_log_prob"], b["prox_log_prob"], mask)
        values = b["prox_values"] * mask
        if self.algo.off_policy == "vtrace":
            adv, returns = compute_vtrace_advantage_return(
                b["rewards"],
                values,
                mask,
                self.algo.gamma,
                inputs.log_rho,
                self.algo.is_cap,
                self.algo.is_cap,
            )
            adv = (adv - adv[mask > 0].mean()) / (adv[mask > 0].std() + 1e-8) * mask
        else:
            adv, returns = compute_advantages(self.algo, b["rewards"], values, mask)
        lag = (self.policy_version - b["policy_version"])[mask > 0].float()
        n = len(batch)
        rows_per_mb = max(1, min(n, self.algo.minibatch_size // max(1, int(mask.sum(1).float().mean()))))
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        for _ in range(self.algo.ppo_epochs):
            for minibatch in np.array_split(self.rng.permutation(n), max(1, n // rows_per_mb)):
                rows = self.dp.my_rows(
                    minibatch
                )  # all of it on one rank; a share of it per rank with N ranks
                self.optimizer.zero_grad()
                m = {}
                if len(rows):
                    r = torch.from_numpy(rows)
                    log_prob, entropy, vpred = self._evaluate(batch, r)
                    loss, m = actor_critic_loss(
                        self.algo, log_prob, entropy, vpred, inputs.old_log_prob[r], values[r], adv[r], returns[r],
                        mask[r], None if inputs.is_weights is None else inputs.is_weights[r],
                    )  # fmt: skip
                    (loss * self.dp.loss_weight(self.algo.loss_agg_mode, mask, rows, minibatch)).backward()
                self.dp.sum_gradients([p for p in self.policy.parameters() if p.requires_grad])
                m["actor/grad_norm"] = float(
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.algo.max_grad_norm)
                )
                self.optimizer.step()
                for k, v in m.items():
                    sums[k] += v
                steps += 1
        self.policy_version += 1
        # after every update, not every 10th: with a 10-update cadence resident memory swung by +-40 % between trims
        # (soak, 2026-11-30), hiding whether anything is retained; one trim costs a few ms against a seconds-long update
        return_free_memory()
        self.trained_episode_ids.extend(batch.non_tensor_batch["episode_id"].tolist())
        metrics = {k: v / steps for k, v in sums.items()}
        metrics.update(
            {
                "actor/policy_version": self.policy_version,
                # what the actor keeps between updates (read after the trim): the soak's leak check reads this series
                "actor/rss_mb": resident_mb(),
                "actor/optimizer_steps": steps,
                "actor/episodes": n,
                # the actor stage's work, for its capacity in the timeline (env steps it trained, not produced)
                "actor/trained_env_steps": float(np.sum(batch.non_tensor_batch["env_steps"])),
                "lag/mean": float(lag.mean()),
                "lag/p99": float(torch.quantile(lag, 0.99)),
                "lag/max": float(lag.max()),
                "actor/behaviour_abs_log_ratio": float(inputs.log_rho.abs()[mask > 0].mean()),
            }
        )
        return metrics

    def _evaluate(self, batch: DataProto, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Score only valid decisions of `rows` (padding is never fed to the model), scattered back to (r, T)."""
        b = batch.batch
        mask = b["mask"][rows].bool()
        t = mask.shape[1]
        instr = np.repeat(batch.non_tensor_batch["instruction"][rows.numpy()], t).reshape(-1, t)[mask.numpy()]
        obs = PolicyObs(b["image"][rows][mask], b["state"][rows][mask], list(instr))
        out = self.policy.evaluate(obs, b["actions"][rows][mask])
        full = [torch.zeros(mask.shape) for _ in range(3)]
        for dst, src in zip(full, (out.log_prob, out.entropy, out.value), strict=True):
            dst[mask] = src
        return tuple(full)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def calibrate(self, batch: DataProto, updates: int) -> dict:
        """The actor alone (telemetry/calibration.py): `updates` PPO updates on one recorded, on-policy batch (the
        behaviour policy is the proximal one, so no scoring pass), each timed on its own, then the proximal scoring
        pass alone. Only for a calibration worker set: the weights it leaves behind are not meant to be trained on."""
        add_proximal_columns(batch)
        take_behaviour_as_proximal(batch.batch, torch.arange(len(batch)))
        env_steps = float(np.sum(batch.non_tensor_batch["env_steps"]))
        with self.state_lock:
            each = [measure(lambda: self._update(batch)) for _ in range(updates)]
            with torch.no_grad():
                score = measure(lambda: self._evaluate(batch, torch.arange(len(batch))))
        return {"updates": updates, "env_steps": env_steps * updates, "wall_s": sum(u["wall_s"] for u in each),
                "cpu_s": sum(u["cpu_s"] for u in each), "per_update": each, "env_steps_per_update": env_steps,
                "score_wall_s": score["wall_s"], "score_cpu_s": score["cpu_s"]}  # fmt: skip

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def ledger_report(self) -> dict[str, list[int]]:
        """The consumer side of the ledger for the lockstep path (received, trained, still buffered)."""
        queued = [i for b in self.buffer for i in b.non_tensor_batch["episode_id"].tolist()]
        return {"received": list(self.received_episode_ids), "trained": list(self.trained_episode_ids),
                "dropped": [], "queued": queued}  # fmt: skip

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_state(self, directory: str) -> dict[str, int]:
        """The whole training state into `directory` (learning/train_state.py), consistent: between updates.
        Rank 0 writes it (every rank holds the same state)."""
        if self.rank != 0:
            return {}
        with self.state_lock:
            tensors, optim = optimizer_to_data(self.optimizer)
            tensors.update({f"w.{k}": v for k, v in self.policy.get_weights().items()})
            meta = {"model_cfg": dataclasses.asdict(self.model_cfg), "optimizer": optim,
                    "policy_version": self.policy_version, "torch_rng": torch_rng_to_list(),
                    "numpy_rng": numpy_rng_to_data(self.rng), "received": list(self.received_episode_ids),
                    "trained": list(self.trained_episode_ids)}  # fmt: skip
            write_state(Path(directory), "actor", tensors, meta)
            return {"policy_version": self.policy_version, "trained": len(self.trained_episode_ids)}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_state(self, directory: str, keep_ledger: bool = True) -> int:
        """Continue from `save_state`'s output; -> the policy version. `keep_ledger=False` (async): the episode
        ids of the earlier segment are not carried over (its ledger was reconciled when it was checkpointed)."""
        tensors, meta = read_state(Path(directory), "actor")
        check_compatible(meta["model_cfg"], self.model_cfg)
        with self.state_lock:
            self.policy.load_weights({k[2:]: v for k, v in tensors.items() if k.startswith("w.")})
            optimizer_from_data(self.optimizer, tensors, meta["optimizer"])
            self.policy_version = int(meta["policy_version"])
            torch_rng_from_list(meta["torch_rng"])
            numpy_rng_from_data(self.rng, meta["numpy_rng"])
            if keep_ledger:
                self.received_episode_ids, self.trained_episode_ids = (
                    list(meta["received"]),
                    list(meta["trained"]),
                )
        return self.policy_version

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save(self, path: str, **meta) -> str:
        if self.rank != 0:  # every rank holds the same weights: rank 0 writes them
            return path
        return str(
            save_checkpoint(path, self.policy, self.model_cfg, policy_version=self.policy_version, **meta)
        )
