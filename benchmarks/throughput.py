"""Throughput benchmark: sync vs async_vla on the same workload, in one invocation, with the stage timeline.

    python benchmarks/throughput.py                          # workloads uniform + longtail
    python benchmarks/throughput.py --workloads longtail --env-steps 6000
    python benchmarks/throughput.py --workloads libero_spatial --env-steps 3000   # real LIBERO (libero extra)

Both trainers do the same work: the same envs, the same env-step budget, one PPO update per 32 episodes. The
`longtail` workload is the reference profile (16 envs; per-step latency lognormal, median 10 ms, sigma 1.0; every
reset 0.5 s). Prints and writes per trainer: env steps/s, samples trained/s, per-stage busy fraction, policy lag,
the ideal pipeline bound (slowest stage's capacity, from the spans) and the ratios async/sync and async/bound.
Writes docs/results/throughput.json, docs/timeline_{sync,async}.png, then regenerates docs/benchmarks.md.
LIBERO workloads (the real simulator, tiny VLA from scratch, no injected latency) go to
docs/results/libero_throughput.json and docs/timeline_libero_{sync,async}.png instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, reusable_summary, run_figures, run_main, run_provenance, write_result

# 16 envs in every workload, as in the reference profile; the layout (shards x envs per shard) is part of it,
# because a reset inside a shard call holds up that shard's other envs.
WORKLOADS = {
    "uniform": ["env.latency=uniform", "env.num_workers=4", "env.num_envs_per_worker=4"],
    "longtail": ["env.latency=longtail", "env.num_workers=4", "env.num_envs_per_worker=4"],
    "longtail_16x1": ["env.latency=longtail", "env.num_workers=16", "env.num_envs_per_worker=1"],
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
}
# Eval only at start and end (excluded from timing anyway).
COMMON = ["trainer.eval_every=0", "trainer.eval_episodes=16",
          "trainer.timeline=true", "algo.train_batch_episodes=32"]  # fmt: skip
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
}


def merge_and_write(result: str, rows: list[dict]) -> None:
    """Workloads not rerun keep their last figures, each row with the command and date that produced it."""
    previous = RESULTS / f"{result}.json"
    if previous.is_file():
        old = json.loads(previous.read_text())
        done = {r["name"] for r in rows}
        kept = [{"command": old["command"], "date": old["date"], "commit": old.get("commit", "not recorded"), **r}
                for r in old["workloads"] if r["name"] not in done]  # fmt: skip
        rows = kept + rows
    write_result(result, {"workloads": rows, "commit": ", ".join(sorted({r["commit"] for r in rows})),
                          "date": min(r["date"] for r in rows)})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=["uniform", "longtail"], choices=list(WORKLOADS))
    ap.add_argument("--env-steps", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS),
                    help="also run these non-default async settings (extra rows, not the headline)")  # fmt: skip
    args = ap.parse_args()
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="vla_throughput_"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for workload in args.workloads:
        row: dict = {"name": workload, "env_steps_budget": args.env_steps}
        summaries = []
        for trainer, overrides in {**TRAINERS, **{v: VARIANTS[v] for v in args.variants}}.items():
            run_dir = out / f"{workload}_{trainer}"
            s = reusable_summary(run_dir)  # resume: a finished run of this code is not repeated
            if s is None:
                s = run_main(
                    [*overrides, *COMMON, *WORKLOADS[workload], f"seed={args.seed}",
                     f"trainer.total_env_steps={args.env_steps}"],
                    run_dir, out / f"{workload}_{trainer}.log",
                )  # fmt: skip
            summaries.append(s)
            row.update(run_figures(trainer, run_dir, s))
            if trainer == "async_vla":
                row["scheduler"] = {k: round(v, 3) for k, v in s["scheduler"].items()}
            if workload in ("longtail", "libero_spatial") and trainer in ("sync_k1", "async_vla"):
                name = ("libero_" if workload.startswith("libero") else "") + trainer.split("_")[0]
                shutil.copy(run_dir / "timeline.png", ROOT / "docs" / f"timeline_{name}.png")
            print(f"  {workload:9s} {trainer:10s} {row[f'{trainer}_env_steps_per_s']:8.1f} env steps/s  "
                  f"bound {row[f'{trainer}_ideal_bound_env_steps_per_s']:8.1f}  busy {row[f'{trainer}_busy']}", flush=True)  # fmt: skip
        best_k = max(
            (1, 2, 4), key=lambda k: row[f"sync_k{k}_env_steps_per_s"]
        )  # the best sync, lockstep included
        row["sync_best_k"] = best_k
        row["sync_env_steps_per_s"] = row[
            f"sync_k{best_k}_env_steps_per_s"
        ]  # headline baseline: the best sync
        row["sync_lockstep_env_steps_per_s"] = row["sync_k1_env_steps_per_s"]
        row["async_env_steps_per_s"] = row["async_vla_env_steps_per_s"]
        row["ideal_bound_env_steps_per_s"] = row["async_vla_ideal_bound_env_steps_per_s"]
        row["async_over_sync"] = round(row["async_env_steps_per_s"] / row["sync_env_steps_per_s"], 3)
        row["async_over_lockstep"] = round(
            row["async_env_steps_per_s"] / row["sync_lockstep_env_steps_per_s"], 3
        )
        row["async_over_bound"] = round(row["async_env_steps_per_s"] / row["ideal_bound_env_steps_per_s"], 3)
        for v in args.variants:  # each against its own bound (its spans) and the same best sync
            row[f"{v}_over_sync"] = round(row[f"{v}_env_steps_per_s"] / row["sync_env_steps_per_s"], 3)
            row[f"{v}_over_bound"] = round(
                row[f"{v}_env_steps_per_s"] / row[f"{v}_ideal_bound_env_steps_per_s"], 3
            )
            print(f"  {workload}: variant {v}: /best-sync = {row[f'{v}_over_sync']:.2f}x, "
                  f"/bound = {row[f'{v}_over_bound']:.0%}")  # fmt: skip
        print(f"  {workload}: async/best-sync(k={best_k}) = {row['async_over_sync']:.2f}x, "
              f"async/lockstep = {row['async_over_lockstep']:.2f}x, async/bound = {row['async_over_bound']:.0%}")  # fmt: skip
        row.update(command=" ".join(["python", *sys.argv]), **run_provenance(summaries))
        rows.append(row)
    for result in ("throughput", "libero_throughput"):
        mine = [r for r in rows if r["name"].startswith("libero") == (result == "libero_throughput")]
        if mine:
            merge_and_write(result, mine)
    import report

    report.main()


if __name__ == "__main__":
    main()
