"""The cost-model policy of the emulated-cluster mode: real log-prob maths, emulated time charged per replica."""

import pytest
import torch

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import PolicyObs, build_policy
from verl_async_vla.models.cost_model import COST_PROFILES


def make(gpus: int):
    policy = build_policy(ModelConfig(name="cost_model", emulated_gpus=gpus, cost_profile="vla7b_gpu"))
    charged: list[float] = []
    policy._spend = charged.append  # record the emulated seconds instead of sleeping
    return policy, charged


def obs(n: int) -> PolicyObs:
    return PolicyObs(torch.zeros(n, 8, 8, 3, dtype=torch.uint8), torch.randn(n, 4), ["task"] * n)


def test_act_and_evaluate_agree_and_gradients_flow():
    policy, _ = make(1)
    o = obs(5)
    out = policy.act(o)
    ev = policy.evaluate(o, out.actions)
    assert out.actions.shape == (5, 4, 2) and torch.allclose(out.log_prob, ev.log_prob, atol=1e-5)
    ev.log_prob.sum().backward()
    assert policy.head.log_std.grad is not None


def test_time_is_charged_per_data_parallel_replica():
    cost = COST_PROFILES["vla7b_gpu"]
    policy, charged = make(4)
    policy.act(obs(10))  # ceil(10 / 4) = 3 rows per replica
    assert charged[-1] == pytest.approx(cost.infer_fixed_s + 3 * cost.infer_per_sample_s)
    policy.evaluate(obs(8), torch.zeros(8, 4, 2))  # training: forward + backward
    assert charged[-1] == pytest.approx(2 * cost.train_per_sample_s)
    with torch.no_grad():  # scoring only: a third of it
        policy.evaluate(obs(8), torch.zeros(8, 4, 2))
    assert charged[-1] == pytest.approx(2 * cost.train_per_sample_s / 3)


def test_unknown_profile_is_named():
    with pytest.raises(ValueError, match="cost_profile"):
        build_policy(ModelConfig(name="cost_model", cost_profile="h100_magic"))
