"""The flow-matching head (models/flow_head.py): its RL log-probs are exact functions of the stored trace, the SDE
step keeps the flow's marginals (Flow-GRPO's drift correction), and flow-matching SFT learns the velocity."""

import math

import pytest
import torch
from torch import nn

from tests.models.test_policy import make_obs
from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import build_policy
from verl_async_vla.models.flow_head import FlowChunkHead, sft_times
from verl_async_vla.validate import validate

METHODS = ["flow_sde", "flow_noise"]


def flow_cfg(method: str, **kw) -> ModelConfig:
    return ModelConfig(action_head="flow", flow_method=method, image_size=32, chunk=3, channels=8, hidden=32,
                       flow_expert_width=32, **kw)  # fmt: skip


@pytest.mark.parametrize("start", ["noise", "zero"])
@pytest.mark.parametrize("value_on", ["prefix", "expert"])
@pytest.mark.parametrize("method", METHODS)
def test_act_and_evaluate_agree_on_policy_so_the_ratio_is_one(method, value_on, start):
    torch.manual_seed(0)
    policy = build_policy(flow_cfg(method, flow_value_on=value_on, flow_start=start))
    # the noise head starts at zero: move it so flow_noise's std differs per row and step
    with torch.no_grad():
        for p in policy.head.noise.parameters():
            p.normal_(0, 0.5)
    obs = make_obs()
    out = policy.act(obs)
    assert out.actions.shape == (5, 3, 2) and out.trace.shape == (5, policy.trace_dim)
    assert policy.trace_dim == (policy.head.steps + 1) * 6 + 1
    ev = policy.evaluate(obs, out.actions, out.trace)
    torch.testing.assert_close(ev.log_prob, out.log_prob, rtol=0, atol=1e-4)
    torch.testing.assert_close(ev.value, out.value, rtol=0, atol=1e-6)
    assert torch.isfinite(ev.entropy).all()
    # the chain ends at the action
    torch.testing.assert_close(out.trace[:, -7:-1], out.actions.reshape(5, -1))


@pytest.mark.parametrize("method", METHODS)
def test_a_moved_chain_point_changes_the_log_prob(method):
    torch.manual_seed(1)
    policy = build_policy(flow_cfg(method))
    obs = make_obs()
    out = policy.act(obs)
    base = policy.evaluate(obs, out.actions, out.trace).log_prob
    step = out.trace[:, -1].long()
    moved = out.trace.clone()
    # the point each row's scored transition ends at (flow_sde: after its stochastic step; flow_noise: the action)
    end = (step + 1) * 6 if method == "flow_sde" else torch.full_like(step, policy.head.steps * 6)
    moved[torch.arange(5), end] += 0.3
    changed = policy.evaluate(obs, out.actions, moved).log_prob
    assert (changed - base).abs().min() > 1e-3


def test_a_wrong_stochastic_step_index_changes_the_log_prob():
    torch.manual_seed(2)
    policy = build_policy(flow_cfg("flow_sde", flow_steps=5))
    obs = make_obs()
    out = policy.act(obs)
    base = policy.evaluate(obs, out.actions, out.trace).log_prob
    wrong = out.trace.clone()
    wrong[:, -1] = 1 + (wrong[:, -1] % 4)  # another step in 1..4
    assert (policy.evaluate(obs, out.actions, wrong).log_prob - base).abs().min() > 1e-3


def test_flow_sde_draws_every_step_including_the_first_with_a_finite_log_prob():
    torch.manual_seed(5)
    policy = build_policy(flow_cfg("flow_sde", flow_steps=4))
    obs = make_obs()
    steps, logps = [], []
    for _ in range(40):
        out = policy.act(obs)
        steps.append(out.trace[:, -1])
        logps.append(out.log_prob)
    assert set(torch.cat(steps).long().tolist()) == {0, 1, 2, 3}
    assert torch.isfinite(torch.cat(logps)).all()


@pytest.mark.parametrize("start", ["noise", "zero"])
def test_a_zero_start_leaves_no_unscored_randomness(start):
    """flow_start=zero: the chain starts at 0 and every point up to the scored SDE step is the greedy ODE's point,
    so the only randomness in the action is the scored transition's; a drawn start (noise) differs from it."""
    torch.manual_seed(6)
    policy = build_policy(flow_cfg("flow_sde", flow_steps=4, flow_start=start))
    obs = make_obs()
    out = policy.act(obs)
    chain, k = out.trace[:, :-1].view(5, 5, 6), out.trace[:, -1].long()
    head = policy.head
    with torch.no_grad():
        h = policy.trunk(policy.features(obs))
        x, unscored_equal_greedy = torch.zeros(5, 6), []
        for j in range(head.steps + 1):
            # point j is reached without noise when the scored step comes at or after it (k >= j)
            unscored_equal_greedy.append(torch.isclose(chain[:, j], x, atol=1e-5).all(-1) | (k < j))
            if j < head.steps:
                x = x - head.field.velocity(x, torch.full((5,), 1.0 - j / head.steps), h)[0] / head.steps
    torch.testing.assert_close(
        x.view(5, 3, 2), policy.act(obs, deterministic=True).actions, rtol=0, atol=1e-5
    )
    assert bool(torch.stack(unscored_equal_greedy).all()) == (start == "zero")


def test_a_trace_from_another_flow_steps_is_refused_naming_the_key():
    policy = build_policy(flow_cfg("flow_sde", flow_steps=4))
    other = build_policy(flow_cfg("flow_sde", flow_steps=6))
    obs = make_obs()
    out = other.act(obs)
    with pytest.raises(ValueError, match="flow_steps"):
        policy.evaluate(obs, out.actions, out.trace)


def test_deterministic_actions_are_repeatable_and_the_log_prob_is_zero():
    policy = build_policy(flow_cfg("flow_sde"))
    obs = make_obs()
    a, b = policy.act(obs, deterministic=True), policy.act(obs, deterministic=True)
    torch.testing.assert_close(a.actions, b.actions, rtol=0, atol=0)
    assert (a.log_prob == 0).all()


class PointField(nn.Module):
    """The exact velocity field of data concentrated at one point c: x_t = t eps + (1 - t) c gives
    v(x, t) = (x - c) / t. Marginal at time t: N((1 - t) c, t^2)."""

    width = 4

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def velocity(self, x, t, cond):
        return (x - self.c) / t[:, None], torch.zeros(x.shape[0], self.width)


@pytest.mark.parametrize("k", [8, 16])
def test_the_sde_step_keeps_the_flow_marginal(k):
    """Flow-GRPO's SDE step from x_t ~ p_t must land on p_{t+dt} (to first order in dt: fine steps here); without
    the drift correction the std overshoots by 2-4x the tolerance (the noise adds variance nothing takes back)."""
    torch.manual_seed(3)
    steps, c, n = 32, 0.7, 400_000
    head = FlowChunkHead(PointField(c), 1, 1, steps, "flow_sde", 0.5, 0.1, 0.5)
    t = 1.0 - k / steps
    x = t * torch.randn(n, 1) + (1 - t) * c
    mean, std = head._transition(x, torch.full((n,), k), None)
    nxt = mean + std * torch.randn_like(mean)
    t_next = t - 1.0 / steps
    assert abs(nxt.mean().item() - (1 - t_next) * c) < 0.004
    assert abs(nxt.std().item() - t_next) < 0.004


def test_flow_matching_sft_lowers_the_velocity_loss():
    torch.manual_seed(4)
    policy = build_policy(flow_cfg("flow_sde"))
    obs = make_obs()
    actions = torch.tanh(obs.state[:, :2, None].expand(5, 2, 3).transpose(1, 2))  # a fixed target per row
    opt = torch.optim.Adam(policy.parameters(), 3e-3)

    def loss_avg() -> float:
        torch.manual_seed(99)  # the same t and eps draws each time
        with torch.no_grad():
            return sum(policy.bc_loss(obs, actions).item() for _ in range(20)) / 20

    before = loss_avg()
    for _ in range(300):
        opt.zero_grad()
        policy.bc_loss(obs, actions).backward()
        opt.step()
    assert loss_avg() < 0.6 * before


def test_sft_times_follow_pi0s_beta_schedule():
    t = sft_times(100_000)
    assert t.min() >= 0.001 and t.max() <= 1.0
    # Beta(1.5, 1) has mean 0.6: noisier times are drawn more often
    assert abs(t.mean().item() - (0.6 * 0.999 + 0.001)) < 0.005


@pytest.mark.parametrize(
    "override, key",
    [
        ({"flow_steps": 1}, "flow_steps"),
        ({"flow_method": "ode"}, "flow_method"),
        ({"flow_sigma_min": 0.6}, "flow_sigma_min"),
        ({"flow_value_on": "vlm"}, "flow_value_on"),
        ({"flow_expert": "gr00t"}, "flow_expert"),
        ({"flow_start": "uniform"}, "flow_start"),
    ],
)
def test_bad_flow_settings_are_refused_at_start_up_naming_the_key(override, key):
    with pytest.raises(ValueError, match=key):
        validate({"model": {"action_head": "flow", **override}})


def test_the_flow_recipe_validates_and_a_typo_in_the_head_names_the_choices():
    run = validate({"model": {"action_head": "flow"}})
    assert run.model.flow_steps == 5 and math.isfinite(run.model.flow_noise_level)
    with pytest.raises(ValueError, match="flow"):
        validate({"model": {"action_head": "flwo"}})
