"""The trajectory ledger: every episode is produced once and ends as trained, dropped-as-stale or in flight.

produced = trained + dropped_stale + in_flight, checked at shutdown; nothing is silently lost or trained twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class LedgerError(RuntimeError):
    pass


@dataclass
class TrajectoryLedger:
    produced: dict[int, int] = field(default_factory=dict)  # episode id -> decisions (samples)
    trained: set[int] = field(default_factory=set)
    dropped_stale: set[int] = field(default_factory=set)

    def record_produced(self, episodes: Iterable[tuple[int, int]]) -> None:
        for eid, samples in episodes:
            if eid in self.produced:
                raise LedgerError(f"episode {eid} produced twice")
            self.produced[eid] = samples

    def _settle(self, ids: Iterable[int], into: set[int], what: str) -> None:
        for eid in ids:
            if eid not in self.produced:
                raise LedgerError(f"episode {eid} {what} but never produced")
            if eid in self.trained or eid in self.dropped_stale:
                raise LedgerError(f"episode {eid} {what} after it was already settled")
            into.add(eid)

    def record_trained(self, ids: Iterable[int]) -> None:
        self._settle(ids, self.trained, "trained")

    def record_dropped(self, ids: Iterable[int]) -> None:
        self._settle(ids, self.dropped_stale, "dropped as stale")

    @property
    def in_flight(self) -> set[int]:
        return set(self.produced) - self.trained - self.dropped_stale

    def summary(self) -> dict[str, int]:
        def s(ids: Iterable[int]) -> int:
            return sum(self.produced[i] for i in ids)

        return {
            "episodes_produced": len(self.produced),
            "episodes_trained": len(self.trained),
            "episodes_dropped_stale": len(self.dropped_stale),
            "episodes_in_flight": len(self.in_flight),
            "samples_produced": s(self.produced),
            "samples_trained": s(self.trained),
            "samples_dropped_stale": s(self.dropped_stale),
            "samples_in_flight": s(self.in_flight),
        }

    def check(self, actor_trained_ids: list[int]) -> dict[str, int]:
        """Cross-check with what the ActorWorker says it trained on (each id exactly once)."""
        if len(actor_trained_ids) != len(set(actor_trained_ids)):
            raise LedgerError("the actor trained on some episode more than once")
        if set(actor_trained_ids) != self.trained:
            missing = len(self.trained - set(actor_trained_ids))
            extra = len(set(actor_trained_ids) - self.trained)
            raise LedgerError(
                f"actor and ledger disagree: {missing} recorded but not trained, {extra} unrecorded"
            )
        summary = self.summary()
        assert summary["episodes_produced"] == (
            summary["episodes_trained"] + summary["episodes_dropped_stale"] + summary["episodes_in_flight"]
        )
        return summary
