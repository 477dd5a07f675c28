"""A short real async run: shards step independently, inference is batched, the actor streams micro-batches."""

import dataclasses

import pytest

from verl_async_vla.controller import build_controller

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stale_policy", ["pause", "drop"])
def test_async_run_keeps_the_ledger_and_tags_versions(ray_session, small_cfg, stale_policy):
    cfg = dataclasses.replace(
        small_cfg,
        trainer=dataclasses.replace(
            small_cfg.trainer, name="async_vla", total_env_steps=150, micro_batch_episodes=2, max_batch=3,
            max_staleness=0 if stale_policy == "drop" else 1, stale_policy=stale_policy,
        ),
    )  # fmt: skip
    controller = build_controller(cfg)
    try:
        summary = controller.train()
    finally:
        controller.release_workers()
    ledger = summary["ledger"]  # checked against the actor's own list inside train()
    assert ledger["episodes_produced"] == (
        ledger["episodes_trained"] + ledger["episodes_dropped_stale"] + ledger["episodes_in_flight"]
    )
    assert ledger["episodes_trained"] > 0 and summary["policy_version"] >= 1
    assert summary["env_steps_executed"] >= summary["env_steps"]  # open episodes' steps count as work done
    if stale_policy == "pause":
        assert ledger["episodes_dropped_stale"] == 0
    batcher = sampling.batcher
    assert batcher.batches > 0 and batcher.rows_batched / batcher.batches <= 3
    records = controller.run_log.history
    lags = [r["lag/max"] for r in records if "lag/max" in r]
    assert lags and (
        stale_policy == "pause" or max(lags) <= 0
    )  # drop mode: nothing older than the bound trains
