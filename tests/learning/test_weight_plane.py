"""The weight plane (learning/weight_plane.py): both transports deliver exactly the actor's weights to every
rollout worker, the collective one through a real gloo group of Ray worker processes, in a whole run of either
trainer too (both publish through the same weight plane)."""

import dataclasses

import pytest
import ray
import torch

from verl_async_vla.controller import build_controller
from verl_async_vla.learning.weight_plane import plan_buckets


def test_buckets_hold_each_tensor_once_one_dtype_each_within_the_limit():
    weights = {f"w{i}": torch.zeros(100 * (i + 1), dtype=torch.float32) for i in range(10)}
    weights |= {"big": torch.zeros(5000), "half": torch.zeros(300, dtype=torch.bfloat16)}
    layout = plan_buckets(weights, bucket_bytes=2000)
    names = [n for b in layout.buckets for n in b]
    assert sorted(names) == sorted(weights)
    for bucket in layout.buckets:
        assert len({layout.dtypes[n] for n in bucket}) == 1
        size = sum(weights[n].numel() * weights[n].element_size() for n in bucket)
        assert size <= 2000 or len(bucket) == 1  # a tensor larger than a bucket travels alone
    assert layout.nbytes == sum(t.numel() * t.element_size() for t in weights.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sync", "async_vla"])
def test_a_run_publishes_every_version_by_collective_broadcast_and_rollouts_hold_the_actors_weights(
    ray_session, small_cfg, name
):
    trainer = dataclasses.replace(small_cfg.trainer, name=name, total_env_steps=300, rollout_workers=2,
                                  weight_sync="collective", weight_bucket_mb=0.01)  # fmt: skip
    controller = build_controller(dataclasses.replace(small_cfg, trainer=trainer))
    try:
        summary = controller.train()
        w = controller.workers
        actor, rollouts = w.actor.handles[0], w.rollout.handles
        # counted by the receivers: every version they loaded in the run came by the broadcast (version 0 included)
        loads = ray.get([r.weight_loads.remote() for r in rollouts])
        assert all(n["object_store"] == 0 and n["collective"] >= 2 for n in loads), loads
        # once more, outside the run, by each transport: the rollout workers end up with the actor's exact weights
        for transport in ("collective", "object_store"):
            out = ray.get(actor.publish_to.remote(rollouts, transport, 0.01))
            assert len(out["stall_s"]) == 2 and out["bytes"] > 0
            expected = ray.get(actor.weights_digest.remote())
            assert ray.get([r.weights_digest.remote() for r in rollouts]) == [expected, expected]
    finally:
        controller.release_workers()
    assert summary["ledger"]["episodes_unaccounted"] == 0 and summary["policy_version"] >= 2
    if name == "sync":
        return
    records = [r for r in controller.run_log.history if "actor/rollout_stall_s" in r]
    assert records, "no update reported the weight plane's rollout stall"
    assert all(
        r["actor/weight_plane_fallbacks"] == 0 for r in records
    )  # every version went by the collective
