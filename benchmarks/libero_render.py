"""LIBERO rendering cost on this machine: stock render settings vs `env.libero.fast_render` (needs the libero extra).

    python benchmarks/libero_render.py            # ~3 minutes on 2 CPU cores

One env of libero_spatial task 0 in this process: time a reset (soft reset + init state + 10 settle steps) and
no-op steps, for each camera setup, with stock and fast settings. Writes docs/results/libero_render.json and
docs/libero_render.png (the same init state rendered both ways), then regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import ROOT, write_result

from verl_async_vla.config.schema import EnvConfig, LiberoConfig
from verl_async_vla.envs import make_env_shard
from verl_async_vla.envs.base import HELD_OUT_SEED_BASE

SETUPS = [(["agentview"], 64), (["agentview", "wrist"], 128)]


def measure(cameras: list[str], size: int, fast: bool, steps: int) -> tuple[dict, np.ndarray]:
    cfg = EnvConfig(name="libero", num_workers=1, num_envs_per_worker=1, image_size=size, max_episode_steps=220,
                    libero=LiberoConfig(task_ids=[0], cameras=cameras, fast_render=fast))  # fmt: skip
    t0 = time.perf_counter()
    shard = make_env_shard(cfg, seed=0)
    build_s = time.perf_counter() - t0
    ids, seed = np.array([0]), np.array([HELD_OUT_SEED_BASE])
    t0 = time.perf_counter()
    for _ in range(3):
        obs = shard.reset(ids, seed)
    reset_s = (time.perf_counter() - t0) / 3
    noop = np.zeros((1, steps, 7))
    noop[..., -1] = -1.0
    t0 = time.perf_counter()
    shard.step(ids, noop)
    steps_per_s = steps / (time.perf_counter() - t0)
    shard.close()
    return {"build_s": build_s, "reset_s": reset_s, "steps_per_s": steps_per_s}, obs.image[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    rows, frames = [], {}
    for cameras, size in SETUPS:
        row: dict = {"cameras": cameras, "image_size": size}
        for fast in (False, True):
            m, frames[(size, fast)] = measure(cameras, size, fast, args.steps)
            tag = "fast" if fast else "stock"
            row.update({f"{tag}_{k}": round(v, 3) for k, v in m.items()})
            print(f"  {'+'.join(cameras):18s} {size:4d}px {tag:5s}: {m['steps_per_s']:6.1f} steps/s, "
                  f"reset {m['reset_s']:.2f} s, build {m['build_s']:.1f} s", flush=True)  # fmt: skip
        rows.append(row)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = SETUPS[-1][1]
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
    for ax, fast in zip(axes, (False, True), strict=True):
        ax.imshow(frames[(size, fast)])
        ax.set_title(f"{'fast_render' if fast else 'stock'} ({size}px, agent view | wrist)", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "libero_render.png", dpi=110)
    write_result("libero_render", {"steps_timed": args.steps, "rows": rows, "images": "libero_render.png"})
    import report

    report.main()


if __name__ == "__main__":
    main()
