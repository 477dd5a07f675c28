"""Losses and advantages against small hand-computed examples."""

import math

import numpy as np
import pytest
import torch

from verl_async_vla.algos.advantages import compute_advantages
from verl_async_vla.algos.losses import actor_critic_loss
from verl_async_vla.algos.off_policy import compute_vtrace_advantage_return, truncated_is_weights
from verl_async_vla.algos.policy_losses import compute_policy_loss_decoupled_ppo
from verl_async_vla.config.schema import AlgoConfig


def test_gae_returns_match_hand_computation():
    # gamma=0.9, lam=0.8: d2=1.9, d1=-0.11, d0=0.68; A2=1.9, A1=-0.11+0.72*1.9=1.258, A0=0.68+0.72*1.258=1.58576
    cfg = AlgoConfig(gamma=0.9, lam=0.8)
    r = torch.tensor([[1.0, 0.0, 2.0]])
    v = torch.tensor([[0.5, 0.2, 0.1]])
    adv, ret = compute_advantages(cfg, r, v, torch.ones(1, 3), torch.zeros(1, 3))
    torch.testing.assert_close(ret, torch.tensor([[2.08576, 1.458, 2.0]]))
    assert adv[0, 2] > adv[0, 0] > adv[0, 1]  # whitened: 1.9 > 1.586 > 1.258, order preserved
    torch.testing.assert_close(adv.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_gae_stops_at_episode_end():
    cfg = AlgoConfig(gamma=0.9, lam=0.8)
    r = torch.tensor([[1.0, 0.0, 0.0]])
    v = torch.tensor([[0.5, 0.2, 9.0]])  # value after the end must be ignored
    _, ret = compute_advantages(cfg, r, v, torch.tensor([[1.0, 1.0, 0.0]]), torch.zeros(1, 3))
    # A1 = 0 - 0.2 = -0.2 ; A0 = 0.68 + 0.72 * (-0.2) = 0.536
    torch.testing.assert_close(ret[0, :2], torch.tensor([0.536 + 0.5, -0.2 + 0.2]))


@pytest.mark.parametrize("estimator", ["gae", "vtrace"])
def test_a_batch_of_one_decision_trains_with_zero_advantage_and_its_return(estimator):
    """Drop mode can leave a batch with one valid decision: whitening one value is undefined (verl raises)."""
    cfg = AlgoConfig(adv_estimator=estimator, gamma=0.9, lam=1.0)
    r, v = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.4, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    adv, ret = compute_advantages(cfg, r, v, mask, torch.zeros(2, 2))
    assert adv.shape == (2, 2) and torch.isfinite(adv).all() and (adv == 0).all()
    assert ret[0, 0].item() == pytest.approx(1.0)


def test_vtrace_is_looked_up_like_any_estimator_and_whitened():
    cfg = AlgoConfig(adv_estimator="vtrace", off_policy="vtrace", gamma=0.9, is_cap=1.0)
    r, v = torch.tensor([[1.0, 0.0, 2.0, 0.0]]), torch.tensor([[0.5, 0.2, 0.1, 0.0]])
    mask, log_rho = torch.tensor([[1.0, 1.0, 1.0, 0.0]]), torch.tensor([[0.3, -0.2, 0.0, 0.0]])
    adv, ret = compute_advantages(cfg, r, v, mask, log_rho)
    raw, vs = compute_vtrace_advantage_return(r, v, mask, 0.9, log_rho, 1.0, 1.0)
    torch.testing.assert_close(ret, vs)
    valid = raw[mask > 0]
    torch.testing.assert_close(adv, (raw - valid.mean()) / (valid.std() + 1e-8) * mask)
    with pytest.raises(ValueError, match="not supported"):
        compute_advantages(AlgoConfig(adv_estimator="reinforce_plus_plus"), r, v, mask, log_rho)


def _outcome_batch():
    """Five episodes from three envs: env 7 two (success, failure), env 9 two (both succeed), env 4 one success.
    Sparse reward: 1 on the success decision; rows padded to 4 decisions."""
    r = torch.tensor([[0, 0, 1.0, 0], [0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    return r, mask, np.array([7, 7, 9, 9, 4])


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_outcome_estimators_compare_an_episode_only_with_its_envs_episodes(estimator):
    r, mask, groups = _outcome_batch()
    cfg = AlgoConfig(adv_estimator=estimator, gamma=0.5)
    adv, ret = compute_advantages(cfg, r, torch.full_like(r, 9.0), mask, torch.zeros_like(r), groups)
    per_episode = adv[:, 0]
    # every decision of an episode carries the episode's advantage; padding none
    torch.testing.assert_close(adv, per_episode[:, None] * mask)
    # env 7: success above failure, symmetric (grpo: (1 - .5) / std(1, 0) = .707; rloo: 1 - 0 = 1)
    expected = 1 / np.std([1.0, 0.0], ddof=1) / 2 if estimator == "grpo" else 1.0
    assert per_episode[0].item() == pytest.approx(expected, rel=1e-4)
    assert per_episode[1].item() == pytest.approx(-expected, rel=1e-4)
    # env 9: both succeeded, nothing to tell them apart; env 4 alone: 0, not its raw success (verl's baseline of 0)
    assert per_episode[2:].abs().max().item() < 1e-4
    # the value head's targets are the discounted returns-to-go, whatever the values were (gamma 0.5)
    torch.testing.assert_close(ret[0], torch.tensor([0.25, 0.5, 1.0, 0.0]))
    torch.testing.assert_close(ret[4], torch.tensor([0.125, 0.25, 0.5, 1.0]))


def test_grouping_is_by_env_not_by_batch():
    """The same returns grouped as one env: every success is now measured against the batch mean. A grouping that
    ignored `groups` (or read the wrong column) gives this answer for the per-env batch too."""
    r, mask, groups = _outcome_batch()
    cfg = AlgoConfig(adv_estimator="rloo")
    per_env = compute_advantages(cfg, r, r, mask, r, groups)[0][:, 0]
    pooled = compute_advantages(cfg, r, r, mask, r, np.zeros(5, int))[0][:, 0]
    assert per_env[2].abs().item() < 1e-6 and pooled[2].item() == pytest.approx(1 - 3 / 4)
    with pytest.raises(ValueError, match="env_key"):
        compute_advantages(cfg, r, r, mask, r, None)


def test_ppo_clip_loss_matches_hand_computation():
    # ratio 1.5 with A=+1 is clipped to 1.2 -> -1.2; ratio 0.5 with A=-1 -> max(0.5, 0.8) = 0.8; mean = -0.2
    cfg = AlgoConfig(clip_ratio=0.2, vf_coef=0.0, ent_coef=0.0)
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))
    z = torch.zeros(1, 2)
    loss, m = actor_critic_loss(cfg, new, z, z, old, z, torch.tensor([[1.0, -1.0]]), z, torch.ones(1, 2))
    torch.testing.assert_close(loss, torch.tensor(-0.2))
    assert m["actor/pg_clipfrac"] == pytest.approx(1.0)


def test_value_and_entropy_terms_enter_with_their_coefficients():
    cfg = AlgoConfig(vf_coef=0.5, ent_coef=0.1)
    z = torch.zeros(1, 1)
    # pg 0; value 0.5 * (2 - 0)^2 = 2 -> 0.5 * 2 = 1; entropy 3 -> -0.3
    loss, _ = actor_critic_loss(
        cfg, z, torch.full((1, 1), 3.0), z, z, z, z, torch.full((1, 1), 2.0), torch.ones(1, 1)
    )
    torch.testing.assert_close(loss, torch.tensor(0.7))


def vtrace_reference(r, v, log_rho, gamma, rho_bar, c_bar):
    """IMPALA eq. 1 written as the explicit sum, for one episode that ends after the last step."""
    rho = [min(rho_bar, math.exp(x)) for x in log_rho]
    c = [min(c_bar, math.exp(x)) for x in log_rho]
    n = len(r)
    vv = list(v) + [0.0]
    delta = [rho[t] * (r[t] + gamma * vv[t + 1] - vv[t]) for t in range(n)]
    vs = []
    for s in range(n):
        total = vv[s]
        for t in range(s, n):
            total += gamma ** (t - s) * math.prod(c[s:t]) * delta[t]
        vs.append(total)
    vs_next = vs[1:] + [0.0]
    adv = [rho[s] * (r[s] + gamma * vs_next[s] - vv[s]) for s in range(n)]
    return vs, adv


def test_vtrace_matches_the_impala_definition_by_hand():
    # rho=[1, 0.5, 1]; deltas 0.95, 0.475, 0.5; v = [2.08, 1.2, 1.0]; A = [1.58, 0.7, 0.5]
    r, v, log_rho = [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [math.log(2.0), math.log(0.5), 0.0]
    adv, vs = compute_vtrace_advantage_return(
        torch.tensor([r]), torch.tensor([v]), torch.ones(1, 3), gamma=0.9, log_rho=torch.tensor([log_rho])
    )
    torch.testing.assert_close(vs, torch.tensor([[2.08, 1.2, 1.0]]))
    torch.testing.assert_close(adv, torch.tensor([[1.58, 0.7, 0.5]]))
    ref_vs, ref_adv = vtrace_reference(r, v, log_rho, 0.9, 1.0, 1.0)
    torch.testing.assert_close(vs[0], torch.tensor(ref_vs))
    torch.testing.assert_close(adv[0], torch.tensor(ref_adv))


def test_vtrace_on_policy_is_the_discounted_return_and_respects_the_mask():
    r = torch.tensor([[1.0, 2.0, 3.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    _, vs = compute_vtrace_advantage_return(r, torch.rand(1, 4), mask, gamma=0.5, log_rho=torch.zeros(1, 4))
    torch.testing.assert_close(vs[0, :3], torch.tensor([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]))
    assert vs[0, 3] == 0


def test_truncated_is_weights_cap():
    w = truncated_is_weights(torch.log(torch.tensor([4.0, 0.5])), torch.zeros(2), AlgoConfig(is_cap=2.0))
    torch.testing.assert_close(w, torch.tensor([2.0, 0.5]))


def test_decoupled_ppo_weights_the_proximal_surrogate():
    class Cfg:
        clip_ratio = 0.2

    prox = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.1, 1.5]]))
    adv = torch.ones(1, 2)
    w = torch.tensor([[0.5, 2.0]])
    loss, _ = compute_policy_loss_decoupled_ppo(prox, new, adv, torch.ones(1, 2), "token-mean", Cfg(), w)
    # -(0.5 * 1.1 + 2.0 * 1.2) / 2 = -1.475
    torch.testing.assert_close(loss, torch.tensor(-1.475))
    with pytest.raises(ValueError, match="rollout_is_weights"):
        compute_policy_loss_decoupled_ppo(prox, new, adv, torch.ones(1, 2), "token-mean", Cfg(), None)


# mu = (0.5, 0.25), pi_prox = (0.25, 1.0): pi_prox/mu = (0.5, 4.0), C = 2
@pytest.mark.parametrize(
    "mode, old_is, weights",
    [("none", "prox", None), ("behaviour_ppo", "mu", None), ("tis", "prox", [0.5, 2.0]),
     ("decoupled_ppo", "prox", [0.5, 0.0]), ("vtrace", "prox", None), ("gipo", "mu", None), ("m2po", "mu", None),
     ("topr", "mu", None)],
)  # fmt: skip
def test_correction_modes_pick_the_reference_policy_and_weights(mode, old_is, weights):
    """tis truncates the weight 4.0 to C; decoupled_ppo leaves that sample out (weight 0), as AReaL does."""
    from verl_async_vla.algos.off_policy import correction_inputs

    mu = torch.log(torch.tensor([[0.5, 0.25]]))
    prox = torch.log(torch.tensor([[0.25, 1.0]]))
    inputs = correction_inputs(AlgoConfig(off_policy=mode, is_cap=2.0), mu, prox, torch.ones(1, 2))
    torch.testing.assert_close(inputs.old_log_prob, prox if old_is == "prox" else mu)
    torch.testing.assert_close(inputs.log_rho, prox - mu)
    if weights is None:
        assert inputs.is_weights is None
    else:
        torch.testing.assert_close(inputs.is_weights, torch.tensor([weights]))
