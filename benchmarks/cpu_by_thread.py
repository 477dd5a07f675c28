"""Where each trainer's CPU goes, per worker role and thread, per trained env step (Linux: /proc).

    python benchmarks/cpu_by_thread.py                                  # embedded job, async_vla and sync k=1
    python benchmarks/cpu_by_thread.py --trainers async_vla --overrides trainer.max_staleness=2

Each trainer runs the main job's env, model and batch for `--env-steps` trained env steps (no periodic evaluation, no
checkpoints); between `--window` seconds after its workers exist, every thread of every worker process (the driver
included) is read twice from /proc/<pid>/task/*/stat, and its CPU time is divided by the env steps trained in that
window (the run's trained rate times the window). Thread names group by role (`processes.json`) and name with digits
folded (`env_c0e1d2` -> `env_cNeNdN`: an env lane); the Ray session's other processes (the staleness gate, raylet,
GCS) count as roles `ray:<name>`. Single runs: a diagnosis, not a headline (the headline with
repeats is benchmarks/throughput.py). Writes docs/results/cpu_by_thread.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

TRAINERS = {"async_vla": ["trainer=async_vla"], "sync_k1": ["trainer=sync", "trainer.pipeline_stages=1"],
            "sync_k4": ["trainer=sync", "trainer.pipeline_stages=4"]}  # fmt: skip
DEFAULT_TRAINERS = ["async_vla", "sync_k1"]


def ray_processes() -> dict[int, str]:
    """Every other process of the Ray session (the staleness gate, raylet, GCS, idle workers...), as role
    `ray:<name>`: on 2 shared cores their CPU is part of what a trainer costs, though no worker role owns it."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]
        except OSError:
            continue
        if comm.startswith("ray::") or comm in ("raylet", "gcs_server") or any(b"/ray/" in c for c in cmd):
            # a Ray worker's comm names the task it runs ("ray::GateServer.acquire"): keep the class
            out[int(pid)] = "ray:" + re.sub(r"\d+", "N", comm.removeprefix("ray::").split(".")[0])
    return out


def thread_cpu(pids: dict[int, str]) -> collections.Counter:
    """CPU seconds so far per (role, thread name with digits folded)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: collections.Counter = collections.Counter()
    for pid, role in pids.items():
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except FileNotFoundError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            out[(role, re.sub(r"\d+", "N", name))] += (
                int(fields[11]) + int(fields[12])
            ) / tick  # utime + stime
    return out


def profile(
    trainer: str, overrides: list[str], env_steps: int, window: tuple[float, float], out: Path
) -> dict:
    run_dir = out / trainer
    cmd = [sys.executable, "-m", "verl_async_vla.main", f"run_dir={run_dir}", "trainer.progress=false",
           "trainer.eval_every=0", "trainer.checkpoint_every=0", f"trainer.total_env_steps={env_steps}", *overrides]  # fmt: skip
    print("$", " ".join(cmd[1:]), flush=True)
    with open(out / f"{trainer}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        table = run_dir / "processes.json"
        while not table.exists() and proc.poll() is None:
            time.sleep(0.2)
        pids = {p["pid"]: p["role"] for p in json.loads(table.read_text())["processes"]}
        pids[proc.pid] = "driver"
        time.sleep(window[0])
        # looked up once the run is under way: some (the staleness gate) start after the process table is written
        pids.update({pid: role for pid, role in ray_processes().items() if pid not in pids})
        before, t0 = thread_cpu(pids), time.monotonic()
        time.sleep(window[1] - window[0])
        after, seconds = thread_cpu(pids), time.monotonic() - t0
        if proc.wait() != 0:
            raise SystemExit(f"{trainer} run failed: see {out / (trainer + '.log')}")
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary["wall_minutes"] * 60 < window[1] + 5:
        raise SystemExit(f"{trainer}: the run ended inside the window; raise --env-steps")
    steps = summary["trained_env_steps_per_s"] * seconds
    spent = {k: after[k] - before.get(k, 0.0) for k in after}
    roles: collections.Counter = collections.Counter()
    for (role, _), v in spent.items():
        roles[role] += v
    per_step = lambda v: round(1000 * v / steps, 4)  # noqa: E731 - core-ms per trained env step
    return {
        "trainer": trainer,
        "overrides": overrides,
        "trained_env_steps_per_s": round(summary["trained_env_steps_per_s"], 1),
        "window_s": round(seconds, 1),
        "busy_cores": round(sum(spent.values()) / seconds, 3),
        "core_ms_per_trained_step": per_step(sum(spent.values())),
        "by_role": {r: per_step(v) for r, v in roles.most_common()},
        "by_thread": {
            f"{r}/{t}": per_step(v)
            for (r, t), v in sorted(spent.items(), key=lambda kv: -kv[1])
            if per_step(v) >= 0.002
        },  # fmt: skip
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainers", nargs="+", default=DEFAULT_TRAINERS, choices=list(TRAINERS))
    ap.add_argument("--overrides", nargs="*", default=[], help="hydra overrides for every trainer's run")
    ap.add_argument("--env-steps", type=int, default=64000)
    ap.add_argument("--window", type=float, nargs=2, default=(10.0, 30.0), metavar=("FROM_S", "TO_S"))
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="vla_cpu_by_thread_"))
    rows = [profile(t, [*TRAINERS[t], *args.overrides], args.env_steps, tuple(args.window), out)
            for t in args.trainers]  # fmt: skip
    for r in rows:
        print(f"{r['trainer']}: {r['trained_env_steps_per_s']} trained/s, {r['busy_cores']} cores, "
              f"{r['core_ms_per_trained_step']} core-ms/step, {r['by_role']}")  # fmt: skip
    write_result("cpu_by_thread", {"env_steps": args.env_steps, "window_s": list(args.window), "runs": rows})


if __name__ == "__main__":
    main()
