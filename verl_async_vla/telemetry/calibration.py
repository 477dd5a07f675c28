"""Stage costs measured apart from the trainers they judge, and the two throughput bounds they give.

Why apart: a bound taken from the spans of the run being judged (telemetry/timeline.py: `ideal_bound`) shrinks when
that run's stages slow each other down on shared cores, so a slow trainer is judged against a low bar. Here every
stage runs alone, on the same worker processes and thread budgets the trainers use, before any trainer runs:

- env: every env of every env worker steps on its own lane with a fixed action, resetting after the episode length
  the policy actually plays (`episode_env_steps`), so resets weigh as much as in training;
- inference: a rollout worker answers recorded observations at each batch size a trainer can form;
- actor: PPO updates on a recorded training batch (on-policy: no proximal scoring pass is needed), at one thread
  and at the trainer's `actor_threads`: capacity from the fastest update, CPU per step from the cheapest;
- transport: every decision's observation leaves the env process for each process that needs it (the rollout
  worker, and the actor with the episode; one crossing when they share a process): at least one serialisation and
  one deserialisation each, timed on the recorded observations (pickle, the cheapest wire format Ray uses).

Each stage reports its capacity when it has the machine to itself (env steps/s) and the CPU it burns per env step
(core-seconds, the worker processes' own CPU clocks). Two bounds follow, one number per workload for every trainer:

    disaggregated = min_s capacity_s                                   (every stage on its own hardware)
    machine       = min(cores / (sum_s cpu_s + transport), disaggregated) (stages sharing these cores)

Both are upper bounds on env steps *trained* per second: every trained env step was stepped by an env, chosen by
an inference call and trained by the actor, so it cost at least sum_s cpu_s core-seconds, and no stage can run
faster sharing the machine than it does alone. A trainer measured above either bound means the calibration is
wrong (benchmarks/throughput.py says so in its report). Overheads a trainer adds (Ray calls, serialisation, the
driver, scoring stale rows) are not in the bound: they are what a trainer loses against it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

STAGES = ("env", "rollout", "actor")


@dataclass(frozen=True)
class StageCost:
    """One stage measured alone: env steps/s it handles with all its workers and the machine to itself, and
    core-seconds of CPU per env step."""

    capacity: float
    cpu_s_per_step: float


def pipeline_bounds(
    stages: dict[str, StageCost], cores: float, transport_cpu_s_per_step: float = 0.0
) -> dict[str, Any]:
    """-> {"disaggregated", "machine", "slowest", "cpu_s_per_step", ...}: env steps trained per second no trainer
    can exceed, on a cluster (the slowest stage alone) and on these `cores` (CPU per step across the stages and the
    observations' unavoidable serialisation between their processes). Transport has no capacity of its own here: on
    a cluster it runs on every stage's host at once."""
    missing = [s for s in STAGES if s not in stages]
    if missing:
        raise ValueError(f"pipeline_bounds needs every stage measured; missing {missing}")
    if cores <= 0:
        raise ValueError(f"cores must be > 0, got {cores}")
    if transport_cpu_s_per_step < 0:
        raise ValueError(f"transport_cpu_s_per_step must be >= 0, got {transport_cpu_s_per_step}")
    slowest = min(stages, key=lambda s: stages[s].capacity)
    disaggregated = stages[slowest].capacity
    cpu = sum(c.cpu_s_per_step for c in stages.values()) + transport_cpu_s_per_step
    cpu_limit = cores / cpu if cpu > 0 else float("inf")
    return {
        "disaggregated": disaggregated,
        "machine": min(cpu_limit, disaggregated),
        "machine_cpu_limit": cpu_limit,
        "slowest": slowest,
        "cpu_s_per_step": cpu,
        "transport_cpu_s_per_step": transport_cpu_s_per_step,
    }


def stage_costs_from_measurements(measured: dict[str, Any]) -> dict[str, StageCost]:
    """The raw measurements (`calibrate.py` output) -> per stage, in env steps. Inference is measured per decision
    at several batch sizes: its cost is the cheapest per-row batch any trainer could form (a bound must hold for
    the best trainer), converted to env steps by the env steps one decision executes."""
    env, actor = measured["env"], measured["actor"]
    per_decision = measured["env_steps_per_decision"]
    # each env's own rate, summed: a lane that overran the window by one long reset is not mis-timed
    env_cost = StageCost(env["env_steps_per_s"], env["cpu_s"] / env["env_steps"])
    best = min(measured["rollout"]["batches"], key=lambda b: b["cpu_s"] / b["rows"])
    workers = measured["rollout"]["workers"]
    rollout = StageCost(
        workers * best["rows"] / best["wall_s"] * per_decision, best["cpu_s"] / best["rows"] / per_decision
    )
    # the fastest of the timed updates and, apart, the cheapest: anything else on the machine (a process ending, the
    # first update's allocations) only slows an update, and a bound must hold for the best trainer, whose actor may
    # train on more threads (faster, and dearer in CPU: ActorWorker.calibrate times both) or on one
    updates = actor.get("per_update", [actor])
    steps = actor["env_steps_per_update"] if "per_update" in actor else actor["env_steps"]
    fastest = min(u["wall_s"] for u in updates)
    actor_cost = StageCost(steps / fastest, min(u["cpu_s"] for u in updates) / steps)
    return {"env": env_cost, "rollout": rollout, "actor": actor_cost}


def transport_cpu_per_step(measured: dict[str, Any]) -> float:
    """Core-seconds per env step the observations' crossings cost (0 for calibrations made before it was timed)."""
    t = measured.get("transport")
    if not t:
        return 0.0
    return t["crossings"] * t["cpu_s"] / t["rows"] / measured["env_steps_per_decision"]


def bounds_from_measurements(measured: dict[str, Any]) -> dict[str, Any]:
    stages = stage_costs_from_measurements(measured)
    return {"stages": {k: asdict(v) for k, v in stages.items()},
            **pipeline_bounds(stages, measured["cores"], transport_cpu_per_step(measured))}  # fmt: skip


# ---- the measurements, run inside the workers ---------------------------------------------------------------
def measure(fn: Callable[[], object]) -> dict[str, float]:
    """One call of `fn`: its wall time and this process's CPU time."""
    cpu0, t0 = time.process_time(), time.monotonic()
    fn()
    return {"wall_s": time.monotonic() - t0, "cpu_s": time.process_time() - cpu0}


def serialisation_cost(payload: object, repeats: int = 3) -> dict[str, float]:
    """CPU of pickling `payload` and reading it back (protocol 5, as Ray's object store), the fastest of `repeats`,
    and its size: what one crossing between processes costs at the least (no copy through a socket counted)."""
    import pickle

    best, size = float("inf"), 0
    for _ in range(repeats):
        cpu0 = time.process_time()
        blob = pickle.dumps(payload, protocol=5)
        pickle.loads(blob)
        best, size = min(best, time.process_time() - cpu0), len(blob)
    return {"cpu_s": best, "bytes": float(size)}


def timed(fn: Callable[[], int], seconds: float) -> dict[str, float]:
    """Call `fn` (it returns the work it did) until `seconds` have passed; -> work, wall and this process's CPU."""
    cpu0, t0 = time.process_time(), time.monotonic()
    work = 0
    while True:
        work += fn()
        if time.monotonic() - t0 >= seconds:
            break
    return {"work": work, "wall_s": time.monotonic() - t0, "cpu_s": time.process_time() - cpu0}


def free_run_lane(step: Callable[[], tuple[int, bool]], reset: Callable[[], None], seconds: float,
                  episode_env_steps: int) -> tuple[int, float]:  # fmt: skip
    """One env alone: reset, step (`step` -> env steps executed, episode over) until the episode ends or has
    `episode_env_steps` steps, again, for `seconds`. -> (env steps, seconds the lane ran)."""
    t0 = time.monotonic()
    steps = 0
    while time.monotonic() - t0 < seconds:
        reset()
        in_episode, done = 0, False
        while not done and in_episode < episode_env_steps:
            n, done = step()
            in_episode += n
        steps += in_episode
    return steps, time.monotonic() - t0
