"""Evaluate a checkpoint on held-out layouts, in-process (no Ray):

verl-async-vla-eval outputs/<run>/checkpoints/final.pt --episodes 200
python -m verl_async_vla.eval <ckpt> --shuffle-instructions   # instruction ablation: should fall to chance
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np
import torch

from verl_async_vla.config.schema import EnvConfig, ModelConfig
from verl_async_vla.envs import EnvShard, ShardObs, make_env_shard
from verl_async_vla.envs.base import HELD_OUT_SEED_BASE
from verl_async_vla.models import PolicyObs, VLAPolicy, build_policy
from verl_async_vla.models.checkpoint import load_checkpoint

ActFn = Callable[[EnvShard, np.ndarray, ShardObs], np.ndarray]


def play(
    shard: EnvShard,
    act: ActFn,
    episodes: int,
    seed_base: int = HELD_OUT_SEED_BASE,
    shuffle_instructions: bool = False,
) -> list[bool]:
    """Run `episodes` episodes (in waves of the shard's size) with pinned seeds; returns per-episode success.
    With `shuffle_instructions` each env is given, for its whole episode, another env's instruction."""
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
            obs.instruction = [told[i] for i in ids.tolist()]
            res = shard.step(ids, act(shard, ids, obs))
            done = res.terminated | res.truncated
            success += res.success[done].tolist()
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--env", default="embedded_reach")
    ap.add_argument("--num-envs", type=int, default=25)
    ap.add_argument("--max-episode-steps", type=int, default=40)
    ap.add_argument(
        "--shuffle-instructions", action="store_true", help="give each env another env's instruction"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    model_cfg = ModelConfig(**ckpt["model_cfg"])
    policy = build_policy(model_cfg)
    policy.load_weights(ckpt["weights"])
    env_cfg = EnvConfig(args.env, 1, args.num_envs, model_cfg.image_size, args.max_episode_steps)
    shard = make_env_shard(env_cfg, seed=0)
    success = play(shard, greedy(policy), args.episodes, shuffle_instructions=args.shuffle_instructions)
    shard.close()
    result = {
        "checkpoint": args.checkpoint,
        "episodes": len(success),
        "success_rate": float(np.mean(success)),
        "shuffled_instructions": args.shuffle_instructions,
        "policy_version": ckpt["meta"].get("policy_version"),
    }
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
