"""The staleness bound, in policy versions: no trained sample is more than `max_staleness` (S) versions older than
the weights it is trained with (verl fully_async's and RLinf's `staleness_threshold` meaning). Two places enforce it:

1. Admission (producer side, `pause` only): an episode may start only with a credit. By the time version w is
   published, (w + S + 1) x B + E credits exist in total (B = `algo.train_batch_episodes`, E = the number of
   training envs, whose open episodes come on top), plus one for every episode discarded, so finished untrained work
   stays within what the next S + 1 updates absorb. Producers keep running through an update while credits remain;
   they pause only when they are S + 1 batches ahead. This bounds the queue; the lag bound itself comes from 2.
2. Training (actor side, `learning/trainer_loop.py`): before training with weights u, every untrained episode whose
   oldest decision is at version <= u - S must be in this batch (it could never be trained later). If such an
   episode is still open in an env, the actor waits for it (`pause`), or, with `drop`, drops what is already too
   old and counts it. The actor picks the oldest episodes first.

`pause` drops nothing; `drop` never waits and counts what it discards.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import ray

STALE_POLICIES = ("pause", "drop")


class StalenessGate:
    def __init__(self, max_staleness: int, policy: str, train_batch_episodes: int, num_envs: int = 0,
                 start_version: int = 0):  # fmt: skip
        if policy not in STALE_POLICIES:
            raise ValueError(f"trainer.stale_policy={policy!r} is unknown; use 'pause' or 'drop'.")
        if max_staleness < 0:
            raise ValueError("trainer.max_staleness must be >= 0 (versions)")
        self.max_staleness, self.policy, self.batch = max_staleness, policy, train_batch_episodes
        self.num_envs = num_envs
        self.version = self.start = start_version  # a resumed run starts at its checkpoint's version
        self.granted = 0
        self.released = 0
        # episode starts the run's budget still needs (None: not capped), set by the driver as the run goes
        self.episode_cap: int | None = None

    # ---- admission ---------------------------------------------------------------------------------------
    def credits_total(self) -> int | None:
        """Episode starts allowed so far (None: unbounded, `drop` mode without a cap). The episode cap is the
        budget's half: once the episodes started cover the budget, no more start, so a run ends without work it
        cannot train."""
        cap = None if self.episode_cap is None else self.episode_cap + self.released
        if self.policy == "drop":
            return cap
        versions = self.version - self.start
        total = (versions + self.max_staleness + 1) * self.batch + self.num_envs + self.released
        return total if cap is None else min(total, cap)

    def set_episode_cap(self, episodes: int | None) -> None:
        self.episode_cap = episodes

    def available(self) -> int | None:
        total = self.credits_total()
        return None if total is None else max(0, total - self.granted)

    def grant(self, wanted: int) -> int:
        free = self.available()
        n = wanted if free is None else max(0, min(wanted, free))
        self.granted += n
        return n

    def advance(self, version: int) -> None:
        self.version = max(self.version, version)

    def release(self, episodes: int) -> None:
        """Discarded episodes give their credit back (they will never be trained)."""
        self.released += episodes

    # ---- training ----------------------------------------------------------------------------------------
    def must_train(self, oldest_version: int, actor_version: int) -> bool:
        """True when an episode whose oldest decision is `oldest_version` can only be trained now."""
        return oldest_version <= actor_version - self.max_staleness

    def too_old(self, oldest_version: int, actor_version: int) -> bool:
        return actor_version - oldest_version > self.max_staleness


@ray.remote(num_cpus=0)
class GateServer:
    """The admission half of the gate as a tiny async Ray actor: env workers ask it for start credits (one call per
    batch of resets, never per decision), the actor tells it each new version. Control plane only."""

    def __init__(self, max_staleness: int, policy: str, train_batch_episodes: int, num_envs: int,
                 start_version: int = 0):  # fmt: skip
        self.gate = StalenessGate(max_staleness, policy, train_batch_episodes, num_envs, start_version)
        self.changed = asyncio.Condition()
        self.paused_waits = 0
        # per env-worker incarnation ("rank.incarnation"): credits granted and given back, so that the credits a
        # dead worker process held can be returned (`worker_lost`)
        self.granted_by: Counter[str] = Counter()
        self.released_by: Counter[str] = Counter()
        self.lost_credits = 0

    async def acquire(self, wanted: int, timeout_s: float = 0.5, worker: str = "") -> int:
        """Grant up to `wanted` credits; wait (bounded) while none are free, so callers can notice a stop."""
        async with self.changed:
            if self.gate.available() == 0:
                self.paused_waits += 1
                try:
                    await asyncio.wait_for(
                        self.changed.wait_for(lambda: self.gate.available() != 0), timeout_s
                    )
                except asyncio.TimeoutError:
                    return 0
            granted = self.gate.grant(wanted)
            self.granted_by[worker] += granted
            return granted

    async def advance(self, version: int) -> None:
        async with self.changed:
            self.gate.advance(version)
            self.changed.notify_all()

    async def set_episode_cap(self, episodes: int | None) -> None:
        async with self.changed:
            self.gate.set_episode_cap(episodes)
            self.changed.notify_all()

    async def release(self, episodes: int, worker: str = "") -> None:
        async with self.changed:
            self.gate.release(episodes)
            self.released_by[worker] += episodes
            self.changed.notify_all()

    async def worker_lost(self, worker: str, finished: int) -> int:
        """An env-worker process died: of the credits it was granted, those neither given back nor used by an
        episode that finished (`finished`, as the driver and the actor know them) were held by open episodes or not
        used yet. They come back (those episodes will never be trained). -> how many."""
        async with self.changed:
            lost = max(0, self.granted_by[worker] - self.released_by[worker] - finished)
            self.gate.release(lost)
            self.released_by[worker] += lost
            self.lost_credits += lost
            self.changed.notify_all()
            return lost

    async def stats(self) -> dict[str, int]:
        total = self.gate.credits_total()
        return {"granted": self.gate.granted, "credits_total": -1 if total is None else total,
                "paused_waits": self.paused_waits, "credits_lost_with_workers": self.lost_credits}  # fmt: skip
