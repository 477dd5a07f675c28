"""Calibrate a workload's stages, each alone, and write the throughput bounds every trainer is judged by:

    python -m verl_async_vla.calibrate run_dir=/tmp/cal env.latency=longtail env.num_workers=4 ...

Takes the same overrides as the main job (the trainer's own keys are irrelevant: no trainer runs). Spawns the
same worker groups a run uses, records one training batch by playing episodes in lockstep with the start policy,
then times each stage with nothing else running, and the observations' serialisation (telemetry/calibration.py) and writes `run_dir/calibration.json`:
the raw measurements, each stage's capacity and CPU per env step, and the disaggregated and machine bounds in env
steps trained per second. benchmarks/throughput.py runs it once per workload, before the trainers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import numpy as np
import ray
import torch
from omegaconf import DictConfig
from verl import DataProto

from verl_async_vla.config import CONFIG_DIR
from verl_async_vla.config.schema import RunConfig
from verl_async_vla.sampling.lockstep import play_episodes
from verl_async_vla.sampling.trajectory import Episode, episodes_to_proto
from verl_async_vla.telemetry.calibration import bounds_from_measurements, serialisation_cost
from verl_async_vla.telemetry.run_log import source_commit
from verl_async_vla.validate import validate

if TYPE_CHECKING:  # the worker classes import lazily: this module is also the calibration CLI's entry
    from verl_async_vla.controller.workers import WorkerSet

log = logging.getLogger(__name__)

ENV_SECONDS = 10.0  # each env's free run: several episodes, long-tail resets included
INFER_SECONDS = 1.5  # per batch size
ACTOR_UPDATES = 5  # each timed apart; the fastest sets the capacity (telemetry/calibration.py)


def record_batch(workers: WorkerSet, episodes_wanted: int) -> list[Episode]:
    """Episodes of the start policy, played in lockstep (the sync trainer's own loop), until a batch is full."""
    episodes: list[Episode] = []
    while len(episodes) < episodes_wanted:
        wave, _, _ = play_episodes(workers.env, workers.rollout)
        episodes += wave
    return episodes[:episodes_wanted]


def observations(episodes: list[Episode]) -> DataProto:
    """Every decision's observation of the recorded episodes, as inference requests."""
    rows = [(im, st, e.instruction) for e in episodes for im, st in zip(e.image, e.state, strict=True)]
    return DataProto.from_dict(
        tensors={"image": torch.from_numpy(np.stack([r[0] for r in rows])),
                 "state": torch.from_numpy(np.stack([r[1] for r in rows]))},
        non_tensors={"instruction": np.array([r[2] for r in rows], dtype=object)},
    )  # fmt: skip


def transport(episodes: list[Episode], placement: str, rows: int = 256) -> dict[str, float]:
    """The serialisation of (up to `rows` of) the recorded observations, and how many times each must cross: to the
    rollout worker and, in its episode, to the actor (once when they share a process: `trainer.placement=colocated`).
    The cost per row is what counts, so a sample of the batch suffices (its memory stays small at 224 px)."""
    obs = [(im, st, e.instruction) for e in episodes for im, st in zip(e.image, e.state, strict=True)][:rows]
    payload = {"image": np.stack([o[0] for o in obs]), "state": np.stack([o[1] for o in obs]),
               "instruction": [o[2] for o in obs]}  # fmt: skip
    crossings = 1.0 if placement == "colocated" else 2.0
    return {"rows": float(len(obs)), "crossings": crossings, **serialisation_cost(payload)}


def inference_batch_sizes(num_envs: int, rollout_workers: int) -> list[int]:
    """Powers of two up to the most requests one rollout worker can have at once (every env waiting on it)."""
    most = max(1, math.ceil(num_envs / rollout_workers))
    return sorted({*(2**i for i in range(int(math.log2(most)) + 1)), most})


def calibrate(cfg: RunConfig) -> dict[str, Any]:
    from verl_async_vla.controller.workers import spawn_workers

    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, eval_episodes=0))
    workers = spawn_workers(cfg)
    try:
        workers.publish()
        episodes = record_batch(workers, cfg.algo.train_batch_episodes)
        horizon = math.ceil(cfg.env.max_episode_steps / cfg.model.chunk)
        env_steps = sum(e.env_steps for e in episodes)
        per_decision = env_steps / sum(len(e) for e in episodes)
        episode_len = max(1, round(env_steps / len(episodes)))
        log.info("calibration: %d recorded episodes, %.1f env steps each, %.2f env steps per decision",
                 len(episodes), env_steps / len(episodes), per_decision)  # fmt: skip
        env = ray.get(
            [h.calibrate.remote(ENV_SECONDS, cfg.model.chunk, episode_len) for h in workers.env.handles]
        )
        num_envs = cfg.env.num_workers * cfg.env.num_envs_per_worker
        sizes = inference_batch_sizes(num_envs, cfg.trainer.rollout_workers)
        obs = observations(episodes)
        rollout = ray.get([h.calibrate.remote(obs, sizes, INFER_SECONDS) for h in workers.rollout.handles])
        actor = workers.actor.handles[0].calibrate.remote(episodes_to_proto(episodes, horizon), ACTOR_UPDATES)
        actor = ray.get(actor)
    finally:
        workers.release()
    measured = {
        "cores": os.cpu_count() or 1,
        "env_steps_per_decision": per_decision,
        "episode_env_steps": env_steps / len(episodes),
        "env": {k: sum(e[k] for e in env) for k in ("env_steps", "env_steps_per_s", "cpu_s")},
        # workers measured at once: per batch size, rows and CPU summed, wall of the slowest
        "rollout": {"workers": len(rollout), "batches": [
            {"batch": size, "rows": sum(r[i]["rows"] for r in rollout) / len(rollout),
             "wall_s": max(r[i]["wall_s"] for r in rollout),
             "cpu_s": sum(r[i]["cpu_s"] for r in rollout) / len(rollout)} for i, size in enumerate(sizes)]},
        "actor": actor,
        "transport": transport(episodes, cfg.trainer.placement),
    }  # fmt: skip
    return {"measured": measured, "bounds": bounds_from_measurements(measured), "commit": source_commit(),
            "seconds": {"env": ENV_SECONDS, "inference_per_batch": INFER_SECONDS, "actor_updates": ACTOR_UPDATES}}  # fmt: skip


@hydra.main(config_path=CONFIG_DIR, config_name="vla_trainer", version_base=None)
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run_cfg = validate(cfg)
    try:
        result = calibrate(run_cfg)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    out = Path(run_cfg.run_dir) / "calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    b = result["bounds"]
    print(f"bounds (env steps trained/s): disaggregated {b['disaggregated']:.1f} (slowest: {b['slowest']}), "
          f"machine {b['machine']:.1f} ({b['cpu_s_per_step'] * 1e3:.2f} core-ms per env step); wrote {out}")  # fmt: skip


if __name__ == "__main__":
    main()
