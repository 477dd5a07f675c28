"""Flow-matching VLAs under both trainers, on real Ray worker groups and MuJoCo envs: the denoising trace travels
from the rollout answer through the env stream (or the lockstep assembler) to the actor, which trains on it."""

import dataclasses

import pytest
import torch

from verl_async_vla.controller import build_controller
from verl_async_vla.models.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "trainer, method", [("sync", "flow_sde"), ("async_vla", "flow_noise"), ("async_vla", "flow_sde")]
)
def test_a_flow_policy_trains_under_both_trainers(ray_session, small_cfg, trainer, method):
    cfg = dataclasses.replace(
        small_cfg,
        model=dataclasses.replace(
            small_cfg.model, action_head="flow", flow_method=method, flow_expert_width=32
        ),
        trainer=dataclasses.replace(small_cfg.trainer, name=trainer, total_env_steps=100, max_batch=3),
    )
    controller = build_controller(cfg)
    try:
        summary = controller.train()
    finally:
        controller.release_workers()
    ledger = summary["ledger"]
    assert summary["policy_version"] >= 2 and ledger["episodes_trained"] > 0
    assert ledger["episodes_unaccounted"] == 0 and ledger["samples_trained"] > 0
    # the first update starts on-policy (ratio 1 where the trace reached the actor with its own sample; a chain
    # scored against another decision's is off by tens of nats and clipped): few ratios leave the clip range
    first = next(r for r in controller.run_log.history if "actor/pg_clipfrac" in r)
    assert first["actor/pg_clipfrac"] < 0.3, first
    start = load_checkpoint(controller.init_checkpoint)["weights"]
    final = load_checkpoint(summary["checkpoint"])["weights"]
    expert = [k for k in start if k.startswith("head.field.")]
    assert expert and any(not torch.equal(start[k], final[k]) for k in expert)
