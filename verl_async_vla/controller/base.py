"""What both controllers share: spawning the worker groups, the start checkpoint, held-out evaluation (on its own
env and rollout workers, with a weight snapshot), per-update bookkeeping, the ledger check and the timeline.
Subclasses only decide *when* each role is called."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from verl import DataProto
from verl.single_controller.ray import RayWorkerGroup

from verl_async_vla.config.schema import RunConfig
from verl_async_vla.learning.ledger import reconcile
from verl_async_vla.sampling.trajectory import Episode, EpisodeAssembler
from verl_async_vla.envs import check_env_backend
from verl_async_vla.envs.base import HELD_OUT_SEED_BASE
from verl_async_vla.models.checkpoint import check_compatible, load_checkpoint
from verl_async_vla.models.sft import start_checkpoint
from verl_async_vla.telemetry.run_log import RunLog
from verl_async_vla.telemetry.timeline import busy_fractions, ideal_bound, write_chrome_trace, write_gantt
from verl_async_vla.workers import ActorWorker, EnvWorker, RolloutWorker
from verl_async_vla.workers.codec import split_env_key
from verl_async_vla.workers.placement import init_ray, release, spawn_colocated, spawn_group

log = logging.getLogger(__name__)


class Controller(ABC):
    name: str = "base"

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.env_steps = 0  # in finished (produced) episodes: the x-axis of learning curves and the budget
        self.env_steps_executed = 0  # every control step run, open episodes included: the throughput figure
        self.iteration = 0
        # decisions per episode, at most
        self.horizon = math.ceil(cfg.env.max_episode_steps / cfg.model.chunk)
        self.run_log: RunLog | None = None
        self.eval_seconds = 0.0
        self.eval_lock = threading.Lock()  # the async controller evaluates on a background thread
        # sync evaluates inside its loop, so its evaluation time is taken out of its throughput; async evaluates
        # beside training on its own workers, so nothing is taken out (its cost shows as contention)
        self.eval_blocks_training = True

    # ---- set-up -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, t = self.cfg, self.cfg.trainer
        check_env_backend(cfg.env)
        init_ray(t.ray_address, logical_cpus=cfg.env.num_workers + t.rollout_workers + t.actor_workers + 4)
        common = dict(seed=cfg.seed, torch_threads=t.torch_threads)
        self.env_wg = spawn_group(
            EnvWorker, cfg.env.num_workers, "env", env_cfg=dataclasses.asdict(cfg.env), **common
        )
        spec = self.env_wg.spec()[0]
        if spec.action_dim != cfg.model.action_dim or spec.state_dim != cfg.model.state_dim:
            raise ValueError(
                f"env {cfg.env.name!r} has action_dim={spec.action_dim}, state_dim={spec.state_dim} but the model "
                f"has action_dim={cfg.model.action_dim}, state_dim={cfg.model.state_dim}; set "
                f"model.action_dim={spec.action_dim} model.state_dim={spec.state_dim}."
            )
        if cfg.model.checkpoint:  # fail here, in one line, rather than inside a remote worker
            check_compatible(load_checkpoint(cfg.model.checkpoint)["model_cfg"], cfg.model)
        init_ckpt = str(start_checkpoint(cfg))
        self.init_checkpoint = init_ckpt
        # Evaluation has its own shard, so it never disturbs training envs that are mid-episode (async). It is no
        # bigger than a training shard: a LIBERO env holds ~1-2 GB.
        self.eval_envs = min(t.eval_episodes, cfg.env.num_envs_per_worker, 32)
        self.eval_env_wg = self.eval_rollout_wg = None
        model_cfg = dataclasses.asdict(cfg.model)
        rollout_kwargs = dict(model_cfg=model_cfg, **common)
        gpu = cfg.model.device.startswith("cuda")  # one GPU per rollout / actor process (per fused process)
        if self.eval_envs > 0:  # its own env and rollout workers, so evaluation never stops training (async)
            eval_env = dataclasses.replace(cfg.env, num_envs_per_worker=self.eval_envs, latency="none")
            self.eval_env_wg = spawn_group(
                EnvWorker, 1, "eval_env", env_cfg=dataclasses.asdict(eval_env), **common
            )
            self.eval_rollout_wg = spawn_group(RolloutWorker, 1, "eval_rollout", use_gpu=gpu, **rollout_kwargs)
        actor_kwargs = dict(model_cfg=model_cfg, algo_cfg=dataclasses.asdict(cfg.algo), init_checkpoint=init_ckpt,
                            **common)  # fmt: skip
        if t.placement == "colocated":  # one process per rank holds both models (verl's colocated worker)
            groups = spawn_colocated(
                {"rollout": (RolloutWorker, rollout_kwargs), "actor": (ActorWorker, actor_kwargs)},
                t.rollout_workers,
                "policy",
                use_gpu=gpu,
            )
            self.rollout_wg, self.actor_wg = groups["rollout"], groups["actor"]
        else:
            self.rollout_wg = spawn_group(
                RolloutWorker, t.rollout_workers, "rollout", use_gpu=gpu, **rollout_kwargs
            )
            self.actor_wg = spawn_group(ActorWorker, t.actor_workers, "actor", use_gpu=gpu, **actor_kwargs)
        self.publish_weights()
        self.run_log = RunLog(cfg.run_dir, cfg, t.total_env_steps, progress=t.progress)

    def publish_weights(self, rollout_wg: RayWorkerGroup | None = None) -> int:
        """Actor -> rollout workers, through the Ray object store (one put, every worker reads it)."""
        ref = self.actor_wg.handles[0].get_weights.remote()  # (weights, version): passed on unresolved
        versions = ray.get([w.set_weights_packed.remote(ref) for w in (rollout_wg or self.rollout_wg).handles])
        if rollout_wg is None:
            self.policy_version = versions[0]
        return versions[0]

    # ---- lockstep episodes (sync training and evaluation for both controllers) -----------------------------
    def run_episodes(
        self,
        deterministic: bool = False,
        seeds: np.ndarray | None = None,
        env_wg: RayWorkerGroup | None = None,
        stages: int = 1,
        rollout_wg: RayWorkerGroup | None = None,
    ) -> list[Episode]:
        """Every env of `env_wg` plays one episode; envs that finish early wait for the rest (the synchronous
        barrier). With `stages` = k > 1 the envs form k groups, each in lockstep on its own, so one group's
        inference overlaps another group's env step (the stage pipelining of RLinf / verl's VLA env loop)."""
        env_wg = env_wg or self.env_wg
        rollout_wg = rollout_wg or self.rollout_wg
        if seeds is None:
            obs = DataProto.concat(env_wg.reset())
        else:
            per_shard = np.array_split(seeds, len(env_wg.workers))
            obs = DataProto.concat(
                ray.get([w.reset.remote(None, s) for w, s in zip(env_wg.handles, per_shard, strict=True)])
            )
        keys = obs.non_tensor_batch["env_key"]
        assembler = EpisodeAssembler()
        assembler.begin(keys, list(obs.non_tensor_batch["instruction"]))
        active = np.ones(len(keys), dtype=bool)
        finished: list[Episode] = []
        groups = [g for g in np.array_split(np.arange(len(keys)), max(1, stages)) if len(g)]
        phase: dict[
            int, tuple[list[ray.ObjectRef], tuple]
        ] = {}  # group -> (refs of its current call, context)

        def infer(g: int) -> None:
            rows = groups[g][active[groups[g]]]
            if not len(rows):
                return
            request = obs.select_idxs(rows)
            request.meta_info["deterministic"] = deterministic
            parts = [p for p in np.array_split(np.arange(len(rows)), len(rollout_wg.workers)) if len(p)]
            refs = [
                w.generate.remote(request.select_idxs(p)) for w, p in zip(rollout_wg.handles, parts, strict=False)
            ]
            phase[g] = (refs, ("infer", request))

        def step(g: int, request: DataProto, answer: DataProto) -> None:
            ranks, _ = split_env_key(answer.non_tensor_batch["env_key"])
            data = DataProto.from_dict(
                tensors={
                    "actions": answer.batch["actions"],
                    "active": torch.ones(len(answer), dtype=torch.bool),
                },
                non_tensors={"env_key": answer.non_tensor_batch["env_key"]},
            )
            phase[g] = (
                [env_wg.handles[r].step.remote(data) for r in np.unique(ranks)],
                ("step", request, answer),
            )

        for g in range(len(groups)):
            infer(g)
        row_of = {k: i for i, k in enumerate(keys.tolist())}
        while phase:
            ready, _ = ray.wait([r for refs, _ in phase.values() for r in refs], num_returns=1)
            g = next(g for g, (refs, _) in phase.items() if ready[0] in refs)
            refs, ctx = phase[g]
            if ray.wait(refs, num_returns=len(refs), timeout=0)[1]:
                continue  # the group's call is not complete yet
            del phase[g]
            result = DataProto.concat(ray.get(refs))
            if ctx[0] == "infer":
                step(g, ctx[1], result)
                continue
            _, request, answer = ctx
            finished += assembler.record(request, answer, result)
            if env_wg is self.env_wg:  # evaluation steps are not training throughput
                self.env_steps_executed += int(result.batch["env_steps"].sum())
            moved = np.array([row_of[k] for k in result.non_tensor_batch["env_key"].tolist()])
            obs.batch["image"][moved] = result.batch["image"]
            obs.batch["state"][moved] = result.batch["state"]
            active[moved[result.batch["done"].numpy()]] = False
            infer(g)
        return finished

    def evaluate(self) -> tuple[float, int] | None:
        """Greedy success on held-out layouts (the same seeds every time, so evaluations are comparable) of the
        actor's latest published weights -> (success, policy version); None when `trainer.eval_episodes=0`.
        Runs on the evaluation env and rollout workers only, so the async pipeline keeps going meanwhile."""
        if self.eval_env_wg is None:
            return None
        with self.eval_lock:
            t0 = time.monotonic()
            version = self.publish_weights(self.eval_rollout_wg)  # the snapshot this evaluation measures
            n_envs = self.eval_envs
            waves = max(1, math.ceil(self.cfg.trainer.eval_episodes / n_envs))
            success = []
            for w in range(waves):
                seeds = HELD_OUT_SEED_BASE + np.arange(w * n_envs, (w + 1) * n_envs)
                episodes = self.run_episodes(True, seeds, self.eval_env_wg, rollout_wg=self.eval_rollout_wg)
                success += [e.success for e in episodes]
            self.eval_seconds += time.monotonic() - t0
        return float(np.mean(success)), version

    # ---- per update ------------------------------------------------------------------------------------
    def end_iteration(self, metrics: dict[str, Any], t0: float) -> None:
        """Metrics, progress bar, evaluation and checkpoint cadence (collaborators, not scheduling). `metrics`
        carries the update's own figures, train/success among them."""
        assert self.run_log is not None
        self.iteration += 1
        t = self.cfg.trainer
        record: dict[str, Any] = {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "policy_version": self.policy_version,
            "time/iteration_s": time.monotonic() - t0,
            "train_wall_s": self.train_wall(),
            **metrics,
        }
        if t.eval_every and self.eval_env_wg is not None and self.iteration % t.eval_every == 0:
            record.update(self.periodic_eval())
        if t.checkpoint_every and self.iteration % t.checkpoint_every == 0:
            self.save(f"iter_{self.iteration:05d}.pt")
        self.run_log.log(record)
        elapsed = time.monotonic() - self.run_log.start
        self.run_log.progress(
            self.env_steps, steps_per_s=self.env_steps / max(elapsed, 1e-9), success=record["train/success"],
            v=self.policy_version,
        )  # fmt: skip

    def periodic_eval(self) -> dict[str, Any]:
        """Evaluate now and return the record fields (sync); the async controller overrides it to evaluate in the
        background and log the result when it is ready."""
        success, version = self.evaluate()
        return {"eval/success": success, "eval/policy_version": version}

    def train_wall(self) -> float:
        wall = time.monotonic() - self.fit_start
        return wall - self.eval_seconds if self.eval_blocks_training else wall

    @staticmethod
    def episode_metrics(episodes: list[Episode]) -> dict[str, float]:
        return {
            "train/success": float(np.mean([e.success for e in episodes])),
            "train/episode_len": float(np.mean([e.env_steps for e in episodes])),
            "train/return": float(np.mean([sum(e.reward) for e in episodes])),
        }

    @abstractmethod
    def ledger(self) -> dict[str, int]:
        """The reconciled ledger of the run (learning/ledger.py), counted at producer, gate and consumer."""

    def save(self, name: str) -> str:
        assert self.run_log is not None
        return self.actor_wg.save(str(self.run_log.dir / "checkpoints" / name), trainer=self.name)[0]

    def scheduler_stats(self) -> dict[str, float]:
        """Driver-side figures of the scheduling loop (the async controller reports its overhead per request)."""
        return {}

    @abstractmethod
    def fit(self) -> None:
        """The scheduling loop: the only thing the controllers differ in."""

    # ---- whole run --------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        self.setup()
        assert self.run_log is not None
        start = self.evaluate()
        success_start = start[0] if start else None
        self.eval_seconds = 0.0
        self.fit_start = time.monotonic()
        fit_start_wall = time.time()
        self.run_log.log({"iteration": 0, "env_steps": 0, "policy_version": self.policy_version,
                          "eval/success": success_start, "train_wall_s": 0.0})  # fmt: skip
        self.fit()
        wall = self.train_wall()
        eval_seconds_in_fit = self.eval_seconds
        timeline = self.export_timeline(fit_start_wall, time.time()) if self.cfg.trainer.timeline else None
        final_eval = self.evaluate()
        success_final = final_eval[0] if final_eval else None
        self.run_log.log({"iteration": self.iteration, "env_steps": self.env_steps, "train_wall_s": wall,
                          "policy_version": self.policy_version, "eval/success": success_final})  # fmt: skip
        ledger = self.ledger()
        final = self.save("final.pt")
        self.run_log.plot()
        summary = {
            "trainer": self.name,
            "seed": self.cfg.seed,
            "success_start": success_start,
            "success_final": success_final,
            "env_steps": self.env_steps,
            "wall_minutes": wall / 60.0,
            "env_steps_executed": self.env_steps_executed,
            # executed, not produced: an async run ends with episodes still open, and with long episodes
            # (LIBERO: 220+ steps) counting only finished ones would undercount its work
            "env_steps_per_s": self.env_steps_executed / wall,
            "iterations": self.iteration,
            "policy_version": self.policy_version,
            "eval_seconds_during_training": eval_seconds_in_fit,
            "ledger": ledger,
            "timeline": timeline,
            "scheduler": self.scheduler_stats(),
            "checkpoint": final,
            "run_dir": str(self.run_log.dir),
        }
        self.run_log.close()
        (Path(self.run_log.dir) / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def export_timeline(self, t0: float, t1: float) -> dict[str, Any]:
        """Gather every worker's spans for the training window; write trace.json, timeline.png and the bubble
        report (timeline_summary.json); print the per-stage busy fractions."""
        assert self.run_log is not None
        spans = [
            s
            for wg in (self.env_wg, self.rollout_wg, self.actor_wg)
            for part in wg.drain_spans()
            for s in part
        ]
        spans = [s for s in spans if s.end > t0 and s.start < t1]
        lags = [r["lag/max"] for r in self.run_log.history if "lag/max" in r]
        means = [r["lag/mean"] for r in self.run_log.history if "lag/mean" in r]
        summary = {
            "window_s": t1 - t0,
            "busy": busy_fractions(spans, t0, t1),
            "bound": ideal_bound(spans, self.env_steps_executed),
            "lag": {"mean": float(np.mean(means)) if means else 0.0, "max": max(lags, default=0.0)},
            "spans": len(spans),
        }
        d = self.run_log.dir
        write_chrome_trace(spans, d / "trace.json")
        write_gantt(
            spans, d / "timeline.png", f"{self.name}: stage timeline (first 10 s of training)", window_s=10.0
        )
        (d / "timeline_summary.json").write_text(json.dumps(summary, indent=2))
        busy = ", ".join(f"{k} {v:.0%}" for k, v in summary["busy"].items())
        log.info(
            "%s busy: %s; idle = 1 - busy; ideal bound %.0f env steps/s",
            self.name,
            busy,
            summary["bound"]["bound"],
        )
        return summary

    def release_workers(self) -> None:
        # Simulators close on their own lanes first: a render context freed from another thread at process exit
        # fails (EGL contexts are bound to the thread that made them current).
        envs = [w for name in ("env_wg", "eval_env_wg") if getattr(self, name, None) for w in getattr(self, name).handles]
        ray.wait([w.close.remote() for w in envs], num_returns=len(envs), timeout=30)
        for name in ("env_wg", "eval_env_wg", "rollout_wg", "eval_rollout_wg", "actor_wg"):
            group = getattr(self, name, None)
            if group is not None:
                release(group)
                setattr(self, name, None)

    def shutdown(self) -> None:
        """Release the workers and, when this run started Ray, stop it."""
        self.release_workers()
        if ray.is_initialized() and self.cfg.trainer.ray_address is None:
            ray.shutdown()
