"""MetaWorld on this machine, per MT10 task (needs the metaworld extra): what one env costs and whether the scripted
expert, planned a chunk ahead as the SFT stage uses it, solves the held-out variations.

    python benchmarks/metaworld_env.py            # ~3 minutes on 2 CPU cores

One env per task in this process: build time and resident memory added, a reset, no-op control steps without a
render, and one 64x64 camera frame with stock render settings and with `env.metaworld.fast_render`; then the expert
on `--episodes` held-out variations per task (chunks of 4, `max_episode_steps` 200). Writes
docs/results/metaworld_env.json and docs/metaworld_env.png (the ten tasks' first held-out frames), then regenerates
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import psutil
from common import ROOT, write_result

from verl_async_vla.config.schema import EnvConfig, MetaWorldConfig
from verl_async_vla.envs import make_env_shard
from verl_async_vla.envs.base import HELD_OUT_SEED_BASE
from verl_async_vla.envs.metaworld.tasks import MT10


def render_ms(shard, frames: int) -> float:
    t0 = time.perf_counter()
    for _ in range(frames):
        shard._render(0)
    return (time.perf_counter() - t0) / frames * 1e3


def measure(task: str, size: int, episodes: int, frames: int) -> tuple[dict, np.ndarray]:
    proc = psutil.Process()
    row: dict = {"task": task}
    for fast in (False, True):
        cfg = EnvConfig(name="metaworld", num_workers=1, num_envs_per_worker=1, image_size=size,
                        max_episode_steps=200, metaworld=MetaWorldConfig(suite=task, fast_render=fast))  # fmt: skip
        rss0, t0 = proc.memory_info().rss, time.perf_counter()
        shard = make_env_shard(cfg, seed=0)
        row[f"{'fast' if fast else 'stock'}_build_s"] = round(time.perf_counter() - t0, 2)
        ids = np.array([0])
        obs = shard.reset(ids, np.array([HELD_OUT_SEED_BASE]))
        row[f"{'fast' if fast else 'stock'}_render_ms"] = round(render_ms(shard, frames), 2)
        if not fast:
            shard.close()
            continue
        row["rss_mb"] = round((proc.memory_info().rss - rss0) / 2**20, 1)
        frame = obs.image[0]
        t0 = time.perf_counter()
        for _ in range(5):
            shard.reset(ids, np.array([HELD_OUT_SEED_BASE]))
        row["reset_ms"] = round((time.perf_counter() - t0) / 5 * 1e3, 1)
        env = shard.envs[0]
        t0 = time.perf_counter()
        for _ in range(100):
            env.step(np.zeros(4, np.float32))
        row["physics_step_ms"] = round((time.perf_counter() - t0) / 100 * 1e3, 3)
        wins, lengths = 0, []
        for k in range(episodes):
            shard.reset(ids, np.array([HELD_OUT_SEED_BASE + k]))
            steps, done = 0, False
            while not done:
                res = shard.step(ids, shard.expert_actions(ids, 4))
                steps += int(res.env_steps[0])
                done = bool(res.terminated[0] or res.truncated[0])
            wins += int(res.success[0])
            lengths.append(steps)
        row.update(
            {"expert_success": wins / episodes, "expert_steps_mean": round(float(np.mean(lengths)), 1)}
        )
        shard.close()
    print(f"  {task:26s} render {row['stock_render_ms']:6.1f} -> {row['fast_render_ms']:5.1f} ms, physics "
          f"{row['physics_step_ms']:.2f} ms/step, reset {row['reset_ms']:.0f} ms, {row['rss_mb']:.0f} MB, expert "
          f"{row['expert_success']:.2f} in {row['expert_steps_mean']:.0f} steps", flush=True)  # fmt: skip
    return row, frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=10, help="held-out variations per task for the expert")
    ap.add_argument("--frames", type=int, default=20, help="frames timed per render setting")
    ap.add_argument("--image-size", type=int, default=64)
    args = ap.parse_args()
    rows, frames = [], []
    for task in MT10:
        row, frame = measure(task, args.image_size, args.episodes, args.frames)
        rows.append(row)
        frames.append(frame)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 5, figsize=(10, 4.4))
    for ax, task, frame in zip(axes.flat, MT10, frames, strict=True):
        ax.imshow(frame)
        ax.set_title(task, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "metaworld_env.png", dpi=100)
    write_result("metaworld_env", {"image_size": args.image_size, "camera": MetaWorldConfig().camera,
                                   "expert_episodes_per_task": args.episodes, "rows": rows,
                                   "images": "metaworld_env.png"})  # fmt: skip
    import report

    report.main()


if __name__ == "__main__":
    main()
