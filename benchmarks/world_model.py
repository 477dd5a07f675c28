"""Sample efficiency of imagined rollouts: held-out real success against *real* env steps, with and without a world
model, from the same SFT start (issue 27).

    python benchmarks/world_model.py                               # 3 seeds, trainer=async_vla
    python benchmarks/world_model.py --seeds 0 --real-env-steps 120000 --out-dir /tmp/wm_bench
    python benchmarks/world_model.py --imagined-workers 2 --skip-baseline --out-dir <the same>   # 1:1, added rows

First pre-trains the embedded world model once (`python -m verl_async_vla.world_models.pretrain`, into
`<out-dir>/world_model`, reused when there; its recording uses the SFT start of seed 0 for half of the episodes), then
per seed runs `trainer=async_vla` without it and with it (`env/world_model=embedded`, `--imagined-workers` imagined
env workers beside the real ones). Both runs of a seed start from the same SFT checkpoint and have the same budget of
real env steps (the budget counts real steps only). Evaluation is always the real simulator.

Writes docs/results/world_model.json (rows of other variants or seeds that an invocation does not re-run are kept
when they used the same pre-trained model): command, machine, commit, date, the pre-training report, the cost of an
imagined env step against a real one (each timed alone on this machine), and `runs`: per run `world_model` (name or
null), `seed`, `real_env_steps`, `imagined_env_steps`, `real_steps_to_success_0.8` (first evaluation at >= 0.8,
null if never), `success_final` and `curve` ([[real env steps, success], ...]); `label` and `imagined_workers` name
the variant (`embedded` is 1 imagined worker, `embedded_w2` 2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, run_provenance, write_result
from learning import learning_row

TARGET = 0.8


def steps_to(curve: list[tuple[int, float, float]], target: float, window: int = 1) -> int | None:
    """Real env steps at the first evaluation where the mean of the last `window` evaluations reaches `target`
    (None: never). One evaluation of 64 episodes has a standard error of ~0.05 at 0.8, so a first crossing moves by
    tens of thousands of steps between runs of one seed; the 3-evaluation mean is reported beside it."""
    values = [v for _, v, _ in curve]
    for k, (s, _, _) in enumerate(curve):
        if k + 1 >= window and sum(values[k + 1 - window : k + 1]) / window >= target:
            return int(s)
    return None


def earlier_rows(pretrain: dict) -> list[dict]:
    """The rows of the results file that a partial invocation keeps (other variants or seeds), when they were made
    with the same pre-trained world model (its report is the same); none otherwise. Rows written before the `label`
    key get it from their world model."""
    path = ROOT / "docs" / "results" / "world_model.json"
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    if old.get("pretrain") != pretrain:
        print("  the results file was made with another world model: its rows are not kept", flush=True)
        return []
    return [{"label": r["world_model"] or "none", "imagined_workers": 1 if r["world_model"] else 0, **r}
            for r in old["runs"]]  # fmt: skip


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per world model (None: without): seeds, mean real env steps to the target (over the seeds that reach it,
    and how many never do), mean final success; and each world model's steps over the runs without one."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r.get("label", r["world_model"] or "none") for r in rows):
        mine = [r for r in rows if r.get("label", r["world_model"] or "none") == name]
        out[name] = {"seeds": len(mine)}
        for suffix in ("", "_mean3"):
            reached = [r[f"real_steps_to_success_{TARGET}{suffix}"] for r in mine
                       if r.get(f"real_steps_to_success_{TARGET}{suffix}")]  # fmt: skip
            out[name][f"mean_real_steps_to_{TARGET}{suffix}"] = (
                round(sum(reached) / len(reached)) if reached else None
            )
            out[name][f"never_reached{suffix}"] = len(mine) - len(reached)
        out[name]["mean_success_final"] = round(sum(r["success_final"] for r in mine) / len(mine), 3)
        out[name]["mean_success_over_evals"] = round(
            sum(r["success_mean_over_evals"] for r in mine) / len(mine), 3
        )
    for suffix in ("", "_mean3"):
        base = out.get("none", {}).get(f"mean_real_steps_to_{TARGET}{suffix}")
        for name, s in out.items():
            mine = s[f"mean_real_steps_to_{TARGET}{suffix}"]
            ok = base and mine and name != "none"
            s[f"real_steps_over_without{suffix}"] = round(mine / base, 2) if ok else None
    return out


def step_cost(checkpoint: Path, n: int = 200) -> dict[str, float]:
    """Seconds per env step of the embedded env and of the world model, each alone, one env, one thread."""
    import numpy as np
    import torch

    from verl_async_vla.config.schema import EnvConfig, WorldModelConfig
    from verl_async_vla.envs.embedded import EmbeddedReachShard
    from verl_async_vla.world_models.shard import make_imagined_shard

    torch.set_num_threads(1)
    real = EmbeddedReachShard(1, 64, 40, seed=0)
    imagined = make_imagined_shard(
        EnvConfig(num_envs_per_worker=1, world_model=WorldModelConfig("embedded", str(checkpoint))), 0, 0
    )
    out = {}
    for name, shard in (("real", real), ("imagined", imagined)):
        steps, t0 = 0, time.perf_counter()
        shard.reset(np.arange(1))
        for _ in range(n):
            res = shard.step(np.arange(1), np.zeros((1, 4, 2), np.float32))
            steps += int(res.env_steps[0])
            if res.terminated[0] or res.truncated[0]:
                shard.reset(np.arange(1))
        out[f"{name}_s_per_env_step"] = round((time.perf_counter() - t0) / steps, 6)
    real.close()
    out["imagined_over_real"] = round(out["imagined_s_per_env_step"] / out["real_s_per_env_step"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--real-env-steps", type=int, default=None, help="budget of real env steps (default: the config's)"
    )
    ap.add_argument(
        "--imagined-workers",
        type=int,
        nargs="+",
        default=[1],
        help="imagined env workers beside the 2 real ones, one variant each (1: a third of the episodes)",
    )
    ap.add_argument("--skip-baseline", action="store_true",
                    help="do not run the runs without a world model (the results file keeps its earlier ones)")  # fmt: skip
    ap.add_argument("--pretrain-steps", type=int, default=3000)
    ap.add_argument(
        "--pretrain-episodes", type=int, default=3000, help="real episodes recorded for pre-training"
    )
    ap.add_argument("--out-dir", default=None, help="where the world model and run directories go (reused)")
    args = ap.parse_args()
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="vla_world_model_"))
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", *sys.argv])
    wm_dir = out / "world_model"
    ckpt = wm_dir / "world_model.safetensors"
    if not ckpt.is_file():
        from hydra import compose, initialize_config_dir

        from verl_async_vla.config import CONFIG_DIR
        from verl_async_vla.models.sft import ensure_sft_checkpoint
        from verl_async_vla.validate import validate

        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):  # the main job's config, seed 0
            cfg = compose(config_name="vla_trainer", overrides=[f"run_dir={out / 'sft_probe'}", "seed=0"])
        sft = ensure_sft_checkpoint(validate(cfg))
        subprocess.run([sys.executable, "-m", "verl_async_vla.world_models.pretrain", "--out", str(wm_dir),
                        "--steps", str(args.pretrain_steps), "--episodes", str(args.pretrain_episodes),
                        "--batch-size", "32", "--policy-checkpoint", str(sft),
                        "--policy-share", "0.5"], check=True)  # fmt: skip
    pretrain = json.loads((wm_dir / "pretrain.json").read_text())
    variants = {} if args.skip_baseline else {"none": (0, ["trainer=async_vla"])}
    for n in args.imagined_workers:  # 1 keeps the plain name: its run directories predate the knob
        variants["embedded" if n == 1 else f"embedded_w{n}"] = (n, [
            "trainer=async_vla", "env/world_model=embedded", f"env.world_model.checkpoint={ckpt}",
            f"env.world_model.workers={n}"])  # fmt: skip
    pretrain_kept = {k: pretrain[k] for k in ("command", "held_out_before", "held_out_after", "train_episodes",
                                              "steps", "batch_size", "train_seconds")}  # fmt: skip
    earlier = earlier_rows(pretrain_kept)
    cost = step_cost(ckpt)  # once, before the runs: the machine is quiet
    rows = []
    for seed in args.seeds:
        for name, (workers, overrides) in variants.items():
            r = learning_row(f"wm_{name}", overrides, seed, out, args.real_env_steps)
            summary = json.loads((out / f"wm_{name}_seed{seed}" / "summary.json").read_text())
            rows.append({
                "label": name,
                "world_model": None if name == "none" else "embedded",
                "imagined_workers": workers,
                "seed": seed,
                "real_env_steps": r["env_steps"],
                "imagined_env_steps": summary.get("imagined_env_steps", 0),
                f"real_steps_to_success_{TARGET}": steps_to(r["eval_curve"], TARGET),
                f"real_steps_to_success_{TARGET}_mean3": steps_to(r["eval_curve"], TARGET, window=3),
                "success_start": r["success_start"],
                "success_final": r["success_final"],
                "success_mean_over_evals": r["success_auc"],
                "wall_minutes": r["wall_minutes"],
                "curve": [[s, v] for s, v, _ in r["eval_curve"]],
                "commit": r["commit"],
                "date": r["date"],
                "command": command,
            })  # fmt: skip
            done = {(r["label"], r["seed"]) for r in rows}
            every = [r for r in earlier if (r["label"], r["seed"]) not in done] + rows
            write_result("world_model", {**run_provenance(every), "command": command, "summary": summarise(every),
                                         "pretrain": pretrain_kept, "step_cost": cost, "runs": every})  # fmt: skip
    print(json.dumps([{k: r[k] for k in ("label", "seed", f"real_steps_to_success_{TARGET}",
                                         "success_final")} for r in rows], indent=1))  # fmt: skip
    print("wrote", (ROOT / "docs" / "results" / "world_model.json").relative_to(ROOT))
    import report

    report.main()


if __name__ == "__main__":
    main()
