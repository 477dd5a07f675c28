"""Env faults stay inside their env (sampling/env_lanes.py + env_faults.py), on real embedded MuJoCo envs with the
fault-injection wrapper (the only fake): the faulted env loses its episode and is rebuilt, its siblings' rows are
untouched, an env that keeps failing is quarantined, and too few envs left stops the run with a message."""

import dataclasses
import time

import numpy as np
import pytest

from verl_async_vla.config.schema import EnvConfig, EnvFaultConfig, FaultInjectionConfig
from verl_async_vla.envs import wrappers
from verl_async_vla.sampling.env_faults import EnvFleetError
from verl_async_vla.sampling.env_lanes import EnvLanes
from verl_async_vla.sampling.lockstep_lanes import LockstepLanes


def lanes(kind="none", env=1, after=2, times=1, timeout=0.0, max_rebuilds=3, min_live=0.5, hang_s=30.0):
    wrappers.forget_injected()
    inject = FaultInjectionConfig(kind=kind, env=env, after_steps=after, times=times, hang_s=hang_s)
    faults = EnvFaultConfig(step_timeout_s=timeout, max_rebuilds=max_rebuilds, min_live_fraction=min_live,
                            inject=inject)  # fmt: skip
    cfg = dataclasses.replace(EnvConfig(), num_envs_per_worker=3, image_size=16, max_episode_steps=12,
                              faults=faults)  # fmt: skip
    return EnvLanes(cfg, seed=0, rank=0)


def step_all(ln, actions=None):
    ids = np.arange(ln.num_envs)
    chunks = np.zeros((ln.num_envs, 1, 2), np.float32) if actions is None else actions
    return LockstepLanes(ln).step(ids, chunks)


@pytest.mark.parametrize("kind", ["raise", "nan_obs"])
def test_a_raising_or_nan_env_loses_only_its_episode_and_is_rebuilt(kind):
    ln = lanes(kind, env=1, after=2)
    LockstepLanes(ln).reset(np.arange(3))  # call 1 of every env
    res = step_all(ln)  # call 2: env 1 faults
    assert res.discarded.tolist() == [False, True, False]
    assert np.isfinite(res.obs.state[[0, 2]]).all()
    report = ln.fault_report()
    assert report["counts"]["raised" if kind == "raise" else "bad_obs"] == 1
    assert [r["outcome"] for r in report["records"]] == ["rebuilt"] and report["records"][0]["env"] == 1
    assert len(LockstepLanes(ln).reset(np.arange(3)).env_ids) == 3  # the rebuilt env plays again
    assert not step_all(ln).discarded.any()
    ln.close()


def test_a_fault_record_says_when_its_env_next_completed_an_episode():
    """The per-fault evidence of recovery (benchmarks/soak.py judges each fault by it): unset until the faulted env
    completes an episode, then the seconds from the fault to that end; a sibling's episode does not count."""
    ln = lanes("raise", env=1, after=2)
    LockstepLanes(ln).reset(np.arange(3))
    step_all(ln)  # env 1 faults on its first step
    assert ln.fault_report()["records"][0]["next_episode_after_s"] is None
    LockstepLanes(ln).reset(np.array([1]))

    def play(env: int) -> None:  # one env's episode to its end (12 steps at most)
        for _ in range(20):
            res = LockstepLanes(ln).step(np.array([env]), np.zeros((1, 1, 2), np.float32))
            if (res.terminated | res.truncated).any():
                return
        raise AssertionError(f"env {env}'s episode did not end")

    play(0)  # a sibling's episode ends: not the faulted env's recovery
    assert ln.fault_report()["records"][0]["next_episode_after_s"] is None
    play(1)
    after = ln.fault_report()["records"][0]["next_episode_after_s"]
    assert after is not None and 0 < after < 60
    ln.close()


def test_a_hung_env_is_timed_out_and_its_siblings_go_on():
    ln = lanes("hang", env=0, after=2, timeout=0.5, hang_s=20.0)
    LockstepLanes(ln).reset(np.arange(3))
    t0 = time.monotonic()
    res = step_all(ln)
    assert time.monotonic() - t0 < 5.0  # not the 20 s hang
    assert res.discarded.tolist() == [True, False, False]
    assert ln.fault_report()["counts"]["hang"] == 1 and ln.generation[0] == 1
    assert len(LockstepLanes(ln).reset(np.arange(3)).env_ids) == 3  # a new lane, a new simulator
    ln.close()


def test_a_lane_replaced_before_the_caller_waits_on_it_is_still_seen_as_hung():
    # A lockstep caller waits on its envs in turn: when earlier envs are slow, the watchdog may replace a later
    # env's lane before the caller gets to it. The wait must judge the call by the generation it was submitted
    # under (not the one current when waiting starts), and find that env's rebuild filed.
    ln = lanes("hang", env=0, after=2, timeout=0.5, hang_s=20.0)
    LockstepLanes(ln).reset(np.arange(3))
    call = ln.submit_guarded(0, ln.step_env, 0, np.zeros((1, 2), np.float32))
    deadline = time.monotonic() + 10.0
    while ln.generation[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ln.generation[0] == 1, "the watchdog did not replace the hung lane"
    t0 = time.monotonic()
    fault = ln.wait_guarded(0, call)
    assert fault.kind == "hang" and time.monotonic() - t0 < 5.0  # not the 20 s the old lane stays hung
    assert ln.settle(0, fault) is None and 0 not in ln.rebuilding  # its rebuild was found and awaited
    assert len(LockstepLanes(ln).reset(np.arange(3)).env_ids) == 3
    ln.close()


def test_a_policy_fault_discards_the_episode_without_rebuilding_the_env():
    ln = lanes()
    LockstepLanes(ln).reset(np.arange(3))
    actions = np.zeros((3, 1, 2), np.float32)
    actions[2] = np.nan
    assert step_all(ln, actions).discarded.tolist() == [False, False, True]
    assert [(r["kind"], r["outcome"]) for r in ln.fault_report()["records"]] == [("bad_action", "reset")]
    assert ln.health[2].rebuilds == 0
    ln.close()


def test_an_env_that_keeps_failing_is_quarantined_then_the_fleet_check_stops_the_run():
    ln = lanes("raise", env=1, after=1, times=-1, max_rebuilds=1, min_live=0.5)
    obs = LockstepLanes(ln).reset(np.arange(3))  # env 1 fails its reset, is rebuilt, fails again: quarantined
    assert obs.env_ids.tolist() == [0, 2] and ln.fault_report()["quarantined"] == [1]
    ln.close()
    with pytest.raises(EnvFleetError, match=r"only 2 of 3 envs are left.*env 1 \(task .*min_live_fraction"):
        LockstepLanes(lanes("raise", env=1, after=1, times=-1, max_rebuilds=1, min_live=0.9)).reset(
            np.arange(3)
        )


def test_scheduled_faults_strike_each_env_in_turn_once_per_period(monkeypatch):
    # the soak's schedule: fault n strikes env n*7 mod 3 within its own period, kinds in turn. The wrapper's clock is
    # driven by the test (two steps per period), so the test does not depend on this machine's speed.
    wrappers.forget_injected()
    clock = [1000.0]
    monkeypatch.setattr(wrappers.time, "time", lambda: clock[0])
    inject = FaultInjectionConfig(kind="schedule", every_s=10.0, start_unix=1000.0, kinds=["raise", "nan_obs"],
                                  envs=3, token=f"test-schedule-{id(clock)}-{time.perf_counter_ns()}")  # fmt: skip
    cfg = dataclasses.replace(EnvConfig(), num_envs_per_worker=3, image_size=16, max_episode_steps=1000,
                              faults=EnvFaultConfig(max_rebuilds=10, inject=inject))  # fmt: skip
    ln = EnvLanes(cfg, seed=0, rank=0)
    LockstepLanes(ln).reset(np.arange(3))
    for _ in range(
        9
    ):  # periods 0..4, two steps each: the second step of a period finds its fault already claimed
        clock[0] += 5.0
        res = step_all(ln)
        again = np.flatnonzero(res.discarded | res.terminated | res.truncated)
        if len(again):  # a faulted env was rebuilt, a finished one is done: both start a new episode
            LockstepLanes(ln).reset(again)
    records = ln.fault_report()["records"]
    # periods 1..4: env (7 mod 3)=1 raise, (14 mod 3)=2 nan_obs, (21 mod 3)=0 raise, (28 mod 3)=1 nan_obs
    assert [(r["env"], r["kind"]) for r in records] == [
        (1, "raised"),
        (2, "bad_obs"),
        (0, "raised"),
        (1, "bad_obs"),
    ]
    ln.close()
