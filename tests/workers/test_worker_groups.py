"""The three roles as real verl worker groups on Ray (CPU placement)."""

import dataclasses

import numpy as np
import pytest
import torch
from verl import DataProto

from verl_async_vla.models import build_policy
from verl_async_vla.models.checkpoint import save_checkpoint
from verl_async_vla.plumbing.wire import weights_from_wire, weights_to_wire
from verl_async_vla.workers import ActorWorker, EnvWorker, RolloutWorker
from verl_async_vla.workers.env_worker import actions_for_all_envs
from verl_async_vla.workers.placement import spawn_group

pytestmark = pytest.mark.slow


def test_env_and_rollout_groups_spawn_and_answer(ray_session, small_cfg):
    env_wg = spawn_group(EnvWorker, 2, "t_env", env_cfg=dataclasses.asdict(small_cfg.env), seed=0)
    roll_wg = spawn_group(RolloutWorker, 2, "t_roll", model_cfg=dataclasses.asdict(small_cfg.model), seed=0)
    assert env_wg.world_size == 2 and roll_wg.world_size == 2
    obs = DataProto.concat(env_wg.reset())
    assert len(obs) == 4 and set(obs.non_tensor_batch["env_key"] >> 20) == {0, 1}  # two shards

    policy = build_policy(small_cfg.model)
    assert roll_wg.set_weights(weights_to_wire(policy.get_weights()), 0) == [0, 0]
    odd = obs.select_idxs(np.arange(3))  # 3 rows over 2 rollout ranks: needs verl's auto padding
    odd.meta_info["_verl_auto_padding"] = True
    keys_before = list(odd.non_tensor_batch["env_key"])
    answer = roll_wg.generate(odd)
    assert answer.batch["actions"].shape == (3, small_cfg.model.chunk, 2)
    assert answer.batch["policy_version"].tolist() == [0, 0, 0]
    assert list(answer.non_tensor_batch["env_key"]) == keys_before
    assert len(odd) == 4  # verl pads the caller's DataProto in place (see patches/); controllers pass a copy

    keys = obs.non_tensor_batch["env_key"]
    active = np.array([True, False, True, True])
    outcome = env_wg.step(actions_for_all_envs(keys, active, answer.batch["actions"], np.flatnonzero(active)))
    assert list(outcome.non_tensor_batch["env_key"]) == list(keys[active])  # inactive env was not stepped
    assert (outcome.batch["env_steps"] > 0).all()


def test_rollout_refuses_to_act_without_weights(ray_session, small_cfg):
    roll_wg = spawn_group(
        RolloutWorker, 1, "t_roll_nw", model_cfg=dataclasses.asdict(small_cfg.model), seed=0
    )
    env_wg = spawn_group(EnvWorker, 1, "t_env_nw", env_cfg=dataclasses.asdict(small_cfg.env), seed=0)
    with pytest.raises(Exception, match="set_weights"):
        roll_wg.generate(env_wg.reset()[0])


def test_actor_group_loads_checkpoint_and_versions_weights(ray_session, small_cfg, tmp_path):
    policy = build_policy(small_cfg.model)
    ckpt = save_checkpoint(tmp_path / "init.safetensors", policy, small_cfg.model)
    actor_wg = spawn_group(
        ActorWorker, 1, "t_actor", model_cfg=dataclasses.asdict(small_cfg.model),
        algo_cfg=dataclasses.asdict(small_cfg.algo), init_checkpoint=str(ckpt), seed=0,
    )  # fmt: skip
    wire, version = actor_wg.get_weights()[0]
    weights = weights_from_wire(wire)
    assert version == 0
    for k, v in policy.get_weights().items():
        assert torch.equal(weights[k], v)
