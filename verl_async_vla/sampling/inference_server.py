"""The async data plane on the rollout side: dynamic batching where the requests arrive.

Env workers call `RolloutWorker.submit(rows)` (any number of env workers per rollout worker, each sending whatever
observations it has ready). A server thread forms batches with the `DynamicBatcher` (at most `max_batch` rows, or
what waited `max_wait_ms`, oldest first), runs the policy, and sends each env worker its rows of the answer
directly (`EnvWorker.deliver`). New weights are applied between batches, never during one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
import torch
from verl import DataProto

from verl_async_vla.sampling.batcher import DynamicBatcher
from verl_async_vla.workers.codec import split_env_key


class InferenceServer:
    def __init__(self, generate: Callable[[DataProto], DataProto], model_lock: threading.RLock, env_workers: list[Any],
                 rank: int, max_batch: int, max_wait_s: float):  # fmt: skip
        self.generate, self.model_lock, self.env_workers, self.rank = generate, model_lock, env_workers, rank
        self.batcher = DynamicBatcher(max_batch, max_wait_s)
        self.cond = threading.Condition()
        self.stopping = False
        self.stats = {"batches": 0, "rows": 0, "queue_wait_s": 0.0}
        self.error: BaseException | None = None
        self.deliveries: list = []  # refs of answers sent, until the env workers have them
        self.thread = threading.Thread(target=self._serve, name=f"rollout{rank}-server", daemon=True)
        self.thread.start()

    def submit(self, rows: dict[str, np.ndarray]) -> None:
        """Numpy rows from an env worker (image, state, instruction, env_key and the request's clocks)."""
        rows = DataProto.from_dict(
            tensors={k: torch.from_numpy(rows[k]) for k in ("image", "state")},
            non_tensors={k: v for k, v in rows.items() if k not in ("image", "state")},
        )
        rows.non_tensor_batch["t_received"] = np.full(len(rows), time.time())
        with self.cond:
            self.batcher.put(0, rows, time.monotonic())
            self.cond.notify_all()

    def _serve(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.stopping:
                        now = time.monotonic()
                        wait = self.batcher.wait_left(now)
                        if wait == 0.0:
                            break
                        self.cond.wait(0.1 if wait is None else wait)
                    if self.stopping:
                        return
                    batch = self.batcher.pop_batch(time.monotonic())
                if batch is None:
                    continue
                self.stats["queue_wait_s"] += batch.meta_info.pop("queue_wait_s")
                self.stats["batches"] += 1
                self.stats["rows"] += len(batch)
                with self.model_lock:  # a version change waits until this batch's answers are on their way
                    self._answer(batch)
        except BaseException as err:
            self.error = err
            raise

    def _answer(self, batch: DataProto) -> None:
        t_start = time.time()
        answer = self.generate(batch)
        columns = {
            k: answer.batch[k].numpy() for k in ("actions", "old_log_prob", "values", "policy_version")
        }
        for key in ("env_key", "request", "t_posted", "t_sent", "t_received"):  # ids and clocks travel back
            columns[key] = batch.non_tensor_batch[key]
        t_end = time.time()
        shards, _ = split_env_key(columns["env_key"])
        for shard in np.unique(shards):
            rows = np.flatnonzero(shards == shard)
            part = {k: v[rows] for k, v in columns.items()}
            part.update(t_batch_start=t_start, t_batch_end=t_end)
            self.deliveries.append(self.env_workers[int(shard)].deliver.remote(part, self.rank))
        # keep the list short: answers already received need no waiting for
        if len(self.deliveries) > 256:
            self.deliveries = ray.wait(self.deliveries, num_returns=len(self.deliveries), timeout=0)[1]

    def flush_deliveries(self) -> None:
        """Wait until every answer sent so far has reached its env worker. Called (under the model lock) before a
        new version is acknowledged: an answer from the old version still in transit is then already visible to
        the actor's staleness rule as an open episode."""
        refs, self.deliveries = self.deliveries, []
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=30)

    def status(self) -> dict[str, float]:
        if self.error is not None:
            raise RuntimeError(f"rollout worker {self.rank}: the inference server failed: {self.error!r}")
        return dict(self.stats)

    def stop(self) -> dict[str, float]:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout=30)
        if self.error is not None:
            raise RuntimeError(f"rollout worker {self.rank}: the inference server failed: {self.error!r}")
        return dict(self.stats)
