"""Learning benchmark on the embedded task: sync vs async_vla at equal env steps, plus the off-policy ablation.

    python benchmarks/learning.py                      # 3 seeds x {sync, async_vla, async no-correction, ...}
    python benchmarks/learning.py --seeds 0 --variants sync   # one run

Writes docs/results/embedded_sync.json (sync runs), docs/results/embedded_sync_vs_async.json (all variants),
docs/learning_sync_vs_async.png, then regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import ROOT, curve, run_main, write_result

# name -> (hydra overrides, env-step budget). The main pair runs the README's main job budget; the ablation pair
# differs only in the correction, under a large staleness bound, at a shorter budget.
VARIANTS = {
    "sync": (["trainer=sync"], None),
    "async_vla": (["trainer=async_vla"], None),
    "async_stale8_tis": (["trainer=async_vla", "trainer.max_staleness=8", "algo.off_policy=tis"], 120_000),
    "async_stale8_none": (["trainer=async_vla", "trainer.max_staleness=8", "algo.off_policy=none"], 120_000),
    "async_stale8_vtrace": (
        ["trainer=async_vla", "trainer.max_staleness=8", "algo.off_policy=vtrace"],
        120_000,
    ),
}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colours = {"sync": "tab:blue", "async_vla": "tab:orange", "async_stale8_tis": "tab:green",
               "async_stale8_none": "tab:red", "async_stale8_vtrace": "tab:purple"}  # fmt: skip
    for variant in dict.fromkeys(r["variant"] for r in runs):
        group = [r for r in runs if r["variant"] == variant]
        for i, r in enumerate(group):
            steps, success, wall_s = zip(*r["eval_curve"], strict=True)
            label = variant if i == 0 else None
            axes[0].plot(steps, success, color=colours.get(variant), alpha=0.8, label=label, marker=".")
            axes[1].plot(
                [w / 60 for w in wall_s],
                success,
                color=colours.get(variant),
                alpha=0.8,
                label=label,
                marker=".",
            )
    axes[0].set_xlabel("env steps")
    axes[1].set_xlabel("wall minutes (training, evaluation time excluded)")
    for ax in axes:
        ax.set_ylabel("greedy success, held-out layouts")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Embedded colour-reach: sync vs async_vla (one line per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path.relative_to(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--total-env-steps", type=int, default=None, help="override every variant's budget")
    ap.add_argument("--out-dir", default=None, help="where run directories go (default: a temp dir)")
    args = ap.parse_args()
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="vla_learning_"))
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        for variant in args.variants:
            run_dir = out / f"{variant}_seed{seed}"
            if (run_dir / "summary.json").is_file():  # resume: a finished run is not repeated
                print(f"  reusing finished run {run_dir}", flush=True)
            overrides, budget = VARIANTS[variant]
            budget = args.total_env_steps or budget
            summary = (
                json.loads((run_dir / "summary.json").read_text())
                if (run_dir / "summary.json").is_file()
                else run_main(
                    [*overrides, f"seed={seed}", *([f"trainer.total_env_steps={budget}"] if budget else [])],
                    run_dir,
                    out / f"{variant}_seed{seed}.log",
                )
            )
            evals = curve(run_dir, "eval/success")
            walls = dict(curve(run_dir, "train_wall_s"))
            row = {
                "variant": variant,
                "trainer": summary["trainer"],
                "seed": seed,
                "success_start": summary["success_start"],
                "success_final": summary["success_final"],
                "env_steps": summary["env_steps"],
                "wall_minutes": round(summary["wall_minutes"], 3),
                "env_steps_per_s": round(summary["env_steps_per_s"], 1),
                "policy_updates": summary["policy_version"],
                "ledger": summary["ledger"],
                "eval_curve": [(s, v, walls.get(s, 0.0)) for s, v in evals],
            }
            print(f"  {variant} seed {seed}: success {row['success_start']:.2f} -> {row['success_final']:.2f}, "
                  f"{row['env_steps_per_s']:.0f} env steps/s, {row['wall_minutes']:.1f} min", flush=True)  # fmt: skip
            runs.append(row)

    sync_runs = [r for r in runs if r["variant"] == "sync"]
    if sync_runs:
        write_result("embedded_sync", {"runs": sync_runs})
    summary = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        g = [r for r in runs if r["variant"] == variant]
        summary[variant] = {
            "success_final_mean": statistics.mean(r["success_final"] for r in g),
            "env_steps_per_s_mean": statistics.mean(r["env_steps_per_s"] for r in g),
            "seeds": len(g),
        }
    main_runs = [r for r in runs if r["variant"] in ("sync", "async_vla")]
    ablation = [r for r in runs if r["variant"].startswith("async_stale8")]
    write_result(
        "embedded_sync_vs_async", {"runs": main_runs, "off_policy_ablation": ablation, "summary": summary}
    )
    plot(runs, ROOT / "docs" / "learning_sync_vs_async.png")
    import report

    report.main()


if __name__ == "__main__":
    main()
