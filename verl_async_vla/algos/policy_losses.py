"""Policy losses for stale samples, registered into verl's POLICY_LOSS_REGISTRY (looked up like verl's own).

Each takes verl's policy-loss signature: `old_log_prob` is the policy the ratio is taken against (the proximal policy
pi_prox or the behaviour policy mu, as the correction in algos/off_policy.py says), `rollout_is_weights` optional
per-decision weights. Tensors are (B, T): episode rows, decision columns, `response_mask` after the end. A decision's
log-prob is its whole action chunk's. On-policy (ratio 1) each loss has PPO-clip's gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss

# verl clamps the log-ratio the same way before exponentiating (compute_policy_loss_vanilla)
LOG_RATIO_CLAMP = 20.0


def _log_ratio(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> torch.Tensor:
    return (log_prob - old_log_prob).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float((x * mask).sum() / mask.sum().clamp(min=1))


@register_policy_loss("decoupled_ppo")
def compute_policy_loss_decoupled_ppo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Decoupled PPO (Hilton et al. 2021, Batch size-invariance for policy optimization, eq. 2):
    L = -E_mu[ w * min(r A, clip(r, 1-eps, 1+eps) A) ],  r = pi_theta / pi_prox,  w = pi_prox / mu.
    `old_log_prob` is the proximal policy's; `rollout_is_weights` carries w (algos/off_policy.py: zero where
    pi_prox / mu exceeds the cap, as AReaL and RLinf do)."""
    if rollout_is_weights is None:
        raise ValueError(
            "decoupled_ppo needs rollout_is_weights = pi_prox/mu; the ActorWorker computes them."
        )
    eps = float(config.clip_ratio) if config is not None else 0.2
    ratio = torch.exp(_log_ratio(log_prob, old_log_prob))
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1.0 - eps, 1.0 + eps) * advantages)
    loss = agg_loss(-rollout_is_weights * surrogate, response_mask, loss_agg_mode)
    clipfrac = ((ratio - 1.0).abs() > eps).float()
    return loss, {
        "actor/pg_clipfrac": _masked_mean(clipfrac, response_mask),
        "actor/is_weight_mean": rollout_is_weights[response_mask > 0].mean().item(),
    }


@register_policy_loss("gipo")
def compute_policy_loss_gipo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """GIPO, Gaussian-damped importance ratio (AcceRL's policy loss; RLinf `compute_gipo_actor_loss`):
    L = -E[ r A sg(exp(-(log r)^2 / (2 sigma^2))) ],  r = pi_theta / old,  sigma = algo.gipo_sigma (0.5).
    A soft trust region in place of PPO's hard clip: a decision whose ratio is far from 1 is damped, never cut."""
    sigma = float(config.gipo_sigma) if config is not None else 0.5
    log_r = _log_ratio(log_prob, old_log_prob)
    damping = torch.exp(-0.5 * (log_r.detach() / sigma) ** 2)
    loss_mat = -advantages * torch.exp(log_r) * damping
    if rollout_is_weights is not None:
        loss_mat = loss_mat * rollout_is_weights
    return agg_loss(loss_mat, response_mask, loss_agg_mode), {
        "actor/gipo_damping_mean": _masked_mean(damping, response_mask)
    }


def m2_keep_mask(log_ratio: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """M2PO's trust region (Zheng et al. 2025, arXiv 2510.01161, sec. 4, Alg. 1): mask the decisions with the largest
    (log r)^2 until the second moment over those kept, M2 = mean (log r)^2, is <= `threshold` (tau_M2 = 0.04).
    Sorted ascending, the mean of the k smallest grows with k, so the kept set is the largest prefix within it."""
    valid = mask > 0
    sq = log_ratio.detach().pow(2)
    order = torch.sort(sq[valid]).values
    prefix_mean = order.cumsum(0) / torch.arange(1, len(order) + 1, dtype=order.dtype)
    keep_n = int((prefix_mean <= threshold).sum())
    keep = torch.zeros_like(mask)
    if keep_n == 0:
        return keep
    cut = order[keep_n - 1]
    kept = valid & (sq <= cut)
    # ties at the cut: keep only as many as the prefix holds, in row-major order (deterministic)
    excess = int(kept.sum()) - keep_n
    if excess > 0:
        at_cut = torch.nonzero((kept & (sq == cut)).flatten()).flatten()
        flat = kept.flatten().clone()
        flat[at_cut[len(at_cut) - excess :]] = False
        kept = flat.view_as(kept)
    keep[kept] = 1.0
    return keep


@register_policy_loss("m2po")
def compute_policy_loss_m2po(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """M2PO, second-moment trust policy optimisation (Zheng et al. 2025, arXiv 2510.01161, sec. 4):
    L = -(1/N) sum_i M_i r_i A_i,  r = pi_theta / old,  M = `m2_keep_mask` (threshold `algo.m2_threshold`).
    No clip: only the extreme-ratio decisions are masked, so stale samples keep contributing."""
    threshold = float(config.m2_threshold) if config is not None else 0.04
    log_r = _log_ratio(log_prob, old_log_prob)
    keep = m2_keep_mask(log_r, response_mask, threshold)
    loss_mat = -advantages * torch.exp(log_r) * keep
    if rollout_is_weights is not None:
        loss_mat = loss_mat * rollout_is_weights
    return agg_loss(loss_mat, response_mask, loss_agg_mode), {
        "actor/m2_masked_frac": 1.0 - _masked_mean(keep, response_mask),
        "actor/m2_before": _masked_mean(log_r.detach().pow(2), response_mask),
    }


@register_policy_loss("topr")
def compute_policy_loss_topr(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """TOPR, tapered off-policy REINFORCE (Le Roux et al. 2025, arXiv 2503.14286, sec. 3):
    L = -E_mu[ w A log pi_theta ],  w = 1 where A >= 0,  w = sg(clip(pi_theta / old, 0, 1)) where A < 0.
    Positive samples are imitated whatever their ratio; negative ones push down only as far as pi_theta still
    puts mass on them. The paper splits by the trajectory's reward; here by the decision's advantage."""
    ratio = torch.exp(_log_ratio(log_prob, old_log_prob)).detach()
    weight = torch.where(advantages >= 0, torch.ones_like(ratio), ratio.clamp(0.0, 1.0))
    loss_mat = -weight * advantages * log_prob
    if rollout_is_weights is not None:
        loss_mat = loss_mat * rollout_is_weights
    negative = (advantages < 0).float() * response_mask
    return agg_loss(loss_mat, response_mask, loss_agg_mode), {
        "actor/topr_negative_weight_mean": _masked_mean(weight, negative) if negative.sum() > 0 else 1.0
    }
