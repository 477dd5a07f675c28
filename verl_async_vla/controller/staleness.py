"""The staleness gate: bounds how far behind the actor a trained sample's policy may be (in versions).

- `pause`: producers stop issuing inference while max(1, max_staleness) training batches of finished episodes wait
  untrained (queue + actor buffer), so an episode waits at most that many updates after it ends (cf. verl
  fully_async's `staleness_threshold`); nothing is dropped, and the measured lag is reported (lag/max).
- `drop`: episodes whose oldest decision is more than `max_staleness` versions behind the actor are discarded
  before training, and counted in the ledger.
"""

from __future__ import annotations

from verl_async_vla.controller.trajectory import Episode


class StalenessGate:
    def __init__(self, max_staleness: int, policy: str, train_batch_episodes: int):
        if policy not in ("pause", "drop"):
            raise ValueError(f"trainer.stale_policy={policy!r} is unknown; use 'pause' or 'drop'.")
        if max_staleness < 0:
            raise ValueError("trainer.max_staleness must be >= 0 (versions)")
        self.max_staleness, self.policy, self.batch = max_staleness, policy, train_batch_episodes

    def may_produce(self, untrained_episodes: int) -> bool:
        if self.policy == "drop":
            return True
        return untrained_episodes < max(1, self.max_staleness) * self.batch

    def split(self, episodes: list[Episode], actor_version: int) -> tuple[list[Episode], list[Episode]]:
        """-> (fresh enough to train, stale). In `pause` mode nothing is stale by construction."""
        if self.policy == "pause":
            return episodes, []
        fresh = [e for e in episodes if actor_version - min(e.version) <= self.max_staleness]
        stale = [e for e in episodes if actor_version - min(e.version) > self.max_staleness]
        return fresh, stale
