"""The actor-critic objective, assembled from verl's registered pieces (PPO clip, clipped value loss, agg_loss).

L = L_pg + c_v * L_v - c_H * H   (PPO, Schulman et al. 2017, eq. 9)
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import agg_loss, compute_value_loss, get_policy_loss_fn

from verl_async_vla.config.schema import AlgoConfig


def _actor_view(cfg: AlgoConfig) -> Any:
    """The slice of verl's ActorConfig that its registered policy losses read."""
    return OmegaConf.create(
        {
            "clip_ratio": cfg.clip_ratio,
            "clip_ratio_low": cfg.clip_ratio,
            "clip_ratio_high": cfg.clip_ratio,
            "clip_ratio_c": cfg.clip_ratio_c,
            "loss_agg_mode": cfg.loss_agg_mode,
            "global_batch_info": {},
            "gipo_sigma": cfg.gipo_sigma,  # this plugin's losses (algos/policy_losses.py)
            "m2_threshold": cfg.m2_threshold,
        }
    )


def actor_critic_loss(
    cfg: AlgoConfig,
    log_prob: torch.Tensor,
    entropy: torch.Tensor,
    vpred: torch.Tensor,
    old_log_prob: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """All tensors (B, T); `is_weights` are optional off-policy correction weights applied per decision."""
    policy_loss = get_policy_loss_fn(cfg.policy_loss)
    pg_loss, pg_metrics = policy_loss(
        old_log_prob, log_prob, advantages, mask, cfg.loss_agg_mode, _actor_view(cfg), is_weights
    )
    vf_loss, vf_clipfrac = compute_value_loss(
        vpred, returns, old_values, mask, cfg.cliprange_value, cfg.loss_agg_mode
    )
    ent = agg_loss(entropy, mask, cfg.loss_agg_mode)
    loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * ent
    metrics = {
        "actor/pg_loss": pg_loss.item(),
        "critic/vf_loss": vf_loss.item(),
        "critic/vf_clipfrac": float(vf_clipfrac),
        "actor/entropy": ent.item(),
        **{k: float(v) for k, v in pg_metrics.items()},
    }
    return loss, metrics
