"""Shared by the benchmark scripts: run the real main job as a subprocess, describe the machine, write results."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
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


def run_main(
    overrides: list[str], run_dir: Path, log: Path, hydra_flags: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One training run through the same entry point users call; returns its summary.json, with the host's peak
    memory in use during the run (`host_peak_used_gb`, sampled every second). `hydra_flags` (e.g. --config-dir,
    --config-name for a recipe) go before the overrides, as Hydra's command line needs."""
    import threading

    cmd = [
        sys.executable,
        "-m",
        "verl_async_vla.main",
        *hydra_flags,
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


def steady_trained_per_s(run_dir: Path, middle: tuple[float, float] = (0.25, 0.75)) -> float | None:
    """Env steps trained per second over the middle of the run (by training wall time): the rate without the
    start-up and the end of the run. The steps of the updates logged inside the window over the window's own length,
    not over the time between its first and last update: the async driver logs every update a poll finds at that
    poll's time, so two updates can share a time stamp (a LIBERO run of 4 updates gave 637 env steps/s that way).
    None when fewer than two updates fall in the window."""
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ups = [(r["train_wall_s"], r["actor/trained_env_steps"]) for r in recs if "actor/trained_env_steps" in r]
    if len(ups) < 3:
        return None
    end = ups[-1][0]
    start, stop = middle[0] * end, middle[1] * end
    inside = [n for t, n in ups if start < t <= stop]
    if len(inside) < 2 or stop <= start:
        return None
    return sum(inside) / (stop - start)


def trained_figures(run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The yardstick's per-run figures (docs/benchmarks.md): env steps trained/s (the headline), executed/s, the
    share executed but never trained, machine CPU-seconds per trained env step, and the steady-state rate."""
    trained = summary["env_steps_trained"]
    host = summary.get("host_cpu") or {}
    driver = summary.get("driver_cpu_s")
    return {
        "trained_per_s": summary["trained_env_steps_per_s"],
        "executed_per_s": summary["env_steps_per_s"],
        "untrained_share": summary["untrained_share"],
        "cpu_s_per_trained_sample": host["busy_core_s"] / trained if host and trained else None,
        "driver_cpu_us_per_trained_sample": 1e6 * driver / trained
        if driver is not None and trained
        else None,
        "steady_trained_per_s": steady_trained_per_s(run_dir),
    }


def run_interleaved(trainers: dict[str, list[str]], overrides: Callable[[int], list[str]], out: Path, name: str,
                    repeats: int, bound: float) -> tuple[list[dict[str, Any]], dict[str, list[tuple[Path, dict]]]]:  # fmt: skip
    """Every trainer `repeats` times on one workload (`overrides(repeat)` after the trainer's own), interleaved so
    that each trainer opens a repeat in turn and a slow spell of the machine hits them all; a finished run of this
    code is reused. -> (every summary, per trainer its (run dir, summary) in repeat order)."""
    summaries: list[dict[str, Any]] = []
    done: dict[str, list[tuple[Path, dict]]] = {t: [] for t in trainers}
    for rep in range(repeats):
        order = list(trainers)
        for trainer in order[rep % len(order) :] + order[: rep % len(order)]:
            run_dir = out / f"{name}_{trainer}_r{rep}"
            s = reusable_summary(run_dir)  # resume: a finished run of this code is not repeated
            if s is None:
                s = run_main([*trainers[trainer], *overrides(rep)], run_dir, out / f"{run_dir.name}.log")
            summaries.append(s)
            done[trainer].append((run_dir, s))
            print(f"  {name:13s} r{rep} {trainer:12s} trained {s['trained_env_steps_per_s']:7.1f}/s  "
                  f"executed {s['env_steps_per_s']:7.1f}/s  untrained {s['untrained_share']:.1%}  "
                  f"machine bound {bound:.1f}", flush=True)  # fmt: skip
    return summaries, done


def median_run_figures(row: dict[str, Any], done: dict[str, list[tuple[Path, dict]]]) -> dict[str, Path]:
    """The per-run keys (spans, busy, lag, host CPU: `run_figures`) of each trainer's median run by trained/s.
    -> each trainer's median run directory."""
    medians = {}
    for trainer, runs in done.items():
        run_dir, s = sorted(runs, key=lambda d: d[1]["trained_env_steps_per_s"])[len(runs) // 2]
        row.update(run_figures(trainer, run_dir, s))
        if trainer == "async_vla":
            row["scheduler"] = {k: round(v, 3) for k, v in s["scheduler"].items()}
        medians[trainer] = run_dir
    return medians


def calibrate_workload(overrides: list[str], run_dir: Path, log: Path) -> dict[str, Any]:
    """The workload's stages timed alone (verl_async_vla/calibrate.py), reused if this commit made it."""
    path = run_dir / "calibration.json"
    if path.is_file() and json.loads(path.read_text()).get("commit") == RUN_COMMIT:
        print(f"  reusing calibration {path}", flush=True)
        return json.loads(path.read_text())
    cmd = [sys.executable, "-m", "verl_async_vla.calibrate", f"run_dir={run_dir}", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"calibration failed (exit {proc.returncode}); see {log}")
    return json.loads(path.read_text())


def spread(xs: list[float]) -> dict[str, float]:
    import statistics

    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def yardstick(row: dict[str, Any], runs: dict[str, list[dict[str, Any]]], calibration: dict[str, Any],
              syncs: list[str], candidate: str = "async_vla") -> None:  # fmt: skip
    """Add the yardstick's keys to a workload row: per trainer the median / min / max of env steps trained per
    second over its repeats and its median CPU per trained sample; the best sync by median; the calibrated bounds
    (the same for every trainer); `candidate` over the best sync (the ratio of medians, and the range of ratios the
    repeats allow) and over the machine bound; and the highest any single run reached over each bound (above 1:
    the bound is broken)."""
    import statistics

    def med(xs: list[float | None]) -> float | None:
        xs = [x for x in xs if x is not None]
        return round(statistics.median(xs), 6) if xs else None

    for t, figs in runs.items():
        s = spread([f["trained_per_s"] for f in figs])
        row.update({f"{t}_trained_per_s_{k}": round(v, 2) for k, v in s.items()})
        row[f"{t}_cpu_s_per_trained_sample"] = med([f["cpu_s_per_trained_sample"] for f in figs])
        row[f"{t}_executed_per_s_median"] = round(statistics.median(f["executed_per_s"] for f in figs), 2)
        row[f"{t}_untrained_share"] = med([f["untrained_share"] for f in figs])
        row[f"{t}_steady_trained_per_s_median"] = med([f["steady_trained_per_s"] for f in figs])
        row[f"{t}_driver_cpu_us_per_trained_sample"] = med(
            [f.get("driver_cpu_us_per_trained_sample") for f in figs]
        )
        row[f"{t}_trained_per_s_runs"] = [round(f["trained_per_s"], 2) for f in figs]
    row["repeats"] = min(len(f) for f in runs.values())
    best = max(syncs, key=lambda t: row[f"{t}_trained_per_s_median"])
    row["sync_best_k_trained"] = int(best.rsplit("k", 1)[1]) if "_k" in best else best
    b = calibration["bounds"]
    row["bound_machine_trained_per_s"] = round(b["machine"], 2)
    row["bound_disaggregated_trained_per_s"] = round(b["disaggregated"], 2)
    row["bound_slowest_stage"] = b["slowest"]
    row["calibration"] = {"stages": b["stages"], "cpu_s_per_step": b["cpu_s_per_step"],
                          "transport_cpu_s_per_step": b.get("transport_cpu_s_per_step", 0.0),
                          "machine_cpu_limit": b["machine_cpu_limit"],
                          "env_steps_per_decision": calibration["measured"]["env_steps_per_decision"],
                          "episode_env_steps": calibration["measured"]["episode_env_steps"],
                          "actor_score_cpu_s": calibration["measured"]["actor"]["score_cpu_s"]}  # fmt: skip
    a, s = f"{candidate}_trained_per_s", f"{best}_trained_per_s"
    if candidate in runs:
        row["async_over_sync_trained"] = round(row[f"{a}_median"] / row[f"{s}_median"], 3)
        row["async_over_sync_trained_range"] = [round(row[f"{a}_min"] / row[f"{s}_max"], 3),
                                                round(row[f"{a}_max"] / row[f"{s}_min"], 3)]  # fmt: skip
        row["async_over_machine_bound_trained"] = round(row[f"{a}_median"] / b["machine"], 3)
        row["async_over_disaggregated_bound_trained"] = round(row[f"{a}_median"] / b["disaggregated"], 3)
    top = max(f["trained_per_s"] for figs in runs.values() for f in figs)
    row["max_trainer_over_machine_bound"] = round(top / b["machine"], 3)
    row["max_trainer_over_disaggregated_bound"] = round(top / b["disaggregated"], 3)
    if top > b["machine"]:
        print(f"  BOUND BROKEN: a run trained {top:.1f} env steps/s, above the calibrated machine bound "
              f"{b['machine']:.1f}: the calibration is wrong", flush=True)  # fmt: skip


def run_figures(trainer: str, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """One run's figures as result keys prefixed by the trainer's name, the same in every benchmark: env steps/s
    (executed), samples trained/s, updates, per-stage busy fraction and capacity, the ideal bound from the run's
    own spans (kept for comparison: it moves with the run it judges; the calibrated bound does not), policy lag,
    the driver's CPU per env step, and where recorded the host's peak memory and the whole machine's CPU over the
    training window."""
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
    another commit (an old --out-dir), or one stopped before its budget (a benchmark interrupted mid-run: its
    summary says `stopped`), is run again rather than mixed into today's figures."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("stopped"):  # ended early (a signal, a stop request): not a finished run of its budget
        print(f"  not reusing {run_dir}: it was stopped early ({summary['stopped']})", flush=True)
        return None
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


def merge_rows(result: str, rows: list[dict[str, Any]], key: str, order: list[Any],
               same: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """`rows` (this invocation's) with the rows of the last `result` file that this invocation did not re-run, each
    kept row with the command, machine, commit and date that produced it; sorted by `order` of `row[key]`, so a re-run
    replaces its row where it stood. `same`: settings the old file must share (e.g. the emulated cluster's profile),
    else none of its rows are kept (figures of other settings must not share a table)."""
    rows = [{"machine": machine(), **r} for r in rows]
    previous = RESULTS / f"{result}.json"
    if previous.is_file():
        old = json.loads(previous.read_text())
        if all(old.get(k) == v for k, v in (same or {}).items()):
            done = {r[key] for r in rows}
            rows += [{"command": old["command"], "date": old["date"], "commit": old.get("commit", "not recorded"),
                      "machine": old["machine"], **r}
                     for r in old["workloads"] if r[key] not in done]  # fmt: skip
        else:
            print(f"  not keeping the rows of {previous.name}: other settings than {same}", flush=True)
    rows.sort(key=lambda r: order.index(r[key]) if r[key] in order else len(order))
    return rows


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
