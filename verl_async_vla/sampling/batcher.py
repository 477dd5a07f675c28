"""Dynamic batching of inference requests: batch what is ready, wait a bounded time for more.

Requests come from many env shards; a batch is formed when `max_batch` rows are queued or the oldest request has
waited `max_wait_s`. Rows are taken oldest-first, so no shard can starve another (fairness by arrival), and a request
larger than the room left is split rather than delayed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from verl import DataProto


@dataclass
class _Request:
    shard: int
    rows: DataProto
    t_enqueue: float


class DynamicBatcher:
    def __init__(self, max_batch: int, max_wait_s: float):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("rollout.max_batch must be >= 1 and rollout.max_wait_ms >= 0")
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: deque[_Request] = deque()
        self.batches = 0

    def __len__(self) -> int:
        return sum(len(r.rows) for r in self.queue)

    def put(self, shard: int, rows: DataProto, now: float) -> None:
        if len(rows):
            self.queue.append(_Request(shard, rows, now))

    def wait_left(self, now: float) -> float | None:
        """Seconds until a batch is due (0 = now); None when nothing is queued."""
        if not self.queue:
            return None
        if len(self) >= self.max_batch:
            return 0.0
        return max(0.0, self.queue[0].t_enqueue + self.max_wait_s - now)

    def pop_batch(self, now: float) -> DataProto | None:
        """The next batch if one is due, else None. Its meta_info records per-row queueing delay."""
        due = self.wait_left(now)
        if due is None or due > 0:
            return None
        parts, waits, room = [], [], self.max_batch
        while self.queue and room > 0:
            req = self.queue[0]
            if len(req.rows) <= room:
                self.queue.popleft()
                take = req.rows
            else:
                take = req.rows.select_idxs(np.arange(room))
                req.rows = req.rows.select_idxs(np.arange(room, len(req.rows)))
            parts.append(take)
            waits += [now - req.t_enqueue] * len(take)
            room -= len(take)
        batch = DataProto.concat(parts)
        batch.meta_info["queue_wait_s"] = float(np.mean(waits))
        self.batches += 1
        return batch
