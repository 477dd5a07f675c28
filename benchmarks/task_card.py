"""Reference policies on the embedded task: what chance, the expert and the SFT start score on held-out layouts.

    python benchmarks/task_card.py

An instruction-blind policy can at best pick one cube: its success measures chance for this task.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from common import write_result

from verl_async_vla.envs.embedded import EmbeddedReachShard
from verl_async_vla.eval import greedy, play
from verl_async_vla.models import build_policy
from verl_async_vla.models.checkpoint import load_checkpoint
from verl_async_vla.models.sft import ensure_sft_checkpoint
from verl_async_vla.validate import validate

EPISODES = 256
SEED_BASE = 2_000_000_000  # a range neither training nor periodic evaluation draws


def main() -> None:
    torch.set_num_threads(1)
    cfg = validate({})
    shard = EmbeddedReachShard(32, cfg.env.image_size, cfg.env.max_episode_steps, seed=0)
    rng = np.random.default_rng(0)
    policy = build_policy(cfg.model)
    ckpt = ensure_sft_checkpoint(cfg)
    policy.load_weights(load_checkpoint(ckpt)["weights"])

    rows = [
        ("scripted expert (privileged)", lambda s, ids, o: s.expert_actions(ids, 4)),
        (
            "instruction-blind expert (always the red cube) = chance",
            lambda s, ids, o: s.expert_actions(ids, 4, True),
        ),
        ("uniform random actions", lambda s, ids, o: rng.uniform(-1, 1, (len(ids), 4, 2)).astype(np.float32)),
        ("SFT start (greedy)", greedy(policy)),
    ]
    shuffled = ("SFT start (greedy), each env told another env's instruction", greedy(policy))
    policies = [
        {
            "policy": name,
            "success": float(np.mean(play(shard, act, EPISODES, SEED_BASE))),
            "episodes": EPISODES,
        }
        for name, act in rows
    ]
    policies.append(
        {
            "policy": shuffled[0],
            "success": float(
                np.mean(play(shard, shuffled[1], EPISODES, SEED_BASE, shuffle_instructions=True))
            ),
            "episodes": EPISODES,
        }
    )
    for p in policies:
        print(f"{p['policy']:<60} {p['success']:.3f}")
    write_result(
        "embedded_task_card",
        {
            "policies": policies,
            "sft": dataclasses.asdict(cfg.sft) | {"checkpoint": ckpt.name},
            "note": "Chance is what a policy that ignores the instruction can reach by committing to one cube; "
            "touching the named cube on the way to another counts as success, so chance is above 1/3.",
        },
    )
    import report

    report.main()


if __name__ == "__main__":
    main()
