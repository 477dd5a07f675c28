"""Every fault docs/reliability.md lists, injected into a short real run of each trainer; the ledger after each.

    python benchmarks/fault_matrix.py          # ~15 minutes on 2 cores

Small runs (2 env workers x 2 envs, the tiny VLA, 600 env steps, a run checkpoint every update) through the same
path `verl-async-vla` takes (`controller/supervisor.py`), with one fault each: an env that raises, hangs past a 2 s
timeout, or returns a NaN observation (the fault-injection wrapper, the only fake); an env worker process that
exits; a rollout or actor worker process killed by its pid (SIGKILL, pid from `run_dir/processes.json`). For each:
did the run finish, what did it do (env rebuilt, worker rejoined, run resumed from its checkpoint), and its ledger,
counted at the producers, the gate and the actor, reconciled (`learning/ledger.py` raises on any difference).

Writes docs/results/fault_matrix.json and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, write_result

from verl_async_vla.controller.supervisor import train_with_restarts
from verl_async_vla.validate import validate
from verl_async_vla.workers.placement import init_ray

ENV_FAULTS = {"raise": "raise", "hang": "hang", "nan_obs": "nan_obs", "env_process_dies": "die"}
KILLS = {"rollout_process_killed": "rollout", "actor_process_killed": "actor"}
# what README.md and docs/reliability.md say each trainer does about each fault (a row is judged against it)
REBUILT, RESUMED = "(env rebuilt)", "run resumed from its checkpoint"
DOCUMENTED = {
    **{(f, t): REBUILT for f in ("raise", "hang", "nan_obs") for t in ("sync", "async_vla")},
    ("env_process_dies", "async_vla"): "env worker rejoined", ("env_process_dies", "sync"): RESUMED,
    ("rollout_process_killed", "async_vla"): "rollout worker rejoined", ("rollout_process_killed", "sync"): RESUMED,
    ("actor_process_killed", "async_vla"): RESUMED, ("actor_process_killed", "sync"): RESUMED,
}  # fmt: skip


def as_documented(fault: str, trainer: str, response: str) -> bool:
    """The documented response happened, and no heavier one: a rejoin or a rebuild must not also need a resume."""
    expected = DOCUMENTED[(fault, trainer)]
    return expected in response and (expected == RESUMED or RESUMED not in response)


def config(trainer: str, run_dir: Path, inject: dict | None) -> object:
    env = {"num_workers": 2, "num_envs_per_worker": 2, "max_episode_steps": 12, "image_size": 32,
           "faults": {"step_timeout_s": 2.0}}  # fmt: skip
    if inject:
        env["faults"]["inject"] = {"env": 1, "after_steps": 12, "times": 1, "hang_s": 30.0, **inject}
    return validate({
        "env": env,
        "model": {"image_size": 32, "channels": 8, "hidden": 32},
        "sft": {"demo_episodes": 8, "steps": 5, "cache_dir": str(run_dir.parent / "sft")},
        "algo": {"ppo_epochs": 1, "minibatch_size": 16, "train_batch_episodes": 4},
        "trainer": {"name": trainer, "total_env_steps": 600, "eval_every": 0, "eval_episodes": 4, "progress": False,
                    "checkpoint_every": 1},
        "run_dir": str(run_dir),
    })  # fmt: skip


def kill_when_training(run_dir: Path, role: str, killed: list) -> None:
    """SIGKILL the process of `role` once the run has a checkpoint and has trained a few updates."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.2)
        metrics = run_dir / "metrics.jsonl"
        if not (run_dir / "checkpoints" / "latest").exists() or not metrics.exists():
            continue
        if sum(1 for _ in metrics.open()) < 4:
            continue
        table = json.loads((run_dir / "processes.json").read_text())["processes"]
        pid = next(p["pid"] for p in table if p["role"] == role and p["rank"] == 0)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        return


def run_one(fault: str, trainer: str, root: Path) -> dict:
    run_dir = root / f"{fault}_{trainer}"
    cfg = config(trainer, run_dir, {"kind": ENV_FAULTS[fault]} if fault in ENV_FAULTS else None)
    killed: list[int] = []
    killer = None
    if fault in KILLS:
        killer = threading.Thread(
            target=kill_when_training, args=(run_dir, KILLS[fault], killed), daemon=True
        )
        killer.start()
    t0 = time.monotonic()
    try:
        summary = train_with_restarts(cfg)
        error = None
    except Exception as err:  # noqa: BLE001 - a row that says what went wrong
        summary, error = {}, repr(err)[:300]
    if killer is not None:
        killer.join(timeout=5)
    faults = summary.get("faults", {})
    workers = faults.get("workers", {})
    ledger = summary.get("ledger", {})
    response = []
    if faults.get("counts"):
        response += [f"{k}: {v} (env {'quarantined' if faults.get('quarantined') else 'rebuilt'})"
                     for k, v in faults["counts"].items() if v]  # fmt: skip
    if workers.get("env_restarts"):
        response.append(f"env worker rejoined x{workers['env_restarts']}")
    if workers.get("rollout_restarts"):
        response.append(f"rollout worker rejoined x{workers['rollout_restarts']}")
    if summary.get("restarts"):
        response.append(f"run resumed from its checkpoint x{len(summary['restarts'])}")
    row = {
        "fault": fault,
        "trainer": trainer,
        "finished": error is None and bool(summary),
        "error": error,
        "seconds": round(time.monotonic() - t0, 1),
        "killed_pids": killed,
        "response": "; ".join(response) or "none recorded",
        "documented": DOCUMENTED[(fault, trainer)],
        "as_documented": as_documented(fault, trainer, "; ".join(response)),
        # a rejoined worker's new process at work again: seconds from the loss (controller/recovery.py)
        "back_at_work_after_s": [
            round(e[k], 1)
            for e in workers.get("lost", [])
            for k in ("next_episode_after_s", "answered_after_s")
            if e.get(k) is not None
        ],
        "ledger": {
            k: ledger.get(k)
            for k in (
                "episodes_produced",
                "episodes_received",
                "episodes_trained",
                "episodes_dropped_stale",
                "episodes_in_flight",
                "episodes_discarded_fault",
                "episodes_unaccounted",
                "episodes_confirmed_by_consumer_only",
                "start_credits_lost_with_workers",
            )
        },  # fmt: skip
    }
    if (
        ledger
    ):  # the consumer's side adds up to what the producers produced (reconcile already compared the ids)
        row["balanced"] = ledger["episodes_produced"] == (ledger["episodes_trained"] + ledger["episodes_dropped_stale"]
                                                          + ledger["episodes_in_flight"])  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    init_ray(None, logical_cpus=16)
    root = Path(tempfile.mkdtemp(prefix="fault_matrix_"))
    rows = [
        run_one(fault, trainer, root) for fault in [*ENV_FAULTS, *KILLS] for trainer in ("sync", "async_vla")
    ]
    write_result("fault_matrix", {"rows": rows, "all_finished": all(r["finished"] for r in rows),
                                  "all_as_documented": all(r["as_documented"] for r in rows)})  # fmt: skip
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py")], check=True)


if __name__ == "__main__":
    main()
