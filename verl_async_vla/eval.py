"""Rollout-only evaluation of a checkpoint on held-out starts, in-process (no Ray):

verl-async-vla-eval outputs/<run>/checkpoints/final.safetensors --episodes 200
verl-async-vla-eval <ckpt> --shuffle-instructions     # instruction ablation: should fall to chance
verl-async-vla-eval <ckpt> --env libero --set libero.suite=libero_spatial max_episode_steps=220 \
    --episodes 20 --strip strip.png                  # LIBERO held-out init states, image strip of one episode

The env config comes from the checkpoint's run directory (config.yaml) when there is one, else the defaults;
`--env` and `--set key=value ...` (keys of `env.`) override it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from verl_async_vla.config.schema import EnvConfig, ModelConfig
from verl_async_vla.envs import EnvShard, ShardObs, make_env_shard
from verl_async_vla.envs.base import HELD_OUT_SEED_BASE
from verl_async_vla.models import PolicyObs, VLAPolicy, build_policy
from verl_async_vla.models.checkpoint import load_checkpoint

ActFn = Callable[[EnvShard, np.ndarray, ShardObs], np.ndarray]


@dataclass
class EpisodeRecord:
    """One episode as seen by the policy, for the image strip."""

    frames: list[np.ndarray] = field(default_factory=list)
    instruction: str = ""
    success: bool = False


def play(
    shard: EnvShard,
    act: ActFn,
    episodes: int,
    seed_base: int = HELD_OUT_SEED_BASE,
    shuffle_instructions: bool = False,
    first: EpisodeRecord | None = None,
    env_ids: list[int] | None = None,
) -> list[bool]:
    """Run `episodes` episodes (in waves of the shard's size) with pinned seeds; returns per-episode success.
    With `shuffle_instructions` each env is given, for its whole episode, another env's instruction. `first`
    records the first episode (env 0 of the first wave): its frames, instruction and outcome. `env_ids`, when
    given, receives the env of each returned episode (a multi-task shard's task per episode)."""
    success: list[bool] = []
    rng = np.random.default_rng(0)
    for wave in range(-(-episodes // shard.num_envs)):
        ids = np.arange(min(shard.num_envs, episodes - wave * shard.num_envs))
        obs = shard.reset(ids, seeds=seed_base + wave * shard.num_envs + ids)
        told = dict(
            zip(
                ids.tolist(),
                rng.permutation(obs.instruction) if shuffle_instructions else obs.instruction,
                strict=True,
            )
        )
        while len(ids):
            recording = first is not None and wave == 0 and ids[0] == 0
            if recording:
                first.frames.append(obs.image[0].copy())
                first.instruction = told[0]
            obs.instruction = [told[i] for i in ids.tolist()]
            res = shard.step(ids, act(shard, ids, obs))
            done = res.terminated | res.truncated
            if recording and done[0]:
                first.success = bool(res.success[0])
            success += res.success[done].tolist()
            if env_ids is not None:
                env_ids += ids[done].tolist()
            keep = ~done
            ids, obs = ids[keep], res.obs
            obs.image, obs.state = obs.image[keep], obs.state[keep]
            obs.instruction = [t for t, k in zip(obs.instruction, keep, strict=True) if k]
    return success


def greedy(policy: VLAPolicy) -> ActFn:
    def act(_: EnvShard, ids: np.ndarray, obs: ShardObs) -> np.ndarray:
        with torch.no_grad():
            o = PolicyObs(torch.from_numpy(obs.image), torch.from_numpy(obs.state), list(obs.instruction))
            return policy.act(o, deterministic=True).actions.numpy()

    return act


def env_config_for(
    checkpoint: str, model_cfg: ModelConfig, env: str | None, overrides: list[str]
) -> EnvConfig:
    """The training run's env config (when the checkpoint sits in a run directory) with CLI overrides on top;
    without a run directory, the defaults at the model's image size."""
    from omegaconf import OmegaConf

    base = OmegaConf.merge(OmegaConf.structured(EnvConfig), {"image_size": model_cfg.image_size})
    run_cfg = Path(checkpoint).resolve().parent.parent / "config.yaml"
    if run_cfg.is_file():
        base = OmegaConf.merge(base, OmegaConf.load(run_cfg).get("env", {}))
    if env:
        base = OmegaConf.merge(base, {"name": env})
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
    except Exception as err:  # omegaconf raises several types for bad keys/values
        raise ValueError(f"--set {overrides}: {str(err).splitlines()[0]}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def write_strip(frames: list[np.ndarray], path: str, title: str, n: int = 8) -> str:
    """Up to `n` evenly spaced frames of one episode side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    fig, axes = plt.subplots(
        1, len(picks), figsize=(1.9 * len(picks) * frames[0].shape[1] / frames[0].shape[0], 2.3)
    )
    for ax, i in zip(np.atleast_1d(axes), picks, strict=True):
        ax.imshow(frames[i])
        ax.set_title(f"decision {i}", fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--env", default=None, help="env name (default: the run's, else embedded_reach)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="env config overrides")
    ap.add_argument("--num-envs", type=int, default=25, help="envs stepped as one batch")
    ap.add_argument("--strip", default=None, help="write an image strip of the first episode to this PNG")
    ap.add_argument(
        "--shuffle-instructions", action="store_true", help="give each env another env's instruction"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    model_cfg = ModelConfig(**ckpt["model_cfg"])
    policy = build_policy(model_cfg)
    policy.load_weights(ckpt["weights"])
    env_cfg = env_config_for(args.checkpoint, model_cfg, args.env, args.set)
    env_cfg.num_envs_per_worker, env_cfg.latency = min(args.num_envs, args.episodes), "none"
    shard = make_env_shard(env_cfg, seed=0)
    first, played_by = EpisodeRecord(), []
    try:
        success = play(shard, greedy(policy), args.episodes, shuffle_instructions=args.shuffle_instructions,
                       first=first, env_ids=played_by)  # fmt: skip
    finally:
        shard.close()
    result = {
        "checkpoint": args.checkpoint,
        "env": env_cfg.name,
        "episodes": len(success),
        "success_rate": float(np.mean(success)),
        "shuffled_instructions": args.shuffle_instructions,
        "policy_version": ckpt["meta"].get("policy_version"),
    }
    tasks = getattr(shard, "tasks", None)  # multi-task shards (LIBERO, MetaWorld): success per task as well
    if tasks is not None:
        by_task: dict[str, list[bool]] = {}
        for env, ok in zip(played_by, success, strict=True):
            by_task.setdefault(str(tasks[env]), []).append(ok)
        result["per_task"] = {
            t: {"episodes": len(v), "success_rate": float(np.mean(v))} for t, v in by_task.items()
        }
    if args.strip:
        outcome = "success" if first.success else "failure"
        title = f"{env_cfg.name}: '{first.instruction}' ({outcome})"
        result["strip"] = write_strip(first.frames, args.strip, title)
        result["strip_episode"] = {"instruction": first.instruction, "success": first.success,
                                   "decisions": len(first.frames)}  # fmt: skip
    print(json.dumps(result, indent=2))
    return result


def cli() -> None:
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        print(f"verl-async-vla-eval: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
