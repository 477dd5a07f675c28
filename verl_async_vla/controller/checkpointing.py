"""Whole-run checkpoints and resume.

A run checkpoint is a directory `checkpoints/run_<iteration>/`: the actor's training state (weights, optimizer,
policy version, RNG, its own ledger: learning/train_state.py), and `run.json` with the driver's counters, the
sync driver's ledger, the rollout workers' and env workers' RNG states, the resolved config and the code commit.
It is written under a temporary name and renamed, then `checkpoints/latest` is replaced atomically, so a half-written
checkpoint never becomes `latest`; the oldest beyond `trainer.checkpoint_keep` are deleted.

`trainer.resume=auto|<run dir>` continues the same run directory from `latest`: metrics.jsonl keeps its records up to
the checkpoint and goes on from there. A checkpoint written under another config is refused, naming the keys that
differ. Exactness: `trainer=sync` at an update boundary restores everything that draws random numbers (actor,
rollout sampling, env layouts where the backend exports its RNG: the embedded task does), so a resumed run follows
the uninterrupted one (tested). `trainer=async_vla` restores the weights, optimizer, version and counters; episodes in
flight at the checkpoint are not saved, and the order of events depends on timing, so it is not exact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from verl_async_vla.controller.run_state import RunCounters
from verl_async_vla.telemetry.run_log import source_commit

if TYPE_CHECKING:
    from verl_async_vla.config.schema import RunConfig
    from verl_async_vla.controller.workers import WorkerSet

FORMAT = "verl_async_vla/run-v1"
# Keys a resumed run may change: where and how long it runs, and how it reports.
MAY_CHANGE = {"run_dir", "trainer.resume", "trainer.total_env_steps", "trainer.progress", "trainer.logger",
              "trainer.checkpoint_every", "trainer.checkpoint_keep", "trainer.eval_every", "trainer.timeline",
              "trainer.ray_address", "trainer.worker_restarts", "trainer.run_restarts"}  # fmt: skip


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    a, b = _flatten(saved), _flatten(current)
    return sorted(k for k in set(a) | set(b) if k not in MAY_CHANGE and a.get(k) != b.get(k))


class RunCheckpointer:
    def __init__(self, run_dir: Path, keep: int):
        self.root, self.keep = Path(run_dir) / "checkpoints", keep

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text().strip()
        if not (path / "run.json").is_file():
            raise ValueError(f"{pointer} names {path.name}, which is missing or incomplete; point it at another "
                             f"run_* directory in {self.root} or start a new run.")  # fmt: skip
        return path

    def save(self, counters: RunCounters, train_wall_s: float, driver: dict[str, Any], workers: WorkerSet,
             cfg: RunConfig, exact: bool) -> Path:  # fmt: skip
        """`driver`: what the trainer's own scheduling must keep (sync: its ledger and episode ids). `exact`: the
        envs run in lockstep, so their RNG and episode counts are saved for an exact resume."""
        w = workers
        name = f"run_{counters.iteration:06d}"
        tmp, final = self.root / (name + ".tmp"), self.root / name
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        actor = w.actor.save_state(str(tmp))  # the actor writes its own state: the driver never holds weights
        state = {
            "format": FORMAT,
            **counters.to_json(),
            "policy_version": actor["policy_version"],
            "train_wall_s": train_wall_s,
            "driver": driver,
            # a rollout worker being restarted (async_vla rejoins it) has no state worth saving: None
            "rollout_rng": [_or_none(h.rng_state.remote()) for h in w.rollout.handles],
            # async: every env lane runs its episode loop, and layouts depend on timing anyway
            "env_rng": w.env.rng_state() if exact else None,
            # the lockstep producers' own episode counts, compared with the driver's ledger at the end
            "env_counts": w.env.episode_counts() if exact else None,
            "config": dataclasses.asdict(cfg),
            "commit": source_commit(),
        }
        (tmp / "run.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = self.root / "latest.tmp"
        pointer.write_text(name)
        os.replace(pointer, self.root / "latest")
        for old in sorted(self.root.glob("run_??????"))[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def restore(self, path: Path, workers: WorkerSet, cfg: RunConfig, exact: bool) -> dict[str, Any]:
        """Load the workers' states from `path` and return run.json (`RunCounters.from_json` reads its counters,
        `driver` the trainer's own state, `train_wall_s` the training seconds so far). `exact`: also load the
        actor's RNG (an exact resume)."""
        try:
            state = json.loads((path / "run.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}/run.json cannot be read ({err}); the checkpoint is damaged.") from err
        if state.get("format") != FORMAT:
            raise ValueError(
                f"{path} is not a verl-async-vla run checkpoint (format {state.get('format')!r})."
            )
        differs = config_differences(state["config"], dataclasses.asdict(cfg))
        if differs:
            saved, now = _flatten(state["config"]), _flatten(dataclasses.asdict(cfg))
            listed = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differs[:6])
            raise ValueError(f"the checkpoint {path} was written under another config ({listed}); resume with the "
                             f"run's own config (its config.yaml) or start a new run.")  # fmt: skip
        w = workers
        if len(state["rollout_rng"]) != len(w.rollout.handles):  # the config check covers it; a damaged file
            raise ValueError(f"{path}: the checkpoint has {len(state['rollout_rng'])} rollout workers' RNG states "
                             f"for {len(w.rollout.handles)} workers; the checkpoint is damaged.")  # fmt: skip
        try:
            ray.get([h.load_state.remote(str(path), exact) for h in w.actor.handles])
        except ray.exceptions.RayTaskError as err:
            raise ValueError(f"{path}: the actor state cannot be loaded: {err.cause!r}") from err
        ray.get([h.set_rng_state.remote(s) for h, s in zip(w.rollout.handles, state["rollout_rng"], strict=True)
                 if s is not None])  # fmt: skip
        if state["env_rng"] is not None:
            ray.get([h.set_rng_state.remote(s) for h, s in zip(w.env.handles, state["env_rng"], strict=True)])
        if state["env_counts"] is not None:
            ray.get(
                [
                    h.set_episode_counts.remote(c)
                    for h, c in zip(w.env.handles, state["env_counts"], strict=True)
                ]
            )
        return state


def _or_none(ref: ray.ObjectRef) -> Any:
    """A worker's answer, or None if its process died (Ray is restarting it)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError:
        return None
