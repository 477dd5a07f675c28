"""Whole runs with a misbehaving env (fault injection is the only fake; Ray, verl worker groups, MuJoCo are real):
both trainers finish, the faulted env's episodes are discarded and counted at the producer, never trained, and the
ledger still reconciles from independent counts."""

import dataclasses

import pytest

from verl_async_vla.config.schema import EnvFaultConfig, FaultInjectionConfig
from verl_async_vla.controller import build_controller

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("trainer", ["sync", "async_vla"])
@pytest.mark.parametrize("kind", ["raise", "hang"])
def test_a_faulty_env_costs_only_its_episodes(ray_session, small_cfg, trainer, kind):
    # env 1 faults on its 3rd call (a step: reset, step, step), twice in the run; a hang lasts 60 s, the timeout 1 s
    inject = FaultInjectionConfig(kind=kind, env=1, after_steps=3, times=2, hang_s=60.0)
    faults = EnvFaultConfig(step_timeout_s=1.0, inject=inject)
    cfg = dataclasses.replace(
        small_cfg,
        env=dataclasses.replace(small_cfg.env, faults=faults),
        trainer=dataclasses.replace(small_cfg.trainer, name=trainer, total_env_steps=160),
    )
    controller = build_controller(cfg)
    try:
        summary = controller.train()
    finally:
        controller.release_workers()
    counts = summary["faults"]["counts"]
    # the second fault needs three more calls of the rebuilt env: an async run may reach its budget first
    assert (
        1 <= counts["raised" if kind == "raise" else "hang"] <= 2 and summary["faults"]["quarantined"] == []
    )
    assert {r["env"] for r in summary["faults"]["records"]} == {1}
    ledger = summary["ledger"]  # reconcile() raised if a discarded episode had reached the actor
    # a fault in a step costs its episode; one in a reset (an episode that ended early) costs none
    assert 1 <= ledger["episodes_discarded_fault"] <= 2 and ledger["samples_discarded_fault"] >= 1
    assert ledger["episodes_trained"] > 0 and ledger["episodes_unaccounted"] == 0
