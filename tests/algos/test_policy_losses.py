"""The stale-sample losses (algos/policy_losses.py) on hand-made ratios, and their registration by name."""

import math

import pytest
import torch
from verl.trainer.ppo.core_algos import get_policy_loss_fn

from verl_async_vla.algos import policy_losses
from verl_async_vla.algos.losses import _actor_view
from verl_async_vla.algos.off_policy import CORRECTIONS
from verl_async_vla.algos.policy_losses import m2_keep_mask
from verl_async_vla.config.schema import AlgoConfig
from verl_async_vla.validate import validate

NEW_LOSSES = ("decoupled_ppo", "gipo", "m2po", "topr")


def _loss_and_grad(name: str, old: torch.Tensor, new: torch.Tensor, adv: torch.Tensor, weights=None):
    log_prob = new.clone().requires_grad_(True)
    fn = get_policy_loss_fn(name)
    loss, metrics = fn(
        old, log_prob, adv, torch.ones_like(adv), "token-mean", _actor_view(AlgoConfig()), weights
    )
    loss.backward()
    return loss.detach(), log_prob.grad, metrics


@pytest.mark.parametrize("name", NEW_LOSSES)
def test_each_loss_has_ppo_clips_gradient_on_policy(name):
    """At ratio 1 (the sample's own policy), every correction is plain policy gradient: PPO-clip's gradient -A/N."""
    torch.manual_seed(0)
    log_prob = torch.randn(3, 4)
    adv = torch.randn(3, 4)
    weights = torch.ones(3, 4) if name == "decoupled_ppo" else None
    _, ref_grad, _ = _loss_and_grad("vanilla", log_prob, log_prob, adv)
    loss, grad, _ = _loss_and_grad(name, log_prob, log_prob, adv, weights)
    torch.testing.assert_close(grad, ref_grad)
    torch.testing.assert_close(grad, -adv / adv.numel())
    if name != "topr":  # topr's objective is A log pi, not A r: same gradient, another value
        torch.testing.assert_close(loss, -adv.mean())


def test_gipo_damps_by_a_gaussian_in_the_log_ratio_and_never_clips():
    # log r = (0, 0.5, 2.0), sigma 0.5: damping (1, e^-0.5, e^-8); no clip, so r = e^2 with A=+1 still counts
    old = torch.zeros(1, 3)
    new = torch.tensor([[0.0, 0.5, 2.0]])
    adv = torch.ones(1, 3)
    loss, grad, m = _loss_and_grad("gipo", old, new, adv)
    damping = torch.exp(torch.tensor([0.0, -0.5, -8.0]))
    ratio = torch.exp(new[0])
    torch.testing.assert_close(loss, -(ratio * damping).mean())
    # the damping factor is detached: d/dlogp of r * sg(d) = r * d
    torch.testing.assert_close(grad[0], -(ratio * damping) / 3)
    assert m["actor/gipo_damping_mean"] == pytest.approx(float(damping.mean()))


def test_m2_mask_keeps_the_largest_prefix_within_the_second_moment():
    # (log r)^2 = (0, 0.01, 0.04, 1.0): prefix means 0, 0.005, 0.0167, 0.2625 -> the 1.0 one is masked at tau 0.04
    log_r = torch.tensor([[0.0, 0.1, -0.2, 1.0]])
    keep = m2_keep_mask(log_r, torch.ones(1, 4), 0.04)
    torch.testing.assert_close(keep, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    # a tighter threshold masks the -0.2 one too; padding is never kept
    keep = m2_keep_mask(log_r, torch.tensor([[1.0, 1.0, 1.0, 0.0]]), 0.01)
    torch.testing.assert_close(keep, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    # everything masked when even the smallest is above it; ties at the cut keep only what the prefix holds
    assert m2_keep_mask(torch.full((1, 3), 1.0), torch.ones(1, 3), 0.04).sum() == 0
    tied = m2_keep_mask(torch.tensor([[0.0, 0.3, 0.3, 0.3]]), torch.ones(1, 4), 0.05)  # means 0, .045, .06
    assert tied.sum() == 2 and tied[0, 0] == 1


def test_m2po_masks_the_outlier_and_keeps_the_unclipped_ratio_elsewhere():
    old = torch.zeros(1, 4)
    new = torch.tensor([[0.0, 0.1, -0.2, 1.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, 1.0]])
    loss, grad, m = _loss_and_grad("m2po", old, new, adv)
    r = torch.exp(new[0])
    torch.testing.assert_close(loss, -(r[0] + r[1] - r[2]) / 4)
    assert grad[0, 3] == 0 and grad[0, 0] != 0
    assert m["actor/m2_masked_frac"] == pytest.approx(0.25)


def test_topr_weights_negatives_by_the_clipped_ratio_and_positives_by_one():
    # A = (+1, +1, -1, -1), log r = (1, -1, log 2, log 0.5): weights (1, 1, 1, 0.5); grad = -w A / 4
    old = torch.zeros(1, 4)
    new = torch.tensor([[1.0, -1.0, math.log(2.0), math.log(0.5)]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, grad, m = _loss_and_grad("topr", old, new, adv)
    w = torch.tensor([1.0, 1.0, 1.0, 0.5])
    torch.testing.assert_close(grad[0], -(w * adv[0]) / 4)
    torch.testing.assert_close(loss, -(w * adv[0] * new[0]).mean())
    assert m["actor/topr_negative_weight_mean"] == pytest.approx(0.75)


def test_decoupled_ppo_gives_no_gradient_to_a_sample_left_out():
    old = torch.zeros(1, 2)
    new = torch.tensor([[0.1, 0.1]])
    _, grad, _ = _loss_and_grad("decoupled_ppo", old, new, torch.ones(1, 2), torch.tensor([[1.0, 0.0]]))
    assert grad[0, 1] == 0 and grad[0, 0] != 0


@pytest.mark.parametrize("name", sorted(CORRECTIONS))
def test_the_name_algo_off_policy_selects_is_the_loss_registered_under_it(name):
    run = validate({"algo": {"off_policy": name}, "run_dir": "/tmp/x"})
    correction = CORRECTIONS[name]
    expected_loss = correction.policy_loss or "vanilla"
    assert run.algo.policy_loss == expected_loss
    assert run.algo.adv_estimator == (correction.adv_estimator or "gae")
    if correction.policy_loss:
        assert get_policy_loss_fn(name) is getattr(policy_losses, f"compute_policy_loss_{name}")


def test_unknown_correction_and_bad_knobs_are_refused_by_name():
    with pytest.raises(ValueError, match="algo.off_policy='gpio' is unknown"):
        validate({"algo": {"off_policy": "gpio"}, "run_dir": "/tmp/x"})
    with pytest.raises(ValueError, match="algo.gipo_sigma"):
        validate({"algo": {"gipo_sigma": 0.0}, "run_dir": "/tmp/x"})
