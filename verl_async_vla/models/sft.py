"""The SFT start, as in real VLA RL: a scripted expert demonstrates, a short behaviour-cloning run produces the
starting checkpoint. It is kept deliberately weak (few demos, few steps) so that the gain measured later is RL's.

The checkpoint is cached on disk under a hash of everything that determines it, and rebuilt when missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from verl_async_vla.config.schema import RunConfig
from verl_async_vla.envs import EnvShard, env_tasks, make_env_shard
from verl_async_vla.models import PolicyObs, build_policy
from verl_async_vla.models.checkpoint import FLOW_SHAPE_KEYS, save_checkpoint

log = logging.getLogger(__name__)


def sft_cache_path(cfg: RunConfig) -> Path:
    # flow: the SFT weights do not depend on the RL method, its noise or K (flow matching trains the velocity at
    # every t), so flow_sde and flow_noise runs of a seed start from the same SFT checkpoint
    key = {
        # what determines the weights only: where they come from and emulation knobs do not (and adding such a
        # field must not invalidate existing caches)
        "model": {
            k: v
            for k, v in dataclasses.asdict(cfg.model).items()
            if k not in ("checkpoint", "init", "cost_profile", "emulated_gpus", "device")
            and (cfg.model.name == "hf_vla" or not k.startswith("hf_"))
            and (k in FLOW_SHAPE_KEYS if k.startswith("flow_") else True)
            and (cfg.model.action_head == "flow" or not k.startswith("flow_"))
        },
        "sft": {k: v for k, v in dataclasses.asdict(cfg.sft).items() if k != "cache_dir"},
        # the default 3 cubes add nothing, so caches made before `env.reach` existed stay valid
        "env": [cfg.env.name, cfg.env.image_size, cfg.env.max_episode_steps]
        + ([cfg.env.reach.cubes] if cfg.env.name == "embedded_reach" and cfg.env.reach.cubes != 3 else [])
        + ([dataclasses.asdict(cfg.env.metaworld)] if cfg.env.name == "metaworld" else []),
        "seed": cfg.seed,
        "v": 1,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(os.path.expanduser(cfg.sft.cache_dir)) / f"sft_{cfg.model.name}_{digest}.safetensors"


def collect_demos(shard: EnvShard, episodes: int, chunk: int) -> tuple[PolicyObs, torch.Tensor]:
    """Roll out the shard's scripted expert; returns every decision's observation and expert chunk."""
    if not hasattr(shard, "expert_actions"):
        raise ValueError(
            f"env {type(shard).__name__} has no scripted expert for the SFT start; pass model.checkpoint=<path to "
            "a policy checkpoint> instead."
        )
    images, states, texts, chunks = [], [], [], []
    n = shard.num_envs
    for _ in range(0, episodes, n):
        ids = np.arange(n)
        obs = shard.reset(ids)
        while len(ids):
            act = shard.expert_actions(ids, chunk)
            images.append(obs.image)
            states.append(obs.state)
            texts += obs.instruction
            chunks.append(act)
            res = shard.step(ids, act)
            keep = ~(res.terminated | res.truncated)
            ids = ids[keep]
            obs = res.obs
            obs.image, obs.state = obs.image[keep], obs.state[keep]
            obs.instruction = [t for t, k in zip(obs.instruction, keep, strict=True) if k]
    obs = PolicyObs(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(states)), texts)
    return obs, torch.from_numpy(np.concatenate(chunks))


DEMO_ENVS = 8  # envs per demonstration shard


def demonstrate(cfg: RunConfig) -> tuple[PolicyObs, torch.Tensor]:
    """`sft.demo_episodes` expert episodes. A multi-task env spreads its tasks round-robin over envs, so the episodes
    are split over as many shards (ranks) as it takes for every task to be demonstrated."""
    ranks = max(1, math.ceil(len(env_tasks(cfg.env)) / DEMO_ENVS))
    # demonstrations pay no injected latency (it models simulator time, not the task)
    env = dataclasses.replace(cfg.env, num_envs_per_worker=DEMO_ENVS, latency="none")
    parts = []
    for rank in range(ranks):
        shard = make_env_shard(env, seed=10_000 + cfg.seed, rank=rank)
        parts.append(collect_demos(shard, math.ceil(cfg.sft.demo_episodes / ranks), cfg.model.chunk))
        shard.close()
    obs = PolicyObs(torch.cat([o.image for o, _ in parts]), torch.cat([o.state for o, _ in parts]),
                    [t for o, _ in parts for t in o.instruction])  # fmt: skip
    return obs, torch.cat([a for _, a in parts])


def train_sft(cfg: RunConfig) -> Path:
    torch.manual_seed(cfg.seed)
    obs, actions = demonstrate(cfg)
    policy = build_policy(cfg.model)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.sft.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.sft.steps):
        idx = torch.randint(0, len(obs), (cfg.sft.batch_size,), generator=gen)
        batch = PolicyObs(obs.image[idx], obs.state[idx], [obs.instruction[i] for i in idx.tolist()])
        loss = policy.bc_loss(batch, actions[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    log.info("SFT: %d demo decisions, %d BC steps, final loss %.4f", len(obs), cfg.sft.steps, loss.item())
    return save_checkpoint(
        sft_cache_path(cfg), policy, cfg.model, stage="sft", demo_decisions=len(obs), bc_loss=loss.item()
    )


def ensure_sft_checkpoint(cfg: RunConfig) -> Path:
    path = sft_cache_path(cfg)
    return path if path.is_file() else train_sft(cfg)


def start_checkpoint(cfg: RunConfig) -> Path:
    """The weights RL starts from: `model.checkpoint` if given, else the SFT start, else (`model.init=scratch`,
    for envs without a scripted expert such as LIBERO) seeded random weights saved into the run directory."""
    if cfg.model.checkpoint:
        return Path(cfg.model.checkpoint)
    if cfg.model.init == "sft":
        return ensure_sft_checkpoint(cfg)
    torch.manual_seed(cfg.seed)
    return save_checkpoint(
        Path(cfg.run_dir) / "checkpoints" / "init.safetensors",
        build_policy(cfg.model),
        cfg.model,
        stage="scratch",
    )
