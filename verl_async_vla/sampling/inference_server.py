"""The async data plane on the rollout side: dynamic batching where the requests arrive.

Env workers send requests over the request channel (sampling/request_channel.py: one socket per env worker, any
number of env workers per rollout worker, each sending whatever observations it has ready). One serving thread
reads them, forms batches with the `DynamicBatcher` (at most `max_batch` rows, or what waited `max_wait_ms`, oldest
first), runs the policy, and sends each env worker its rows of the answer on its connection. New weights are
applied between batches, never during one. Rows stay numpy from the socket to the policy and back (`act`: the rollout
worker's `act_rows`): no DataProto on this path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from verl_async_vla.plumbing.wire import split_env_key
from verl_async_vla.sampling.batcher import DynamicBatcher, Rows, num_rows
from verl_async_vla.sampling.request_channel import Address, RequestServer

# a rollout answer's columns that travel back to the env workers; action_trace only where the policy has one
ANSWER_COLUMNS = ("actions", "old_log_prob", "values", "policy_version", "action_trace")


class InferenceServer:
    def __init__(self, act: Callable[[Rows], Rows], model_lock: threading.RLock, rank: int,
                 max_batch: int, max_wait_s: float, host: str, authkey: bytes):  # fmt: skip
        """`act`: observation rows (image, state, instruction) -> answer columns (ANSWER_COLUMNS), numpy both ways."""
        self.act, self.model_lock, self.rank = act, model_lock, rank
        self.batcher = DynamicBatcher(max_batch, max_wait_s)  # touched by the serving thread only
        self.stopping = False
        self.stats = {"batches": 0, "rows": 0, "queue_wait_s": 0.0}
        self.error: BaseException | None = None
        self.channel = RequestServer(host, authkey, self.submit, f"rollout{rank}")
        self.thread = threading.Thread(target=self._serve, name=f"rollout{rank}-server", daemon=True)
        self.thread.start()

    @property
    def address(self) -> Address:
        """Where env workers connect (`RequestClient.connect`)."""
        return self.channel.address

    def submit(self, rows: dict[str, Any]) -> None:
        """Numpy rows from an env worker (image, state, instruction, env_key and the request's clocks); called by
        `RequestServer.poll` on the serving thread."""
        rows["t_received"] = np.full(num_rows(rows), time.time())
        self.batcher.put(0, rows, time.monotonic())

    def _serve(self) -> None:
        """One thread reads requests, batches and answers them."""
        try:
            while not self.stopping:
                wait = self.batcher.wait_left(time.monotonic())
                # what arrived meanwhile joins the batch (continuous batching: `max_wait_ms` 0 adds no wait)
                self.channel.poll(0.1 if wait is None else wait)
                popped = self.batcher.pop_batch(time.monotonic())
                if popped is None:
                    continue
                batch, queue_wait_s = popped
                self.stats["queue_wait_s"] += queue_wait_s
                self.stats["batches"] += 1
                self.stats["rows"] += num_rows(batch)
                # a version change waits until this batch's answers are on their way; while one holds the lock,
                # its barrier's acks must still be read (RequestServer.barrier)
                while not self.model_lock.acquire(timeout=0.002):
                    self.channel.poll(0)
                try:
                    self._answer(batch)
                finally:
                    self.model_lock.release()
        except BaseException as err:
            self.error = err
            raise
        finally:
            self.channel.close()

    def _answer(self, batch: Rows) -> None:
        t_start = time.time()
        answer = self.act(batch)
        columns = {k: answer[k] for k in ANSWER_COLUMNS if k in answer}
        for key in ("env_key", "request", "t_posted", "t_sent", "t_received"):  # ids and clocks travel back
            columns[key] = batch[key]
        t_end = time.time()
        shards, _ = split_env_key(columns["env_key"])
        for shard in np.unique(shards):
            rows = np.flatnonzero(shards == shard)
            part = {k: v[rows] for k, v in columns.items()}
            part.update(t_batch_start=t_start, t_batch_end=t_end)
            self.channel.send(int(shard), part)

    def flush_deliveries(self) -> None:
        """Wait until every answer sent so far has reached its env worker. Called (under the model lock) before a
        new version is acknowledged: an answer from the old version still in transit is then already visible to
        the actor's staleness rule as an open episode."""
        self.channel.barrier(timeout=30.0)

    def status(self) -> dict[str, float]:
        if self.error is not None:
            raise RuntimeError(f"rollout worker {self.rank}: the inference server failed: {self.error!r}")
        return {**self.stats, **{f"channel_{k}": float(v) for k, v in self.channel.stats.items()}}

    def stop(self) -> dict[str, float]:
        self.stopping = True
        self.channel.wake()
        self.thread.join(timeout=30)
        if self.error is not None:
            raise RuntimeError(f"rollout worker {self.rank}: the inference server failed: {self.error!r}")
        return self.status()
