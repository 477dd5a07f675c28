"""One thread per env, each owning a one-env shard: no env ever waits for another env of its worker.

Why threads in one process (and not one process per env): MuJoCo's Python bindings release the GIL inside
`mj_step` and rendering (measured here: two embedded envs stepped in two threads finish in 58 % of the sequential
time on 2 cores), so threads give both independence and parallelism at the memory cost of one process per worker.
Simulators whose Python code holds the GIL (robosuite / LIBERO) still get independence (a slow reset or step in one
lane holds only that lane; the others interleave) but no parallelism beyond the GIL; for those, more env workers
(processes) with fewer envs each are the way to use more cores.

Every call on env i runs on lane i's own thread, construction included: an EGL/OSMesa render context is current
on the thread that made it, so an env must never move between threads.

Faults stay inside their env (sampling/env_faults.py): a reset or step that raises, returns a bad observation or
is handed a bad action costs that env's episode; the env is rebuilt on its own lane. A call that exceeds
`env.faults.step_timeout_s` is noticed by a watchdog thread: the hung thread is abandoned (Python cannot kill a
thread; whatever its call returns is ignored) and the env gets a new lane and a new simulator.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import numpy as np

from verl_async_vla.config.schema import EnvConfig
from verl_async_vla.envs import EnvShard, ShardObs, ShardStep, make_env_shard
from verl_async_vla.sampling.env_faults import (
    EnvFault,
    EnvFleetError,
    EnvHealth,
    FaultLog,
    FaultRecord,
    StaleLane,
    check_chunk,
    check_obs,
    check_step,
)
from verl_async_vla.telemetry.timeline import SpanRecorder

T = TypeVar("T")
log = logging.getLogger(__name__)


class EnvLanes:
    def __init__(self, cfg: EnvConfig, seed: int, rank: int, imagined: bool = False):
        """`imagined`: the lanes hold world-model envs (world_models/shard.py), not the real simulator."""
        self.num_envs, self.rank, self.seed, self.imagined = cfg.num_envs_per_worker, rank, seed, imagined
        self.one = dataclasses.replace(cfg, num_envs_per_worker=1)
        self.policy = cfg.faults
        self.health = [EnvHealth() for _ in range(self.num_envs)]
        self._pools = [self._new_pool(i, 0) for i in range(self.num_envs)]
        # The shard "rank" is the global env index, so backends that spread tasks over shards (LIBERO) spread
        # them over envs exactly as before; seeds are distinct per env.
        futures = [self._pools[i].submit(self._build, i) for i in range(self.num_envs)]
        self.shards: list[EnvShard] = [f.result() for f in futures]
        self.spec = self.shards[0].spec
        # One span row per env: the ideal bound is computed per env, not per worker (telemetry/timeline.py).
        self.spans = [SpanRecorder("env", f"env/{rank}.{i:03d}") for i in range(self.num_envs)]
        # fault containment (sampling/env_faults.py)
        self.generation = [0] * self.num_envs  # bumped when a hung lane is replaced
        self.busy_since: list[float | None] = [None] * self.num_envs
        self.faults = FaultLog()
        self.unrecovered: list[list[FaultRecord]] = [
            [] for _ in range(self.num_envs)
        ]  # no episode done since
        self.lock = threading.Lock()  # generations and busy clocks (lanes vs the watchdog)
        self.records_lock = threading.Lock()
        self.t0 = time.monotonic()
        self.on_hang: Callable[[int, Future[bool]], None] | None = (
            None  # the async stream restarts the env's loop
        )
        self.rebuilding: dict[int, Future[bool]] = {}  # env -> its rebuild after a hang (True: alive)
        self.closed = threading.Event()
        if self.policy.step_timeout_s > 0:
            threading.Thread(target=self._watch, name=f"env{rank}-watchdog", daemon=True).start()

    def _new_pool(self, env: int, generation: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(1, thread_name_prefix=f"env{self.rank}.{env}.g{generation}")

    def _build(self, env: int) -> EnvShard:
        seed = self.seed * 1024 + env + 7919 * self.health[env].rebuilds  # a rebuilt env draws new layouts
        if self.imagined:
            from verl_async_vla.world_models.shard import make_imagined_shard

            return make_imagined_shard(self.one, seed, self.rank * self.num_envs + env)
        return make_env_shard(self.one, seed, self.rank * self.num_envs + env)

    def global_env(self, env: int) -> int:
        return self.rank * self.num_envs + env

    def live(self) -> list[int]:
        return [i for i, h in enumerate(self.health) if not h.quarantined]

    # ---- guarded calls (on the env's own lane) --------------------------------------------------------------
    def _call(self, env: int, fn: Callable[[], T]) -> T:
        with self.lock:
            gen = self.generation[env]
            self.busy_since[env] = time.monotonic()
        try:
            out = fn()
        except Exception as err:
            with self.lock:
                stale = self._leave(env, gen)
            if stale:
                raise StaleLane() from err
            raise EnvFault("raised", repr(err)) from err
        with self.lock:
            stale = self._leave(env, gen)
        if stale:  # the watchdog gave this env a new lane while the call hung: the result belongs to nobody
            raise StaleLane()
        return out

    def _leave(self, env: int, gen: int) -> bool:
        """(under the lock) The call on generation `gen` is over; True if that lane was replaced meanwhile."""
        if gen != self.generation[env]:
            return True
        self.busy_since[env] = None
        return False

    def reset_env(self, env: int, seed: int | None = None) -> ShardObs:
        """On env's own thread (the caller is that lane): start a new episode."""
        t0 = time.time()
        ids, seeds = np.zeros(1, np.int64), None if seed is None else np.array([seed])
        obs = self._call(env, lambda: self.shards[env].reset(ids, seeds))
        self.spans[env].record(t0, batch=1, kind="reset")
        check_obs(obs, self.spec)
        self.health[env].task = obs.instruction[0]
        return obs

    def step_env(self, env: int, chunk: np.ndarray) -> ShardStep:
        """On env's own thread: execute one action chunk (K, A)."""
        check_chunk(chunk, self.spec)
        t0 = time.time()
        res = self._call(env, lambda: self.shards[env].step(np.zeros(1, np.int64), chunk[None]))
        self.spans[env].record(t0, batch=1, kind="step")
        check_step(res, self.spec)
        if (res.terminated[0] or res.truncated[0]) and self.unrecovered[env]:
            self._recovered(env)
        return res

    def _recovered(self, env: int) -> None:
        """env completed an episode: every fault it had since its last one is survived, after this long."""
        now = time.time()
        with self.records_lock:
            for record in self.unrecovered[env]:
                record.next_episode_after_s = now - record.unix
            self.unrecovered[env] = []

    def recover(self, env: int, fault: EnvFault) -> bool:
        """On env's lane after `fault`: record it, rebuild the env if the fault was its own. False when the env is
        now quarantined (then it plays no more episodes)."""
        if not fault.rebuild:
            self._record(env, fault.kind, fault.message, "reset")
            return True
        return self._rebuild(env, fault, close_old=True)

    def _rebuild(self, env: int, fault: EnvFault, close_old: bool) -> bool:
        """Build env anew after `fault`, again after a failed build, until it works (True) or the env has used up
        `env.faults.max_rebuilds` and is quarantined (False). `close_old`: close the broken simulator first (not
        after a hang: the abandoned thread may still be inside it)."""
        h = self.health[env]
        while True:
            h.rebuilds += 1
            if h.rebuilds > self.policy.max_rebuilds:
                self._quarantine(env, fault.kind, fault.message)
                return False
            self._record(env, fault.kind, fault.message, "rebuilt")
            old, self.shards[env] = self.shards[env], None
            if close_old and old is not None:
                try:
                    old.close()
                except Exception:  # a broken simulator may fail to close; it is replaced either way
                    pass
            try:
                self.shards[env] = self._build(env)
                return True
            except Exception as err:
                fault = EnvFault("rebuild_failed", repr(err))

    def _record(self, env: int, kind: str, error: str, outcome: str) -> None:
        h = self.health[env]
        with self.records_lock:
            h.faults += 1
            h.last_error = f"{kind}: {error}"
            record = FaultRecord(self.global_env(env), h.task, kind, error, time.monotonic() - self.t0, outcome,
                                 time.time())  # fmt: skip
            self.faults.records.append(record)
            self.unrecovered[env].append(record)

    def _quarantine(self, env: int, kind: str, error: str) -> None:
        h = self.health[env]
        h.quarantined = True
        self._record(env, kind, error, "quarantined")
        log.error("env %d (task %r) quarantined after %d rebuilds; last error: %s", self.global_env(env), h.task,
                  self.policy.max_rebuilds, h.last_error)  # fmt: skip
        live = len(self.live())
        if live < self.policy.min_live_fraction * self.num_envs or live == 0:
            raise EnvFleetError(
                f"env worker {self.rank}: only {live} of {self.num_envs} envs are left (env.faults."
                f"min_live_fraction={self.policy.min_live_fraction}); the last quarantined is env "
                f"{self.global_env(env)} (task {h.task!r}), last error: {h.last_error}. Fix the simulator, or raise "
                "env.faults.max_rebuilds / lower env.faults.min_live_fraction."
            )

    # ---- hangs ------------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        period = min(1.0, self.policy.step_timeout_s / 4)
        while not self.closed.wait(period):
            now = time.monotonic()
            for env in range(self.num_envs):
                t = self.busy_since[env]
                if t is not None and now - t > self.policy.step_timeout_s:
                    self._replace_hung(env, now - t)

    def _replace_hung(self, env: int, seconds: float) -> None:
        """The call on env's lane exceeded the timeout: that thread is abandoned (a thread cannot be killed; its
        call's result, if it ever comes, is ignored), the env gets a new lane and a new simulator."""
        fault = EnvFault(
            "hang", f"a call took over {self.policy.step_timeout_s:.0f} s ({seconds:.0f} s so far)"
        )
        with self.lock:  # callers that see the new generation also find its rebuild
            t = self.busy_since[env]
            if t is None or time.monotonic() - t <= self.policy.step_timeout_s:
                return  # the call ended just now: not a hang
            self.generation[env] += 1
            self.busy_since[env] = None
            hung, self._pools[env] = self._pools[env], self._new_pool(env, self.generation[env])
            alive = self._pools[env].submit(self._rebuild_after_hang, env, fault)
            self.rebuilding[env] = alive
        hung.shutdown(wait=False)
        if self.on_hang is not None:
            self.on_hang(env, alive)

    def _rebuild_after_hang(self, env: int, fault: EnvFault) -> bool:
        return self._rebuild(env, fault, close_old=False)

    def submit(self, env: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run fn(*args) on env's own thread."""
        return self._pools[env].submit(fn, *args)

    # ---- guarded calls from outside the lane (the lockstep view: sampling/lockstep_lanes.py) ------------------
    def submit_guarded(self, env: int, fn: Callable[..., T], *args: Any) -> tuple[Future[T], int]:
        """Submit on env's lane and note the lane's generation at that moment: a lockstep caller that waits on
        several envs in turn may only get to this one after the watchdog replaced its lane."""
        with self.lock:  # the watchdog bumps the generation and files the rebuild under this lock
            return self._pools[env].submit(fn, *args), self.generation[env]

    def wait_guarded(self, env: int, call: tuple[Future[T], int]) -> T | EnvFault:
        """The call's result, or the fault it ended in (a hang is noticed by the watchdog)."""
        future, gen = call
        while True:
            try:
                return future.result(timeout=0.5)
            except FutureTimeout:
                with self.lock:  # a new generation and its entry in `rebuilding` appear together
                    replaced = gen != self.generation[env]
                if replaced:
                    return EnvFault("hang", "replaced after a timeout")
            except (EnvFault, StaleLane) as fault:
                return fault if isinstance(fault, EnvFault) else EnvFault("hang", "replaced after a timeout")

    def settle(self, env: int, outcome: T | EnvFault) -> T | None:
        """A fault's episode is discarded (None); the env is recovered on its lane (or quarantined)."""
        if not isinstance(outcome, EnvFault):
            return outcome
        if outcome.kind == "hang":  # the watchdog recorded it and rebuilds on the new lane
            self.rebuilding.pop(env).result()  # raises EnvFleetError if too few envs are left
        else:
            self.submit(env, self.recover, env, outcome).result()
        return None

    def drain_spans(self) -> list:
        return [s for rec in self.spans for s in rec.drain()]

    def fault_report(self) -> dict[str, Any]:
        with self.records_lock:
            return {"counts": self.faults.counts(), "records": [dataclasses.asdict(r) for r in self.faults.records],
                    "quarantined": [self.global_env(i) for i, h in enumerate(self.health) if h.quarantined],
                    "envs": self.num_envs}  # fmt: skip

    def close(self) -> None:
        self.closed.set()
        for i in range(self.num_envs):
            if self.shards[i] is None or self.busy_since[i] is not None:
                continue  # a hung env's simulator is still in use by its abandoned thread
            try:
                self.submit(i, self.shards[i].close).result(timeout=30)
            except Exception as err:  # closing is best effort; a broken env must not block shutdown
                log.warning("env %d did not close cleanly: %r", self.global_env(i), err)
        for pool in self._pools:
            pool.shutdown(wait=False)
