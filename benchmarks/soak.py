"""Soak run: the main job (embedded task, `trainer=async_vla`) for a long time with faults injected all along.

    python benchmarks/soak.py                      # 30 minutes, a fault every 60 s (each kind in turn)
    python benchmarks/soak.py --minutes 5          # a shorter look

Env faults come from the fault-injection wrapper (envs/wrappers.py, the only fake), on a wall-clock schedule shared
by every env worker: fault n, `--every-s` x n seconds after training starts, is in turn an env that raises, hangs
(past `env.faults.step_timeout_s`), returns a NaN observation, or kills its whole worker process. On top of these,
this script kills the rollout worker's process by its pid (SIGKILL, as the OOM killer would) every `--kill-every-s`.
At the end it stops the run as a preempted job would (SIGTERM: graceful stop, checkpoint, summary).

Writes docs/results/soak.json: the faults with when and whether the run survived them, the run's ledger, the
resident memory of every process at the start and at the end, and the evaluated success at the start and the end.
Not part of the test suite (it takes `--minutes` plus set-up).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import ROOT, write_result

SETUP_S = 150.0  # set-up (Ray, workers, SFT warm start, first evaluation) before the fault clock starts
# a fault is survived when the env it hit completes an episode, or the worker process it killed (restarted) finishes
# an episode / answers a batch, within this long of the fault; judged per fault, apart from the run's own ending
SURVIVE_WITHIN_S = 120.0


def recovered(after_s: float | None) -> bool:
    return after_s is not None and after_s <= SURVIVE_WITHIN_S


def rss_of(table: dict) -> dict[tuple[str, int], dict]:
    out = {}
    for p in table["processes"]:
        try:
            rss = psutil.Process(p["pid"]).memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
        out[(p["role"], p["rank"])] = {"pid": p["pid"], "rss_mb": round(rss, 1)}
    return out


def read_table(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "processes.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def actor_retained_mb(run_dir: Path) -> float | None:
    """The actor's memory as it reports it after its latest update (`actor/rss_mb`, read after returning freed pages):
    what it keeps between updates. A sample taken from outside lands at any point of an update and includes that
    update's transient working set, so it swings with the batch; this one is read at the same point every time."""
    rows = [r for r in metrics(run_dir) if r.get("actor/rss_mb") is not None]
    return round(rows[-1]["actor/rss_mb"], 1) if rows else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="training time under faults")
    ap.add_argument("--every-s", type=float, default=60.0, help="one env fault per period")
    ap.add_argument("--kill-every-s", type=float, default=300.0, help="SIGKILL the rollout worker this often")
    ap.add_argument(
        "--warmup-min",
        type=float,
        default=5.0,
        help="the 'start' memory is taken this far into training (allocator arenas and queues fill "
        "during the first minutes: measured, the actor's memory levels off after ~2-3 min)",
    )
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="soak_"))
    run_dir = out / "run"
    start_unix = time.time() + SETUP_S
    end_unix = start_unix + 60.0 * args.minutes
    cmd = [
        sys.executable, "-m", "verl_async_vla.main", "trainer=async_vla", f"run_dir={run_dir}",
        "trainer.total_env_steps=1000000000",  # the soak ends by time (SIGTERM), not by budget
        "trainer.progress=false", "env.faults.step_timeout_s=10", "env.faults.inject.kind=schedule",
        f"env.faults.inject.every_s={args.every_s}", f"env.faults.inject.start_unix={start_unix}",
        "env.faults.inject.hang_s=30", "trainer.worker_restarts=50",
    ]  # fmt: skip
    print("$", " ".join(cmd[1:]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "run.log", "w")  # noqa: SIM115 - open for the run's life
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    kills: list[dict] = []
    rss_start = None
    retained_start = None
    series: list[dict] = []  # every minute: each process's memory, for the record (not only start and end)
    next_sample = start_unix
    next_kill = start_unix + args.kill_every_s / 2
    while time.time() < end_unix and proc.poll() is None:
        time.sleep(1.0)
        table = read_table(run_dir)
        if table is None:
            continue
        if time.time() >= next_sample:
            next_sample += 60
            series.append(
                {
                    "at_s": round(time.time() - start_unix),
                    **{f"{r}/{k}": v["rss_mb"] for (r, k), v in rss_of(table).items()},
                    "actor_retained": actor_retained_mb(run_dir),
                }
            )
        if rss_start is None and time.time() > start_unix + 60 * args.warmup_min:
            rss_start = rss_of(table)
            retained_start = actor_retained_mb(run_dir)
            print(f"[soak] rss at start: { {f'{r}/{k}': v['rss_mb'] for (r, k), v in rss_start.items()} }",
                  flush=True)  # fmt: skip
        if time.time() >= next_kill:
            next_kill += args.kill_every_s
            pid = next(p["pid"] for p in table["processes"] if p["role"] == "rollout" and p["rank"] == 0)
            kills.append(
                {"kind": "kill_rollout_process", "at_s": round(time.time() - start_unix, 1), "pid": pid}
            )
            print(f"[soak] SIGKILL rollout worker 0 (pid {pid}) at {kills[-1]['at_s']} s", flush=True)
            psutil.Process(pid).send_signal(signal.SIGKILL)
    table = read_table(run_dir)
    rss_end = rss_of(table) if table else {}
    retained_end = actor_retained_mb(run_dir)
    finished_in_time = proc.poll() is None  # still running at the end: nothing killed it
    if finished_in_time:
        print("[soak] time is up: SIGTERM (graceful stop)", flush=True)
        proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=900)
    log.close()
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    finished = finished_in_time and code == 0 and summary.get("stopped") == "SIGTERM"

    faults = []
    for rec in summary.get("faults", {}).get("records", []):
        after = rec.get("next_episode_after_s")
        faults.append({"kind": rec["kind"], "at_s": round(rec["unix"] - start_unix, 1), "env": rec["env"],
                       "outcome": rec["outcome"], "next_episode_after_s": None if after is None else round(after, 1),
                       "survived": recovered(after)})  # fmt: skip
    lost = summary.get("faults", {}).get("workers", {}).get("lost", [])
    for ev in lost:
        kind, key = (("env_process_died", "next_episode_after_s") if ev["role"] == "env"
                     else ("rollout_process_killed", "answered_after_s"))  # fmt: skip
        after = ev.get(key)
        faults.append({"kind": kind, "at_s": round(ev["unix"] - start_unix, 1), "rank": ev["rank"],
                       "rejoined_after_s": round(ev["rejoined_after_s"], 1),
                       key: None if after is None else round(after, 1), "survived": recovered(after)})  # fmt: skip
    faults.sort(key=lambda f: f["at_s"])
    history = metrics(run_dir)
    evals = [r for r in history if r.get("eval/success") is not None]
    processes = []
    for key, start in sorted((rss_start or {}).items()):
        end = rss_end.get(key)
        processes.append({"role": key[0], "rank": key[1], "pid_start": start["pid"], "rss_start_mb": start["rss_mb"],
                          "pid_end": end["pid"] if end else None, "rss_end_mb": end["rss_mb"] if end else None,
                          "restarted": bool(end) and end["pid"] != start["pid"],
                          "change": round(end["rss_mb"] / start["rss_mb"] - 1, 3) if end else None})  # fmt: skip
    same_process = [p for p in processes if p["change"] is not None and not p["restarted"]]
    payload = {
        "minutes": args.minutes,
        "every_s": args.every_s,
        "kill_every_s": args.kill_every_s,
        "finished": finished,
        "exit_code": code,
        "survived_means": f"the env hit completed an episode, or the restarted process finished an episode (env) or "
        f"answered a batch (rollout), within {SURVIVE_WITHIN_S:.0f} s of the fault",
        "faults_survived": sum(f["survived"] for f in faults),
        "faults_scheduled": int(60 * args.minutes // args.every_s) + len(kills),
        "faults_injected": len(faults),
        "faults": faults,
        "rollout_kills_sent": kills,
        "ledger": {
            **summary.get("ledger", {}),
            "unaccounted": summary.get("ledger", {}).get("episodes_unaccounted"),
        },
        "processes": processes,
        "rss_max_change_same_process": max((abs(p["change"]) for p in same_process), default=None),
        "rss_start_after_min": args.warmup_min,
        "actor_retained_mb": {
            "what": "actor/rss_mb: the actor's resident memory read by itself right after each update and trim",
            "start": retained_start,
            "end": retained_end,
            "change": round(retained_end / retained_start - 1, 3)
            if retained_start and retained_end
            else None,
        },
        "rss_series_mb": series,
        "success_start": evals[0]["eval/success"] if evals else None,
        "success_end": evals[-1]["eval/success"] if evals else None,
        "success_curve": [(r["env_steps"], r["eval/success"]) for r in evals],
        "env_steps": summary.get("env_steps"),
        "iterations": summary.get("iterations"),
        "run": {k: summary.get(k) for k in ("commit", "date", "stopped", "wall_minutes", "env_steps_per_s")},
    }
    write_result("soak", {**payload, "commit": summary.get("commit", "not recorded")})
    print(json.dumps({k: payload[k] for k in ("finished", "faults_injected", "faults_survived", "success_start",
                                              "success_end",
                                              "rss_max_change_same_process", "actor_retained_mb")}))  # fmt: skip
    if not finished:
        sys.exit(1)


if __name__ == "__main__":
    main()
