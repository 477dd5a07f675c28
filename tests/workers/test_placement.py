"""Colocated placement: rollout and actor fused into one process by verl's `create_colocated_worker_cls`, driven by
the unchanged controllers."""

import dataclasses

import pytest

from verl_async_vla.controller import build_controller
from verl_async_vla.validate import validate

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("trainer", ["sync", "async_vla"])
def test_colocated_run_shares_one_process_and_trains(ray_session, small_cfg, trainer):
    cfg = dataclasses.replace(
        small_cfg,
        trainer=dataclasses.replace(
            small_cfg.trainer, name=trainer, placement="colocated", total_env_steps=80
        ),
    )
    controller = build_controller(cfg)
    try:
        summary = controller.train()
        rollout, actor = controller.workers.rollout.workers[0], controller.workers.actor.workers[0]
        assert rollout._actor_id == actor._actor_id  # one Ray actor (process) holds both roles
    finally:
        controller.release_workers()
    ledger = summary["ledger"]
    assert summary["policy_version"] >= 1 and ledger["episodes_trained"] > 0
    assert ledger["episodes_produced"] == (
        ledger["episodes_trained"] + ledger["episodes_dropped_stale"] + ledger["episodes_in_flight"]
    )


def test_colocated_needs_matching_worker_counts():
    with pytest.raises(ValueError, match="trainer.rollout_workers"):
        validate({"trainer": {"placement": "colocated", "rollout_workers": 2}})
    with pytest.raises(ValueError, match="disaggregated or colocated"):
        validate({"trainer": {"placement": "hybrid"}})
