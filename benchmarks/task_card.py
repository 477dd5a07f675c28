"""Reference policies on the embedded task: what chance, the expert and the SFT start score on held-out layouts.

    python benchmarks/task_card.py

An instruction-blind policy can at best pick one cube: its success measures chance for this task.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from common import write_result

from verl_async_vla.config.schema import validate
from verl_async_vla.envs.embedded import EmbeddedReachShard
from verl_async_vla.models import PolicyObs, build_policy
from verl_async_vla.models.checkpoint import load_checkpoint
from verl_async_vla.models.sft import ensure_sft_checkpoint

EPISODES = 256


def play(shard: EmbeddedReachShard, act) -> float:
    success = []
    for wave in range(EPISODES // shard.num_envs):
        ids = np.arange(shard.num_envs)
        obs = shard.reset(ids, seeds=2_000_000_000 + wave * shard.num_envs + ids)
        while len(ids):
            res = shard.step(ids, act(shard, ids, obs))
            done = res.terminated | res.truncated
            success += res.success[done].tolist()
            keep = ~done
            ids, obs = ids[keep], res.obs
            obs.image, obs.state = obs.image[keep], obs.state[keep]
            obs.instruction = [t for t, k in zip(obs.instruction, keep, strict=True) if k]
    return float(np.mean(success))


def main() -> None:
    torch.set_num_threads(1)
    cfg = validate({})
    shard = EmbeddedReachShard(32, cfg.env.image_size, cfg.env.max_episode_steps, seed=0)
    rng = np.random.default_rng(0)
    policy = build_policy(cfg.model)
    ckpt = ensure_sft_checkpoint(cfg)
    policy.load_weights(load_checkpoint(ckpt)["weights"])

    def greedy(shuffle: bool):
        def act(_, ids, obs):
            texts = list(np.random.default_rng(len(ids)).permutation(obs.instruction)) if shuffle else obs.instruction
            with torch.no_grad():
                o = PolicyObs(torch.from_numpy(obs.image), torch.from_numpy(obs.state), texts)
                return policy.act(o, deterministic=True).actions.numpy()

        return act

    rows = [
        ("scripted expert (privileged)", lambda s, ids, o: s.expert_actions(ids, 4)),
        ("instruction-blind expert (always the red cube) = chance", lambda s, ids, o: s.expert_actions(ids, 4, True)),
        ("uniform random actions", lambda s, ids, o: rng.uniform(-1, 1, (len(ids), 4, 2)).astype(np.float32)),
        ("SFT start (greedy)", greedy(False)),
    ]
    policies = [{"policy": name, "success": play(shard, act), "episodes": EPISODES} for name, act in rows]
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
