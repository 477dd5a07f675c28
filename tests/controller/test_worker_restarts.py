"""Worker processes that die mid-run (trainer=async_vla): Ray restarts them, they rejoin the running pipeline
(controller/recovery.py), the run finishes and its ledger still reconciles from the producers' and the actor's
independent counts. The env process is killed from inside by the fault-injection wrapper (`die`: os._exit, as a
segfault would); the rollout process is killed from the test by its pid (SIGKILL, as the OOM killer would)."""

import collections
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray

from verl_async_vla.config.schema import EnvFaultConfig, FaultInjectionConfig
from verl_async_vla.controller import build_controller
from verl_async_vla.controller.supervisor import train_with_restarts
from verl_async_vla.sampling.env_stream import episode_id_prefix

pytestmark = pytest.mark.slow


def async_cfg(small_cfg, steps, inject=None):
    env = small_cfg.env
    if inject is not None:
        env = dataclasses.replace(env, faults=EnvFaultConfig(inject=inject))
    trainer = dataclasses.replace(small_cfg.trainer, name="async_vla", total_env_steps=steps)
    return dataclasses.replace(small_cfg, env=env, trainer=trainer)


def check_ledger(summary):
    ledger = summary["ledger"]  # reconcile() raised if the producers' and the actor's lists disagreed
    assert ledger["episodes_unaccounted"] == 0 and ledger["episodes_trained"] > 0
    assert ledger["episodes_produced"] == ledger["episodes_received"]
    return ledger


def test_an_env_worker_process_that_dies_is_restarted_and_rejoins(ray_session, small_cfg):
    # env 1 (worker 0) kills its process on its 10th call, once: the restarted process does not die again
    cfg = async_cfg(small_cfg, 1000, FaultInjectionConfig(kind="die", env=1, after_steps=10, times=1))
    controller = build_controller(cfg)
    try:
        summary = controller.train()
        pids = ray.get([h.process_info.remote() for h in controller.workers.env.handles])
    finally:
        controller.release_workers()
    workers = summary["faults"]["workers"]
    assert workers["env_restarts"] == 1 and workers["rollout_restarts"] == 0
    (event,) = workers["lost"]
    assert event["role"] == "env" and event["rank"] == 0 and event["rejoined_after_s"] > 0
    # recovered, not only rejoined: its new process finished an episode (seen by a later poll)
    assert (
        event["next_episode_after_s"] is not None
        and event["next_episode_after_s"] >= event["rejoined_after_s"]
    )
    ledger = check_ledger(summary)
    # the dead process's open and unstarted episodes held start credits; they went back to the gate
    assert ledger["start_credits_lost_with_workers"] == event["credits_returned"] >= 1
    # the budget counts trained env steps; the finished count can miss the dead process's last unreported episodes
    assert summary["env_steps_trained"] >= 1000 and {p["rank"] for p in pids} == {0, 1}
    # the restarted worker 0 produced episodes again (ids of incarnation 1) that reached the actor
    by_incarnation = collections.Counter(i >> 24 for i in controller.consumer["received"])
    assert by_incarnation[episode_id_prefix(0, 1)] > 0, by_incarnation


def test_a_rollout_worker_process_killed_by_pid_is_restarted_and_rejoins(ray_session, small_cfg):
    controller = build_controller(async_cfg(small_cfg, 500))
    result, errors = {}, []

    def train():
        try:
            result["summary"] = controller.train()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    runner = threading.Thread(target=train)
    runner.start()
    try:
        deadline = time.monotonic() + 300
        while controller.counters.env_steps < 100 and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert controller.counters.env_steps >= 100, "the run made no progress before the kill"
        pid = ray.get(controller.workers.rollout.handles[0].process_info.remote())["pid"]
        os.kill(pid, signal.SIGKILL)
        runner.join(timeout=600)
        assert not errors, errors
        summary = result["summary"]
        new_pid = ray.get(controller.workers.rollout.handles[0].process_info.remote())["pid"]
    finally:
        runner.join(timeout=600)
        controller.release_workers()
    assert new_pid != pid
    workers = summary["faults"]["workers"]
    assert workers["rollout_restarts"] == 1 and workers["env_restarts"] == 0
    (event,) = workers["lost"]
    assert event["role"] == "rollout" and event["policy_version"] >= 0
    assert event["answered_after_s"] is not None and event["answered_after_s"] >= event["rejoined_after_s"]
    check_ledger(summary)
    # the restarted process served the rest of the run: env steps went on well past the kill
    assert summary["env_steps"] >= 500


def test_sync_resumes_from_its_checkpoint_when_an_env_process_dies(ray_session, small_cfg, tmp_path):
    # the lockstep barrier cannot go on without a shard: the run restarts from its latest run checkpoint
    inject = FaultInjectionConfig(
        kind="die", env=2, after_steps=12, times=1, token=str(tmp_path).replace("/", "_")
    )
    cfg = async_cfg(small_cfg, 300, inject)
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, name="sync", checkpoint_every=1))
    summary = train_with_restarts(cfg)
    (restart,) = summary["restarts"]
    assert restart["after_iteration"] >= 1 and "run_" in restart["resumed_from"]
    assert summary["resumed_from"]["iteration"] >= 1 and summary["env_steps"] >= 300
    check_ledger(summary)  # the resumed driver's and env workers' counts agree with the actor's


def test_async_resumes_from_its_checkpoint_when_the_actor_process_is_killed(ray_session, small_cfg):
    cfg = async_cfg(small_cfg, 700)
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, checkpoint_every=2))
    killed = []

    def kill_actor_after_a_checkpoint():
        latest = Path(cfg.run_dir) / "checkpoints" / "latest"
        deadline = time.monotonic() + 300
        while not latest.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        import psutil

        # the actor's Ray worker process, found by its name among this test's own descendants (the Ray instance
        # this test started): another run on the machine (a benchmark) has ActorWorker processes too
        for p in psutil.Process(os.getpid()).children(recursive=True):
            try:
                cmdline = p.cmdline()
            except psutil.Error:  # exited meanwhile
                continue
            if any("ActorWorker" in part for part in cmdline):
                killed.append(p.pid)
                os.kill(p.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_actor_after_a_checkpoint)
    killer.start()
    summary = train_with_restarts(cfg)
    killer.join()
    assert len(killed) == 1
    (restart,) = summary["restarts"]
    assert summary["resumed_from"] is not None and summary["env_steps"] >= 700
    check_ledger(summary)
