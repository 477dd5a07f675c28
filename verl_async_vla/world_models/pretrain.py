"""Record real episodes, pre-train a world model on them, report its prediction error on held-out episodes.

    python -m verl_async_vla.world_models.pretrain --out ~/.cache/verl_async_vla/world_model   # embedded task

Writes `<out>/episodes.npz` (reused when present: the recording is the slow part), `<out>/world_model.safetensors`
and `<out>/pretrain.json`: the held-out one-step losses before and after training, and the open-loop error (the
model fed its own predictions along a real episode's actions) at several horizons: what compounding costs.

The training loss unrolls `--unroll` decisions (the second and later from the model's own predicted frame and
state), so that the model learns to continue from its own outputs, as it must in an imagined episode.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verl_async_vla.world_models.base import WorldState
from verl_async_vla.world_models.data import WorldModelData
from verl_async_vla.world_models.embedded import SUCCESS_DIST, EmbeddedWorldModel, prediction_loss
from verl_async_vla.world_models.registry import save_world_model

log = logging.getLogger(__name__)
HORIZONS = (1, 3, 5, 10)  # decisions of open-loop imagination at which the error is reported


def unrolled_loss(model: EmbeddedWorldModel, data: WorldModelData, frames: np.ndarray, decisions: np.ndarray,
                  steps: int) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """Loss of `steps` chained predictions from each start; a chain stops at its episode's end (rows whose
    episode ended are left out of the later steps' terms)."""
    total, report = None, {}
    image = state = None
    live = np.ones(len(frames), bool)
    instr = data.instruction[data_episode(data, frames)].tolist()
    for k in range(steps):
        f, d = frames + k, decisions + k
        if k > 0:  # the next decision must exist in the same episode
            live &= data_decision_ok(data, frames, k)
            if not live.any():
                break
        rows = np.flatnonzero(live)
        batch = model.to_batch(data.frames[f[rows]], data.states[f[rows]], data.actions[d[rows]],
                               [instr[i] for i in rows], data.frames[f[rows] + 1], data.states[f[rows] + 1],
                               data.reward[d[rows]], data.success[d[rows]], data.goal_distance[f[rows]],
                               data.goal_distance[f[rows] + 1])  # fmt: skip
        if k > 0:  # continue from the model's own prediction
            batch["image"], batch["state"] = image[rows], state[rows]
        pred = model(batch["image"], batch["state"], batch["actions"], batch["tokens"])
        loss, parts = prediction_loss(pred, batch)
        total = loss if total is None else total + loss
        report = parts if k == 0 else report
        full_img = torch.zeros(len(frames), *pred["image"].shape[1:])
        full_state = torch.zeros(len(frames), pred["state"].shape[1])
        full_img[rows], full_state[rows] = pred["image"], pred["state"]
        image, state = full_img, full_state
    return total, report


def data_episode(data: WorldModelData, frames: np.ndarray) -> np.ndarray:
    """The episode each frame index belongs to."""
    return np.searchsorted(data.ep_start, frames, side="right") - 1


def data_decision_ok(data: WorldModelData, frames: np.ndarray, k: int) -> np.ndarray:
    """Whether decision `k` after the one at `frames` exists in the same episode."""
    e = data_episode(data, frames)
    return frames - data.ep_start[e] + k < data.ep_len[e]


@torch.no_grad()
def held_out_report(model: EmbeddedWorldModel, data: WorldModelData, episodes: np.ndarray) -> dict[str, Any]:
    """One-step losses over every held-out decision, and the open-loop error along held-out episodes."""
    model.eval()
    frames, decisions, owner = data.transitions(episodes)
    parts: list[dict[str, float]] = []
    pred_succ = []
    for s in range(0, len(frames), 256):
        f, d = frames[s : s + 256], decisions[s : s + 256]
        batch = model.to_batch(data.frames[f], data.states[f], data.actions[d], data.instruction[owner[s : s + 256]]
                               .tolist(), data.frames[f + 1], data.states[f + 1], data.reward[d], data.success[d],
                               data.goal_distance[f], data.goal_distance[f + 1])  # fmt: skip
        pred = model(batch["image"], batch["state"], batch["actions"], batch["tokens"])
        parts.append(prediction_loss(pred, batch)[1] | {"n": len(f)})
        pred_succ.append(np.stack([pred["success"].numpy(), (pred["success_logit"] > 0).numpy(),
                                   (pred["next_potential"] < SUCCESS_DIST).numpy()], axis=1))  # fmt: skip
    n = sum(p["n"] for p in parts)
    one_step = {k: sum(p[k] * p["n"] for p in parts) / n for k in parts[0] if k != "n"}
    # success detection where it matters: recall on the decisions that really succeed; the rule the model uses
    # (either signal) and each of its two signals alone (the logit, the potential within SUCCESS_DIST)
    succ = data.success[decisions]
    pred_succ = np.concatenate(pred_succ)
    for col, suffix in enumerate(("", "_logit", "_potential")):
        one_step[f"success_recall{suffix}"] = float(pred_succ[succ, col].mean()) if succ.any() else None
        one_step[f"success_false_positive_rate{suffix}"] = (
            float(pred_succ[~succ, col].mean()) if (~succ).any() else None
        )
    # open loop: from each held-out episode's first frame, its real actions, the model's own frames (and rewards)
    open_loop: dict[int, list[tuple[float, float, float]]] = {h: [] for h in HORIZONS}
    for e in episodes.tolist():
        f0, d0, T = int(data.ep_start[e]), int(data.ep_start[e] - e), int(data.ep_len[e])
        image, state, ret = data.frames[f0 : f0 + 1], data.states[f0 : f0 + 1], 0.0
        for t in range(min(T, max(HORIZONS))):
            pred = model.predict(
                WorldState(image, state, [str(data.instruction[e])]), data.actions[d0 + t : d0 + t + 1]
            )
            image, state, ret = pred.image, pred.state, ret + float(pred.reward[0])
            if t + 1 in open_loop:
                real_img = data.frames[f0 + t + 1].astype(np.float32) / 255
                open_loop[t + 1].append((float(((image[0].astype(np.float32) / 255 - real_img) ** 2).mean()),
                                         float(np.abs(state[0, :2] - data.states[f0 + t + 1, :2]).mean()),
                                         abs(ret - float(data.reward[d0 : d0 + t + 1].sum()))))  # fmt: skip
    model.train()
    return {
        "one_step": {k: (round(v, 6) if v is not None else None) for k, v in one_step.items()},
        "open_loop": {
            str(h): {
                "episodes": len(v),
                "image_mse": round(float(np.mean([a for a, _, _ in v])), 6),
                "ee_xy_abs_err": round(float(np.mean([b for _, b, _ in v])), 4),
                "return_abs_err": round(
                    float(np.mean([c for _, _, c in v])), 4
                ),  # imagined vs real return so far
            }
            for h, v in open_loop.items()
            if v
        },  # fmt: skip
        "decisions": int(n),
    }


def pretrain(data: WorldModelData, steps: int = 3000, batch_size: int = 64, lr: float = 1e-3, unroll: int = 2,
             seed: int = 0, log_every: int = 250, model: EmbeddedWorldModel | None = None
             ) -> tuple[EmbeddedWorldModel, dict[str, Any]]:  # fmt: skip
    """Fit `model` (a new embedded world model if None) on the training episodes of `data`; -> (model, report)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    h, w, _ = data.frames.shape[1:]
    if model is None:
        model = EmbeddedWorldModel(image_size=h, state_dim=data.states.shape[1], action_dim=data.actions.shape[2],
                                   chunk=data.actions.shape[1])  # fmt: skip
    train_eps, held_eps = data.split()
    frames, decisions, _ = data.transitions(train_eps)
    before = held_out_report(model, data, held_eps)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    t0, curve = time.monotonic(), []
    for step in range(1, steps + 1):
        idx = rng.integers(len(frames), size=batch_size)
        loss, parts = unrolled_loss(model, data, frames[idx], decisions[idx], unroll)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            curve.append({"step": step, **{k: round(v, 6) for k, v in parts.items()}})
            log.info("world model step %d/%d: loss %.4f (changed-pixel mse %.4f, potential mae %.3f m, reward mae "
                     "%.3f)", step, steps, parts["loss"], parts["image_changed_mse"], parts["potential_mae"],
                     parts["reward_mae"])  # fmt: skip
    model.version += 1
    train_s = time.monotonic() - t0
    after = held_out_report(model, data, held_eps)
    return model, {"train_episodes": len(train_eps), "held_out_episodes": len(held_eps),
                   "train_decisions": len(frames), "steps": steps, "batch_size": batch_size, "unroll": unroll,
                   "lr": lr, "train_seconds": round(train_s, 1), "held_out_before": before,
                   "held_out_after": after, "curve": curve}  # fmt: skip


def build_dataset(episodes: int, seed: int, image_size: int = 64, cubes: int = 3, max_episode_steps: int = 40,
                  chunk: int = 4, policy_checkpoint: str | None = None, policy_share: float = 0.0,
                  envs: int = 8) -> WorldModelData:  # fmt: skip
    """Real episodes of the embedded task on training layouts (world_models/data.py)."""
    from verl_async_vla.envs.embedded import EmbeddedReachShard
    from verl_async_vla.world_models.data import record_episodes

    shard = EmbeddedReachShard(envs, image_size, max_episode_steps, seed=seed, cubes=cubes)
    try:
        policy = load_chunk_actor(policy_checkpoint) if policy_checkpoint else None
        return record_episodes(shard, episodes, chunk, np.random.default_rng(seed), policy, policy_share)
    finally:
        shard.close()


def load_chunk_actor(path: str):
    """A policy checkpoint as a sampling chunk actor (numpy in, numpy out)."""
    from verl_async_vla.config.schema import ModelConfig
    from verl_async_vla.models import PolicyObs, build_policy
    from verl_async_vla.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    policy = build_policy(ModelConfig(**ckpt["model_cfg"])).eval()
    policy.load_state_dict(ckpt["weights"])

    @torch.no_grad()
    def act(image: np.ndarray, state: np.ndarray, instruction: list[str]) -> np.ndarray:
        out = policy.act(PolicyObs(torch.from_numpy(image), torch.from_numpy(state), instruction))
        return out.actions.numpy()

    return act


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out", required=True, help="directory for episodes.npz, world_model.safetensors, pretrain.json"
    )
    ap.add_argument("--episodes", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--unroll", type=int, default=2)
    ap.add_argument(
        "--seed", type=int, default=0, help="seeds the recording's layouts (training streams) and the fit"
    )
    ap.add_argument("--cubes", type=int, default=3)
    ap.add_argument(
        "--policy-checkpoint", default=None, help="roll this policy out for a share of the episodes"
    )
    ap.add_argument("--policy-share", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out).expanduser()
    path = out / "episodes.npz"
    if path.is_file():
        data = WorldModelData.load(path)
        log.info("reusing %s (%d episodes)", path, data.episodes)
    else:
        t0 = time.monotonic()
        data = build_dataset(args.episodes, args.seed, cubes=args.cubes, policy_checkpoint=args.policy_checkpoint,
                             policy_share=args.policy_share)  # fmt: skip
        data.save(path)
        log.info("recorded %s in %.0f s", path, time.monotonic() - t0)
    model, report = pretrain(data, args.steps, args.batch_size, args.lr, args.unroll, args.seed)
    ckpt = save_world_model(out / "world_model.safetensors", model, {"dataset": str(path), "seed": args.seed})
    args_text = " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": "python -m verl_async_vla.world_models.pretrain " + args_text, **report,
              "checkpoint": str(ckpt)}  # fmt: skip
    (out / "pretrain.json").write_text(json.dumps(report, indent=1))
    b, a = report["held_out_before"], report["held_out_after"]
    print(f"held-out one-step loss {b['one_step']['loss']:.4f} -> {a['one_step']['loss']:.4f}; changed-pixel mse "
          f"{b['one_step']['image_changed_mse']:.4f} -> {a['one_step']['image_changed_mse']:.4f}; reward mae "
          f"{a['one_step']['reward_mae']:.3f}; success recall {a['one_step']['success_recall']}; open loop "
          f"{a['open_loop']}")  # fmt: skip


if __name__ == "__main__":
    main()
