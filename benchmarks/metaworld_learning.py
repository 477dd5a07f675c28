"""MetaWorld MT10 learning: the SFT start and RL under both trainers, greedy success per task on held-out
variations (needs the metaworld extra).

    python benchmarks/metaworld_learning.py                          # 3 seeds x {sync, async_vla}
    python benchmarks/metaworld_learning.py --seeds 0 --trainers async_vla --total-env-steps 50000

Each run is the recipe users run (`verl-async-vla --config-dir recipes --config-name metaworld_mt10_<trainer>`). Its
SFT start and its final checkpoint are then evaluated greedy on the same `--eval-episodes` held-out variations
(spread evenly over the 10 tasks), the final one also with every env told another env's instruction. Writes
docs/results/metaworld.json (after every run, so a stopped invocation keeps what finished, merged with the rows
already in the file, so that two invocations, e.g. one per trainer, may run side by side), then regenerates
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, curve, reusable_summary, run_main, run_provenance, write_result

from verl_async_vla.envs.metaworld.tasks import MT10

RECIPES = {"sync": "metaworld_mt10_sync", "async_vla": "metaworld_mt10_async"}


def sft_checkpoint(run_dir: Path) -> Path:
    """The run's start weights (the cached SFT checkpoint its config names), copied beside its final checkpoint so
    that evaluation finds the run's env config."""
    from omegaconf import OmegaConf

    from verl_async_vla.models.sft import sft_cache_path
    from verl_async_vla.validate import validate

    run_cfg = validate(OmegaConf.load(run_dir / "config.yaml"))
    dst = run_dir / "checkpoints" / "sft.safetensors"
    shutil.copyfile(sft_cache_path(run_cfg), dst)
    return dst


def evaluate(ckpt: Path, episodes: int, shuffled: bool = False) -> dict:
    from verl_async_vla.eval import main as evaluate_main

    args = [
        str(ckpt),
        "--episodes",
        str(episodes),
        "--num-envs",
        "10",
        *(["--shuffle-instructions"] * shuffled),
    ]
    return evaluate_main(args)


def run_row(trainer: str, seed: int, out: Path, budget: int | None, episodes: int) -> dict:
    run_dir = out / f"{trainer}_seed{seed}"
    summary = reusable_summary(run_dir)
    if summary is None:
        recipe = ("--config-dir", str(ROOT / "recipes"), "--config-name", RECIPES[trainer])
        overrides = [f"seed={seed}", *([f"trainer.total_env_steps={budget}"] if budget else [])]
        summary = run_main(overrides, run_dir, out / f"{trainer}_seed{seed}.log", hydra_flags=recipe)
    sft = evaluate(sft_checkpoint(run_dir), episodes)
    final = evaluate(run_dir / "checkpoints" / "final.safetensors", episodes)
    shuffled = evaluate(run_dir / "checkpoints" / "final.safetensors", episodes, shuffled=True)
    row = {
        "suite": "mt10",
        "trainer": trainer,
        "seed": seed,
        "env_steps": summary["env_steps"],
        "eval_episodes": episodes,
        "success_sft": sft["success_rate"],
        "success_final": final["success_rate"],
        "success_shuffled_instructions": shuffled["success_rate"],
        "per_task": {
            t: {"sft": sft["per_task"][t]["success_rate"], "final": final["per_task"][t]["success_rate"]}
            for t in MT10  # every task: evaluations spread their episodes evenly over them
        },  # fmt: skip
        "wall_minutes": round(summary["wall_minutes"], 2),
        "eval_curve_in_run": curve(run_dir, "eval/success"),
        "commit": summary.get("commit", "not recorded"),
        "date": summary.get("date", ""),
    }
    print(f"  {trainer} seed {seed}: held-out success {row['success_sft']:.2f} (SFT) -> {row['success_final']:.2f},"
          f" shuffled instructions {row['success_shuffled_instructions']:.2f}, {row['wall_minutes']:.1f} min",
          flush=True)  # fmt: skip
    return row


def summarise(rows: list[dict]) -> dict:
    """Per trainer: mean held-out success after SFT and after RL over seeds, the gain and its standard error (each
    evaluation a binomial over its episodes, seeds independent)."""
    out = {}
    for trainer in dict.fromkeys(r["trainer"] for r in rows):
        g = [r for r in rows if r["trainer"] == trainer]
        var = sum(r["success_final"] * (1 - r["success_final"]) / r["eval_episodes"]
                  + r["success_sft"] * (1 - r["success_sft"]) / r["eval_episodes"] for r in g) / len(g) ** 2  # fmt: skip
        gain = statistics.mean(r["success_final"] - r["success_sft"] for r in g)
        out[trainer] = {
            "seeds": len(g),
            "success_sft_mean": round(statistics.mean(r["success_sft"] for r in g), 4),
            "success_final_mean": round(statistics.mean(r["success_final"] for r in g), 4),
            "success_shuffled_mean": round(statistics.mean(r["success_shuffled_instructions"] for r in g), 4),
            "gain_mean": round(gain, 4),
            "gain_se": round(math.sqrt(var), 4),
            "gain_over_2se": gain > 2 * math.sqrt(var),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trainers", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--total-env-steps", type=int, default=None, help="override the recipes' budget")
    ap.add_argument(
        "--eval-episodes", type=int, default=200, help="held-out episodes per evaluation (20 per task)"
    )
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="metaworld_"))
    out.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "metaworld.json"
    rows: list[dict] = []
    for seed in args.seeds:
        for trainer in args.trainers:
            rows.append(run_row(trainer, seed, out, args.total_env_steps, args.eval_episodes))
            done = {(r["trainer"], r["seed"]) for r in rows}
            # read before every write: another invocation (the other trainer's seeds) may have added rows meanwhile
            kept = json.loads(path.read_text())["runs"] if path.is_file() else []
            runs = [r for r in kept if (r["trainer"], r["seed"]) not in done] + rows
            write_result("metaworld", {**run_provenance(runs), "command_run": " ".join(["python", *sys.argv]),
                                       "runs": runs, "summary": summarise(runs)})  # fmt: skip
    import report

    report.main()


if __name__ == "__main__":
    main()
