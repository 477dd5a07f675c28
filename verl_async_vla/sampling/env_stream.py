"""The async data plane on the env side: every env runs its own episode loop on its own lane.

Per env, forever (until stopped): take a start credit from the staleness gate -> reset -> post the observation to
the outbox -> wait for *its* action chunk -> step -> record the decision into the open episode -> at episode end,
hand the episode to the actor outbox. An env waits only for its own inference answer and its own simulator; a
sibling's 1 s reset or slow step holds nobody else. A fault (sampling/env_faults.py) costs the env's open episode,
counted as discarded and never pushed; the env is rebuilt (after a hang, on a new lane with a new loop).

The driver is off the hot path:
- requests: the lane that posts an observation sends whatever observations are waiting to the least-loaded rollout
  worker in one message on the request channel (sampling/request_channel.py: a socket per rollout worker, not a Ray
  call); the answer comes back on the same connection and is handed to `deliver` by its reader thread;
- episodes: a sender thread hands finished episodes to the actor in one call (`ActorWorker.push`).
The gate and the actor are reached through `StreamPeers` (sampling/stream_peers.py: Ray handles in a run, plain
objects in tests).
The producer side of the ledger is counted here, independently of the actor's count, and reported to the driver as
it grows (`stats`), so that a worker process that dies loses only what it had not reported yet.

A restarted worker process (controller/recovery.py) streams again as a new *incarnation*: its episode ids carry the
incarnation, and every request carries a request id, so an answer addressed to the dead incarnation, or a duplicate
of a re-sent request, is recognised and ignored rather than mistaken for the answer to a newer request.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verl_async_vla.plumbing.wire import ENV_KEY_STRIDE, split_env_key
from verl_async_vla.sampling.env_faults import EnvFault, StaleLane
from verl_async_vla.sampling.env_lanes import EnvLanes
from verl_async_vla.sampling.request_channel import Address, RequestClient
from verl_async_vla.sampling.start_credits import StartCredits
from verl_async_vla.sampling.stream_peers import RayStreamPeers, StreamPeers, StreamPlane
from verl_async_vla.sampling.trajectory import Episode, episodes_to_proto

logger = logging.getLogger(__name__)

STOP_WAIT_S = 60.0  # how long a stop waits for env loops still inside an env call
# How long the first finished episode waits for siblings' to share one Ray call to the actor: small against an
# update (seconds), large against a Ray call.
EPISODE_COALESCE_S = 0.05
INCARNATION_BITS = 8  # episode id = rank << 32 | incarnation << 24 | counter
MAX_INCARNATIONS = 1 << INCARNATION_BITS


def episode_rank(episode_id: int) -> int:
    """The env worker rank that produced an episode of the async stream (`episode_id >> 32`)."""
    return episode_id >> (24 + INCARNATION_BITS)


def episode_id_prefix(rank: int, incarnation: int) -> int:
    """The high bits every episode id of one env-worker incarnation starts with (`episode_id >> 24`)."""
    return (rank << INCARNATION_BITS) | incarnation


@dataclass
class _Slot:
    """One env's mailbox: its pending answer and the event its lane waits on."""

    ready: threading.Event = field(default_factory=threading.Event)
    request: int = -1  # id of the request it waits for (-1: none); answers to any other are ignored
    sent_to: int = -1  # the rollout worker the request went to (-1: not sent yet)
    posted: tuple[Any, float] | None = None  # (observation, time posted): kept to re-send it
    answer: tuple[np.ndarray, float, float, int] | None = None  # actions (K, A), log-prob, value, version
    timing: dict[str, float] = field(default_factory=dict)
    delivered: float = 0.0


class EnvStream:
    def __init__(self, lanes: EnvLanes, rank: int, plane: StreamPlane, incarnation: int = 0,
                 peers: StreamPeers | None = None):  # fmt: skip
        if not 0 <= incarnation < MAX_INCARNATIONS:
            raise ValueError(
                f"env worker {rank}: incarnation {incarnation} out of range (< {MAX_INCARNATIONS})"
            )
        self.lanes, self.rank, self.plane, self.incarnation = lanes, rank, plane, incarnation
        self.peers = peers or RayStreamPeers(plane)
        self.id_base = episode_id_prefix(rank, incarnation) << 24
        self.worker_key = f"{rank}.{incarnation}"  # the gate counts credits per incarnation
        self._requests = itertools.count(incarnation << 40)
        self.ignored_answers = (
            0  # answers for a request no env waits for (a re-sent duplicate, a dead incarnation)
        )
        n = lanes.num_envs
        self.slots = [_Slot() for _ in range(n)]
        self.stopping = threading.Event()
        self.cond = threading.Condition()
        self.requests: list[tuple[int, Any, float]] = []  # (env, ShardObs of one row, time posted)
        self._sending = False  # a lane is sending the waiting requests (`_send_requests`)
        # where a decision's round trip goes (seconds summed over decisions): posted -> sent -> received by the
        # rollout worker -> batch starts -> answer ready -> delivered here -> the env's lane resumes
        self.latency: dict[str, float] = dict.fromkeys(
            ("decisions", "outbox_s", "to_rollout_s", "batching_s", "inference_s", "to_env_s", "wake_s"), 0.0
        )
        self.finished: list[Episode] = []
        self.credits = StartCredits(lambda want: self.peers.acquire(want, self.worker_key), self.stopping)
        self.outstanding = [0] * len(plane.rollouts)  # rows sent to each rollout worker, not yet answered
        self.channel = RequestClient(rank, plane.authkey, self.deliver)
        for rollout, address in enumerate(plane.rollouts):
            self.channel.connect(rollout, address)
        # Episodes the actor cannot see yet, by their oldest decision's version: open ones (set when the first
        # answer is delivered, before the lane even wakes) and finished ones whose push has not reached the actor.
        self.open_version: dict[int, int] = {}  # env -> version
        self.unconfirmed: dict[int, int] = {}  # episode id -> version
        self._ids = itertools.count()
        # producer-side ledger (compared with the actor's own count at the end of the run)
        self.produced: list[tuple[int, int]] = []  # (episode id, decisions)
        self.reported = {"produced": 0, "discarded": 0}  # how much of each list `stats` has reported
        self.executed_steps = 0
        self.finished_env_steps = 0
        self.abandoned_open = 0
        self.pushes: list[tuple[Any, list[int]]] = []  # (push handle, its episode ids)
        self.error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._send_episodes, name=f"env{rank}-episodes", daemon=True),
            threading.Thread(target=self.credits.run, name=f"env{rank}-credits", daemon=True),
        ]
        for t in self.threads:
            t.start()
        self.current: dict[int, Episode] = {}  # env -> its open episode
        self.discarded: list[tuple[int, int]] = []  # (episode id, decisions) lost to env faults
        lanes.on_hang = self._on_hang
        self.loops: dict[int, Future] = {i: lanes.submit(i, self._episode_loop, i) for i in lanes.live()}

    # ---- per-env loop (on the env's own lane) --------------------------------------------------------------
    def _episode_loop(self, env: int, alive: Future[bool] | None = None) -> None:
        """`alive`: after a hang, the rebuild on this (new) lane; False if the env was quarantined instead."""
        try:
            if alive is not None and not alive.result():
                return
            while not self.stopping.is_set():
                if not self.credits.acquire():
                    return
                try:
                    if not self._play_episode(env):
                        return
                except EnvFault as fault:  # the episode is lost, the env is recovered (or quarantined)
                    self._discard(env)
                    if not self.lanes.recover(env, fault):
                        return
        except StaleLane:  # this lane was replaced after a hang; a new loop runs the env
            return
        except BaseException as err:  # surfaced to the driver by stream_stats / stop
            self.error = err
            self.stopping.set()
            with self.cond:
                self.cond.notify_all()
            logger.exception("episode sender stopped; the env worker reports it on stats()/stop()")

    def _play_episode(self, env: int) -> bool:
        """One episode, reset to end; False when stopped meanwhile (the open episode is abandoned)."""
        obs = self.lanes.reset_env(env)
        key = self.rank * ENV_KEY_STRIDE + env
        ep = Episode(self.id_base | next(self._ids), key, obs.instruction[0], imagined=self.lanes.imagined)
        with self.cond:
            self.current[env] = ep
        done = False
        while not done:
            answer = self._infer(env, obs)
            if answer is None:  # stopping: the open episode is abandoned (never produced)
                with self.cond:
                    self.current.pop(env, None)
                    self.abandoned_open += 1
                return False
            actions, log_prob, value, version, trace = answer
            res = self.lanes.step_env(env, actions)
            ep.image.append(obs.image[0])
            ep.state.append(obs.state[0])
            ep.actions.append(actions)
            ep.log_prob.append(log_prob)
            ep.value.append(value)
            ep.version.append(version)
            if trace is not None:
                ep.trace.append(trace)
            ep.reward.append(float(res.reward[0]))
            ep.env_steps += int(res.env_steps[0])
            done = bool(res.terminated[0] or res.truncated[0])
            obs = res.obs
            with self.cond:
                self.executed_steps += int(res.env_steps[0])
        ep.success = bool(res.success[0])
        with self.cond:
            self.current.pop(env, None)
            self.unconfirmed[ep.episode_id] = self.open_version.pop(env)
            self.produced.append((ep.episode_id, len(ep)))
            self.finished_env_steps += ep.env_steps
            self.finished.append(ep)
            self.cond.notify_all()
        return True

    def _discard(self, env: int) -> None:
        """The env's open episode is lost to a fault: counted, never pushed; its start credit goes back to the
        gate (it will never be trained)."""
        with self.cond:
            ep = self.current.pop(env, None)
            self.open_version.pop(env, None)
            if ep is not None:
                self.discarded.append((ep.episode_id, len(ep)))
            self.cond.notify_all()
        self.peers.release(1, self.worker_key)

    def _on_hang(self, env: int, alive: Future[bool]) -> None:
        """Called by the lanes' watchdog: env's lane hung and was replaced; its episode is lost, a new loop
        starts on the new lane once the env is rebuilt."""
        self._discard(env)
        # a stop waits for the env's current loop: from now on that is the one on the new lane (or, when
        # stopping, the rebuild), never the call that hung
        self.loops[env] = (
            alive if self.stopping.is_set() else self.lanes.submit(env, self._episode_loop, env, alive)
        )

    def _infer(self, env: int, obs: Any) -> tuple[np.ndarray, float, float, int, np.ndarray | None] | None:
        slot = self.slots[env]
        with self.cond:
            slot.ready.clear()
            slot.answer = None
            slot.request, slot.sent_to, slot.posted = next(self._requests), -1, (obs, time.time())
            self.requests.append((env, obs, slot.posted[1]))
        self._send_requests()
        while not slot.ready.wait(0.1) and not self.stopping.is_set():
            pass
        if self.stopping.is_set():
            return None
        woke = time.time()
        with self.cond:
            slot.request, slot.posted = -1, None
            for key, seconds in slot.timing.items():
                self.latency[key] += seconds
            self.latency["wake_s"] += woke - slot.delivered
            self.latency["decisions"] += 1
        return slot.answer

    # ---- answers from rollout workers (on the request channel's reader threads) ------------------------------
    def deliver(self, answer: dict[str, Any], rollout: int) -> None:
        """`answer`: numpy rows (actions, old_log_prob, values, policy_version, the flow head's action_trace where
        the policy has one, env_key, the request's clocks)."""
        now = time.time()
        _, local = split_env_key(answer["env_key"])
        actions, log_prob, values, versions = (
            answer[k] for k in ("actions", "old_log_prob", "values", "policy_version")
        )
        traces = answer.get("action_trace")
        rows = []
        with self.cond:
            self.outstanding[rollout] = max(0, self.outstanding[rollout] - len(local))
            for row, env in enumerate(local.tolist()):
                if self.slots[env].request != int(answer["request"][row]) or self.slots[env].ready.is_set():
                    self.ignored_answers += (
                        1  # a duplicate of a re-sent request, or meant for a dead incarnation
                    )
                    continue
                rows.append((row, env))
                self.open_version.setdefault(
                    env, int(versions[row])
                )  # its first answer makes it visibly open
        for row, env in rows:
            slot = self.slots[env]
            trace = None if traces is None else traces[row]
            slot.answer = (actions[row], float(log_prob[row]), float(values[row]), int(versions[row]), trace)
            sent, received = float(answer["t_sent"][row]), float(answer["t_received"][row])
            start, end = answer["t_batch_start"], answer["t_batch_end"]
            slot.timing = {
                "outbox_s": sent - float(answer["t_posted"][row]),
                "to_rollout_s": received - sent,
                "batching_s": start - received,
                "inference_s": end - start,
                "to_env_s": now - end,
            }
            slot.delivered = now
            slot.ready.set()

    # ---- senders (requests: the posting lane; episodes: a thread) ----------------------------------------
    def _send_requests(self) -> None:
        """Send whatever observations are waiting, in one message per pass, until none are: called by the lane
        that just posted one (and by `resend`). Whoever finds no send in progress sends, for itself and for the
        lanes that post meanwhile; the others return at once, their rows go with the sender's next pass. No thread
        hop on the round trip: with a sender thread, every decision waited for that thread to be scheduled in a
        nice-19 process of 30+ threads (6-9 ms per decision on the embedded job, 2 cores)."""
        with self.cond:
            if self._sending:
                return
            self._sending = True
        try:
            while True:
                with self.cond:
                    if not self.requests or self.stopping.is_set():
                        self._sending = False
                        return
                    batch, self.requests = self.requests, []
                    live = self.channel.live() or list(range(len(self.outstanding)))  # none: resent on rejoin
                    target = min(live, key=lambda r: self.outstanding[r])
                    self.outstanding[target] += len(batch)
                    for env, _, _ in batch:
                        self.slots[env].sent_to = target
                    request_ids = np.array([self.slots[e].request for e, _, _ in batch], dtype=np.int64)
                envs = np.array([e for e, _, _ in batch], dtype=np.int64)
                # Plain numpy rows on the hot path: Ray pickles them ~10x faster than a DataProto's torch tensors;
                # the rollout worker turns them into a DataProto for the policy.
                data = {
                    "image": np.concatenate([o.image for _, o, _ in batch]),
                    "state": np.concatenate([o.state for _, o, _ in batch]),
                    "instruction": np.array([o.instruction[0] for _, o, _ in batch], dtype=object),
                    "env_key": envs + self.rank * ENV_KEY_STRIDE,
                    "request": request_ids,
                    "t_posted": np.array([t for _, _, t in batch]),
                    "t_sent": np.full(len(batch), time.time()),
                }
                self.channel.send(
                    target, data
                )  # a lost connection: the rows are re-sent when it rejoins (resend)
        except BaseException:
            with self.cond:
                self._sending = False
            raise

    def _send_episodes(self) -> None:
        try:
            self._send_episodes_until_stopped()
        # a push the actor never received: surfaced to the driver by stats / stop, and every loop stops
        except BaseException as err:
            self.error = err
            self.stopping.set()
            with self.cond:
                self.cond.notify_all()
            raise

    def _send_episodes_until_stopped(self) -> None:
        while True:
            with self.cond:
                while not self.finished and not self.stopping.is_set():
                    self.cond.wait(0.1)
                # finished episodes travel together when they end close in time (a push carries every image)
                deadline = time.monotonic() + EPISODE_COALESCE_S
                while not self.stopping.is_set() and 0 < len(self.finished) < self.lanes.num_envs:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
                episodes, self.finished = self.finished, []
            if episodes:
                ref = self.peers.push(episodes_to_proto(episodes, self.plane.horizon))
                with self.cond:
                    self.pushes.append((ref, [e.episode_id for e in episodes]))
            self._confirm_pushes()
            if not episodes and self.stopping.is_set():
                return

    def _confirm_pushes(self) -> None:
        """Episodes whose push the actor has received stop counting as invisible to it."""
        with self.cond:
            refs = [r for r, _ in self.pushes]
        if not refs:
            return
        done = set(self.peers.received(refs))  # a failed push raises: an error, not a silent loss
        with self.cond:
            for ref, ids in self.pushes:
                if ref in done:
                    for eid in ids:
                        self.unconfirmed.pop(eid, None)
            self.pushes = [(r, ids) for r, ids in self.pushes if r not in done]

    def resend(self, rollout: int, address: Address) -> int:
        """Rollout worker `rollout` was lost and restarted at `address` (controller/recovery.py): reconnect; the
        requests it had not answered go out again, under the same request ids, to whichever rollout worker is least
        loaded. -> how many."""
        self.channel.connect(rollout, address)
        with self.cond:
            self.outstanding[rollout] = 0
            again = [(env, *slot.posted) for env, slot in enumerate(self.slots)
                     if slot.sent_to == rollout and slot.posted is not None and not slot.ready.is_set()]  # fmt: skip
            self.requests.extend(again)
        self._send_requests()
        return len(again)

    # ---- control ----------------------------------------------------------------------------------------
    def oldest_open_version(self) -> int | None:
        """The oldest policy version among episodes the actor cannot see yet: open ones with a decision and
        finished ones whose push has not been received (None: none)."""
        self._confirm_pushes()
        with self.cond:
            return min([*self.open_version.values(), *self.unconfirmed.values()], default=None)

    def stats(self) -> dict[str, Any]:
        if self.error is not None:
            raise RuntimeError(f"env worker {self.rank}: an env loop failed: {self.error!r}") from self.error
        with self.cond:
            new = {k: getattr(self, k)[n:] for k, n in self.reported.items()}  # the ledger as it grows
            self.reported = {k: len(getattr(self, k)) for k in self.reported}
        # every record each time (a handful per run): a record already sent changes when its env recovers
        faults = self.lanes.fault_report()["records"]
        with self.cond:
            return {"produced_episodes": len(self.produced), "finished_env_steps": self.finished_env_steps,
                    "executed_env_steps": self.executed_steps, "latency": dict(self.latency),
                    "new_produced": new["produced"], "new_discarded": new["discarded"],
                    "faults": faults}  # fmt: skip

    def stop(self) -> dict[str, Any]:
        """Stop every loop (open episodes are abandoned and counted), flush finished episodes to the actor."""
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        for slot in self.slots:
            slot.ready.set()
        deadline = time.monotonic() + STOP_WAIT_S
        for env in list(self.loops):
            while True:  # the watchdog may replace a hung loop meanwhile: wait for the env's current one
                f = self.loops[env]
                try:
                    f.exception(timeout=0.25)  # a loop's own error is reported below
                except FutureTimeout:
                    if time.monotonic() < deadline:
                        continue
                    with self.cond:  # still inside an env call longer than the stop can wait
                        if self.current.pop(env, None) is not None:
                            self.abandoned_open += 1
                    break
                if self.loops[env] is f:
                    break
        for t in self.threads:
            t.join(timeout=30)
        self.channel.close()
        if self.finished:  # finished after the sender's last look
            ids = [e.episode_id for e in self.finished]
            self.pushes.append((self.peers.push(episodes_to_proto(self.finished, self.plane.horizon)), ids))
            self.finished = []
        # every finished episode has reached the actor before the ledger is read
        self.peers.received([r for r, _ in self.pushes], wait=True)
        if self.error is not None:
            raise RuntimeError(f"env worker {self.rank}: an env loop failed: {self.error!r}") from self.error
        return {
            "produced": list(self.produced),
            "executed_env_steps": self.executed_steps,
            "finished_env_steps": self.finished_env_steps,
            "abandoned_open": self.abandoned_open,
            "discarded": list(self.discarded),
            "credits_unused": self.credits.stats()["unused"],
            "start_waits": self.credits.stats(),
            "ignored_answers": self.ignored_answers,
            "latency": dict(self.latency),
        }
