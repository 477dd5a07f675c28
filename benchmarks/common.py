"""Shared by the benchmark scripts: run the real main job as a subprocess, describe the machine, write results."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from verl_async_vla.telemetry.run_log import source_commit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"


def machine() -> dict[str, Any]:
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        gpu = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version()}


def host_used_gb() -> float:
    """Memory in use on the host (MemTotal - MemAvailable), GB."""
    info = {
        line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
    }
    return (info["MemTotal"] - info["MemAvailable"]) / 2**20


def run_main(overrides: list[str], run_dir: Path, log: Path) -> dict[str, Any]:
    """One training run through the same entry point users call; returns its summary.json, with the host's peak
    memory in use during the run (`host_peak_used_gb`, sampled every second)."""
    import threading

    cmd = [
        sys.executable,
        "-m",
        "verl_async_vla.main",
        f"run_dir={run_dir}",
        "trainer.progress=false",
        *overrides,
    ]
    print("$", " ".join(cmd[1:]), flush=True)
    peak, done = [host_used_gb()], threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            peak[0] = max(peak[0], host_used_gb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    done.set()
    if proc.returncode != 0:
        raise RuntimeError(f"run failed (exit {proc.returncode}); see {log}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["host_peak_used_gb"] = round(peak[0], 1)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_figures(trainer: str, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """One run's figures as result keys prefixed by the trainer's name, the same in every benchmark: env steps/s
    (executed, the one definition used everywhere), samples trained/s, updates, per-stage busy fraction and
    capacity, the ideal bound, policy lag, the driver's CPU per env step, and where recorded the host's peak memory
    and the whole machine's CPU over the training window."""
    tl = json.loads((run_dir / "timeline_summary.json").read_text())
    row: dict[str, Any] = {
        "env_steps_per_s": round(summary["env_steps_per_s"], 1),
        # what reached the trainer: with a short budget async runs ahead by its staleness credits
        "samples_trained_per_s": round(
            summary["ledger"]["samples_trained"] / (summary["wall_minutes"] * 60), 1
        ),
        "updates": summary["iterations"],
        "busy": {k: round(v, 3) for k, v in tl["busy"].items()},
        "ideal_bound_env_steps_per_s": round(tl["bound"]["bound"], 1),
        "stage_capacity_env_steps_per_s": {k: round(v, 1) for k, v in tl["bound"].items()},
        "lag": tl.get("lag", {}),
        "driver_cpu_us_per_env_step": round(summary.get("driver_cpu_us_per_env_step", float("nan")), 1),
    }
    if (
        "host_peak_used_gb" in summary
    ):  # what a run costs this host (runs from before it was recorded lack it)
        row["host_peak_used_gb"] = summary["host_peak_used_gb"]
    # on a few shared cores a run near its CPU ceiling is machine-bound, whatever its stage bound says
    if summary.get("host_cpu"):
        row["host_cpu"] = {k: round(v, 3) for k, v in summary["host_cpu"].items()}
    return {f"{trainer}_{k}": v for k, v in row.items()}


def curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if key in rec:
            out.append((rec["env_steps"], rec[key]))
    return out


def git_commit() -> str:
    """The commit the code was at ('+dirty' when the package or the benchmarks had uncommitted changes; results and
    plots written into docs/ do not count): the same marker every run's summary carries."""
    return source_commit(also=(ROOT / "benchmarks",))


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# Taken when the benchmark starts: the runs' code and start date, not the file's.
RUN_COMMIT, RUN_DATE = git_commit(), now()


def reusable_summary(run_dir: Path) -> dict[str, Any] | None:
    """A finished run in `run_dir` made by this same code, to resume a benchmark without repeating it; a run of
    another commit (an old --out-dir) is run again rather than mixed into today's figures."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("commit") != RUN_COMMIT:
        print(
            f"  not reusing {run_dir}: made by commit {summary.get('commit')}, this is {RUN_COMMIT}",
            flush=True,
        )
        return None
    print(f"  reusing finished run {run_dir}", flush=True)
    return summary


def run_provenance(summaries: list[dict[str, Any]]) -> dict[str, str]:
    """Commit and date of the runs themselves (a resumed benchmark reuses runs made earlier)."""
    commits = sorted({s.get("commit", "not recorded") for s in summaries})
    dates = sorted(s["date"] for s in summaries if "date" in s)
    return {"commit": ", ".join(commits), "date": dates[0] if dates else RUN_DATE}


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "commit": RUN_COMMIT,
        "date": RUN_DATE,  # when the runs started
        "written": now(),
        **payload,  # a payload's own commit / date (from its runs' summaries) wins
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print("wrote", path.relative_to(ROOT))
    return path
