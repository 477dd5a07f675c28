"""A short real run: Ray worker groups, MuJoCo envs, SFT start, PPO updates, weight publishing."""

import dataclasses
import json

import pytest
import torch

from verl_async_vla.controller import build_controller
from verl_async_vla.models.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stages", [1, 2])
def test_sync_run_consumes_every_sample_once_and_changes_the_weights(ray_session, small_cfg, stages):
    small_cfg = dataclasses.replace(
        small_cfg, trainer=dataclasses.replace(small_cfg.trainer, pipeline_stages=stages)
    )
    controller = build_controller(small_cfg)
    try:
        summary = controller.train()
    finally:
        controller.release_workers()

    ledger = summary["ledger"]
    assert ledger["episodes_produced"] > 0
    assert ledger["episodes_trained"] == ledger["episodes_produced"]  # sync: nothing stale, nothing in flight
    assert ledger["samples_trained"] == ledger["samples_produced"]
    assert ledger["episodes_dropped_stale"] == 0 and ledger["episodes_in_flight"] == 0
    assert summary["policy_version"] == summary["iterations"] >= 1
    assert summary["env_steps"] >= small_cfg.trainer.total_env_steps
    # lockstep: every episode it starts, it finishes
    assert summary["env_steps_executed"] == summary["env_steps"]

    start = load_checkpoint(controller.init_checkpoint)["weights"]
    final = load_checkpoint(summary["checkpoint"])["weights"]
    assert any(not torch.equal(start[k], final[k]) for k in start)

    run_dir = controller.run_log.dir
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["eval/success"] == summary["success_start"]
    assert (run_dir / "learning_curve.png").stat().st_size > 0
    assert (run_dir / "config.yaml").is_file() and "mujoco" in (run_dir / "versions.json").read_text()
