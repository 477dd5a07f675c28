"""The trajectory ledger: every episode is produced once and ends trained, dropped as stale or still queued; an
episode an env fault cost is discarded at its producer, counted there, and must never reach the actor.

Counted in three places that never read each other's numbers: the producers (env workers, or the driver's
episode assembler in lockstep mode, cross-checked against the env workers' count of episode ends), the gate
(dropped) and the consumer (the actor: received, trained, queued untrained at the end). `reconcile` compares them:
produced == received (nothing lost or invented in transport), and received == trained + dropped + queued with the
three sets disjoint (nothing trained twice, nothing unaccounted). Any difference raises, naming the episodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class LedgerError(RuntimeError):
    pass


@dataclass
class TrajectoryLedger:
    """The lockstep driver's own record of the episodes it produced (ids it assigned), counted apart from the actor."""

    produced: dict[int, int] = field(default_factory=dict)  # episode id -> decisions (samples)

    def record_produced(self, episodes: Iterable[tuple[int, int]]) -> None:
        for eid, samples in episodes:
            if eid in self.produced:
                raise LedgerError(f"episode {eid} produced twice")
            self.produced[eid] = samples


def reconcile(
    produced: dict[int, int],
    received: list[int],
    trained: list[int],
    dropped: list[int],
    queued: list[int],
    discarded: dict[int, int] | None = None,
) -> dict[str, int]:
    """Compare the producer's, the gate's and the consumer's independent counts; raise on any difference.
    `discarded`: episodes the producers lost to env faults (id -> decisions); they must never reach the actor."""
    discarded = discarded or {}
    leaked = set(discarded) & (set(received) | set(produced))
    if leaked:
        raise LedgerError(f"{len(leaked)} episodes discarded by a fault were also produced or received "
                          f"(e.g. {sorted(leaked)[:3]})")  # fmt: skip
    for name, ids in (("received", received), ("trained", trained), ("dropped", dropped), ("queued", queued)):
        if len(ids) != len(set(ids)):
            raise LedgerError(f"the actor reports some episode as {name} more than once")
    got, made = set(received), set(produced)
    if got != made:
        raise LedgerError(
            f"producers and actor disagree: {len(made - got)} produced but never received "
            f"(e.g. {sorted(made - got)[:3]}), {len(got - made)} received but never produced"
        )
    t, d, q = set(trained), set(dropped), set(queued)
    if t & d or t & q or d & q:
        raise LedgerError(f"an episode is in two states: {sorted((t & d) | (t & q) | (d & q))[:3]}")
    unaccounted = got - t - d - q
    if unaccounted or (t | d | q) - got:
        raise LedgerError(
            f"{len(unaccounted)} received episodes are neither trained, dropped nor queued "
            f"(e.g. {sorted(unaccounted)[:3]}); {len((t | d | q) - got)} settled episodes were never received"
        )

    def samples(ids: Iterable[int]) -> int:
        return sum(produced[i] for i in ids)

    return {
        "episodes_produced": len(produced),
        "episodes_received": len(received),
        "episodes_trained": len(t),
        "episodes_dropped_stale": len(d),
        "episodes_in_flight": len(q),  # finished, queued at the actor, not trained when the run stopped
        "episodes_unaccounted": len(unaccounted),
        "samples_produced": samples(produced),
        "samples_trained": samples(t),
        "samples_dropped_stale": samples(d),
        "samples_in_flight": samples(q),
        "episodes_discarded_fault": len(discarded),  # never produced: lost with a faulted env
        "samples_discarded_fault": sum(discarded.values()),
    }


def reconcile_by_source(imagined: set[int], produced: dict[int, int], received: list[int], trained: list[int],
                        dropped: list[int], queued: list[int], discarded: dict[int, int] | None = None
                        ) -> dict[str, int]:  # fmt: skip
    """With a world model (env.world_model): the ledger of the real simulator's episodes and of the imagined ones,
    each reconciled on its own (`real_*`, `imagined_*` keys), so neither source can cover for the other. `imagined`:
    the ids of imagined episodes. {} without any."""
    if not imagined:
        return {}
    discarded = discarded or {}
    out: dict[str, int] = {}
    for prefix, want in (("real_", False), ("imagined_", True)):
        part = reconcile(
            {i: n for i, n in produced.items() if (i in imagined) == want},
            *([i for i in ids if (i in imagined) == want] for ids in (received, trained, dropped, queued)),
            discarded={i: n for i, n in discarded.items() if (i in imagined) == want},
        )
        out.update({prefix + k: v for k, v in part.items()})
    return out
