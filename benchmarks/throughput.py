"""Throughput benchmark: sync (k = 1, 2, 4) vs async_vla on the same workload, in one invocation, in interleaved
repeats, against one bound per workload measured apart from all of them.

    python benchmarks/throughput.py                          # workloads uniform, longtail, longtail_16x1, embedded
    python benchmarks/throughput.py --workloads longtail --repeats 5
    python benchmarks/throughput.py --workloads embedded_128k            # the main job's set-up, 128k trained steps
    python benchmarks/throughput.py --workloads libero_spatial --env-steps 3000   # real LIBERO (libero extra)
    python benchmarks/throughput.py --workloads metaworld_mt10    # real MetaWorld MT10 (metaworld extra)

The yardstick (docs/benchmarks.md): first the workload's stages are calibrated, each alone (verl_async_vla/
calibrate.py), giving the disaggregated and machine bounds every trainer is held to. Then every trainer runs the
same budget of env steps *trained* (the run ends after the update that reaches it; async stops starting episodes
the budget cannot train), `--repeats` times, the trainers interleaved within each repeat. Per trainer: env steps
trained/s (the headline; median, min, max), executed/s, the untrained share, machine CPU-seconds per trained env
step and the steady-state rate over the middle of the run. "Best sync" is the best by median. A run above a bound
is reported as a broken bound. The `longtail` workload is the reference profile (16 envs; per-step latency
lognormal, median 10 ms, sigma 1.0; every reset 0.5 s); `embedded` is the main job's own env, model and batch (no
injected latency). Writes docs/results/throughput.json (LIBERO: libero_throughput.json, MetaWorld:
metaworld_throughput.json) and the timelines of the
first repeat, then regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from common import (
    ROOT,
    calibrate_workload,
    median_run_figures,
    merge_rows,
    run_interleaved,
    run_provenance,
    trained_figures,
    write_result,
    yardstick,
)

# 16 envs in every workload, as in the reference profile; the layout (shards x envs per shard) is part of it,
# because a reset inside a shard call holds up that shard's other envs.
WORKLOADS = {
    "uniform": [
        "env.latency=uniform",
        "env.num_workers=4",
        "env.num_envs_per_worker=4",
        "algo.train_batch_episodes=32",
    ],
    "longtail": [
        "env.latency=longtail",
        "env.num_workers=4",
        "env.num_envs_per_worker=4",
        "algo.train_batch_episodes=32",
    ],
    "longtail_16x1": [
        "env.latency=longtail",
        "env.num_workers=16",
        "env.num_envs_per_worker=1",
        "algo.train_batch_episodes=32",
    ],
    # the main job as the README runs it (2 env workers x 32 envs, 64 episodes per update), shorter
    "embedded": [],
    # the same, 4x longer: the first batch and the ramp to steady state weigh ~10 % of a 32k run (a run of 20 s)
    # and ~2-3 % here; the main job itself trains 350k (run only when named: ~20 min for 3 repeats)
    "embedded_128k": [],
    # the main job's 64 envs over 4 env workers of 16 (default 2 x 32): a layout, not the main job; every trainer runs
    # it. An env worker steps its envs on threads of one process, so its Python (GIL) work is serial: does spreading
    # the lanes over more processes let the producers use the cores async leaves idle? Measured 2026-12-08 (0cbbcc6, 3
    # repeats): no, async 0.97x the best sync here against 1.25x at 2 x 32 in the same session
    "embedded_4x16": ["env.num_workers=4", "env.num_envs_per_worker=16"],
    # Real LIBERO: 4 shards x 2 envs (~1.3 GB each), agent-view camera, suite's own episode length (220).
    "libero_spatial": [
        "env=libero_spatial",
        "model=tiny_vla_libero",
        "env.num_workers=4",
        "env.num_envs_per_worker=2",
        "trainer.eval_episodes=0",
        "algo.train_batch_episodes=4",
        "algo.minibatch_size=64",
    ],  # fmt: skip
    # Real MetaWorld MT10 (metaworld extra): 2 shards x 5 envs, one per task, SFT start, 200-step episodes.
    "metaworld_mt10": [
        "env=metaworld_mt10",
        "model=tiny_vla_metaworld",
        "trainer.eval_episodes=0",
        "algo.train_batch_episodes=10",
        "algo.minibatch_size=128",
    ],  # fmt: skip
}
# env steps trained per run, by workload (--env-steps overrides): several updates each
BUDGET = {"uniform": 8000, "longtail": 8000, "longtail_16x1": 8000, "embedded": 32000, "embedded_128k": 128000,
          "embedded_4x16": 32000, "libero_spatial": 3000, "metaworld_mt10": 12000}  # fmt: skip
# Workloads on a real simulator write their own results file; the others share throughput.json.
RESULT_OF = {"libero_spatial": "libero_throughput", "metaworld_mt10": "metaworld_throughput"}
# No evaluation: it is outside the timed window anyway, and costs minutes over all repeats.
COMMON = ["trainer.eval_every=0", "trainer.eval_episodes=0", "trainer.timeline=true"]
TRAINERS = {
    "sync_k1": ["trainer=sync", "trainer.pipeline_stages=1"],  # plain lockstep
    "sync_k2": [
        "trainer=sync",
        "trainer.pipeline_stages=2",
    ],  # stage-pipelined sync (RLinf / verl VLA env loop)
    "sync_k4": ["trainer=sync", "trainer.pipeline_stages=4"],
    "async_vla": ["trainer=async_vla"],
}
# Labelled non-default async settings, run only when named (`--variants`), reported next to the default's row and
# never used for the headline ratios: a measured case for or against changing a default.
VARIANTS = {
    "async_vla_s2": ["trainer=async_vla", "trainer.max_staleness=2"],
    # the producers at nice 4 against the actor's 0: CFS weights 1024 to 423, the ratio the defaults gave before
    # 2026-12-06 (Ray's workers at 15, the producers clamped at 19: 36 to 15)
    "async_vla_old_priority": ["trainer=async_vla", "trainer.env_nice=4", "trainer.rollout_nice=4"],
    # async's actor on every core (default: one thread, the producers run beside it): does a second thread for the
    # update win more than it takes from the producers?
    "async_vla_actor_all": ["trainer=async_vla", "trainer.actor_threads=-1"],
    # the rollout worker at the actor's priority (default: nice 19 like the envs): every decision's round trip passes
    # through it, so does a shorter round trip win more than the actor's core loses?
    "async_vla_rollout_nice0": ["trainer=async_vla", "trainer.rollout_nice=0"],
    # sync's actor on one thread, its default before 2026-12-06 (now every core: trainer.actor_threads=-1)
    "sync_k2_actor1": ["trainer=sync", "trainer.pipeline_stages=2", "trainer.actor_threads=0"],
}


def merge_and_write(result: str, rows: list[dict]) -> None:
    """Workloads not rerun keep their last figures, each row with the command, machine and date that produced it."""
    rows = merge_rows(result, rows, "name", list(WORKLOADS))
    write_result(result, {"workloads": rows, "commit": ", ".join(sorted({r["commit"] for r in rows})),
                          "date": min(r["date"] for r in rows)})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=["uniform", "longtail", "longtail_16x1", "embedded"],
                    choices=list(WORKLOADS))  # fmt: skip
    ap.add_argument("--env-steps", type=int, default=None, help="trained env steps per run (default: BUDGET)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS),
                    help="also run these non-default async settings (extra rows, not the headline)")  # fmt: skip
    args = ap.parse_args()
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="vla_throughput_"))
    out.mkdir(parents=True, exist_ok=True)
    trainers = {**TRAINERS, **{v: VARIANTS[v] for v in args.variants}}
    rows = []
    for workload in args.workloads:
        budget = args.env_steps or BUDGET[workload]
        row: dict = {"name": workload, "env_steps_budget": budget, "budget_counts": "env steps trained"}
        cal = calibrate_workload([*WORKLOADS[workload], f"seed={args.seed}"], out / f"{workload}_calibration",
                                 out / f"{workload}_calibration.log")  # fmt: skip
        b = cal["bounds"]
        print(f"  {workload}: bounds (env steps trained/s) disaggregated {b['disaggregated']:.1f} "
              f"(slowest {b['slowest']}), machine {b['machine']:.1f}", flush=True)  # fmt: skip
        summaries, done = run_interleaved(
            trainers,
            lambda rep, w=workload, n=budget: [*COMMON, *WORKLOADS[w], f"seed={args.seed + rep}",
                                               f"trainer.total_env_steps={n}"],
            out, workload, args.repeats, b["machine"],
        )  # fmt: skip
        runs = {t: [trained_figures(d, s) for d, s in done[t]] for t in trainers}
        median_run_figures(row, done)
        if workload in ("longtail", "libero_spatial"):  # the first repeat's timelines, for docs/benchmarks.md
            for trainer in ("sync_k1", "async_vla"):
                name = ("libero_" if workload.startswith("libero") else "") + trainer.split("_")[0]
                shutil.copy(done[trainer][0][0] / "timeline.png", ROOT / "docs" / f"timeline_{name}.png")
        yardstick(row, {t: runs[t] for t in TRAINERS}, cal, syncs=["sync_k1", "sync_k2", "sync_k4"])
        for v in args.variants:  # against the same bound and the same best sync
            med = sorted(f["trained_per_s"] for f in runs[v])[len(runs[v]) // 2]
            row[f"{v}_trained_per_s_median"] = round(med, 2)
            row[f"{v}_over_sync_trained"] = round(
                med / row[f"sync_k{row['sync_best_k_trained']}_trained_per_s_median"], 3
            )
            row[f"{v}_over_machine_bound_trained"] = round(med / b["machine"], 3)
        # the old headline keys (executed env steps, each trainer's own span bound), kept for comparison
        best_k = max((1, 2, 4), key=lambda k: row[f"sync_k{k}_env_steps_per_s"])
        row["sync_best_k"] = best_k
        row["sync_env_steps_per_s"] = row[f"sync_k{best_k}_env_steps_per_s"]
        row["sync_lockstep_env_steps_per_s"] = row["sync_k1_env_steps_per_s"]
        row["async_env_steps_per_s"] = row["async_vla_env_steps_per_s"]
        row["ideal_bound_env_steps_per_s"] = row["async_vla_ideal_bound_env_steps_per_s"]
        row["async_over_sync"] = round(row["async_env_steps_per_s"] / row["sync_env_steps_per_s"], 3)
        row["async_over_lockstep"] = round(
            row["async_env_steps_per_s"] / row["sync_lockstep_env_steps_per_s"], 3
        )
        row["async_over_bound"] = round(row["async_env_steps_per_s"] / row["ideal_bound_env_steps_per_s"], 3)
        best = row["sync_best_k_trained"]
        print(f"  {workload}: trained/s async {row['async_vla_trained_per_s_median']:.1f} vs best sync (k={best}) "
              f"{row[f'sync_k{best}_trained_per_s_median']:.1f}: {row['async_over_sync_trained']:.2f}x "
              f"(repeats allow {row['async_over_sync_trained_range'][0]:.2f}-{row['async_over_sync_trained_range'][1]:.2f}x); "
              f"async / machine bound {row['async_over_machine_bound_trained']:.0%}; highest run / machine bound "
              f"{row['max_trainer_over_machine_bound']:.0%}", flush=True)  # fmt: skip
        row.update(command=" ".join(["python", *sys.argv]), **run_provenance(summaries))
        rows.append(row)
    for result in ("throughput", *RESULT_OF.values()):
        mine = [r for r in rows if RESULT_OF.get(r["name"], "throughput") == result]
        if mine:
            merge_and_write(result, mine)
    import report

    report.main()


if __name__ == "__main__":
    main()
