"""Dynamic batching of inference requests: batch what is ready, wait a bounded time for more.

Requests come from many env shards; a batch is formed when `max_batch` rows are queued or the oldest request has
waited `max_wait_s`. Rows are taken oldest-first, so no shard can starve another (fairness by arrival), and a request
larger than the room left is split rather than delayed.

Rows are plain numpy columns (`Rows`: name -> array, one row per env), not a DataProto: this is the serving hot path,
and a DataProto built and concatenated per request cost the rollout worker more CPU than its policy's linear layers
(py-spy, embedded workload, 2026-12-07).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

Rows = dict[str, np.ndarray]  # column -> (n, ...) array, the same n for every column


def num_rows(rows: Rows) -> int:
    return len(next(iter(rows.values()))) if rows else 0


@dataclass
class _Request:
    shard: int
    rows: Rows
    t_enqueue: float


class DynamicBatcher:
    def __init__(self, max_batch: int, max_wait_s: float):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("rollout.max_batch must be >= 1 and rollout.max_wait_ms >= 0")
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: deque[_Request] = deque()
        self.queued = 0
        self.batches = 0

    def __len__(self) -> int:
        return self.queued

    def put(self, shard: int, rows: Rows, now: float) -> None:
        n = num_rows(rows)
        if n:
            self.queue.append(_Request(shard, rows, now))
            self.queued += n

    def wait_left(self, now: float) -> float | None:
        """Seconds until a batch is due (0 = now); None when nothing is queued."""
        if not self.queue:
            return None
        if self.queued >= self.max_batch:
            return 0.0
        return max(0.0, self.queue[0].t_enqueue + self.max_wait_s - now)

    def pop_batch(self, now: float) -> tuple[Rows, float] | None:
        """(the next batch, its rows' mean queueing delay in seconds) if one is due, else None."""
        due = self.wait_left(now)
        if due is None or due > 0:
            return None
        parts, waited, room = [], 0.0, self.max_batch
        while self.queue and room > 0:
            req = self.queue[0]
            n = num_rows(req.rows)
            if n <= room:
                self.queue.popleft()
                take = req.rows
            else:
                take = {k: v[:room] for k, v in req.rows.items()}
                req.rows = {k: v[room:] for k, v in req.rows.items()}
                n = room
            parts.append(take)
            waited += (now - req.t_enqueue) * n
            room -= n
        size = self.max_batch - room
        self.queued -= size
        self.batches += 1
        batch = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return batch, waited / size
