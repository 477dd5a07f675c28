"""`trainer=async_vla`: env and rollout worker processes that die mid-run rejoin it; nothing else stops.

Ray restarts a dead worker process in place (`max_restarts` = `trainer.worker_restarts`, set at spawn): its handle,
rank and place stay the same, so the other workers keep talking to it. What this module adds is the rejoining, done
by the driver when its poll finds a worker dead or no longer streaming (a new process has none of the old state):
- env worker: its part of the ledger is settled: the episodes it reported before dying, plus those the actor
  received that it had not reported yet (counted as "confirmed by the consumer only"); finished episodes it
  reported but whose push never reached the actor are lost with it (counted as discarded); the start credits its
  open and unstarted episodes held go back to the staleness gate. Then it streams again as a new incarnation
  (new episode ids and request ids, so that answers still addressed to the old process are ignored);
- rollout worker: it gets the weights of the newest published version, starts serving again, and every env worker
  re-sends the requests the dead process had not answered (same request ids: an answer that arrives twice is used
  once).
The actor is not restarted here: it holds the training state, and a run that loses it resumes from its last run
checkpoint (main.py, `trainer.run_restarts`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from verl_async_vla.controller.workers import WorkerSet
from verl_async_vla.sampling.env_stream import MAX_INCARNATIONS, episode_id_prefix
from verl_async_vla.sampling.stream_peers import StreamPlane

log = logging.getLogger(__name__)

REJOIN_TIMEOUT_S = 300.0  # a restarted process must be up by then (imports, simulators, model)
GONE_AFTER_S = 20.0  # calls failing with ActorDiedError this long: gone for good (no restarts left)


class WorkerLost(RuntimeError):
    """A worker process died and cannot rejoin (out of restarts, or it did not come back in time)."""


@dataclass
class Incarnation:
    """One env-worker process's share of the run, as it reported it to the driver (sampling/env_stream.py)."""

    produced: dict[int, int] = field(default_factory=dict)  # episode id -> decisions
    discarded: dict[int, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # finished / executed env steps (cumulative)
    faults: list[dict] = field(default_factory=list)  # its env fault records (sampling/env_faults.py)


class WorkerRecovery:
    def __init__(self, workers: WorkerSet, gate: ActorHandle, plane: StreamPlane, serve_args: tuple, restarts: int,
                 t0: float, on_rejoin: Callable[[], None] = lambda: None, real_env_workers: int | None = None):  # fmt: skip
        """`real_env_workers`: env ranks below it run the real simulator, the rest a world model (env.world_model);
        None: all real."""
        self.workers, self.gate, self.plane, self.serve_args = workers, gate, plane, serve_args
        self.on_rejoin = on_rejoin
        self.restarts, self.t0 = restarts, t0
        self.envs, self.rollouts = workers.env.handles, workers.rollout.handles
        self.real_env_workers = len(self.envs) if real_env_workers is None else real_env_workers
        self.incarnation = [0] * len(self.envs)
        self.env_reports: dict[tuple[int, int], Incarnation] = {
            (r, 0): Incarnation() for r in range(len(self.envs))
        }
        self.rollout_restarts = [0] * len(self.rollouts)
        self.serving_lost: list[dict[str, float]] = []  # the last stats of rollout processes that died
        self.serving_last: list[dict[str, float]] = [{} for _ in self.rollouts]
        self.events: list[dict[str, Any]] = []  # one per lost worker process

    # ---- the driver's poll ------------------------------------------------------------------------------
    def poll(self) -> dict[str, int]:
        """Counters of every env worker (all its incarnations); rejoins any worker found dead."""
        refs = [e.stream_stats.remote() for e in self.envs]
        for rank, ref in enumerate(refs):
            try:
                stats = ray.get(ref)
            except RayActorError as err:
                stats = None
                cause = err
            else:
                cause = None
            if stats is None:
                self._rejoin_env(rank, cause)
                continue
            report = self.env_reports[(rank, self.incarnation[rank])]
            report.produced.update(stats["new_produced"])
            report.discarded.update(stats["new_discarded"])
            report.faults = stats["faults"]  # they would die with the process otherwise
            report.counters = {k: stats[k] for k in ("finished_env_steps", "executed_env_steps")}
            self._back_at_work("env", rank, stats["produced_episodes"] > 0, "next_episode_after_s")
        for rank, ref in enumerate([r.serving_stats.remote() for r in self.rollouts]):
            try:
                stats = ray.get(ref)
            except RayActorError as err:
                self._rejoin_rollout(rank, err)
                continue
            if stats is None:
                self._rejoin_rollout(rank, None)
            else:
                self.serving_last[rank] = stats
                self._back_at_work("rollout", rank, stats.get("batches", 0) > 0, "answered_after_s")
        return self.counters()

    def _back_at_work(self, role: str, rank: int, working: bool, key: str) -> None:
        """The evidence that a rejoined worker recovered, not only rejoined: seconds from its loss to the first
        poll that saw its new process finish an episode (env) or answer a batch (rollout); at most one poll late."""
        event = next((e for e in reversed(self.events) if (e["role"], e["rank"]) == (role, rank)), None)
        if working and event is not None and event.get(key) is None:
            event[key] = time.time() - event["unix"]

    def counters(self) -> dict[str, int]:
        """Env steps of the real simulator's workers, and (`imagined_*`) of the world-model workers."""
        keys = ("finished_env_steps", "executed_env_steps")
        out = {}
        for prefix, imagined in (("", False), ("imagined_", True)):
            reps = [
                rep
                for (rank, _), rep in self.env_reports.items()
                if (rank >= self.real_env_workers) == imagined
            ]
            out.update({prefix + k: sum(rep.counters.get(k, 0) for rep in reps) for k in keys})
        return out

    # ---- rejoining --------------------------------------------------------------------------------------
    def _wait_alive(self, handle: ActorHandle, what: str, probe: str) -> None:
        """Wait until the restarted process answers. While Ray restarts it, calls fail with ActorUnavailableError
        (a new process imports torch, verl and builds its simulators: 2-5 s here, over 15 s on a loaded machine);
        once it is out of restarts they fail with ActorDiedError, repeatedly (a call in flight when the process died
        fails with it once, so one failure proves nothing)."""
        deadline = time.monotonic() + REJOIN_TIMEOUT_S
        died_since = None
        while True:
            try:
                ray.get(getattr(handle, probe).remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except RayActorError as err:
                now = time.monotonic()
                gone = isinstance(err, ray.exceptions.ActorDiedError)
                died_since = (died_since or now) if gone else None
                if now > deadline:
                    raise WorkerLost(
                        f"{what} did not come back within {REJOIN_TIMEOUT_S:.0f} s ({err!r})"
                    ) from err
                if died_since is not None and now - died_since > GONE_AFTER_S:
                    raise WorkerLost(
                        f"{what} died and was not restarted ({err.__class__.__name__}): it has used up "
                        f"trainer.worker_restarts={self.restarts}; raise it, or resume the run from its last "
                        f"checkpoint with trainer.resume=auto."
                    ) from err
                time.sleep(0.5)
            except ray.exceptions.GetTimeoutError as err:
                raise WorkerLost(f"{what} did not come back within {REJOIN_TIMEOUT_S:.0f} s") from err

    def _rejoin_env(self, rank: int, cause: BaseException | None) -> None:
        t_lost, lost_unix = time.monotonic(), time.time()
        old = self.incarnation[rank]
        log.warning("env worker %d (incarnation %d) lost (%s): waiting for its restarted process", rank, old,
                    "process died" if cause is not None else "restarted process is not streaming")  # fmt: skip
        self._wait_alive(self.envs[rank], f"env worker {rank}", "spec")
        # Settle the dead incarnation: what reached the actor is the truth for finished episodes.
        report = self.env_reports[(rank, old)]
        received = ray.get(self.workers.actor.handles[0].received_from.remote(episode_id_prefix(rank, old)))
        consumer_only = {i: n for i, n in received.items() if i not in report.produced}
        never_pushed = {i: n for i, n in report.produced.items() if i not in received}
        report.produced = {**{i: n for i, n in report.produced.items() if i in received}, **consumer_only}
        report.discarded.update(never_pushed)  # finished, but lost with the process before the actor got them
        credits = ray.get(self.gate.worker_lost.remote(f"{rank}.{old}", len(received)))
        new = old + 1
        if new >= MAX_INCARNATIONS:
            raise WorkerLost(
                f"env worker {rank} was restarted {new} times; episode ids allow {MAX_INCARNATIONS}"
            )
        self.incarnation[rank] = new
        self.env_reports[(rank, new)] = Incarnation()
        ray.get(self.envs[rank].start_stream.remote(self.plane, new))
        self.events.append({
            "role": "env", "rank": rank, "incarnation": old, "at_s": t_lost - self.t0, "unix": lost_unix,
            "rejoined_after_s": time.monotonic() - t_lost, "episodes_confirmed_by_consumer_only": len(consumer_only),
            "episodes_finished_not_pushed": len(never_pushed), "credits_returned": credits,
            "next_episode_after_s": None,
        })  # fmt: skip
        self.on_rejoin()
        log.warning("env worker %d rejoined as incarnation %d after %.1f s (%d start credits returned)", rank,
                    new, self.events[-1]["rejoined_after_s"], credits)  # fmt: skip

    def _rejoin_rollout(self, rank: int, cause: BaseException | None) -> None:
        t_lost, lost_unix = time.monotonic(), time.time()
        log.warning("rollout worker %d lost (%s): waiting for its restarted process", rank,
                    "process died" if cause is not None else "restarted process is not serving")  # fmt: skip
        self._wait_alive(self.rollouts[rank], f"rollout worker {rank}", "serving_stats")
        self.serving_lost.append(self.serving_last[rank])
        self.serving_last[rank] = {}
        version = self.workers.publish(to=[self.rollouts[rank]])
        address = ray.get(self.rollouts[rank].start_serving.remote(*self.serve_args))
        self.plane.rollouts[rank] = address  # env workers restarted later connect to it there
        resent = 0
        for ref in [e.resend.remote(rank, address) for e in self.envs]:
            try:
                resent += ray.get(ref)
            except RayActorError:  # that env worker is itself being restarted: its requests died with it
                pass
        self.rollout_restarts[rank] += 1
        self.events.append({"role": "rollout", "rank": rank, "incarnation": self.rollout_restarts[rank] - 1,
                            "at_s": t_lost - self.t0, "unix": lost_unix, "rejoined_after_s": time.monotonic() - t_lost,
                            "requests_resent": resent, "policy_version": version,
                            "answered_after_s": None})  # fmt: skip
        self.on_rejoin()
        log.warning("rollout worker %d rejoined with policy version %d after %.1f s; %d requests re-sent", rank,
                    version, self.events[-1]["rejoined_after_s"], resent)  # fmt: skip

    # ---- end of run ---------------------------------------------------------------------------------------
    def settle(self, producers: list[dict[str, Any]]) -> tuple[dict[int, int], dict[int, int]]:
        """-> (produced, discarded) of the whole run: the live incarnations' own final lists (`stop_stream`) and
        the settled reports of the dead ones."""
        produced: dict[int, int] = {}
        discarded: dict[int, int] = {}
        for (rank, inc), report in self.env_reports.items():
            if inc == self.incarnation[rank]:
                produced.update(producers[rank]["produced"])
                discarded.update(producers[rank]["discarded"])
            else:
                produced.update(report.produced)
                discarded.update(report.discarded)
        return produced, discarded

    def dead_fault_records(self) -> list[dict]:
        """Env fault records of the processes that died (the live ones report their own at the end)."""
        return [f for (rank, inc), rep in self.env_reports.items() if inc != self.incarnation[rank]
                for f in rep.faults]  # fmt: skip

    def report(self) -> dict[str, Any]:
        count = lambda key: sum(e.get(key, 0) for e in self.events)  # noqa: E731
        return {
            "lost": self.events,
            "env_restarts": sum(1 for e in self.events if e["role"] == "env"),
            "rollout_restarts": sum(self.rollout_restarts),
            "episodes_confirmed_by_consumer_only": count("episodes_confirmed_by_consumer_only"),
            "episodes_finished_not_pushed": count("episodes_finished_not_pushed"),
        }
