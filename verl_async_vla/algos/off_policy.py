"""Off-policy corrections for samples produced by an older policy version (behaviour policy mu).

Registered into verl's registries by the plugin and looked up there like any verl built-in: `algo.off_policy=
decoupled_ppo` selects the decoupled loss, `algo.off_policy=vtrace` the V-trace estimator (`algo.adv_estimator`
follows it; validate.py refuses `adv_estimator=vtrace` without it, naming the fix). Tensors are (B, T): episode rows, decision columns, `mask` after the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from verl.trainer.ppo.core_algos import agg_loss, register_adv_est, register_policy_loss

from verl_async_vla.config.schema import AlgoConfig

# none: PPO against the proximal policy, mu ignored (what a trainer that recomputes old log-probs does with stale
#       data, e.g. verl's default actor flow): the decoupling alone, no IS weights
# behaviour_ppo: PPO ratio and clip centred on mu, the log-probs the samples came with: correction off (a standard
#       PPO trainer fed stale rollouts; AReaL's "naive PPO", Fu et al. 2025). Degrades with lag (docs/benchmarks.md).
# tis: PPO against the proximal policy, times truncated IS weights min(pi_prox/mu, C)
# decoupled_ppo: Hilton et al. 2021 (same inputs, its own registered loss)
# vtrace: V-trace advantages and targets (Espeholt et al. 2018) + PPO against the proximal policy
OFF_POLICY_MODES = ("none", "behaviour_ppo", "tis", "decoupled_ppo", "vtrace")


@dataclass
class CorrectionInputs:
    old_log_prob: torch.Tensor  # the policy the PPO ratio is taken against
    is_weights: torch.Tensor | None  # per-decision weights on the policy loss
    log_rho: torch.Tensor  # log pi_prox - log mu, masked


def correction_inputs(
    cfg: AlgoConfig, behaviour_log_prob: torch.Tensor, proximal_log_prob: torch.Tensor, mask: torch.Tensor
) -> CorrectionInputs:
    log_rho = (proximal_log_prob - behaviour_log_prob) * mask
    if cfg.off_policy == "none":
        return CorrectionInputs(proximal_log_prob, None, log_rho)
    if cfg.off_policy == "behaviour_ppo":
        return CorrectionInputs(behaviour_log_prob, None, log_rho)
    if cfg.off_policy in ("tis", "decoupled_ppo"):
        return CorrectionInputs(
            proximal_log_prob,
            truncated_is_weights(proximal_log_prob, behaviour_log_prob, cfg.is_cap),
            log_rho,
        )
    if cfg.off_policy == "vtrace":  # the IS correction lives in the advantages
        return CorrectionInputs(proximal_log_prob, None, log_rho)
    raise ValueError(f"algo.off_policy={cfg.off_policy!r} is unknown; choose one of {OFF_POLICY_MODES}.")


def truncated_is_weights(
    proximal_log_prob: torch.Tensor, behaviour_log_prob: torch.Tensor, cap: float
) -> torch.Tensor:
    """w = min(pi_prox / mu, C): truncated importance sampling (Ionides 2008; Espeholt et al. 2018, rho-bar)."""
    return torch.exp(proximal_log_prob - behaviour_log_prob).clamp(max=cap).detach()


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
    L = -E_mu[ (pi_prox/mu) * min(r A, clip(r, 1-eps, 1+eps) A) ],  r = pi_theta / pi_prox.
    `old_log_prob` is the proximal policy's; `rollout_is_weights` carries pi_prox/mu (truncated upstream)."""
    if rollout_is_weights is None:
        raise ValueError(
            "decoupled_ppo needs rollout_is_weights = pi_prox/mu; the ActorWorker computes them."
        )
    eps = float(config.clip_ratio) if config is not None else 0.2
    ratio = torch.exp((log_prob - old_log_prob).clamp(-20.0, 20.0))
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1.0 - eps, 1.0 + eps) * advantages)
    loss = agg_loss(-rollout_is_weights * surrogate, response_mask, loss_agg_mode)
    clipfrac = ((ratio - 1.0).abs() > eps).float().mul(response_mask).sum() / response_mask.sum().clamp(min=1)
    return loss, {
        "actor/pg_clipfrac": clipfrac.item(),
        "actor/is_weight_mean": rollout_is_weights[response_mask > 0].mean().item(),
    }


@register_adv_est("vtrace")
def compute_vtrace_advantage_return(
    token_level_rewards: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float,
    log_rho: torch.Tensor,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace (Espeholt et al. 2018, IMPALA, eq. 1 and sec. 4.2). With rho_t = min(rho_bar, pi/mu),
    c_t = min(c_bar, pi/mu) and delta_t = rho_t (r_t + gamma V(x_{t+1}) - V(x_t)):
        v_s = V(x_s) + delta_s + gamma c_s (v_{s+1} - V(x_{s+1}))          (recursive form of eq. 1)
        A_s = rho_s (r_s + gamma v_{s+1} - V(x_s))                         (policy-gradient advantage)
    Episodes end inside the row (mask), so V and v are 0 past the end. Returns (advantages, v-targets)."""
    with torch.no_grad():
        ratio = torch.exp(log_rho.clamp(-20.0, 20.0))
        rho = ratio.clamp(max=rho_bar) * response_mask
        c = ratio.clamp(max=c_bar) * response_mask
        v = values * response_mask
        next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
        delta = rho * (token_level_rewards + gamma * next_v - v)
        vs = torch.zeros_like(v)
        acc = torch.zeros_like(v[:, 0])  # v_{s+1} - V(x_{s+1})
        for s in reversed(range(v.shape[1])):
            acc = (delta[:, s] + gamma * c[:, s] * acc) * response_mask[:, s]
            vs[:, s] = v[:, s] + acc
        next_vs = torch.cat([vs[:, 1:], torch.zeros_like(vs[:, :1])], dim=1)
        advantages = rho * (token_level_rewards + gamma * next_vs - v) * response_mask
    return advantages, vs
