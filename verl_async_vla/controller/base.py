"""The whole run, shared by both trainers: spawn the workers, evaluate the start, `fit` (the only thing the trainers
differ in), evaluate the end, reconcile the ledger, export the timeline, write the summary. The collaborators do the
work: `controller/workers.py` (worker groups, weight publication), `controller/evaluation.py`, `controller/run_state.py`
(the counters a checkpoint keeps), `controller/summary.py` (summary.json), `telemetry/`
(metrics through verl's Tracking, timeline), `learning/ledger.py`."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import ray

from verl_async_vla.config.schema import RunConfig
from verl_async_vla.controller.checkpointing import RunCheckpointer
from verl_async_vla.controller.evaluation import Evaluator
from verl_async_vla.controller.run_state import RunCounters
from verl_async_vla.controller.summary import FitClock, run_summary
from verl_async_vla.controller.workers import WorkerSet, spawn_workers
from verl_async_vla.telemetry.run_log import RunLog
from verl_async_vla.telemetry.timeline import export_timeline

log = logging.getLogger(__name__)


class Controller(ABC):
    name: str = "base"
    # the envs run in lockstep with the driver, so a checkpoint at an update boundary can restore them exactly
    # (their RNG and episode counts; controller/checkpointing.py)
    exact_resume = False
    # sync evaluates inside its loop, so its evaluation time is taken out of its throughput; async evaluates beside
    # training on its own workers, so nothing is taken out (its cost shows as contention)
    eval_blocks_training = True

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.counters = RunCounters()  # what a run checkpoint saves and restores
        self.policy_version = 0
        self.horizon = math.ceil(
            cfg.env.max_episode_steps / cfg.model.chunk
        )  # decisions per episode, at most
        self.workers: WorkerSet | None = None
        self.run_log: RunLog | None = None
        # set by `request_stop` (SIGTERM / Ctrl-C in main.py): the schedule ends as at the budget
        self.stop_requested = threading.Event()
        self.stop_reason: str | None = None
        self.stop_on_signals = False  # the command line sets it; library callers keep their own handlers
        self.wall_offset = 0.0  # training seconds before a resume
        self.resumed: dict[str, Any] | None = None  # the run checkpoint this run continues

    def _catch_stop_signals(self) -> dict:
        """SIGTERM (a preempted job) and the first Ctrl-C ask for a graceful stop; a second Ctrl-C interrupts at
        once. Installed after set-up: starting a local Ray installs its own SIGTERM handler, which this replaces
        for the run (the driver still shuts Ray down on the way out)."""
        if not self.stop_on_signals or threading.current_thread() is not threading.main_thread():
            return {}

        def graceful(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            log.warning("%s: stopping producers, finishing the update in progress, then checkpoint and summary "
                        "(Ctrl-C again interrupts at once)", name)  # fmt: skip
            self.request_stop(name)
            signal.signal(signal.SIGINT, signal.default_int_handler)

        return {sig: signal.signal(sig, graceful) for sig in (signal.SIGTERM, signal.SIGINT)}

    def request_stop(self, reason: str) -> None:
        """Stop at the next update boundary (sync) or poll (async): producers stop, the update in progress
        finishes, then the final checkpoint and the summary are written as at the end of the budget."""
        self.stop_reason = reason
        self.stop_requested.set()

    # ---- what the trainers define -------------------------------------------------------------------------
    @abstractmethod
    def fit(self) -> None:
        """The scheduling loop: the only thing the trainers differ in."""

    @abstractmethod
    def ledger(self) -> dict[str, int]:
        """The reconciled ledger of the run (learning/ledger.py), counted at producer, gate and consumer."""

    def scheduler_stats(self) -> dict[str, float]:
        """The trainer's own figures of its scheduling (the async data plane reports its round trips)."""
        return {}

    def driver_state(self) -> dict[str, Any]:
        """What the driver itself must keep in a run checkpoint (the sync trainer: its ledger, episode ids)."""
        return {}

    def restore_driver_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Take back `driver_state`'s output when resuming."""

    def periodic_eval(self) -> dict[str, Any]:
        """Evaluate now and return the record's fields; async overrides it to evaluate in the background."""
        success, version = self.evaluator.evaluate()
        return {"eval/success": success, "eval/policy_version": version}

    # ---- per update ---------------------------------------------------------------------------------------
    def end_iteration(self, metrics: dict[str, Any], t0: float) -> None:
        """Metrics, progress bar, evaluation and checkpoint cadence. `metrics` carries the update's own figures,
        train/success among them."""
        assert self.run_log is not None
        self.counters.iteration += 1
        self.counters.env_steps_trained += int(metrics.get("actor/trained_env_steps", 0))
        self.counters.imagined_env_steps_trained += int(metrics.get("actor/trained_imagined_env_steps", 0))
        self.counters.imagined_episodes_trained += int(metrics.get("actor/imagined_episodes", 0))
        self.counters.episodes_trained += int(metrics.get("actor/episodes", 0))
        t = self.cfg.trainer
        record: dict[str, Any] = {
            "iteration": self.counters.iteration,
            "env_steps": self.counters.env_steps,
            "policy_version": self.policy_version,
            "time/iteration_s": time.monotonic() - t0,
            "train_wall_s": self.train_wall(),
            **metrics,
        }
        if t.eval_every and self.evaluator.enabled and self.counters.iteration % t.eval_every == 0:
            record.update(self.periodic_eval())
        if t.checkpoint_every and self.counters.iteration % t.checkpoint_every == 0:
            self.checkpointer.save(self.counters, self.train_wall(), self.driver_state(), self.workers, self.cfg,
                                   self.exact_resume)  # fmt: skip
        self.run_log.log(record)
        elapsed = time.monotonic() - self.run_log.start
        self.run_log.progress(
            self.counters.env_steps, steps_per_s=self.counters.env_steps / max(elapsed, 1e-9),
            success=record.get("train/success", float("nan")),
            v=self.policy_version,
        )  # fmt: skip

    def budget_left(self) -> bool:
        """The budget counts trained env steps, the same for both trainers: a run ends after the update that
        reaches it, so no trainer is credited with work it never trained."""
        return (
            self.counters.env_steps_trained < self.cfg.trainer.total_env_steps
            and not self.stop_requested.is_set()
        )

    def train_wall(self) -> float:
        wall = time.monotonic() - self.fit_start + self.wall_offset
        return wall - self.evaluator.seconds if self.eval_blocks_training else wall

    def save(self, name: str) -> str:
        assert self.run_log is not None
        return self.workers.actor.save(str(self.run_log.dir / "checkpoints" / name), trainer=self.name)

    # ---- whole run ----------------------------------------------------------------------------------------
    def setup(self) -> None:
        t = self.cfg.trainer
        self.workers = spawn_workers(self.cfg)
        self.init_checkpoint = self.workers.init_checkpoint
        self.checkpointer = RunCheckpointer(Path(self.cfg.run_dir), t.checkpoint_keep)
        if t.resume:
            self._resume()
        inject = self.cfg.env.faults.inject
        if (
            inject.kind != "none" and not self.resumed
        ):  # FAULT INJECTION ONLY: a new run counts its faults afresh
            from verl_async_vla.envs.wrappers import forget_injected

            forget_injected(inject.token)
        self.policy_version = self.workers.publish()
        self.write_process_table()
        self.evaluator = Evaluator(self.workers, t.eval_episodes)
        self.run_log = RunLog(
            self.cfg.run_dir, self.cfg, t.total_env_steps, progress=t.progress, backends=t.logger,
            resume_iteration=self.resumed["iteration"] if self.resumed else None,
        )  # fmt: skip

    def write_process_table(self) -> None:
        """run_dir/processes.json: role, rank and pid of every process of the run, the driver included; rewritten
        when a worker process is replaced. Which process is which, for operators (and the soak benchmark)."""
        table = [{"role": "driver", "rank": 0, "pid": os.getpid()}, *self.workers.processes()]
        path = Path(self.cfg.run_dir) / "processes.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"written_unix": time.time(), "processes": table}, indent=1))
        tmp.replace(path)

    def _resume(self) -> None:
        path = self.checkpointer.latest()
        if path is None:
            if self.cfg.trainer.resume != "auto":
                raise ValueError(f"trainer.resume={self.cfg.trainer.resume!r}: no run checkpoint in "
                                 f"{self.checkpointer.root} (checkpoints/latest is missing).")  # fmt: skip
            log.info(
                "trainer.resume=auto: no run checkpoint in %s, starting a new run", self.checkpointer.root
            )
            return
        self.resumed = self.checkpointer.restore(path, self.workers, self.cfg, self.exact_resume)
        self.resumed["path"] = str(path)
        self.counters = RunCounters.from_json(self.resumed)
        self.wall_offset = self.resumed["train_wall_s"]
        self.restore_driver_state(self.resumed["driver"])
        log.info("resumed from %s: iteration %d, policy version %d, %d env steps", path,
                 self.counters.iteration, self.resumed["policy_version"], self.counters.env_steps)  # fmt: skip

    def train(self) -> dict[str, Any]:
        self.setup()
        previous = self._catch_stop_signals()
        try:
            return self._train()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _train(self) -> dict[str, Any]:
        assert self.run_log is not None
        if self.resumed:  # the start was measured by the run this one continues
            success_start = next((r.get("eval/success") for r in self.run_log.history
                                  if r.get("iteration") == 0), None)  # fmt: skip
        else:
            start = self.evaluator.evaluate()
            success_start = start[0] if start else None
        self.evaluator.seconds = 0.0
        self.fit_start = time.monotonic()
        fit_start_wall = time.time()
        if not self.resumed:
            self.run_log.log({"iteration": 0, "env_steps": 0, "policy_version": self.policy_version,
                              "eval/success": success_start, "train_wall_s": 0.0})  # fmt: skip
        clock = FitClock(self.counters.env_steps_executed)
        self.fit()
        cpu = clock.stop(self.counters.env_steps_executed)
        wall = self.train_wall()
        eval_seconds_in_fit = self.evaluator.seconds
        timeline = self.export_timeline(fit_start_wall, time.time()) if self.cfg.trainer.timeline else None
        # a stopped run (a preempted job) skips the final evaluation: the checkpoint and summary come first
        final_eval = None if self.stop_requested.is_set() else self.evaluator.evaluate()
        success_final = final_eval[0] if final_eval else None
        self.run_log.log({"iteration": self.counters.iteration, "env_steps": self.counters.env_steps,
                          "train_wall_s": wall, "policy_version": self.policy_version, "eval/success": success_final,
                          "final": True})  # fmt: skip
        reports = {
            "stopped": self.stop_reason,  # None: the run reached its budget
            "resumed_from": None if not self.resumed
            else {"checkpoint": self.resumed["path"], "iteration": self.resumed["iteration"]},
            "eval_seconds_during_training": eval_seconds_in_fit,
            "ledger": self.ledger(),
            "faults": self.fault_report(),
            "timeline": timeline,
            "scheduler": self.scheduler_stats(),
        }  # fmt: skip
        final = self.save("final.safetensors")
        self.run_log.plot()
        summary = run_summary(self.name, self.cfg.seed, self.counters, wall, self.policy_version,
                              (success_start, success_final), cpu, reports, checkpoint=final,
                              run_dir=str(self.run_log.dir), date=self.run_log.started)  # fmt: skip
        self.run_log.close()
        (Path(self.run_log.dir) / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def fault_report(self, earlier: list[dict] | None = None) -> dict[str, Any]:
        """Env faults of the training envs (sampling/env_faults.py): counts by kind, quarantined envs, each fault.
        `earlier`: records of worker processes that died (reported to the driver while they ran)."""
        reports = self.workers.env.fault_report()
        records = sorted([*(rec for r in reports for rec in r["records"]), *(earlier or [])],
                         key=lambda rec: rec["unix"])  # fmt: skip
        counts = {k: sum(rec["kind"] == k for rec in records) for k in reports[0]["counts"]}
        if records:
            log.warning("env faults during the run: %s; quarantined envs: %s", counts,
                        [e for r in reports for e in r["quarantined"]] or "none")  # fmt: skip
        return {"counts": counts, "quarantined": [e for r in reports for e in r["quarantined"]],
                "records": records}  # fmt: skip

    def export_timeline(self, t0: float, t1: float) -> dict[str, Any]:
        assert self.run_log is not None
        w = self.workers
        spans = [s for wg in (w.env, w.rollout, w.actor) for part in wg.drain_spans() for s in part]
        return export_timeline(spans, t0, t1, self.counters.env_steps_executed, self.run_log.history, self.run_log.dir,
                               self.name)  # fmt: skip

    def release_workers(self) -> None:
        if self.workers is not None:
            self.workers.release()
            self.workers = None

    def shutdown(self) -> None:
        """Release the workers and, when this run started Ray, stop it."""
        self.release_workers()
        if ray.is_initialized() and self.cfg.trainer.ray_address is None:
            ray.shutdown()
